"""Risky patterns of use and the journeys of new users, for every unit, stored.

Both are the engine's own answers (:func:`workbench.engine.risks.risk_measures`,
:func:`workbench.engine.journeys.journeys`) asked once for every unit of a level and every
period a page can show:

* **risks** per practice, cluster and the nation, each practice's and cluster's with its place in
  the funnel of its level (:func:`workbench.analysis.funnel.funnel_table`: patients per 1,000
  listed, per period and risk), which the pages' potential intervention areas rank;
* **journeys** of the new users of each group, per practice — each start belongs to one practice
  (:mod:`workbench.engine.journeys`), so every other level's counts are its practices' sums —
  for the cohort periods whose twelve months of follow-up the data hold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.journeys import FOLLOW_UP_DAYS, journeys
from workbench.engine.periods import Period
from workbench.engine.registers import Registers
from workbench.engine.units import unit_map

JUDGED_LEVELS = ("practice", "cluster")  # the levels whose units the areas place in a funnel


def cohort_periods(periods: Sequence[Period], last_day: dt.date) -> list[Period]:
    """The periods whose starts can be followed for twelve months within the data."""
    follow = dt.timedelta(days=FOLLOW_UP_DAYS["12m"])
    return [p for p in periods if p.last_day + follow <= last_day]


def journey_table(reg: Registers, definitions: Definitions, periods: Sequence[Period]
                  ) -> ir.Table:
    """The journeys of every group's new users per practice, summed to every level."""
    groups = list(definitions.groups)
    per_practice = journeys(reg, definitions, groups, "practice", list(periods))
    counts = per_practice.select("unit_id", "period", "group", "outcome", "persons", "cohort")
    parts = []
    for level in ("practice", "cluster", "municipality", "region", "nation"):
        owners = unit_map(reg.practices, level).select(practice="practice_id", owner="unit_id")
        mapped = counts.join(owners, counts.unit_id == owners.practice)
        summed = mapped.group_by(unit_id="owner", period="period", group="group",
                                 outcome="outcome").aggregate(
            persons=mapped.persons.sum(), cohort=mapped.cohort.sum())
        parts.append(summed.mutate(level=ibis.literal(level)))
    whole = ibis.union(*parts)
    return whole.select(
        "level", "unit_id", "period", "group", "outcome", "persons", "cohort",
        share=ibis.ifelse(whole.cohort > 0, whole.persons / whole.cohort,
                          ibis.null("float64")))
