"""The dashboard cube answers every nation, region and cluster question it takes exactly as the
month marts and the raw tables do: breakdowns and filters by sex, age group, consumption group,
started and one flag, shares, returns that net a person to zero, persons missing from the
persons register, leap-year windows. Questions it can't hold go to the month marts."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import ibis
import pandas as pd
import pytest
from engine_fixtures import MORPHINE, world
from test_engine_month_marts import edgy_world, frame

from workbench.engine import Workbench, build_marts, connect
from workbench.engine.cube import CUBE_MONTHS, cube_answers, cube_periods
from workbench.engine.marts import CUBE_STATE_TABLE, CUBE_TABLE, current_marts
from workbench.engine.months import month_index
from workbench.engine.query import Query


def _query(session: Workbench, ask: dict) -> Query:
    return Query.build(session.definitions, **{"units": None, **ask})


def _without_cube(session: Workbench) -> Workbench:
    other = connect(session.con)
    assert other.marts is not None and other.marts.cube is not None
    other.marts = dataclasses.replace(
        other.marts, cube=None, cube_labels=frozenset(), cube_listed=None
    )
    return other


@pytest.fixture(scope="module")
def sessions() -> tuple[Workbench, Workbench, Workbench]:
    """(with the cube, month marts only, raw tables) on the edgy register of 2023-2025."""
    con = edgy_world().backend()
    con.create_table("metadata", ibis.memtable({"key": ["data_fingerprint"], "value": ["edgy"]}))
    build_marts(con, connect(con).definitions)
    cubed = connect(con)
    return cubed, _without_cube(cubed), connect(con, use_marts=False)


def test_the_cube_covers_the_last_24_months_of_every_period_kind() -> None:
    # Data to December 2025 (end month index of January 2026): months 2024-01..2025-12 end a
    # period; quarters end in Mar/Jun/Sep/Dec, years in December, an R12 in every month.
    labels = [p.label for p in cube_periods(month_index(pd.Timestamp("2026-01-01")))]
    assert len(labels) == 24 + 8 + 2 + 24 == 2 * CUBE_MONTHS + 10
    assert {"2024-01", "2025-12", "2024Q1", "2025Q4", "2024", "2025"} <= set(labels)
    assert {"R12-2024-01", "R12-2025-12"} <= set(labels)
    assert not {"2023-12", "2023Q4", "2023", "R12-2023-12"} & set(labels)


BREAKDOWNS = [
    (),
    "sex",
    "age_group",
    "consumption_group",
    "started",
    "addictive",
    "depot",
    ["sex", "age_group"],
    ["started", "consumption_group", "sex"],
    ["depot", "age_group"],
]
FILTERS = [
    None,
    {"sex": "F"},
    {"age_group": ["65-79", "80+"]},
    {"consumption_group": "over 1 year"},
    {"started": "started"},
    {"addictive": True},
    {"depot": False},
]
PERIODS = ["2024-01..2024-12", "2024Q1..2025Q4", ["2024", "2025"], "R12-2024-01..R12-2025-12"]
LEVELS = [("nation", None), ("region", None), ("region", ["1084"]), ("cluster", None),
          ("cluster", ["K1", "K3"])]


def _questions() -> list[dict]:
    questions = []
    for i, (by, filters) in enumerate(itertools.product(BREAKDOWNS, FILTERS)):
        by_t = (by,) if isinstance(by, str) else tuple(by)
        if filters and set(filters) & set(by_t):
            continue
        level, units = LEVELS[i % len(LEVELS)]
        ask = dict(
            groups=["opioids", "nsaids", "sedatives"][: 1 + i % 3],
            level=level,
            units=units,
            periods=PERIODS[i % len(PERIODS)],
            by=by,
            filters=filters,
        )
        if {"addictive", "depot"} <= {*by_t, *(filters or {})}:
            continue
        questions.append(ask)
    return questions


QUESTIONS = _questions()


@pytest.mark.parametrize("ask", QUESTIONS, ids=lambda q: f"{q['level']}-{q['by']}-{q['filters']}")
def test_cube_answers_as_the_month_marts_and_the_raw_tables(sessions, ask: dict) -> None:
    cubed, marts, raw = sessions
    assert cube_answers(_query(cubed, ask), cubed.marts.cube_labels, cubed.definitions)
    got = frame(cubed.measures(**ask))
    pd.testing.assert_frame_equal(got, frame(marts.measures(**ask)), check_dtype=False)
    pd.testing.assert_frame_equal(got, frame(raw.measures(**ask)), check_dtype=False)


def test_the_edgy_answers_are_not_all_zero(sessions) -> None:
    """The comparisons above compare something: patients, returns and both flag values."""
    cubed, _, _ = sessions
    table = frame(cubed.measures("opioids", "nation", "2024Q1..2025Q4", by="depot"))
    assert table.patients.sum() > 10 and set(table.depot.dropna()) == {True, False}
    returned = frame(cubed.measures("nsaids", "region", "2024Q2", units=["1081"]))
    # q3 bought 2 packs of ibuprofen in April and returned them in May: no patient (hospital
    # ibuprofen counts for no practice), but the cell is there.
    assert returned[["patients", "ddd"]].values.tolist() == [[0, 0.0]]


@pytest.mark.parametrize(
    "ask",
    [
        dict(groups="opioids", level="municipality", periods="2024"),
        dict(groups="opioids", level="practice", periods="2024"),
        dict(groups="opioids", level="nation", periods="2023"),
        dict(groups="opioids", level="nation", periods="2024", by="age"),
        dict(groups="opioids", level="nation", periods="2024", by="drug"),
        dict(groups="opioids", level="nation", periods="2024", by="depot", non_gp=True),
        dict(groups="opioids", level="nation", periods="2024", by=["depot", "addictive"]),
        dict(groups="opioids", level="nation", periods="2024", filters={"depot": [True, False]}),
        dict(groups="N02AA", level="nation", periods="2024"),
        dict(groups=None, level="nation", periods="2024"),
    ],
)
def test_questions_the_cube_cannot_hold_go_to_the_month_marts(sessions, ask: dict) -> None:
    cubed, marts, _ = sessions
    assert not cube_answers(_query(cubed, ask), cubed.marts.cube_labels, cubed.definitions)
    pd.testing.assert_frame_equal(frame(cubed.measures(**ask)), frame(marts.measures(**ask)))


def test_a_patient_with_both_flags_is_one_patient_of_the_group_and_one_of_each_flag() -> None:
    # p1 redeems morphine (not depot) and oxycodone depot in 2025: one patient of opioids, one
    # of depot and one of not depot; each share of the group's one patient is 1. Counting the
    # group's patients by summing the depot values would give 2 and shares of 0.5.
    from engine_fixtures import OXYCODONE_DEPOT

    reg = world().person("p1", sex="F", born="1960-01-01").listing("p1", "000001", "2020-01-01")
    reg.redeem("p1", "2025-02-01", MORPHINE, packs=1, prescriber="000001")
    reg.redeem("p1", "2025-03-01", OXYCODONE_DEPOT, packs=1, prescriber="000001")
    con = reg.backend()
    con.create_table("metadata", ibis.memtable({"key": ["data_fingerprint"], "value": ["x"]}))
    session = connect(con, read_only=False)
    assert session.marts is not None and session.marts.cube is not None
    total = frame(session.measures("opioids", "nation", "2025", measures="patients"))
    assert total.patients.tolist() == [1]
    depot = frame(session.measures("opioids", "nation", "2025", by="depot", measures="patients"))
    assert depot[["depot", "patients"]].values.tolist() == [[False, 1], [True, 1]]
    share = frame(session.measures("opioids", "nation", "2025", by="depot", measures="share"))
    assert share.share.tolist() == [1.0, 1.0]


def test_the_cube_is_rebuilt_alone_when_the_age_bands_change(sessions) -> None:
    cubed, _, _ = sessions
    con = cubed.con
    definitions = cubed.definitions
    bands = [b.model_copy() for b in definitions.age_bands]
    bands[0] = bands[0].model_copy(update={"id": "children"})
    changed = copy.copy(definitions)
    changed.age_bands = bands
    marts = current_marts(con, changed)
    assert marts is not None and marts.cube is None  # the marts stay, the cube is stale
    session = Workbench(con, changed, writable=True)
    assert session.marts is not None and session.marts.cube is not None
    groups = set(con.table(CUBE_TABLE).age_group.to_pandas().dropna())
    assert "children" in groups
    assert CUBE_STATE_TABLE in con.list_tables()
    # Back to the real bands for the other tests of the module.
    assert Workbench(con, definitions, writable=True).marts.cube is not None


def test_the_cube_matches_the_month_marts_on_a_generated_municipality(pages_dataset) -> None:
    cubed = connect(pages_dataset.database)
    assert cubed.marts is not None and cubed.marts.cube is not None
    marts = _without_cube(cubed)
    last = max(cubed.marts.cube_labels - {p for p in cubed.marts.cube_labels if "-" in p})
    for ask in [
        dict(groups=list(cubed.definitions.groups), level="nation", periods=last,
             by=["sex", "age_group"]),
        dict(groups="opioids", level="region", periods=last, by="consumption_group",
             filters={"started": "started"}),
        dict(groups=["antidepressants", "sedatives"], level="nation", periods=last,
             by="addictive", filters={"age_group": ["65-79", "80+"]}),
    ]:
        assert cube_answers(_query(cubed, ask), cubed.marts.cube_labels, cubed.definitions)
        got = frame(cubed.measures(**ask))
        assert got.patients.sum() > 0
        pd.testing.assert_frame_equal(got, frame(marts.measures(**ask)), check_dtype=False)
    cubed.con.disconnect()
    marts.con.disconnect()
