"""Reporting periods: the four label formats users type, parsed into exact date ranges.

Every figure is "for a period", and the contract counts days (listed persons are person-days
divided by days in the period, DID divides by days again), so a period is held as a half-open
date range ``[start, end_exclusive)`` with its day count, never as a loose label. Labels are the
ones used in URLs, file names and the CLI:

>>> parse_period("2024Q1")
Period(label='2024Q1', kind='quarter', start=datetime.date(2024, 1, 1), end_exclusive=datetime.date(2024, 4, 1))
>>> parse_period("R12-2024-06").start
datetime.date(2023, 7, 1)
>>> [p.label for p in period_series("2024-11", "2025-02")]
['2024-11', '2024-12', '2025-01', '2025-02']
"""  # noqa: E501

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir

PeriodKind = Literal["year", "quarter", "month", "r12"]

FORMATS = "'2024' (year), '2024Q1' (quarter), '2024-03' (month), 'R12-2024-06' (12 months to June)"

_PATTERNS: dict[PeriodKind, re.Pattern[str]] = {
    "year": re.compile(r"^(\d{4})$"),
    "quarter": re.compile(r"^(\d{4})Q([1-4])$"),
    "month": re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$"),
    "r12": re.compile(r"^R12-(\d{4})-(0[1-9]|1[0-2])$"),
}
_MONTHS_PER_STEP: dict[PeriodKind, int] = {"year": 12, "quarter": 3, "month": 1, "r12": 1}

# The consumption group looks back this many days from a period's last day (the contract's
# "365 days ending on the period's last day").
LOOKBACK_DAYS = 365


def _add_months(day: dt.date, months: int) -> dt.date:
    """The first of the month ``months`` after ``day``'s month (``day`` is always a 1st here)."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    """A reporting period ``[start, end_exclusive)``; build it with :func:`parse_period`."""

    label: str
    kind: PeriodKind
    start: dt.date
    end_exclusive: dt.date

    @property
    def days(self) -> int:
        """Days in the period: 366 for 2024, 91 for 2024Q2."""
        return (self.end_exclusive - self.start).days

    @property
    def last_day(self) -> dt.date:
        return self.end_exclusive - dt.timedelta(days=1)

    @property
    def lookback_start(self) -> dt.date:
        """First day of the 365 days ending on the last day (the consumption-group window)."""
        return self.end_exclusive - dt.timedelta(days=LOOKBACK_DAYS)

    def next(self) -> Period:
        """The following period of the same kind (``R12-2024-06`` → ``R12-2024-07``)."""
        start = _add_months(self.start, _MONTHS_PER_STEP[self.kind])
        return _build(self.kind, start)


def _label(kind: PeriodKind, start: dt.date) -> str:
    if kind == "year":
        return f"{start.year}"
    if kind == "quarter":
        return f"{start.year}Q{(start.month - 1) // 3 + 1}"
    if kind == "month":
        return f"{start.year}-{start.month:02d}"
    last_month = _add_months(start, 11)
    return f"R12-{last_month.year}-{last_month.month:02d}"


def _build(kind: PeriodKind, start: dt.date) -> Period:
    months = 3 if kind == "quarter" else 1 if kind == "month" else 12
    return Period(_label(kind, start), kind, start, _add_months(start, months))


def parse_period(label: str | Period) -> Period:
    """Parse a period label; a :class:`Period` is returned unchanged.

    >>> parse_period("2024").days
    366
    >>> parse_period("2024-02").last_day
    datetime.date(2024, 2, 29)
    """
    if isinstance(label, Period):
        return label
    text = str(label).strip()
    for kind, pattern in _PATTERNS.items():
        match = pattern.match(text)
        if not match:
            continue
        year = int(match.group(1))
        if kind == "year":
            return _build(kind, dt.date(year, 1, 1))
        if kind == "quarter":
            return _build(kind, dt.date(year, 3 * int(match.group(2)) - 2, 1))
        month_start = dt.date(year, int(match.group(2)), 1)
        if kind == "month":
            return _build(kind, month_start)
        return _build(kind, _add_months(month_start, -11))
    raise ValueError(f"not a period label: {label!r}; use {FORMATS}")


def period_series(first: str | Period, last: str | Period) -> list[Period]:
    """Every period of one kind from ``first`` to ``last``, both included.

    Rolling periods step a month at a time, as a trend of R12 figures does.

    >>> [p.label for p in period_series("2023Q4", "2024Q2")]
    ['2023Q4', '2024Q1', '2024Q2']
    >>> [p.label for p in period_series("R12-2024-11", "R12-2025-01")]
    ['R12-2024-11', 'R12-2024-12', 'R12-2025-01']
    """
    start, stop = parse_period(first), parse_period(last)
    if start.kind != stop.kind:
        raise ValueError(
            f"a series needs two periods of one kind; got {start.label!r} ({start.kind}) "
            f"and {stop.label!r} ({stop.kind})"
        )
    if stop.start < start.start:
        raise ValueError(f"series end {stop.label!r} is before its start {start.label!r}")
    series = [start]
    while series[-1] != stop:
        series.append(series[-1].next())
    return series


def parse_periods(value: str | Period | Iterable[str | Period]) -> list[Period]:
    """One period, a list of them, or a range ``'FIRST..LAST'`` as a list of periods.

    This is what every ``periods=`` argument accepts.

    >>> [p.label for p in parse_periods("2024-01..2024-03")]
    ['2024-01', '2024-02', '2024-03']
    >>> [p.label for p in parse_periods(["2023", "2024"])]
    ['2023', '2024']
    """
    if isinstance(value, Period):
        return [value]
    if isinstance(value, str):
        if ".." in value:
            first, _, last = value.partition("..")
            return period_series(first, last)
        return [parse_period(value)]
    periods = [parse_period(v) for v in value]
    if not periods:
        raise ValueError(f"no periods given; use {FORMATS}")
    labels = [p.label for p in periods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"period(s) given twice: {labels}")
    return periods


def periods_table(periods: Iterable[Period]) -> ir.Table:
    """The periods as a small Ibis table to join facts against by date range.

    Columns: ``period`` (label), ``period_start``, ``period_end`` (exclusive), ``period_days``,
    ``lookback_start`` (first day of the consumption-group window).

    The same periods give the same table (cached): one node however often a query joins it,
    and registered with a backend once, which keeps building and compiling a query cheap.
    """
    return _periods_table(tuple(periods))


@functools.lru_cache(maxsize=256)
def _periods_table(periods: tuple[Period, ...]) -> ir.Table:
    return ibis.memtable(
        {
            "period": [p.label for p in periods],
            "period_start": [p.start for p in periods],
            "period_end": [p.end_exclusive for p in periods],
            "period_days": [p.days for p in periods],
            "lookback_start": [p.lookback_start for p in periods],
        },
        schema=ibis.schema(
            {
                "period": "string",
                "period_start": "date",
                "period_end": "date",
                "period_days": "int64",
                "lookback_start": "date",
            }
        ),
    )
