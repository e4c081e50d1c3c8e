"""Deciles over time: a unit's series against the spread of its peers, period by period.

OpenPrescribing's chart: the unit's line over the national 10th…90th percentiles of the units
of its level, each period on its own (the deciles are recomputed every period, so a unit that
stays above the 90th percentile while everybody falls is still shown high). The deciles are
:func:`workbench.engine.peers.deciles` of the engine's measures table; units without a value
(no listed persons) are left out of them, and ``units`` says how many units they rest on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.types as ir

from workbench.engine import Workbench
from workbench.engine.peers import DECILES, deciles

RATES = ("patients_per_1000", "ddd_per_1000", "ddd_per_1000_per_day", "share")


def against_deciles(
    session: Workbench,
    unit: str,
    level: str,
    groups: str | list[str],
    periods: Any,
    *,
    measure: str = "patients_per_1000",
    filters: Mapping[str, Any] | None = None,
) -> ir.Table:
    """The unit's ``measure`` per period and group beside the deciles of all units of its
    level in the nation.

    Columns: ``level, unit_id, period, group, patients, listed, <measure>, decile_10 …
    decile_90, units`` (units with a value that period) and ``position``: how many deciles the
    unit is above (0 = below the 10th percentile, 9 = above the 90th).

    >>> against_deciles(session, "012345", "practice", "opioids",
    ...                 "2023Q1..2024Q4").to_pandas()  # doctest: +SKIP
    """
    if measure not in RATES:
        raise ValueError(f"measure must be a rate, one of {RATES}: counts don't compare units")
    table = session.measures(groups, level, periods, filters=filters,
                             measures=["patients", "listed", measure])
    narrow = table.select("level", "unit_id", "period", "group", measure)
    long = deciles(narrow, measure)
    wide = long.group_by(["level", "period", "group"]).aggregate(
        **{f"decile_{d}": long[measure].max(where=long.decile == d) for d in DECILES}
    )
    known = table.filter(table[measure].notnull())
    counts = known.group_by(["period", "group"]).aggregate(units=known.count())
    mine = table.filter(table.unit_id == unit)
    keys = ["period", "group"]
    joined = mine.left_join(wide.drop("level"), keys).drop(*(f"{k}_right" for k in keys))
    joined = joined.left_join(counts, keys).drop(*(f"{k}_right" for k in keys))
    value = joined[measure]
    position = sum(
        ibis.ifelse(value > joined[f"decile_{d}"], 1, 0) for d in DECILES
    )
    return joined.mutate(
        units=joined.units.fill_null(0),
        position=ibis.ifelse(value.notnull(), position, ibis.null("int64")),
    )
