"""Month-grain marts: every period kind is whole calendar months, so month sums answer them all.

Every period the engine knows (month, quarter, year, R12) is a run of whole calendar months, so
a sum over a period is exactly the sum of its months' sums. The marts here store month sums at
the finest grain a dashboard question needs, and the query side re-aggregates them per period:

* ``engine_month`` — net DDD per person × attributed practice × prescriber label × group ×
  drug × addictive × depot × month, with the person's ``sex`` and ``birth_date`` carried along
  (``person_known``: whether ``persons`` has them), so a figure by sex or age needs no join with
  the persons register. Patients are then counted exactly as from the raw redemptions: month
  sums are first *re-summed per person over the period* and only then tested ``> 0`` (a person
  with +10 DDD in March and −10 in April is no patient of the quarter).
* ``engine_month_by_practice`` — the same rows sorted by practice, and
  ``engine_person_group_month_by_practice`` — the rows of ``engine_person_group_month`` under
  each practice that has a GP redemption of the person in the group: a practice or cluster
  question then reads its own few row groups instead of scanning the nation's.
* ``engine_person_group_month`` — per person × group × month, over **every** prescriber: net DDD,
  net DDD on the month's 1st day, and the first redemption day in the month with its
  new-use flag. From these, consumption group and started/continued follow exactly:

  - the consumption-group window is the 365 days ending on the period's last day. A period ends
    on a month's 1st, so the window starts on the 1st of a month (365 days = 12 months) or, when
    the 12 months hold a 29 February, on its 2nd: window DDD = the window's month sums minus the
    first month's day-1 DDD in that case;
  - started is judged on the first redemption day in the period, which is the earliest of the
    months' first days.
* ``engine_listed_month`` — listed person-days per practice × sex × month (``known``: whether the
  person is in ``persons``, since a figure by sex can only place known persons). Built without
  expanding listings to months: each listing adds +1/−1 "listed all month" events at its first
  and after its last full month and partial days at its edges; a running sum over months gives
  the full-month count. Age on the period's first day can't be summed from months (it depends
  on the period's start, not the month's), so:
* ``engine_listed_age`` — listed person-days per practice × period × sex × age on the period's
  first day, for every period the engine can be asked about within the covered months: every
  month, every quarter and every run of 12 months (years and R12), keyed by the period's first
  month and its length in months. Only persons in ``persons`` (a figure by age can't place the
  others). Built from the listings collapsed first: age on a month's 1st depends on the birth
  date only through its year, month and whether it is the 1st, so persons born on the 2nd–31st
  of one month share a row.

Months are integers ``year × 12 + month − 1`` (plain Ibis on every backend, cheap to join on).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from workbench.engine.periods import Period
from workbench.engine.persons import age_on

# Decimals a net DDD is rounded to before it is compared with a threshold: sums of floats in
# another order (month by month, or in parallel) may leave 1e-15 where the exact sum is 0.
NET_DECIMALS = 9


def month_index(day: dt.date) -> int:
    """``year × 12 + month − 1``: consecutive months are consecutive integers.

    >>> month_index(dt.date(2024, 1, 31)) - month_index(dt.date(2023, 12, 1))
    1
    """
    return day.year * 12 + day.month - 1


def month_of(day: ir.DateValue) -> ir.IntegerValue:
    """The Ibis form of :func:`month_index`."""
    return day.year().cast("int64") * 12 + day.month().cast("int64") - 1


def _days_in_month(index: int) -> int:
    year, month = divmod(index, 12)
    following = dt.date(year + (month == 11), (month + 1) % 12 + 1, 1)
    return (following - dt.date(year, month + 1, 1)).days


def period_months(periods: Sequence[Period]) -> ir.Table:
    """``(period, month, period_start)``: the calendar months each period is made of (cached
    per periods, as :func:`~workbench.engine.periods.periods_table`)."""
    return _period_months(tuple(periods))


@functools.lru_cache(maxsize=256)
def _period_months(periods: tuple[Period, ...]) -> ir.Table:
    rows = [
        (p.label, m, p.start)
        for p in periods
        for m in range(month_index(p.start), month_index(p.end_exclusive))
    ]
    return ibis.memtable(
        {
            "period": [r[0] for r in rows],
            "month": [r[1] for r in rows],
            "period_start": [r[2] for r in rows],
        },
        schema=ibis.schema({"period": "string", "month": "int64", "period_start": "date"}),
    )


def lookback_months(periods: Sequence[Period]) -> ir.Table:
    """``(period, month, without_day1)``: the months of each period's consumption-group window,
    and whether the window leaves out the first month's 1st day (see the module docstring)."""
    return _lookback_months(tuple(periods))


