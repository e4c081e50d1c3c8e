"""Listed persons (*sikrede*): the denominator of every rate.

Listed persons of a unit in a period = person-days listed with its practices in the period /
days in the period, i.e. the mean list size. So a person listed for half the period counts
0.5, and a person who moves practice mid-period counts for each practice by the days they were
there; a person listed with two practices of one cluster in turn still adds up to 1 for the
cluster. Listings are ``[start_date, end_date)`` with ``end_date`` null while open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.persons import add_person_attributes
from workbench.engine.query import apply_filters
from workbench.engine.units import unit_map


def listing_days(listings: ir.Table, periods: ir.Table) -> ir.Table:
    """Each valid listing's overlap with each period: ``(person_id, practice_id, period,
    period_start, period_days, days)``, only where it overlaps at all."""
    # A listing that ends before it starts lists nobody (rather than negative days).
    valid = listings.filter(listings.end_date.isnull() | (listings.end_date > listings.start_date))
    joined = valid.join(
        periods,
        [
            valid.start_date < periods.period_end,
            valid.end_date.isnull() | (valid.end_date > periods.period_start),
        ],
    )
    first = ibis.greatest(joined.start_date, joined.period_start)
    end = ibis.least(joined.end_date.fill_null(joined.period_end), joined.period_end)
    return joined.select(
        "person_id",
        "practice_id",
        "period",
        "period_start",
        "period_days",
        days=end.delta(first, unit="day"),
    )


def listed_persons(
    listings: ir.Table,
    practices: ir.Table,
    persons: ir.Table,
    periods: ir.Table,
    definitions: Definitions,
    *,
    level: str,
    units: Sequence[str] | None = None,
    by: Sequence[str] = (),
    filters: Mapping[str, tuple] | None = None,
) -> ir.Table:
    """``(unit_id, period, *by, listed)``: mean list size per unit and period.

    ``by`` and ``filters`` take person dimensions only (``sex``, ``age``, ``age_group``, age
    on the period's first day): what was dispensed doesn't change who is listed.
    """
    days = listing_days(listings, periods).join(unit_map(practices, level, units), "practice_id")
    if by or filters:
        days = apply_filters(add_person_attributes(days, persons, definitions), filters or {})
    summed = days.group_by(["unit_id", "period", "period_days", *by]).aggregate(
        person_days=days.days.sum()
    )
    return summed.select("unit_id", "period", *by, listed=summed.person_days / summed.period_days)
