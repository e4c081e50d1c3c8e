"""The month-grain marts answer every measure, period kind and breakdown exactly as the raw
redemptions and listings do, including the edges month sums could get wrong: returns that cancel
across months, redemptions on a window's excluded 1st day (leap years), listings that start or
end mid-month or on a 1st, persons missing from the persons register, and age on the period's
first day."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, ZOPICLONE, TinyRegister, world

from workbench.engine import Workbench, build_marts, connect
from workbench.engine.listed import listed_persons, listing_days
from workbench.engine.measures import uses_month_mart
from workbench.engine.months import (
    age_period_keys,
    listed_ages,
    listed_months,
    lookback_months,
    month_index,
    period_key,
)
from workbench.engine.periods import parse_periods, periods_table
from workbench.engine.query import Query

PRACTICES = ["000001", "000002", "000003", "000004"]


def edgy_world() -> TinyRegister:
    """Twelve persons with the awkward cases, redeeming across 2022-2025."""
    reg = world()
    births = ["1950-01-01", "1960-02-29", "1975-06-15", "2001-12-31", "1944-03-01", "2023-05-20"]
    for i in range(12):
        pid = f"q{i}"
        practice = PRACTICES[i % 4]
        if i != 11:  # q11 is listed and redeems, but is missing from the persons register
            reg.person(pid, sex="FM"[i % 2], born=births[i % len(births)])
        # Listings that start mid-month, end on a 1st or mid-month, and move practice.
        if i % 3 == 0:
            reg.listing(pid, practice, "2021-03-17", "2024-02-01")
            reg.listing(pid, PRACTICES[(i + 1) % 4], "2024-02-01")
        elif i % 3 == 1:
            reg.listing(pid, practice, "2022-01-01", "2024-07-15")
            reg.listing(pid, PRACTICES[(i + 2) % 4], "2024-07-15", "2024-07-20")
            reg.listing(pid, practice, "2024-07-20")
        else:
            reg.listing(pid, practice, "2023-11-30")
        # A long user, a returner, a 1st-of-month redeemer, a new user each year...
        reg.redeem(pid, "2023-01-01", MORPHINE, packs=1 + i, prescriber=practice)
        reg.redeem(pid, "2023-07-02", OXYCODONE_DEPOT, packs=1 + i % 4, prescriber=practice)
        reg.redeem(pid, f"2024-0{1 + i % 9}-01", MORPHINE, packs=2 + i, prescriber=practice)
        reg.redeem(pid, f"2024-0{2 + i % 8}-15", MORPHINE, packs=-(2 + i) if i % 4 == 0 else 1)
        reg.redeem(
            pid, "2024-03-31", IBUPROFEN, packs=i % 3, prescriber=None, prescriber_type="hospital"
        )
        reg.redeem(
            pid,
            f"2024-{10 + i % 3}-0{1 + i % 2}",
            ZOPICLONE,
            packs=1 + i % 5,
            prescriber=PRACTICES[(i + 1) % 4],
        )
        reg.redeem(pid, "2025-01-01", OXYCODONE_DEPOT, packs=1, prescriber=practice)
        reg.redeem(
            pid,
            "2025-03-02",
            ZOPICLONE,
            packs=-1 if i % 2 else 2,
            prescriber=practice,
            prescriber_type="gp" if i % 5 else "specialist",
        )
    # A purchase and its return in consecutive months of a quarter: no patient of the quarter.
    reg.redeem("q3", "2024-04-30", IBUPROFEN, packs=2).redeem("q3", "2024-05-02", IBUPROFEN, -2)
    return reg


@pytest.fixture(scope="module")
def sessions() -> tuple[Workbench, Workbench]:
    con = edgy_world().backend()
    con.create_table("metadata", ibis.memtable({"key": ["data_fingerprint"], "value": ["edgy"]}))
    build_marts(con, connect(con).definitions)
    return connect(con), connect(con, use_marts=False)


QUESTIONS = [
    dict(groups=["opioids", "nsaids", "sedatives"], level="practice", periods="2024-01..2024-12"),
    dict(groups="opioids", level="cluster", periods="2024Q1..2025Q1"),
    dict(groups="opioids", level="region", periods=["2023", "2024", "2025"]),
    dict(groups="opioids", level="practice", periods="R12-2024-01..R12-2025-03"),
    dict(groups="opioids", level="municipality", periods="R12-2024-06", by="sex"),
    dict(groups="opioids", level="practice", periods="2024Q1..2024Q4", by="age_group"),
    dict(groups="opioids", level="cluster", periods="R12-2024-12", by=["age", "sex"]),
    dict(groups="opioids", level="practice", periods="2024-01..2025-03", by="consumption_group"),
    dict(
        groups=["opioids", "sedatives"],
        level="nation",
        periods="R12-2024-03..R12-2025-03",
        by="consumption_group",
    ),
    dict(groups="opioids", level="practice", periods="2024-01..2025-03", by="started"),
    dict(
        groups=["opioids", "sedatives"],
        level="cluster",
        periods=["2024", "R12-2025-02"],
        by=["started", "consumption_group"],
        share_within="started",
    ),
    dict(groups="opioids", level="practice", periods="2024Q1..2025Q1", by=["depot", "addictive"]),
    dict(groups="opioids", level="nation", periods="2024-01..2024-12", by="depot", non_gp=True),
    dict(
        groups=["opioids", "nsaids"],
        level="nation",
        periods="2024",
        non_gp=True,
        by="sex",
        filters={"started": "started"},
    ),
    dict(groups="opioids", level="practice", periods="2024", by="drug"),
    dict(groups="opioids", level="cluster", periods="2024Q2", by=["product", "pack_size"]),
    dict(groups=None, level="region", periods="2024-01..2024-06", by="sex"),
    dict(groups=None, level="practice", periods="R12-2024-06", by="depot"),
    dict(groups="N02AA", level="practice", periods="2024", by="started"),
    dict(
        groups="opioids",
        level="practice",
        periods="2024",
        units=["000001", "000002"],
        filters={"sex": "F", "consumption_group": ["under 3 months", "over 1 year"]},
    ),
    dict(
        groups="sedatives",
        level="region",
        periods="R12-2025-03",
        filters={"age_group": "65-79"},
        by="started",
    ),
    dict(groups="opioids", level="practice", periods="2019", by="sex"),  # before the marts
    # Listed persons by age from the listed-age mart: every period kind, age and age group as
    # breakdowns and filters, beside sex and the other dimensions.
    dict(groups="opioids", level="practice", periods="2024-01..2025-03", by="age"),
    dict(groups="sedatives", level="nation", periods="R12-2024-01..R12-2025-03", by="age_group"),
    dict(groups="opioids", level="cluster", periods=["2023", "2024Q3", "2025-02"], by="age"),
    dict(
        groups=None,
        level="municipality",
        periods="2023Q1..2025Q4",
        by=["sex", "age_group"],
        filters={"age_group": ["65-79", "80+"]},
    ),
    dict(
        groups="opioids",
        level="practice",
        periods="R12-2024-06",
        by=["age_group", "depot"],
        filters={"age": [0, 1, 63, 64], "sex": "F"},
    ),
    dict(groups="opioids", level="region", periods=["2022", "2024"], by="age"),  # 2022: raw
    # Consumption group and started for some units only (their patients' history alone).
    dict(
        groups=["opioids", "sedatives"],
        level="cluster",
        periods="R12-2024-01..R12-2025-03",
        units=["K1"],
        by="consumption_group",
    ),
    dict(
        groups="opioids",
        level="practice",
        periods="2024Q1..2025Q1",
        units=["000002", "000004"],
        by=["started", "consumption_group"],
        filters={"depot": False},
    ),
    dict(
        groups=["opioids", "N02AA"],
        level="practice",
        periods="2024",
        units=["000003"],
        by=["drug", "started", "consumption_group"],
    ),
    dict(
        groups="sedatives",
        level="municipality",
        periods="2024Q4..2025Q1",
        units=["851"],
        by="sex",
        filters={"started": "continued"},
    ),
]


def frame(table: ibis.Table) -> pd.DataFrame:
    df = table.to_pandas()
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q['level']}-{q.get('by', '')}")
def test_month_marts_answer_exactly_as_the_raw_tables(
    sessions: tuple[Workbench, Workbench], question: dict
) -> None:
    from_marts, from_raw = sessions
    expected = frame(from_raw.measures(**question))
    assert len(expected) > 0
    pd.testing.assert_frame_equal(frame(from_marts.measures(**question)), expected)


def test_the_month_mart_is_used_for_groups_and_fallen_back_from_for_products(
    sessions: tuple[Workbench, Workbench],
) -> None:
    from_marts, _ = sessions

    def uses(**kwargs: object) -> bool:
        query = Query.build(from_marts.definitions, **{"units": None, **kwargs})  # type: ignore[arg-type]
        return uses_month_mart(from_marts.marts, query, from_marts.definitions)

    assert uses(groups="opioids", level="practice", periods="R12-2024-06", by="started")
    assert uses(groups=None, level="nation", periods="2024", by="depot")
    assert not uses(groups="opioids", level="nation", periods="2024", by="product")
    assert not uses(groups="N02AA", level="nation", periods="2024")
    assert not uses(groups=None, level="nation", periods="2024", by="started")


def test_listed_month_mart_matches_listing_days_month_by_month() -> None:
    """Every practice × month's person-days, incl. listings shorter than a month, before the
    mart's first month and open-ended ones."""
    reg = world()
    cases = [
        ("a", "000001", "2019-05-05", None),
        ("b", "000001", "2024-02-10", "2024-02-20"),  # within one month
        ("c", "000002", "2024-02-01", "2024-03-01"),  # exactly February
        ("d", "000002", "2024-01-31", "2024-03-02"),  # a day, a month, a day
        ("e", "000003", "2023-12-15", "2025-01-01"),
        ("f", "000003", "2018-01-01", "2019-01-01"),  # before the first month
        ("g", "000004", "2025-12-31", None),
        ("h", "000004", "2024-05-10", "2024-03-01"),  # ends before it starts: lists nobody
    ]
    for pid, practice, start, end in cases:
        reg.person(pid).listing(pid, practice, start, end)
    con = reg.backend()
    first, end = month_index(dt.date(2020, 1, 1)), month_index(dt.date(2026, 1, 1))
    mart = listed_months(con.table("listings"), con.table("persons"), first, end).to_pandas()
    got = mart.groupby(["practice_id", "month"]).person_days.sum()
    periods = parse_periods("2020-01..2025-12")
    raw = listing_days(con.table("listings"), periods_table(periods)).to_pandas()
    raw["month"] = raw.period.map({p.label: month_index(p.start) for p in periods})
    want = raw.groupby(["practice_id", "month"]).days.sum()
    want = want[want != 0]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)


