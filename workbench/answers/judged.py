"""The second half of the build: what needs every unit's figures first — comparisons (standardised
ratios, funnels, deciles), risks and journeys (see :mod:`.comparisons` and :mod:`.patterns`)."""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir
import pandas as pd

from workbench.answers.build import Progress, data_span
from workbench.answers.comparisons import build_comparisons
from workbench.answers.patterns import RISK_LEVELS, cohort_periods, journey_table, risk_rows
from workbench.answers.periods import offered
from workbench.definitions import Definitions
from workbench.engine.periods import parse_period
from workbench.engine.registers import Registers

Put = Callable[[str, ir.Table], ir.Table]
Insert = Callable[[str, ir.Table], None]


def build_judged(reg: Registers, definitions: Definitions, answers: dict[str, ir.Table],
                 put: Put, insert: Insert, progress: Progress) -> dict[str, ir.Table]:
    """``standardised``, ``funnels``, ``deciles``, ``risks`` and ``journeys``."""
    found: dict[str, ir.Table] = {}
    with progress.phase("comparisons") as rows:
        made = build_comparisons(answers["cells"], answers["listed"], answers["units"],
                                 answers["periods"], put, insert, progress.say)
        for table in made.values():
            rows.append(int(table.count().to_pyarrow().as_py()))
        found.update(made)
    first, last = data_span(reg)
    held = [parse_period(p) for p in answers["periods"].select("period").to_pyarrow()
            .column(0).to_pylist()]
    shown = offered(held, first)
    with progress.phase("risks") as rows:
        parts = []
        for level in RISK_LEVELS:
            frame = risk_rows(reg, definitions, level, shown)
            parts.append(frame)
        table = pd.concat([p for p in parts if not p.empty], ignore_index=True)
        stored = ibis.memtable(table)
        # a flag no unit raised is a column of nothing but nulls: text, as the raised ones
        stored = stored.cast({c: "string" for c in ("flag_95", "flag_998", "adjustment")
                              if c in stored.columns})
        found["risks"] = put("risks", stored.order_by(["level", "period", "risk", "unit_id"]))
        rows.append(len(table))
    with progress.phase("journeys") as rows:
        cohorts = cohort_periods(held, last)
        if cohorts:
            table = journey_table(reg, definitions, cohorts)
            found["journeys"] = put("journeys", table.order_by(
                ["level", "group", "period", "unit_id"]))
            rows.append(int(found["journeys"].count().to_pyarrow().as_py()))
    return found
