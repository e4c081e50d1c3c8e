"""Risky combinations on hand-made registers: periods of use, overlaps, and each risk's
patients, population, listed, per 1,000 and share worked out by hand."""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd
import pytest
from engine_fixtures import MORPHINE, ZOPICLONE, world

from workbench.engine.periods import parse_periods, periods_table
from workbench.engine.risks import coverage_periods, overlaps

DIAZEPAM = "300002"  # N05BA01, 20 DDD a pack
QUETIAPINE = "400001"  # N05AH04, 30 DDD a pack
OLANZAPINE = "400002"  # N05AH03, 28 DDD a pack


def day(text: str) -> int:
    return (dt.date.fromisoformat(text) - dt.date(1970, 1, 1)).days


def rows(*redemptions: tuple[str, str, str, float]) -> ibis.Table:
    person, key, on, ddd = zip(*redemptions, strict=True)
    return ibis.memtable(
        {"person_id": list(person), "k": list(key), "packs": [1] * len(person),
         "dispensed_on": [dt.date.fromisoformat(d) for d in on], "ddd": list(ddd)}
    )


def spans(table: ibis.Table, gap: int = 0) -> list[tuple[int, int]]:
    out = coverage_periods(table, "k", gap).order_by("start").to_pandas()
    return list(zip(out["start"], out["end"], strict=True))


def test_periods_of_use_are_merged() -> None:
    t = rows(
        ("p", "x", "2024-01-01", 10.0),  # 1-10 Jan
        ("p", "x", "2024-01-05", 2.5),  # 5-7 Jan (3 days: 2.5 rounded up), inside
        ("p", "x", "2024-01-11", 3.0),  # 11-13 Jan: touches the first, merged
        ("p", "x", "2024-01-30", 3.0),  # 30 Jan-1 Feb: 16 days' gap
    )
    jan1 = day("2024-01-01")
    assert spans(t) == [(jan1, jan1 + 13), (jan1 + 29, jan1 + 32)]
    # allowing gaps of 16 days joins them: 30 Jan starts 16 days after the end (14 Jan)
    assert spans(t, gap=16) == [(jan1, jan1 + 32)]
    assert len(spans(t, gap=15)) == 2


def test_overlap_of_two_periods_of_use() -> None:
    # Opioid 1-10 March (10 DDD), Z-drug from 10 March (30 DDD): one day together (10 March).
    # Someone else's Z-drug starts 11 March: the periods touch but never overlap.
    t = rows(
        ("a", "opioids", "2024-03-01", 10.0),
        ("a", "benzodiazepines_z", "2024-03-10", 30.0),
        ("b", "opioids", "2024-03-01", 10.0),
        ("b", "benzodiazepines_z", "2024-03-11", 30.0),
    )
    periods = periods_table(parse_periods(["2024Q1", "2024Q2"]))
    found = overlaps(coverage_periods(t, "k"), "k", periods, 1,
                     ("opioids", "benzodiazepines_z")).to_pandas()
    assert found.values.tolist() == [["a", "2024Q1"]]
    assert overlaps(coverage_periods(t, "k"), "k", periods, 2,
                    ("opioids", "benzodiazepines_z")).to_pandas().empty


