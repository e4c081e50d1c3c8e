"""Potential intervention areas: ranking and the size of the opportunity, by hand on the
standardisation register of test_standardise (only opioids are used there)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_standardise import standard_register

from workbench.analysis import opportunities, peers
from workbench.analysis.opportunities import rank


@pytest.fixture(scope="module")
def session():
    return standard_register().session()


def test_practice_opportunities_by_hand(session) -> None:
    df = opportunities(session, "000001", "practice", "2024", risks=False).to_pandas()
    top = df.iloc[0]
    assert (top["rank"], top["kind"], top["item"]) == (1, "group", "opioids")
    # O/E = 3 / 2 = 1.5 with Garwood(3) / 2 as interval (see test_standardise)
    assert top["ratio"] == pytest.approx(1.5)
    assert top["ratio_lower"] == pytest.approx(0.6186 / 2, abs=1e-4)
    # National funnel of O/E: O = 3, 1, 2; E = 2, 2.5, 1.5; target 6/6 = 1. z = (1.5-1)/sqrt(1/2)
    # = 0.70711, (0.4-1)/sqrt(1/2.5) = -0.94868, (1.3333-1)/sqrt(1/1.5) = 0.40825. Winsorised
    # (10 %/90 %: -0.67732, 0.64733) phi = (0.41904 + 0.45876 + 0.16667)/3 = 0.34816 and
    # 3 × 0.34816 < 2: no overdispersion, exact limits; z stays 0.70711.
    assert top["z"] == pytest.approx(0.70711, abs=1e-5)
    # Exact 95 % upper limit for E = 2: Poisson(2) F(4) = 0.947347, F(5) = 0.983436, r = 5,
    # alpha = 0.23376, (5 - 0.23376) / 2 = 2.383: 1.5 is inside, no flag.
    assert pd.isna(top["flag_95"]) and pd.isna(top["flag_998"])
    # Cluster K1's practices have O/E 1.5 and 0.4: median 0.95. Above it: 3 - 2 × 0.95 = 1.1
    assert top["excess"] == pytest.approx(1.1)
    # groups nobody uses have no expectation: no ratio, ranked last
    rest = df[df["item"] != "opioids"]
    assert rest["ratio"].isna().all() and (rest["rank"] > 1).all()
    assert set(df["item"]) == set(session.definitions.groups)


def test_cluster_opportunity_sums_its_practices(session) -> None:
    df = opportunities(session, "K1", "cluster", "2024", groups="opioids", risks=False)
    row = df.to_pandas().iloc[0]
    # K1: O = 3 + 1 = 4, E = 2 + 2.5 = 4.5
    assert row["ratio"] == pytest.approx(4 / 4.5)
    # 000001 is 1.1 above the median, 000002 below it (1 - 2.5 × 0.95 < 0): 1.1 in all
    assert row["excess"] == pytest.approx(1.1)


def test_risks_are_ranked_beside_groups(session) -> None:
    df = opportunities(session, "000001", "practice", "2024", groups="opioids").to_pandas()
    assert set(df["kind"]) == {"group", "risk"}
    assert set(df.loc[df["kind"] == "risk", "item"]) == set(session.definitions.risks)
    assert list(df["rank"]) == list(range(1, len(df) + 1))


def test_rank_order_and_direction() -> None:
    rows = pd.DataFrame(
        {
            "item": ["a", "b", "c", "d", "e"],
            "z": [5.0, 2.5, 1.0, -4.0, math.nan],
            "flag_95": ["high", "high", None, "low", None],
            "flag_998": ["high", None, None, "low", None],
            "direction": ["low_is_good"] * 3 + ["high_is_good", "low_is_good"],
        }
    )
    # d is far *below* where higher is better: as bad as being above 99.8 %; in that tier a's
    # z of 5 beats d's 4 (sign flipped). Then b (above 95 %), c, and e without a z last.
    ranked = rank(rows)
    assert ranked["item"].tolist() == ["a", "d", "b", "c", "e"]
    assert ranked["rank"].tolist() == [1, 2, 3, 4, 5]


def test_level_is_checked(session) -> None:
    with pytest.raises(ValueError, match="practice or a cluster"):
        opportunities(session, "1081", "region", "2024")


@pytest.fixture(scope="module")
def practice_peers(session):
    return peers(session, "practice", "2024")


def test_peers_judged_once_serve_every_unit(session, practice_peers) -> None:
    for unit in ("000001", "000002"):
        alone = opportunities(session, unit, "practice", "2024").to_pandas()
        shared = opportunities(session, unit, "practice", "2024", groups="opioids",
                               judged=practice_peers).to_pandas()
        pd.testing.assert_frame_equal(
            shared.drop(columns="rank").reset_index(drop=True),
            alone[alone["item"].isin(["opioids", *session.definitions.risks])]
            .drop(columns="rank").reset_index(drop=True))
    with pytest.raises(ValueError, match="another question"):
        opportunities(session, "K1", "cluster", "2024", judged=practice_peers)
    without_risks = peers(session, "practice", "2024", groups="opioids", risks=False)
    with pytest.raises(ValueError, match="another question"):
        opportunities(session, "000001", "practice", "2024", judged=without_risks)


def test_a_cluster_takes_its_practices_from_the_practice_peers(session, practice_peers) -> None:
    alone = opportunities(session, "K1", "cluster", "2024").to_pandas()
    shared = opportunities(session, "K1", "cluster", "2024",
                           judged=peers(session, "cluster", "2024"),
                           practices=practice_peers).to_pandas()
    pd.testing.assert_frame_equal(shared, alone)
    with pytest.raises(ValueError, match="another question"):
        opportunities(session, "000001", "practice", "2024", practices=practice_peers)
