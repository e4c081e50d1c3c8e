"""Age/sex standardisation on a tiny register whose every figure is worked out by hand.

The register (period 2024, everybody listed all year, so listed persons are whole numbers; all
women, so the strata are the two age bands):

==========  =====  ===========================  ==========================================
practice    band   listed                       patients (opioid DDD per person)
==========  =====  ===========================  ==========================================
000001 K1   45-64  4 (a1..a4)                   a1: 10
            65-79  2 (a5, a6)                   a5: 20 (2 packs, one day), a6: 30 (10 + 20)
000002 K1   45-64  2 (b1, b2)                   -
            65-79  4 (b3..b6)                   b3: 10
000003 K2   45-64  2 (c1, c2)                   c1: 10
            65-79  2 (c3, c4)                   c3: 10
000004 K3   -      nobody listed                -
==========  =====  ===========================  ==========================================

Nation: 45-64 listed 8, patients 2 (rate 0.25), DDD 20 (2.5 per person); 65-79 listed 8,
patients 4 (rate 0.5), DDD 70 (8.75 per person). Standard weights 8/16 = 0.5 each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_fixtures import MORPHINE, TinyRegister, world
from scipy import stats

from workbench.analysis import garwood, scaled_interval, standardised

YOUNG, OLD = "1970-06-15", "1950-06-15"  # 53 and 73 on 2024-01-01: bands 45-64 and 65-79


def standard_register() -> TinyRegister:
    reg = world()
    listed = {
        "000001": [("a1", YOUNG), ("a2", YOUNG), ("a3", YOUNG), ("a4", YOUNG), ("a5", OLD),
                   ("a6", OLD)],
        "000002": [("b1", YOUNG), ("b2", YOUNG), ("b3", OLD), ("b4", OLD), ("b5", OLD),
                   ("b6", OLD)],
        "000003": [("c1", YOUNG), ("c2", YOUNG), ("c3", OLD), ("c4", OLD)],
    }
    for practice, people in listed.items():
        for pid, born in people:
            reg.person(pid, "F", born).listing(pid, practice, "2020-01-01")
    reg.redeem("a1", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("a5", "2024-03-01", MORPHINE, 2, "000001")
    reg.redeem("a6", "2024-03-01", MORPHINE, 1, "000001")
    reg.redeem("a6", "2024-06-01", MORPHINE, 2, "000001")
    reg.redeem("b3", "2024-03-01", MORPHINE, 1, "000002")
    reg.redeem("c1", "2024-03-01", MORPHINE, 1, "000003")
    reg.redeem("c3", "2024-03-01", MORPHINE, 1, "000003")
    return reg


@pytest.fixture(scope="module")
def session():
    return standard_register().session()


def by_unit(table) -> dict[str, dict]:
    df = table.to_pandas()
    return {row["unit_id"]: row for row in df.to_dict(orient="records")}


def test_garwood_matches_the_published_table() -> None:
    # Exact Poisson 95 % limits (e.g. Ulm 1990, Table; Garwood 1936): 0 -> (0, 3.689),
    # 3 -> (0.619, 8.767), 10 -> (4.795, 18.390).
    lo, hi = garwood([0, 3, 10])
    assert np.allclose(lo, [0.0, 0.6186, 4.7954], atol=1e-4)
    assert np.allclose(hi, [3.6889, 8.7673, 18.3904], atol=1e-4)


def test_scaled_interval_is_garwood_times_the_dose() -> None:
    # Two persons of 10 DDD each: O = 20, V = 200, effective count 20²/200 = 2, scale 10,
    # so the interval is 10 × Garwood(2) = 10 × (0.2422, 7.2247).
    lo, hi = scaled_interval([20.0], [200.0])
    assert lo[0] == pytest.approx(2.4220, abs=1e-3)
    assert hi[0] == pytest.approx(72.247, abs=1e-2)
    assert np.isnan(scaled_interval([0.0], [0.0])[0][0])


def test_expected_and_ratio_of_patients(session) -> None:
    got = by_unit(standardised(session, "opioids", "practice", "2024"))
    a, b, c = got["000001"], got["000002"], got["000003"]
    # 000001: E = 0.25 × 4 + 0.5 × 2 = 2.0, O = 3, O/E = 1.5
    assert a["expected"] == pytest.approx(2.0)
    assert (a["observed"], a["patients"], a["listed"]) == (3.0, 3, 6.0)
    assert a["oe"] == pytest.approx(1.5)
    # Garwood(3) = (0.6186, 8.7673), divided by E = 2
    assert a["oe_lower"] == pytest.approx(0.6186 / 2, abs=1e-4)
    assert a["oe_upper"] == pytest.approx(8.7673 / 2, abs=1e-4)
    # crude 3/6 = 500 per 1,000; expected 2/6 = 333.3 per 1,000
    assert a["crude_per_1000"] == pytest.approx(500.0)
    assert a["expected_per_1000"] == pytest.approx(2000 / 6)
    # 000002: E = 0.25 × 2 + 0.5 × 4 = 2.5, O = 1 -> 0.4; 000003: E = 1.5, O = 2
    assert b["expected"] == pytest.approx(2.5) and b["oe"] == pytest.approx(0.4)
    assert c["expected"] == pytest.approx(1.5) and c["oe"] == pytest.approx(2 / 1.5)
    # 000004 lists nobody: nothing to expect, no ratio, no DSR
    d = got["000004"]
    assert d["expected"] == 0 and math.isnan(d["oe"]) and math.isnan(d["dsr_per_1000"])


def test_direct_standardisation_and_dobson_interval(session) -> None:
    a = by_unit(standardised(session, "opioids", "practice", "2024"))["000001"]
    # rates 1/4 and 2/2, weights 0.5 and 0.5: DSR = 0.5 × 0.25 + 0.5 × 1 = 0.625
    assert a["dsr_per_1000"] == pytest.approx(625.0)
    # var(DSR) = 0.5² × 1/4² + 0.5² × 2/2² = 0.140625; sqrt(var/O) = sqrt(0.046875) = 0.216506
    # lower = 0.625 + 0.216506 × (0.618672 - 3) = 0.109428; upper with 8.767273: 1.873650
    assert a["dsr_lower"] == pytest.approx(109.428, abs=0.01)
    assert a["dsr_upper"] == pytest.approx(1873.650, abs=0.01)


def test_reference_unit_is_its_own_standard(session) -> None:
    nation = by_unit(standardised(session, "opioids", "nation", "2024"))["DK"]
    # O = 6 = E; the DSR on its own population is its crude rate, 6 / 16
    assert nation["oe"] == pytest.approx(1.0)
    assert nation["dsr_per_1000"] == pytest.approx(375.0)
    assert nation["crude_per_1000"] == pytest.approx(375.0)


def test_ddd_ratio_uses_persons_not_doses(session) -> None:
    a = by_unit(standardised(session, "opioids", "practice", "2024", measure="ddd"))["000001"]
    # E = 2.5 × 4 + 8.75 × 2 = 27.5 DDD; O = 10 + 20 + 30 = 60; O/E = 2.1818
    assert a["expected"] == pytest.approx(27.5)
    assert a["oe"] == pytest.approx(60 / 27.5)
    # a6's two redemptions are one person's 30 DDD: V = 10² + 20² + 30² = 1400 (not 1000)
    assert a["variance"] == pytest.approx(1400.0)
    n_eff, scale = 60**2 / 1400, 1400 / 60
    assert a["oe_lower"] == pytest.approx(scale * stats.chi2.ppf(0.025, 2 * n_eff) / 2 / 27.5)
    assert a["oe_upper"] == pytest.approx(scale * stats.chi2.ppf(0.975, 2 * n_eff + 2) / 2 / 27.5)
    # DSR of DDD: 0.5 × 10/4 + 0.5 × 50/2 = 13.75 DDD per person = 13,750 per 1,000
    assert a["dsr_per_1000"] == pytest.approx(13750.0)


def test_reference_can_be_a_region(session) -> None:
    # Region 1081 holds practices 1-3, so it is the nation here: same expectation.
    region = by_unit(
        standardised(session, "opioids", "practice", "2024", reference=("region", "1081"))
    )
    assert region["000001"]["expected"] == pytest.approx(2.0)


def test_choices_are_checked(session) -> None:
    with pytest.raises(ValueError, match="measure"):
        standardised(session, "opioids", "practice", "2024", measure="share")
    with pytest.raises(ValueError, match="period"):
        standardised(session, "opioids", "practice")