@pytest.fixture(scope="module")
def session():
    reg = world()
    reg.product(DIAZEPAM, "N05BA01", "tablet", 25, 20.0)
    reg.product(QUETIAPINE, "N05AH04", "tablet", 30, 30.0)
    reg.product(OLANZAPINE, "N05AH03", "tablet", 28, 28.0)
    people = [("r1", "000001", "1970-01-01"), ("r2", "000001", "1970-01-01"),
              ("r8", "000001", "1970-01-01"), ("r3", "000002", "1950-01-01"),
              ("r4", "000002", "1970-01-01"), ("r5", "000002", "1970-01-01"),
              ("r6", "000003", "1970-01-01"), ("r7", "000003", "1970-01-01")]
    for pid, practice, born in people:
        reg.person(pid, born=born).listing(pid, practice, "2020-01-01")
    # r1: opioid 1-10 March and Z-drug from 10 March: one day together. r2: they touch only.
    reg.redeem("r1", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("r1", "2024-03-10", ZOPICLONE, 1, "000001")
    reg.redeem("r2", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("r2", "2024-03-11", ZOPICLONE, 1, "000001")
    reg.redeem("r8", "2024-06-01", MORPHINE, 2, "000001")  # a start of 20 DDD
    # r3, 74 on 2024-01-01, on diazepam; r4 two antipsychotics together for 112 days from
    # 1 Jan; r5 the same but the second from 1 March for 56 days.
    reg.redeem("r3", "2024-05-01", DIAZEPAM, 1, "000002")
    reg.redeem("r4", "2024-01-01", QUETIAPINE, 4, "000002")
    reg.redeem("r4", "2024-01-01", OLANZAPINE, 4, "000002")
    reg.redeem("r5", "2024-01-01", QUETIAPINE, 4, "000002")
    reg.redeem("r5", "2024-03-01", OLANZAPINE, 2, "000002")
    # r6: a 30-day Z-drug pack every 30 days from 2023: in continuous use. r7: every 70 days:
    # 40 days' gaps, more than the 30 allowed.
    start = dt.date(2023, 1, 1)
    for k in range(25):
        reg.redeem("r6", start + dt.timedelta(days=30 * k), ZOPICLONE, 1, "000003")
    for k in range(11):
        reg.redeem("r7", start + dt.timedelta(days=70 * k), ZOPICLONE, 1, "000003")
    return reg.session()


@pytest.fixture(scope="module")
def year(session) -> pd.DataFrame:
    return session.risks(None, "practice", "2024").to_pandas().set_index(["risk", "unit_id"])


def test_opioid_with_benzodiazepine(year, session) -> None:
    # 000001: patients of opioids or benzodiazepines/Z: r1, r2, r8; together: r1 only.
    row = year.loc[("opioid_benzodiazepine", "000001")]
    assert (row.patients, row.population, row.listed) == (1, 3, 3.0)
    assert row.patients_per_1000 == pytest.approx(1000 / 3)
    assert row.share == pytest.approx(1 / 3)
    # the overlapping day is 10 March: nothing in the second quarter
    q2 = session.risks("opioid_benzodiazepine", "practice", "2024Q2", units="000001")
    assert q2.to_pandas()["patients"].tolist() == [0]


def test_two_antipsychotics(year) -> None:
    # 000002: antipsychotic users r4 and r5; only r4's overlap (112 days) reaches 90.
    row = year.loc[("antipsychotic_polypharmacy", "000002")]
    assert (row.patients, row.population, row.listed) == (1, 2, 3.0)


def test_elderly_on_benzodiazepines(year) -> None:
    # 000002: r3 (74) is the class's only user; listed aged 65+: r3 alone.
    row = year.loc[("elderly_benzodiazepine", "000002")]
    assert (row.patients, row.population, row.listed) == (1, 1, 1.0)
    assert row.patients_per_1000 == pytest.approx(1000.0)
    # 000001 lists nobody aged 65+: no rate
    assert year.loc[("elderly_benzodiazepine", "000001")].listed == 0


def test_long_term_use(year) -> None:
    # 000003: r6 in continuous use since 1 Jan 2023 (day 366 is 2 Jan 2024); r7 never > 70 days.
    row = year.loc[("long_term_addictive", "000003")]
    assert (row.patients, row.population) == (1, 2)
    assert year.loc[("long_term_addictive", "000001")].patients == 0


def test_large_packs_to_new_users(year) -> None:
    # 000001's starters: r1 (morphine 10 DDD, then a Z-drug start of 30 DDD), r2 (the same),
    # r8 (morphine 20 DDD): r1 and r2 reach 30 DDD on a start day of their Z-drug.
    row = year.loc[("large_start_addictive", "000001")]
    assert (row.patients, row.population) == (2, 3)
    # r6 and r7 continued from 2023: not new users
    assert year.loc[("large_start_addictive", "000003")].population == 0


def test_nation_counts_persons_once(session) -> None:
    nation = session.risks(None, "nation", "2024").to_pandas().set_index("risk")
    assert nation.loc["opioid_benzodiazepine", "patients"] == 1
    assert nation.loc["long_term_addictive", "population"] == 6  # r1 r2 r8 r3 r6 r7
    assert nation.loc["opioid_benzodiazepine", "listed"] == 8.0


def test_unknown_risk(session) -> None:
    with pytest.raises(ValueError, match="unknown risk"):
        session.risks("opioids", "practice", "2024")


def test_risks_pass_disclosure_control(year) -> None:
    from workbench.disclosure import Derived, TableSpec, apply

    df = year.reset_index()
    spec = TableSpec(keys=("level", "unit_id", "period", "risk"),
                     counts=("patients", "population", "listed"),
                     derived=(Derived("patients_per_1000", on=("patients", "listed")),
                              Derived("share", on=("patients", "population"))))
    published = apply(df, spec)
    # one or two persons everywhere: nothing but zeros may be shown
    assert published["patients"].dropna().eq(0).all()
    assert published["patients_per_1000"].dropna().eq(0).all()
