"""Deciles over time: a unit's series against the national deciles of its level, by hand."""

from __future__ import annotations

import pytest
from engine_fixtures import MORPHINE, world

from workbench.analysis import against_deciles


@pytest.fixture(scope="module")
def session():
    # Ten more practices of 10 listed persons each; practice k has k patients in 2024Q1 (k × 100
    # per 1,000: 0, 100, …, 900) and, in 2024Q2, practice 1 alone has all of its ten.
    reg = world()
    for k in range(10):
        practice = f"10000{k}"
        reg.practice(practice, "K9", "1081", "851")
        for i in range(10):
            pid = f"p{k}-{i}"
            reg.person(pid).listing(pid, practice, "2020-01-01")
            if i < k:
                reg.redeem(pid, "2024-02-01", MORPHINE, 1, practice)
            if k == 1:
                reg.redeem(pid, "2024-05-01", MORPHINE, 1, practice)
    return reg.session()


def test_unit_against_the_deciles(session) -> None:
    df = against_deciles(session, "100004", "practice", "opioids", "2024Q1..2024Q2")
    q1 = df.to_pandas().set_index("period").loc["2024Q1"]
    # The four practices of world() list nobody: no rate, not among the deciles' 10 units.
    assert q1["units"] == 10
    # 10 values 0..900: the p-th percentile sits at (p/100) × 9, linear between neighbours:
    # 10th: 0.9 → 90; 50th: 4.5 → 450; 90th: 8.1 → 810
    assert (q1["decile_10"], q1["decile_50"], q1["decile_90"]) == pytest.approx((90, 450, 810))
    # 100004 has 400 per 1,000: above the 10th-40th (90, 180, 270, 360), below the 50th
    assert q1["patients_per_1000"] == pytest.approx(400.0) and q1["position"] == 4


def test_the_deciles_move_with_the_period(session) -> None:
    df = against_deciles(session, "100001", "practice", "opioids", "2024Q1..2024Q2")
    q2 = df.to_pandas().set_index("period").loc["2024Q2"]
    # 2024Q2: nine practices at 0 and 100001 at 1000: every decile below the 90th is 0, the 90th
    # is 0.1 × 1000 = 100 (position 8.1 between 0 and 1000); 100001 is above all nine.
    assert q2["decile_80"] == 0 and q2["decile_90"] == pytest.approx(100.0)
    assert q2["position"] == 9


def test_counts_are_not_compared(session) -> None:
    with pytest.raises(ValueError, match="rate"):
        against_deciles(session, "100001", "practice", "opioids", "2024Q1", measure="patients")