def test_listed_age_mart_matches_the_raw_listings_for_every_period() -> None:
    """Every month, quarter and 12-month run: person-days by practice, sex and age on the
    period's first day, incl. birthdays on a 1st, on 29 February, births inside a period, a
    person without a birth date and listings missing from the persons register."""
    reg = edgy_world()
    born = ["2024-02-29", "2024-03-01", "2024-03-02", "2023-12-31", "1980-01-01", None]
    for i, birth in enumerate(born):
        pid = f"b{i}"
        reg.rows["persons"].append(
            {
                "person_id": pid,
                "sex": "F" if i % 2 else None,
                "birth_date": None if birth is None else dt.date.fromisoformat(birth),
                "death_date": None,
                "municipality_code": "851",
            }
        )
        reg.listing(pid, PRACTICES[i % 4], "2023-06-15" if i % 2 else "2024-03-01", None)
    con = reg.backend()
    first, end = month_index(dt.date(2023, 1, 1)), month_index(dt.date(2026, 1, 1))
    mart = listed_ages(con.table("listings"), con.table("persons"), first, end).to_pandas()
    keys = age_period_keys(first, end)
    assert len(keys) == 36 + 12 + 25
    periods = [
        *parse_periods("2023-01..2025-12"),
        *parse_periods("2023Q1..2025Q4"),
        *parse_periods("R12-2023-12..R12-2025-12"),
    ]
    assert sorted(period_key(p) for p in periods) == sorted(keys)
    definitions = connect(con).definitions
    raw = listed_persons(
        con.table("listings"),
        con.table("practices"),
        con.table("persons"),
        periods_table(periods),
        definitions,
        level="practice",
        by=["sex", "age"],
    ).to_pandas()
    days = {p.label: p.days for p in periods}
    raw["person_days"] = (raw.listed * raw.period.map(days)).round().astype("int64")
    label = {period_key(p): p.label for p in periods}
    mart["period"] = [label[(m, n)] for m, n in zip(mart.period_month, mart.months, strict=True)]
    index = ["unit_id", "period", "sex", "age"]
    want = raw.rename(columns={"unit_id": "unit_id"}).set_index(index).person_days
    got = mart.rename(columns={"practice_id": "unit_id"}).set_index(index).person_days
    pd.testing.assert_series_equal(
        got[got != 0].sort_index(), want[want != 0].sort_index(), check_names=False
    )


def test_the_listed_age_mart_is_used_only_for_the_periods_it_holds(
    sessions: tuple[Workbench, Workbench],
) -> None:
    from_marts, _ = sessions
    marts = from_marts.marts
    assert marts is not None
    assert marts.lists_ages(parse_periods("2023-01..2025-12"))
    assert marts.lists_ages(parse_periods(["2023", "2025Q4", "R12-2023-12", "R12-2025-12"]))
    assert not marts.lists_ages(parse_periods("R12-2023-11"))  # starts in 2022
    assert not marts.lists_ages(parse_periods(["2024", "2026-01"]))


def test_a_leap_year_window_leaves_out_its_first_day() -> None:
    # R12-2024-12 ends 1 Jan 2025; 365 days back is 2 Jan 2024, so 1 Jan 2024 is left out.
    months = lookback_months(parse_periods("R12-2024-12")).to_pandas()
    first = months[months.month == month_index(dt.date(2024, 1, 1))]
    assert first.without_day1.tolist() == [True] and len(months) == 12
    # 2023 has no 29 February: the window is exactly the 12 months.
    months = lookback_months(parse_periods("2023")).to_pandas()
    assert not months.without_day1.any() and len(months) == 12
