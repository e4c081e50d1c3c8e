"""Listed persons (the denominator of every rate) per unit, period and stratum.

Listed persons add up from practices to every level (they are person-days), so they are worked
out per practice with the engine's own listed marts' expressions
(:func:`workbench.engine.months.listed_ages` for persons the persons register knows, by sex and
age on the period's first day; :func:`~workbench.engine.months.listed_months` for everyone)
and summed to each unit. A row with neither sex nor age group holds the persons the register
doesn't know: they count in a unit's total, and in no figure by sex or age.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.months import listed_ages, listed_months
from workbench.engine.persons import with_age_group
from workbench.engine.registers import Registers


def practice_listed(reg: Registers, definitions: Definitions, periods: ir.Table,
                    period_months: ir.Table, practices: ir.Table, first: int, end: int
                    ) -> ir.Table:
    """``(px, pid, sex, age_group, person_days)`` for the months ``first ≤ m < end``."""
    ages = listed_ages(reg.listings, reg.persons, first, end)
    keyed = ages.join(periods.select("pid", period_month="first",
                                     months=(periods.end - periods.first).cast("int64")),
                      ["period_month", "months"])
    keyed = with_age_group(keyed.join(practices.select("practice_id", "px"), "practice_id"),
                           definitions)
    known = keyed.group_by("px", "pid", "sex", "age_group").aggregate(
        person_days=keyed.person_days.sum())
    months = listed_months(reg.listings, reg.persons, first, end)
    unknown = months.filter(~months.known).join(practices.select("practice_id", "px"),
                                                "practice_id")
    unknown = unknown.join(period_months, "month")
    unknown = unknown.group_by("px", "pid").aggregate(person_days=unknown.person_days.sum())
    unknown = unknown.select("px", "pid", sex=ibis.null("string"),
                             age_group=ibis.null("string"), person_days="person_days")
    return ibis.union(known.select(*unknown.columns), unknown)


def unit_listed(listed: ir.Table, units: ir.Table, periods: ir.Table) -> ir.Table:
    """``(unit_id, pid, sex, age_group, listed)``: the mean list size of each stratum."""
    rows = listed.join(units, "px").join(periods.select("pid", "days"), "pid")
    summed = rows.group_by("unit_id", "pid", "days", "sex", "age_group").aggregate(
        person_days=rows.person_days.sum())
    return summed.select("unit_id", "pid", "sex", "age_group",
                         listed=summed.person_days / summed.days)