@functools.lru_cache(maxsize=256)
def _lookback_months(periods: tuple[Period, ...]) -> ir.Table:
    rows = []
    for p in periods:
        start = p.lookback_start
        if start.day > 2:
            raise ValueError(f"{p.label}: a 365-day window must start on a 1st or 2nd")
        first = month_index(start)
        for m in range(first, month_index(p.end_exclusive)):
            rows.append((p.label, m, m == first and start.day == 2))
    return ibis.memtable(
        {
            "period": [r[0] for r in rows],
            "month": [r[1] for r in rows],
            "without_day1": [r[2] for r in rows],
        },
        schema=ibis.schema({"period": "string", "month": "int64", "without_day1": "boolean"}),
    )


# ---- building the marts ------------------------------------------------------------------------

MONTH_GRAIN = (
    "product_group", "month", "practice_id", "prescriber", "drug", "addictive", "depot"
)


def month_facts(facts: ir.Table, persons: ir.Table) -> ir.Table:
    """``engine_month``: net DDD per person × practice × prescriber × group × drug × flags ×
    month with the person's sex and birth date, ordered by group and month so a query reads few
    row groups. ``facts`` are :func:`~workbench.engine.facts.redemption_facts` (every product:
    ``product_group`` is null for products of no group, which the all-drugs selection still
    counts)."""
    with_month = facts.mutate(month=month_of(facts.dispensed_on))
    summed = with_month.group_by([*MONTH_GRAIN, "person_id"]).aggregate(ddd=with_month.ddd.sum())
    person = persons.select("person_id", "sex", "birth_date", person_known=ibis.literal(True))
    joined = summed.left_join(person, "person_id").drop("person_id_right")
    joined = joined.mutate(person_known=joined.person_known.fill_null(False))
    return joined.order_by(["product_group", "month"])


def by_practice(month: ir.Table) -> ir.Table:
    """``engine_month_by_practice``: ``engine_month`` sorted by practice, group and month."""
    return month.order_by(["practice_id", "product_group", "month"])


def person_group_months_by_practice(pgm: ir.Table, month: ir.Table) -> ir.Table:
    """``engine_person_group_month_by_practice``: every row of ``pgm`` (a person's history in
    a group, over every prescriber) under each practice that has a GP redemption of that person
    in that group. A person seen by two practices is stored twice, so a reader of several
    practices must take distinct rows (:func:`person_months_of_practices`)."""
    who = month.filter(month.practice_id.notnull() & month.product_group.notnull())
    who = who.select("practice_id", "person_id", group=who.product_group).distinct()
    stored = pgm.join(who, ["person_id", "group"])
    return stored.order_by(["practice_id", "group", "month"])


def person_months_of_practices(
    stored: ir.Table, practice_ids: Sequence[str], groups: Sequence[str]
) -> ir.Table:
    """The ``engine_person_group_month`` rows of every person with a GP redemption in one of
    ``practice_ids`` and ``groups``, once each, read from the by-practice copy."""
    rows = stored.filter(stored.practice_id.isin(list(practice_ids)) & stored.group.isin(groups))
    return rows.drop("practice_id").distinct()


def person_group_months(facts: ir.Table, days: ir.Table) -> ir.Table:
    """``engine_person_group_month``: per person × group × month over every prescriber: ``ddd``,
    ``ddd_day1`` (on the 1st), ``first_day`` (first redemption day, packs > 0) and
    ``first_new_use`` (that day's new-use flag from :func:`~workbench.engine.patients.
    redemption_days`, here ``days``)."""
    grouped = facts.filter(facts.product_group.notnull())
    grouped = grouped.mutate(group=grouped.product_group, month=month_of(grouped.dispensed_on))
    key = ["person_id", "group", "month"]
    sums = grouped.group_by(key).aggregate(
        ddd=grouped.ddd.sum(),
        ddd_day1=grouped.ddd.sum(where=grouped.dispensed_on.day() == 1),
    )
    sums = sums.mutate(ddd_day1=sums.ddd_day1.fill_null(0.0))
    dated = days.mutate(month=month_of(days.day))
    firsts = dated.group_by(key).aggregate(
        first_day=dated.day.min(), first_new_use=dated.new_use.argmin(dated.day)
    )
    joined = sums.left_join(firsts, key).drop(*(f"{k}_right" for k in key))
    return joined.order_by(["group", "month"])


