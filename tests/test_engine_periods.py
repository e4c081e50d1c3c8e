"""Period labels parse into exact half-open date ranges; bad labels say what is accepted."""

from __future__ import annotations

import datetime as dt

import pytest

from workbench.engine.periods import parse_period, parse_periods, period_series, periods_table

D = dt.date


@pytest.mark.parametrize(
    ("label", "kind", "start", "end", "days"),
    [
        ("2024", "year", D(2024, 1, 1), D(2025, 1, 1), 366),  # leap year
        ("2023", "year", D(2023, 1, 1), D(2024, 1, 1), 365),
        ("2024Q1", "quarter", D(2024, 1, 1), D(2024, 4, 1), 31 + 29 + 31),
        ("2024Q4", "quarter", D(2024, 10, 1), D(2025, 1, 1), 31 + 30 + 31),
        ("2024-02", "month", D(2024, 2, 1), D(2024, 3, 1), 29),
        ("2024-12", "month", D(2024, 12, 1), D(2025, 1, 1), 31),
        # The 12 months ending June 2024: July 2023 up to and including June 2024.
        ("R12-2024-06", "r12", D(2023, 7, 1), D(2024, 7, 1), 366),
        ("R12-2023-12", "r12", D(2023, 1, 1), D(2024, 1, 1), 365),
    ],
)
def test_labels_parse_to_half_open_ranges(label, kind, start, end, days) -> None:
    period = parse_period(label)
    assert (period.label, period.kind, period.start, period.end_exclusive) == (
        label,
        kind,
        start,
        end,
    )
    assert period.days == days
    assert period.last_day == end - dt.timedelta(days=1)


def test_lookback_is_the_365_days_ending_on_the_last_day() -> None:
    # 2024 has 366 days: the window is 2 January … 31 December, so 1 January falls outside.
    assert parse_period("2024").lookback_start == D(2024, 1, 2)
    assert (
        parse_period("2024Q1").end_exclusive - parse_period("2024Q1").lookback_start
    ).days == 365


@pytest.mark.parametrize(
    "label", ["24", "2024Q5", "2024Q0", "2024-13", "2024-1", "R12-2024", "R12-2024-00", "q1", ""]
)
def test_bad_labels_say_which_formats_work(label: str) -> None:
    with pytest.raises(ValueError, match="2024Q1.*R12-2024-06"):
        parse_period(label)


def test_series_of_each_kind() -> None:
    labels = lambda a, b: [p.label for p in period_series(a, b)]  # noqa: E731
    assert labels("2022", "2024") == ["2022", "2023", "2024"]
    assert labels("2023Q3", "2024Q2") == ["2023Q3", "2023Q4", "2024Q1", "2024Q2"]
    assert labels("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert labels("R12-2023-12", "R12-2024-02") == ["R12-2023-12", "R12-2024-01", "R12-2024-02"]
    assert labels("2024-05", "2024-05") == ["2024-05"]


def test_series_rejects_mixed_kinds_and_reversed_ends() -> None:
    with pytest.raises(ValueError, match="one kind"):
        period_series("2024Q1", "2024-06")
    with pytest.raises(ValueError, match="before its start"):
        period_series("2024Q3", "2024Q1")


def test_parse_periods_accepts_one_a_list_or_a_range() -> None:
    assert [p.label for p in parse_periods("2024")] == ["2024"]
    assert [p.label for p in parse_periods(["2024Q1", parse_period("2024Q2")])] == [
        "2024Q1",
        "2024Q2",
    ]
    assert [p.label for p in parse_periods("2024Q3..2025Q1")] == ["2024Q3", "2024Q4", "2025Q1"]
    with pytest.raises(ValueError, match="twice"):
        parse_periods(["2024", "2024"])
    with pytest.raises(ValueError, match="no periods"):
        parse_periods([])


def test_periods_table_holds_the_dates_joins_need() -> None:
    df = periods_table(parse_periods(["2024-02", "2024"])).to_pyarrow()
    assert df.to_pylist() == [
        {
            "period": "2024-02",
            "period_start": D(2024, 2, 1),
            "period_end": D(2024, 3, 1),
            "period_days": 29,
            "lookback_start": D(2023, 3, 2),
        },
        {
            "period": "2024",
            "period_start": D(2024, 1, 1),
            "period_end": D(2025, 1, 1),
            "period_days": 366,
            "lookback_start": D(2024, 1, 2),
        },
    ]
