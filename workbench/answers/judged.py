"""The second half of the build: what needs every unit's figures first — comparisons (standardised
ratios, funnels, deciles), risks and journeys (see :mod:`.comparisons`, :mod:`.risks` and
:mod:`.journeys`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from workbench.analysis.funnel import funnel_rows
from workbench.answers import journeys as J
from workbench.answers.build import CHUNK_ROWS, Progress, data_span, even_ranges, share_count
from workbench.answers.comparisons import build_comparisons
from workbench.answers.periods import offered
from workbench.answers.risks import risk_table
from workbench.definitions import Definitions
from workbench.engine.journeys import FOLLOW_UP_DAYS
from workbench.engine.periods import Period, parse_period
from workbench.engine.registers import Registers

Put = Callable[[str, ir.Table], ir.Table]
JUDGED_LEVELS = ("practice", "cluster")  # the levels whose units the areas place in a funnel
# The risks table's columns, for a register too short to offer a period (no rows).
RISK_COLUMNS = {"level": "string", "unit_id": "string", "period": "string", "risk": "string",
                "patients": "int64", "population": "int64", "listed": "float64",
                "patients_per_1000": "float64", "share": "float64", "value": "float64",
                "target": "float64", "z": "float64", "lower_95": "float64",
                "upper_95": "float64", "lower_998": "float64", "upper_998": "float64",
                "flag_95": "string", "flag_998": "string", "phi": "float64",
                "tau2": "float64", "adjustment": "string"}
TEXT_COLUMNS = ("flag_95", "flag_998", "adjustment")
Insert = Callable[[str, ir.Table], None]


def build_judged(reg: Registers, definitions: Definitions, answers: dict[str, ir.Table],
                 put: Put, insert: Insert, progress: Progress,
                 cohorts: list[Period] | None = None, *, chunk_rows: int = CHUNK_ROWS
                 ) -> dict[str, ir.Table]:
    """``standardised``, ``funnels``, ``deciles``, ``risks`` and ``journeys`` (``cohorts``: the
    periods whose starters to follow; default: every period built that the data can follow)."""
    found: dict[str, ir.Table] = {}
    with progress.phase("comparisons") as rows:
        made = build_comparisons(answers["cells"], answers["listed"], answers["units"],
                                 answers["periods"], answers["selections"], put, insert,
                                 progress.say)
        for table in made.values():
            rows.append(int(table.count().to_pyarrow().as_py()))
        found.update(made)
    first, last = data_span(reg)
    held = [parse_period(p) for p in answers["periods"].select("period").to_pyarrow()
            .column(0).to_pylist()]
    shown = offered(held, first)
    with progress.phase("risks") as rows:
        parts = _risks(reg, definitions, answers, shown, put, chunk_rows) if shown else []
        parts = [p for p in parts if not p.empty]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {name: pd.Series(dtype=object if kind == "string" else kind)
             for name, kind in RISK_COLUMNS.items()})
        # the text columns' gaps as nulls (a level not placed in a funnel has none of them;
        # NaN would reach some backends as the text 'NaN'), typed as text even when empty
        table = table.assign(**{c: table[c].astype(object).where(table[c].notna(), None)
                                for c in TEXT_COLUMNS if c in table.columns})
        stored = ibis.memtable(table, schema=ibis.schema(
            {c: RISK_COLUMNS[c] for c in table.columns}))
        found["risks"] = put("risks", stored.order_by(["level", "period", "risk", "unit_id"]))
        rows.append(len(table))
    with progress.phase("journeys") as rows:
        cohorts = cohort_periods(held if cohorts is None else cohorts, last)
        coded = answers["scratch_facts"]
        begun = put("scratch_starts", J.starts(coded))
        persons = reg.persons.join(answers["scratch_person_keys"], "person_id").select(
            "pk", "death_date")
        outcomes = put("scratch_outcomes", J.followed(coded, begun, persons,
                                                      last + dt.timedelta(days=1)))
        groups = ibis.memtable({"product_group": list(definitions.groups),
                                "gid": list(range(len(definitions.groups)))},
                               schema={"product_group": "string", "gid": "int16"})
        table = J.journey_table(coded, begun, outcomes, answers["scratch_practices"],
                                cohorts, groups)
        found["journeys"] = put("journeys", table.order_by(
            ["level", "group", "period", "unit_id"]))
        rows.append(int(found["journeys"].count().to_pyarrow().as_py()))
    return found


def cohort_periods(periods: list, last_day: dt.date) -> list:
    """The periods whose starts can be followed for twelve months within the data."""
    follow = dt.timedelta(days=FOLLOW_UP_DAYS["12m"])
    return [p for p in periods if p.last_day + follow <= last_day]


def _risks(reg: Registers, definitions: Definitions, answers: dict[str, ir.Table],
           shown: list, put: Put, chunk_rows: int) -> list[pd.DataFrame]:
    """Every risk of every unit of the risk levels, each practice's and cluster's placed in the
    funnel of its level (patients per 1,000 listed, per period and risk). The persons' nets and
    flags are counted a share of the persons at a time, as the cells are: as one statement
    the nation's ran out of the build's memory."""
    selections = answers["selections"].filter(answers["selections"].kind == "drug")
    drugs = [(r["sid"], r["sel"]) for r in selections.select("sid", "sel").to_pyarrow()
             .to_pylist()]
    persons = reg.persons.join(answers["scratch_person_keys"], "person_id").select(
        "pk", "birth_date")
    people = int(answers["scratch_person_keys"].count().to_pyarrow().as_py())
    total = int(answers["scratch_facts"].count().to_pyarrow().as_py())
    shares = even_ranges(people, share_count(total, chunk_rows))
    tables = [risk_table(reg, definitions, rid, answers["scratch_facts"], drugs,
                         answers["scratch_practices"], persons, answers["listed"], shown,
                         answers["periods"], answers["scratch_period_months"], put, shares)
              .to_pyarrow().to_pandas() for rid in definitions.risks]
    table = pd.concat(tables, ignore_index=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["patients_per_1000"] = np.where(table["listed"] > 0,
                                              table["patients"] / table["listed"] * 1000, np.nan)
        table["share"] = np.where(table["population"] > 0,
                                  table["patients"] / table["population"], np.nan)
    parts = []
    for level, rows in table.groupby("level", sort=False):
        if level in JUDGED_LEVELS:
            rows = funnel_rows(rows, ("period", "risk"), observed="patients",
                               exposure="listed", per=1000.0)
        parts.append(rows)
    return parts