def listed_months(
    listings: ir.Table, persons: ir.Table, first_month: int, end_month: int
) -> ir.Table:
    """``engine_listed_month``: ``(practice_id, sex, known, month, person_days)`` for the months
    ``first_month ≤ month < end_month`` (month indexes), exact to the day."""
    start_year, start_m = divmod(first_month, 12)
    end_year, end_m = divmod(end_month, 12)
    c0 = ibis.date(start_year, start_m + 1, 1)
    c1 = ibis.date(end_year, end_m + 1, 1)
    person = persons.select("person_id", "sex", known=ibis.literal(True))
    joined = listings.left_join(person, "person_id")
    start = ibis.greatest(joined.start_date, c0)
    end = ibis.least(joined.end_date.fill_null(c1), c1)
    clipped = joined.select(
        "practice_id",
        sex=joined.sex,
        known=joined.known.fill_null(False),
        ms=month_of(start),
        me=month_of(end),
        ds=start.day().cast("int64"),
        de=end.day().cast("int64"),
        keep=start < end,
    )
    clipped = clipped.filter(clipped.keep)
    cell = ["practice_id", "sex", "known"]

    def part(rows: ir.Table, month: ir.IntegerValue, delta: int, const: ir.Value, dim: int):
        return rows.select(
            *cell,
            month=month,
            delta=ibis.literal(delta, "int64"),
            const_days=const.cast("int64"),
            plus_dim=ibis.literal(dim, "int64"),
        )

    same = clipped.filter(clipped.ms == clipped.me)
    span = clipped.filter(clipped.ms < clipped.me)
    head = span.filter(span.ds > 1)
    full_from = ibis.ifelse(span.ds > 1, span.ms + 1, span.ms)
    full = span.filter(full_from < span.me)
    full_from = ibis.ifelse(full.ds > 1, full.ms + 1, full.ms)
    tail = span.filter(span.de > 1)
    pieces = ibis.union(
        # Within one month: the days from start to end.
        part(same, same.ms, 0, same.de - same.ds, 0),
        # A first month entered after its 1st: days in month - start day + 1.
        part(head, head.ms, 0, 1 - head.ds, 1),
        # Whole months: +1 from the first, -1 from the month the listing ends in.
        part(full, full_from, 1, ibis.literal(0), 0),
        part(full, full.me, -1, ibis.literal(0), 0),
        # The month the listing ends in, left before its end: the days before the end day.
        part(tail, tail.me, 0, tail.de - 1, 0),
    )
    summed = pieces.group_by([*cell, "month"]).aggregate(
        delta=pieces.delta.sum(), const_days=pieces.const_days.sum(), plus_dim=pieces.plus_dim.sum()
    )
    indexes = list(range(first_month, end_month))
    months = ibis.memtable(
        {"month": indexes, "month_days": [_days_in_month(m) for m in indexes]},
        schema=ibis.schema({"month": "int64", "month_days": "int64"}),
    )
    # Joined on one non-null key: a person missing from ``persons`` has a null sex, and null
    # never equals null in a join.
    summed = summed.mutate(
        cell_key=summed.practice_id.fill_null("")
        + "|"
        + summed.sex.fill_null("")
        + "|"
        + summed.known.cast("string")
    )
    grid = summed.select(*cell, "cell_key").distinct().cross_join(months)
    facts = summed.select("cell_key", "month", "delta", "const_days", "plus_dim")
    dense = grid.left_join(facts, ["cell_key", "month"]).drop("cell_key_right", "month_right")
    dense = dense.mutate(
        delta=dense.delta.fill_null(0),
        const_days=dense.const_days.fill_null(0),
        plus_dim=dense.plus_dim.fill_null(0),
    )
    running = ibis.window(group_by="cell_key", order_by="month", preceding=None, following=0)
    counted = dense.mutate(full=dense.delta.sum().over(running))
    days = (counted.full + counted.plus_dim) * counted.month_days + counted.const_days
    result = counted.select(*cell, "month", person_days=days.cast("int64"))
    return result.filter(result.person_days != 0).order_by(["month", "practice_id"])


def age_period_keys(first_month: int, end_month: int) -> list[tuple[int, int]]:
    """``(first month, months)`` of every period kind's periods within ``first_month ≤ m <
    end_month``: each month, each calendar quarter, each run of 12 months (years, R12)."""
    keys = []
    for length, step in ((1, 1), (3, 3), (12, 1)):
        for m in range(first_month, end_month - length + 1):
            if m % step == 0:
                keys.append((m, length))
    return keys


