"""Patient journeys and consumption-group transitions on hand-made registers.

The journey of three persons who start opioids in 2024 (MORPHINE: 10 DDD a pack), and one whose
start a hospital prescribed:

* j1 (listed 000001): 10 packs on 2024-02-01 by 000001 (100 DDD, the index day), 10 packs on
  2024-05-01 (200 DDD by day 90), 20 packs on 2024-11-15 by a hospital (400 DDD). 6 months =
  days 0-182 after the index: 200 DDD (>= 90, not > 365); 12 months: 400 (> 365). Nov 15 is day
  288, inside the last 91 days (from day 274 = 2024-11-01): not stopped.
* j2 (000001): one pack on 2023-02-01 and one on 2024-03-01, 394 days later: a new user in 2024
  (washout 365 days). 10 DDD, no redemption after: stopped.
* j3 (000002): on 2024-04-01 3 packs from 000002 and 1 pack from 000001: attributed to 000002
  (more DDD that day); 40 DDD; dies 2024-06-01: died, not stopped.
* j4: starts 2024-04-01 on a hospital's prescription: counts for no practice, no unit.
"""

from __future__ import annotations

import datetime as dt

import pytest
from engine_fixtures import MORPHINE, world

from workbench.engine.journeys import year_before


@pytest.fixture(scope="module")
def session():
    reg = world()
    for pid, practice, died in [("j1", "000001", None), ("j2", "000001", None),
                                ("j3", "000002", "2024-06-01"), ("j4", "000003", None)]:
        reg.person(pid, died=died).listing(pid, practice, "2020-01-01")
    reg.redeem("j1", "2024-02-01", MORPHINE, 10, "000001")
    reg.redeem("j1", "2024-05-01", MORPHINE, 10, "000001")
    reg.redeem("j1", "2024-11-15", MORPHINE, 20, None, "hospital")
    reg.redeem("j2", "2023-02-01", MORPHINE, 1, "000001")
    reg.redeem("j2", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("j3", "2024-04-01", MORPHINE, 3, "000002")
    reg.redeem("j3", "2024-04-01", MORPHINE, 1, "000001")
    reg.redeem("j4", "2024-04-01", MORPHINE, 5, None, "hospital")
    # The data run to 2025-05-31 (a later redemption of someone else): 12 months followed.
    reg.person("x").listing("x", "000004", "2020-01-01")
    reg.redeem("x", "2025-05-31", MORPHINE, 1, "000004")
    return reg.session()


def outcomes(table, unit: str) -> dict[str, tuple[int, int]]:
    df = table.to_pandas()
    df = df[df["unit_id"] == unit]
    return {r.outcome: (r.persons, r.cohort) for r in df.itertuples()}


def test_journey_of_three_persons(session) -> None:
    got = outcomes(session.journeys("opioids", "practice", "2024"), "000001")
    assert got == {
        "started": (2, 2),  # j1, j2
        "reached_90_ddd_6m": (1, 2),  # j1: 200 DDD
        "reached_365_ddd_6m": (0, 2),
        "reached_90_ddd_12m": (1, 2),
        "reached_365_ddd_12m": (1, 2),  # j1: 400 DDD, the hospital's included
        "stopped_12m": (1, 2),  # j2
        "died_12m": (0, 2),
    }
    j3 = outcomes(session.journeys("opioids", "practice", "2024"), "000002")
    assert j3["started"] == (1, 1) and j3["died_12m"] == (1, 1) and j3["stopped_12m"] == (0, 1)
    assert j3["reached_90_ddd_6m"] == (0, 1)  # 40 DDD


def test_units_add_up_and_non_gp_starts_count_nowhere(session) -> None:
    nation = outcomes(session.journeys("opioids", "nation", "2024"), "DK")
    cluster = outcomes(session.journeys("opioids", "cluster", "2024", units="K1"), "K1")
    assert nation["started"] == (3, 3) == cluster["started"]  # not j4
    assert outcomes(session.journeys("opioids", "practice", "2024"), "000003")["started"] == (0, 0)


def test_follow_up_must_be_complete(session) -> None:
    # Data ending 2024-12-31 (first day after: 2025-01-01): 6 months of every start fit
    # (the last, 2024-04-01 + 183 days = 2024-10-01), 12 months of none.
    table = session.journeys("opioids", "practice", "2024", data_end=dt.date(2025, 1, 1))
    got = outcomes(table, "000001")
    assert got["reached_90_ddd_6m"] == (1, 2)
    assert got["reached_365_ddd_12m"] == (0, 0) and got["stopped_12m"] == (0, 0)


def test_year_before() -> None:
    assert [year_before(p).label for p in ("2024", "2024Q3", "2024-02", "R12-2024-06")] == [
        "2023", "2023Q3", "2023-02", "R12-2023-06"
    ]


def test_transitions_between_consumption_groups() -> None:
    # t1: 100 DDD in 2023 (3 months to 1 year), 400 DDD in 2024 (over 1 year).
    # t2: 10 DDD in 2023 only: under 3 months, then none.
    # t3: new in 2024, 10 DDD: none, then under 3 months.
    # t4: patient of 000002 only: not in 000001's table.
    reg = world()
    for pid, practice in [("t1", "000001"), ("t2", "000001"), ("t3", "000001"),
                          ("t4", "000002")]:
        reg.person(pid).listing(pid, practice, "2020-01-01")
    reg.redeem("t1", "2023-03-01", MORPHINE, 10, "000001")
    reg.redeem("t1", "2024-03-01", MORPHINE, 40, "000001")
    reg.redeem("t2", "2023-03-01", MORPHINE, 1, "000001")
    reg.redeem("t3", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("t4", "2024-03-01", MORPHINE, 1, "000002")
    df = reg.session().transitions("opioids", "practice", "2024", units="000001").to_pandas()
    assert set(df["previous"]) == {"2023"} and len(df) == 15  # 4 × 4 states minus none→none
    moved = {(r.from_group, r.to_group): r.persons for r in df.itertuples() if r.persons}
    assert moved == {
        ("3 months to 1 year", "over 1 year"): 1,
        ("under 3 months", "none"): 1,
        ("none", "under 3 months"): 1,
    }


def test_journeys_pass_disclosure_control(session) -> None:
    from workbench.disclosure import Derived, TableSpec, apply

    df = session.journeys("opioids", "practice", "2024").to_pandas()
    spec = TableSpec(keys=("level", "unit_id", "period", "group", "outcome"),
                     counts=("persons", "cohort"),
                     derived=(Derived("share", on=("persons", "cohort")),))
    published = apply(df, spec)
    # every count here is 1 or 2 persons: all hidden, zeros shown
    shown = published[published["persons"].notna()]
    assert (shown["persons"] == 0).all() and (shown["cohort"] == 0).all()
    assert published.loc[df["persons"].between(1, 4), "share"].isna().all()
    assert "person_id" not in published.columns


def test_journeys_beside_cluster_region_and_nation(session) -> None:
    from workbench.analysis import in_context

    df = in_context(session, "journeys", "000001", "practice", groups="opioids",
                    periods="2024").to_pandas()
    started = df[df["outcome"] == "started"].set_index("level")["persons"].to_dict()
    assert started == {"practice": 2, "cluster": 3, "region": 3, "nation": 3}
