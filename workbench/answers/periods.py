"""The periods the answer store holds: every month, quarter, year and R12 period of the data.

A page's period widget offers exactly what the store holds, so the list is made once, here, from
the data's first and last dispensing day: every period of each kind that lies whole within the
complete months of the data. The widgets offer those whose start is at least a year after the
data's first day (:func:`offered`): the consumption group and started/continued look back 365
days, which the first year of data can't do; the trend charts still reach back to the first
quarter.

>>> import datetime as dt
>>> held = store_periods(dt.date(2020, 1, 1), dt.date(2021, 12, 31))
>>> [p.label for p in held if p.kind == "year"], sum(p.kind == "r12" for p in held)
(['2020', '2021'], 13)
>>> [p.label for p in offered(held, dt.date(2020, 1, 1)) if p.kind != "month"][:3]
['2021', '2021Q4', '2021Q3']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from workbench.engine.months import month_index
from workbench.engine.periods import Period, parse_period

KIND_ORDER = {"year": 0, "r12": 1, "quarter": 2, "month": 3}


def _first_of(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def complete_months(first_day: dt.date, last_day: dt.date) -> tuple[int, int]:
    """``(first, end)`` month indexes (end exclusive) of the months the data covers whole: a
    month counts from its 1st if the data starts on or before it, up to the last month whose
    last day the data reaches."""
    first = month_index(first_day) + (first_day.day > 1)
    end = month_index(last_day + dt.timedelta(days=1))
    return first, max(first, end)


def store_periods(first_day: dt.date, last_day: dt.date) -> tuple[Period, ...]:
    """Every month, quarter, year and R12 period within the data's complete months, newest
    first within each kind (years, R12, quarters, months)."""
    first, end = complete_months(first_day, last_day)
    found: list[Period] = []
    for last in range(first, end):
        year, month = divmod(last, 12)
        month += 1
        found.append(parse_period(f"{year}-{month:02d}"))
        if month % 3 == 0 and last - 2 >= first:
            found.append(parse_period(f"{year}Q{month // 3}"))
        if month == 12 and last - 11 >= first:
            found.append(parse_period(str(year)))
        if last - 11 >= first:
            found.append(parse_period(f"R12-{year}-{month:02d}"))
    return tuple(sorted(found, key=lambda p: (KIND_ORDER[p.kind], -p.start.toordinal())))


def offered(periods: Iterable[Period], first_day: dt.date) -> list[Period]:
    """The periods a page offers: those starting a year or more after the data's first day."""
    start = dt.date(first_day.year + 1, first_day.month, 1)
    if first_day.day > 1:
        start = _first_of(month_index(start) + 1)
    return [p for p in periods if p.start >= start]