@functools.lru_cache(maxsize=256)
def age_periods(periods: tuple[Period, ...]) -> ir.Table:
    """``(period, period_month, months)``: the key of each period in ``engine_listed_age``."""
    keys = [period_key(p) for p in periods]
    return ibis.memtable(
        {
            "period": [p.label for p in periods],
            "period_month": [k[0] for k in keys],
            "months": [k[1] for k in keys],
        },
        schema=ibis.schema({"period": "string", "period_month": "int64", "months": "int64"}),
    )


def period_key(period: Period) -> tuple[int, int]:
    """``(first month, months)`` of a period, as :func:`age_period_keys` gives them."""
    first = month_index(period.start)
    return first, month_index(period.end_exclusive) - first


def listed_ages(
    listings: ir.Table, persons: ir.Table, first_month: int, end_month: int
) -> ir.Table:
    """``engine_listed_age``: ``(months, period_month, practice_id, sex, age, person_days)``
    for the periods of :func:`age_period_keys`, exact to the day; ``age`` as
    :func:`~workbench.engine.persons.age_on` gives it on the period's first day."""
    start_year, start_m = divmod(first_month, 12)
    end_year, end_m = divmod(end_month, 12)
    c0 = ibis.date(start_year, start_m + 1, 1)
    c1 = ibis.date(end_year, end_m + 1, 1)
    valid = listings.filter(listings.end_date.isnull() | (listings.end_date > listings.start_date))
    person = persons.select("person_id", "sex", "birth_date")
    joined = valid.join(person, "person_id")
    birth = joined.birth_date
    # The same age on every month's 1st as the birth date itself (see the module docstring).
    cohort = ibis.ifelse(
        birth.day() == 1,
        birth,
        ibis.date(birth.year(), birth.month(), ibis.literal(2)),
    )
    start = ibis.greatest(joined.start_date, c0)
    end = ibis.least(joined.end_date.fill_null(c1), c1)
    clipped = joined.select("practice_id", "sex", cohort=cohort, start=start, end=end)
    clipped = clipped.filter(clipped.start < clipped.end)
    collapsed = clipped.group_by(["practice_id", "sex", "cohort", "start", "end"]).aggregate(
        n=clipped.count()
    )
    keys = age_period_keys(first_month, end_month)

    def first_of(m: int) -> dt.date:
        return dt.date(m // 12, m % 12 + 1, 1)

    # From Arrow with explicit types, so no periods (a register without redemptions) is still
    # a table of dates.
    periods = ibis.memtable(
        pa.table(
            {
                "period_month": pa.array([k[0] for k in keys], pa.int64()),
                "months": pa.array([k[1] for k in keys], pa.int64()),
                "p_start": pa.array([first_of(k[0]) for k in keys], pa.date32()),
                "p_end": pa.array([first_of(k[0] + k[1]) for k in keys], pa.date32()),
            }
        )
    )
    overlap = collapsed.join(
        periods, [collapsed.start < periods.p_end, collapsed.end > periods.p_start]
    )
    days = ibis.least(overlap.end, overlap.p_end).delta(
        ibis.greatest(overlap.start, overlap.p_start), unit="day"
    )
    rows = overlap.select(
        "months",
        "period_month",
        "practice_id",
        "sex",
        age=age_on(overlap.cohort, overlap.p_start).cast("int64"),
        person_days=(days * overlap.n).cast("int64"),
    )
    summed = rows.group_by(["months", "period_month", "practice_id", "sex", "age"]).aggregate(
        person_days=rows.person_days.sum()
    )
    return summed.order_by(["months", "period_month", "practice_id"])


# ---- answering from the marts ------------------------------------------------------------------


def consumption_window_ddd(pgm: ir.Table, periods: Sequence[Period]) -> ir.Table:
    """``(person_id, group, period, window_ddd)`` from ``engine_person_group_month``: the DDD of
    the 365 days ending on each period's last day, for everyone with a redemption in the months
    of the window."""
    window = pgm.join(lookback_months(periods), "month")
    contribution = window.ddd - ibis.ifelse(window.without_day1, window.ddd_day1, 0.0)
    return window.group_by(["person_id", "group", "period"]).aggregate(
        window_ddd=contribution.sum()
    )


def first_use(pgm: ir.Table, periods: Sequence[Period]) -> ir.Table:
    """``(person_id, group, period, new_use)``: the new-use flag of each person's first
    redemption day in the group in each period, from ``engine_person_group_month``."""
    used = pgm.filter(pgm.first_day.notnull())
    in_period = used.join(period_months(periods).select("period", "month"), "month")
    return in_period.group_by(["person_id", "group", "period"]).aggregate(
        new_use=in_period.first_new_use.argmin(in_period.first_day)
    )
