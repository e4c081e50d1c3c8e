"""What a patient's use of a group looks like in a period: consumption group and started/continued.

Both are properties of the person's use of the whole group, so they are computed from every
redemption of the group by **any prescriber** (not only the unit's) and ignore the other filters:
a patient is a long-term opioid user whoever prescribed their opioids, and a depot filter doesn't
turn them into a new user.

Boundaries, read from the contract:

* **consumption group**: DDD redeemed in the group in the 365 days ending on the period's last day
  (net of returns): below 90 is *under 3 months*; 90 up to and including 365 is *3 months to 1
  year*; above 365 is *over 1 year*. So exactly 90 DDD is 3 months to 1 year and exactly 365 DDD
  is still 3 months to 1 year ("< 90", "90–365", "> 365").
* **started**: the patient's first redemption in the group in the period has no redemption in
  the group in the 365 days before it. "Before" is the days ``d-365 … d-1``: a previous redemption
  exactly 365 days earlier makes the patient *continued*, one 366 days earlier *started*. A
  redemption here is a dispensing with packs > 0 (a return is not a redemption of the drug), and
  several on one day count as one.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from workbench.engine.months import NET_DECIMALS
from workbench.engine.periods import LOOKBACK_DAYS
from workbench.engine.query import (
    CONTINUED,
    MONTHS_3_TO_12,
    OVER_1_YEAR,
    STARTED,
    UNDER_3_MONTHS,
)

KEY = ["person_id", "group", "period"]


def consumption_groups(selected: ir.Table, periods: ir.Table) -> ir.Table:
    """``(person_id, group, period, consumption_group)`` for everyone with a redemption in the
    group in the 365 days ending on the period's last day.

    ``selected`` is :func:`~workbench.engine.facts.select_groups` output (all prescribers).
    """
    window = selected.join(
        periods,
        [
            selected.dispensed_on >= periods.lookback_start,
            selected.dispensed_on < periods.period_end,
        ],
    )
    summed = window.group_by(KEY).aggregate(window_ddd=window.ddd.sum())
    return label_consumption(summed)


def label_consumption(summed: ir.Table) -> ir.Table:
    """``(person_id, group, period, consumption_group)`` from the window DDD in ``window_ddd``.

    The DDD is rounded to :data:`~workbench.engine.months.NET_DECIMALS` first, so a sum taken in
    another order (the marts sum month by month) falls on the same side of 90 and 365.
    """
    ddd = summed.window_ddd.round(NET_DECIMALS)
    label = ibis.cases(
        (ddd < 90, UNDER_3_MONTHS),
        (ddd <= 365, MONTHS_3_TO_12),
        else_=OVER_1_YEAR,
    )
    return summed.select(*KEY, consumption_group=label)


def redemption_days(selected: ir.Table) -> ir.Table:
    """``(person_id, group, day, new_use)``: each day with a redemption in the group, and whether
    it has no redemption in the group in the 365 days before it."""
    days = (
        selected.filter(selected.packs > 0)
        .select("person_id", "group", day=selected.dispensed_on)
        .distinct()
    )
    window = ibis.window(group_by=["person_id", "group"], order_by="day")
    previous = days.day.lag().over(window)
    new_use = previous.isnull() | (days.day.delta(previous, unit="day") > LOOKBACK_DAYS)
    return days.mutate(new_use=new_use)


def starts(selected: ir.Table, periods: ir.Table, days: ir.Table | None = None) -> ir.Table:
    """``(person_id, group, period, started)`` with ``'started'`` or ``'continued'`` for everyone
    with a redemption in the group in the period, judged on their first one in it.

    ``days`` is :func:`redemption_days` of ``selected`` when already stored (the marts).
    """
    days = redemption_days(selected) if days is None else days
    in_period = days.join(
        periods, [days.day >= periods.period_start, days.day < periods.period_end]
    )
    first = in_period.group_by(KEY).aggregate(new_use=in_period.new_use.argmin(in_period.day))
    return label_started(first)


def label_started(first: ir.Table) -> ir.Table:
    """``(person_id, group, period, started)`` from the first day's ``new_use`` flag."""
    return first.select(*KEY, started=ibis.ifelse(first.new_use, STARTED, CONTINUED))
