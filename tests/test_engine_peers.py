"""Peer comparison: national percentile ranks and deciles on small sets worked out by hand."""

from __future__ import annotations

import math

import ibis
import pytest
from engine_fixtures import MORPHINE, rows, world

from workbench.engine import deciles, percentile_ranks


def measures_table(values: dict[tuple[str, str], float | None]) -> ibis.Table:
    """A measures-shaped table: {(period, unit_id): ddd_per_1000}."""
    return ibis.memtable(
        {
            "level": ["practice"] * len(values),
            "unit_id": [u for _, u in values],
            "period": [p for p, _ in values],
            "group": ["opioids"] * len(values),
            "ddd_per_1000": list(values.values()),
        },
        schema={
            "level": "string",
            "unit_id": "string",
            "period": "string",
            "group": "string",
            "ddd_per_1000": "float64",
        },
    )


def test_percentile_rank_per_period_with_ties_and_missing_rates() -> None:
    table = measures_table(
        {
            ("2024Q1", "a"): 10.0,  # rank 1 of 4: (1-1)/(4-1) = 0
            ("2024Q1", "b"): 20.0,  # tied at rank 2: (2-1)/(4-1) = 33.3
            ("2024Q1", "c"): 20.0,
            ("2024Q1", "d"): 40.0,  # rank 4: 100
            ("2024Q1", "e"): None,  # no rate: not ranked
            ("2024Q2", "a"): 5.0,  # ranked only against Q2: highest of 2
            ("2024Q2", "b"): 1.0,
        }
    )
    got = rows(percentile_ranks(table, "ddd_per_1000"))
    ranks = {(r.period, r.unit_id): r.percentile for r in got.itertuples()}
    assert ranks[("2024Q1", "a")] == 0
    assert ranks[("2024Q1", "b")] == ranks[("2024Q1", "c")] == pytest.approx(100 / 3)
    assert ranks[("2024Q1", "d")] == 100
    assert math.isnan(ranks[("2024Q1", "e")])
    assert (ranks[("2024Q2", "a")], ranks[("2024Q2", "b")]) == (100, 0)


def test_deciles_interpolate_linearly_per_period() -> None:
    values = {("2024Q1", f"u{i:02d}"): float(i) for i in range(11)}  # 0, 1, ..., 10
    values |= {("2024Q2", "a"): 1.0, ("2024Q2", "b"): 2.0, ("2024Q2", "c"): None}
    got = rows(deciles(measures_table(values), "ddd_per_1000"))
    assert got.columns.tolist() == ["level", "period", "group", "decile", "ddd_per_1000"]
    q1 = got[got.period == "2024Q1"].set_index("decile").ddd_per_1000
    assert q1.to_dict() == {d: d / 10 for d in range(10, 100, 10)}  # 1.0, 2.0, ... 9.0
    # Two values 1 and 2: the d-th decile is 1 + d/100 (the missing rate is ignored).
    q2 = got[got.period == "2024Q2"].set_index("decile").ddd_per_1000
    assert q2.to_dict() == pytest.approx({d: 1 + d / 100 for d in range(10, 100, 10)})


def test_session_ranks_practices_nationally() -> None:
    reg = world()
    # Practice i has i+1 listed persons and one patient: rates 1000, 500, 333, 250 per 1,000.
    for i, practice in enumerate(["000001", "000002", "000003", "000004"]):
        for k in range(i + 1):
            reg.person(f"{practice}-{k}").listing(f"{practice}-{k}", practice, "2020-01-01")
        reg.redeem(f"{practice}-0", "2024-02-01", MORPHINE, prescriber=practice)
    session = reg.session()
    ranked = rows(session.percentiles("patients_per_1000", groups="opioids", periods="2024"))
    assert ranked.set_index("unit_id").percentile.round(1).to_dict() == {
        "000001": 100.0,
        "000002": 66.7,
        "000003": 33.3,
        "000004": 0.0,
    }
    clusters = rows(session.percentiles("patients", "cluster", groups="opioids", periods="2024"))
    # K1 has 2 patients, K2 and K3 one each: K1 top, the two others tied at the bottom.
    assert clusters.set_index("unit_id").percentile.to_dict() == {"K1": 100, "K2": 0, "K3": 0}
    median = rows(session.deciles("patients", groups="opioids", periods="2024"))
    assert median.set_index("decile").patients[50] == 1
