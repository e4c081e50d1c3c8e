"""Funnel plots: target, overdispersion and control limits against values worked out by hand
(Poisson and binomial tables, a calculator), and the session helper on a tiny register."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pandas as pd
import pytest
from test_standardise import standard_register

from workbench.analysis import contours, fit, funnel, funnel_table, limits, members

# Four units of 100 listed persons with 10, 20, 30 and 80 patients.
OBSERVED, EXPOSURE = [10, 20, 30, 80], [100, 100, 100, 100]


def test_overdispersion_by_hand() -> None:
    f = fit(OBSERVED, EXPOSURE, method="additive")
    # target = 140 / 400 = 0.35; s = sqrt(0.35 / 100) = 0.0591608
    assert f.target == pytest.approx(0.35)
    # z = (0.10-0.35)/s, ... = -4.22577, -2.53546, -0.84515, 7.60639. Winsorised at the 10th and
    # 90th percentiles (linear: -4.22577 + 0.3 × 1.69031 = -3.71868 and -0.84515 + 0.7 × 8.45154
    # = 5.07093): squares 13.82857, 6.42857, 0.71429, 25.71429; phi = 46.68571 / 4 = 11.67143
    assert f.phi == pytest.approx(11.67143, abs=1e-5)
    # tau² = (4 × 11.67143 - 3) / (Σw - Σw²/Σw), w = 100/0.35 = 285.714 each:
    # (46.68571 - 3) / (1142.857 - 285.714) = 43.68571 / 857.143 = 0.0509667
    assert f.adjustment == "additive"
    assert f.tau2 == pytest.approx(0.0509667, abs=1e-6)
    # 95 % limits: 0.35 ± 1.959964 × sqrt(0.0035 + 0.0509667) = 0.35 ± 1.959964 × 0.233381
    # = 0.35 ± 0.457418
    lower, upper = limits(f, [100], 0.95)
    assert lower[0] == pytest.approx(0.0, abs=1e-12)  # 0.35 - 0.457 is below 0: clipped
    assert upper[0] == pytest.approx(0.807418, abs=1e-5)


def test_multiplicative_adjustment_by_hand() -> None:
    f = fit(OBSERVED, EXPOSURE, method="multiplicative")
    assert f.adjustment == "multiplicative" and f.phi == pytest.approx(11.67143, abs=1e-5)
    # 99.8 %: 0.35 + 3.090232 × sqrt(11.67143) × 0.0591608 = 0.35 + 0.624579 = 0.974579
    _, upper = limits(f, [100], 0.998)
    assert upper[0] == pytest.approx(0.974579, abs=1e-5)


def test_exact_poisson_limits_by_hand() -> None:
    # No overdispersion: target 0.05 for 100 listed, so 5 expected. Poisson(5) cdf: F(0) =
    # 0.006738, F(1) = 0.040428, F(9) = 0.968172, F(10) = 0.986305.
    f = fit([5, 5], [100, 100], method="additive")
    assert f.adjustment == "none"  # z = 0, phi = 0
    lower, upper = limits(f, [100], 0.95)
    # upper: r = 10, alpha = (0.986305 - 0.975) / (0.986305 - 0.968172) = 0.623452
    #        (10 - 0.623452) / 100 = 0.0937655
    assert upper[0] == pytest.approx(0.0937655, abs=1e-6)
    # lower: r = 1, alpha = (0.040428 - 0.025) / (0.040428 - 0.006738) = 0.457937
    #        (1 - 0.457937) / 100 = 0.00542063
    assert lower[0] == pytest.approx(0.00542063, abs=1e-6)


def test_exact_binomial_limit_by_hand() -> None:
    # 20 trials at 0.5: F(13) = 0.942341, F(14) = 0.979305; p = 0.975 gives r = 14,
    # alpha = (0.979305 - 0.975) / (0.979305 - 0.942341) = 0.116467, (14 - 0.116467) / 20
    f = fit([10, 10], [20, 20], kind="binomial")
    _, upper = limits(f, [20], 0.95, kind="binomial")
    assert upper[0] == pytest.approx(0.694177, abs=1e-5)


def test_flags_and_reference_units() -> None:
    table = pd.DataFrame(
        {
            "period": "2024",
            "group": "opioids",
            "unit_id": ["a", "b", "c", "d", "e"],
            "observed": [10, 20, 30, 80, 90],
            "exposure": [100, 100, 100, 100, 100],
            "reference": [True, True, True, True, False],
        }
    )
    out = funnel_table(table, observed="observed", exposure="exposure", per=1000.0,
                       reference="reference").to_pandas().set_index("unit_id")
    # e is not in the reference: the fit is the one worked out above, on a-d
    assert out.loc["a", "target"] == pytest.approx(350.0)
    assert out.loc["a", "tau2"] == pytest.approx(0.0509667, abs=1e-6)
    # 99.8 %: 350 + 1000 × 3.090232 × 0.233381 = 350 + 721.20 = 1071.20:
    # nobody beyond; 95 % upper 807.42: d (800) inside, e (900) above
    assert out.loc["e", "flag_95"] == "high" and pd.isna(out.loc["d", "flag_95"])
    assert out.loc["e", "upper_998"] == pytest.approx(1071.20, abs=0.01)
    assert out["flag_998"].isna().all()
    # z = (0.9 - 0.35) / 0.233381 = 2.35666
    assert out.loc["e", "z"] == pytest.approx(2.35666, abs=1e-4)


def test_a_group_nobody_uses_flags_nobody() -> None:
    # Target 0: Poisson(0) puts every count at 0, so both limits are 0 and a unit at 0 sits on
    # them (the interpolated limit alone would be -0.001/100 and flag every unit "high").
    table = pd.DataFrame({"period": "2024", "group": "g", "unit_id": ["a", "b"],
                          "observed": [0, 0], "exposure": [100, 250]})
    out = funnel_table(table, observed="observed", exposure="exposure").to_pandas()
    assert (out["target"] == 0).all()
    assert (out["lower_998"] == 0).all() and (out["upper_998"] == 0).all()
    assert out["flag_95"].isna().all() and out["flag_998"].isna().all()


def test_limits_never_go_below_zero() -> None:
    # Expected 0.5 patients (target 0.005 on 100): P(X=0) = e^-0.5 = 0.607 > 0.025, so the 2.5 %
    # quantile is 0 and the interpolated limit (0 - (0.607 - 0.025)/0.607)/100 < 0 becomes 0.
    f = fit([1, 0], [100, 100], method="none")
    lower, _ = limits(f, [100], 0.95)
    assert lower[0] == 0.0


def test_contours_follow_the_limits() -> None:
    table = pd.DataFrame({"period": "2024", "group": "g", "unit_id": list("abcd"),
                          "observed": OBSERVED, "exposure": [50, 100, 200, 400]})
    lines = contours(table, observed="observed", exposure="exposure", points=5).to_pandas()
    f = fit(OBSERVED, [50, 100, 200, 400])
    lower, upper = limits(f, lines["exposure"], 0.998)
    assert np.allclose(lines["upper_998"], upper) and np.allclose(lines["lower_998"], lower)
    assert lines["exposure"].min() == pytest.approx(40.0)  # 0.8 × the smallest unit


@pytest.fixture(scope="module")
def session():
    return standard_register().session()


def test_members_of_a_cluster_and_a_region(session) -> None:
    assert members(session, "practice", ("cluster", "K1")) == ["000001", "000002"]
    assert members(session, "cluster", ("region", "1081")) == ["K1", "K2"]


def test_session_funnel_within_a_cluster_on_national_limits(session) -> None:
    out = funnel(session, "opioids", "2024", within=("cluster", "K1"),
                 reference=("nation", "DK")).to_pandas().set_index("unit_id")
    assert sorted(out.index) == ["000001", "000002"]
    # national target: 6 patients / 16 listed (000004 lists nobody and doesn't count)
    assert out.loc["000001", "target"] == pytest.approx(375.0)
    assert out.loc["000001", "value"] == pytest.approx(500.0)  # 3 of 6
    ratio = funnel(session, "opioids", "2024", indicator="standardised_patients").to_pandas()
    # O/E against expected: target = 6 / (2 + 2.5 + 1.5) = 1, 000001 at 1.5
    row = ratio.set_index("unit_id").loc["000001"]
    assert row["target"] == pytest.approx(1.0) and row["value"] == pytest.approx(1.5)
    assert math.isnan(ratio.set_index("unit_id").loc["000004", "value"])


def test_ddd_funnel_uses_the_compound_poisson_scale(session) -> None:
    out = funnel(session, "opioids", "2024", indicator="ddd_per_1000").to_pandas()
    row = out.set_index("unit_id").loc["000001"]
    # DDD 60, 10, 20 over 6, 6, 4 listed: target 90 / 16 = 5.625 DDD a person. Persons' DDD²:
    # 1400 + 100 + 200 = 1700, so kappa = 1700 / 90 = 18.889 DDD and s(000001) =
    # sqrt(18.889 × 5.625 / 6) = 4.20813; z = (10 - 5.625) / 4.20813 = 1.03966. phi (0.42,
    # from z 1.040, -0.941, -0.121) shows no overdispersion, so z is not adjusted.
    assert row["target"] == pytest.approx(5625.0)
    assert row["adjustment"] == "none"
    assert row["z"] == pytest.approx(1.03966, abs=1e-5)


def test_unknown_indicator(session) -> None:
    with pytest.raises(ValueError, match="indicator"):
        funnel(session, "opioids", "2024", indicator="share")


@pytest.mark.parametrize(
    "name",
    [
        "workbench.analysis.funnel",
        "workbench.analysis.standardise",
        "workbench.engine.journeys",
        "workbench.engine.risks",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def _peer_sets(seed: int) -> pd.DataFrame:
    """Random peer sets: empty and zero-count sets, units without exposure, overdispersion."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(150):
        n = int(rng.integers(1, 25))
        exposure = rng.gamma(2, 500, n) * (rng.random(n) > 0.1)
        rate = rng.uniform(0.0, 0.02) * rng.lognormal(0, rng.uniform(0, 0.6), n)
        observed = rng.poisson(exposure * rate) * (g % 13 != 0)
        for i in range(n):
            rows.append((f"p{g % 30}", f"r{g // 30}", f"u{i}", int(observed[i]), exposure[i],
                         observed[i] * rng.uniform(1, 30)))
    return pd.DataFrame(rows, columns=["period", "risk", "unit_id", "patients", "listed",
                                       "variance"])


def test_many_peer_sets_at_once_give_each_sets_fit_and_funnel() -> None:
    """fit_many and funnel_rows are the per-set fit and funnel_table without the loop."""
    from workbench.analysis.funnel import fit_many, funnel_rows

    frame = _peer_sets(3)
    many = fit_many(frame, ["period", "risk"], observed="patients", exposure="listed",
                    variance="variance")
    for _, row in many.iterrows():
        part = frame[(frame["period"] == row["period"]) & (frame["risk"] == row["risk"])]
        one = fit(part["patients"], part["listed"], variance=part["variance"])
        assert np.allclose([one.target, one.kappa, one.phi, one.tau2],
                           [row["target"], row["kappa"], row["phi"], row["tau2"]],
                           equal_nan=True, rtol=1e-9)
        assert (one.adjustment, one.units) == (row["adjustment"], row["units"])
    fast = funnel_rows(frame, ("period", "risk"), observed="patients", exposure="listed",
                       per=1000.0)
    slow = funnel_table(frame, observed="patients", exposure="listed", per=1000.0,
                        peers=("period", "risk")).to_pandas()
    assert list(fast.columns) == list(slow.columns)
    keys = ["period", "risk", "unit_id"]
    both = fast.merge(slow, on=keys, suffixes=("_fast", "_slow"))
    assert len(both) == len(frame)
    for column in ("value", "target", "z", "lower_95", "upper_95", "lower_998", "upper_998"):
        assert np.allclose(both[f"{column}_fast"].astype(float),
                           both[f"{column}_slow"].astype(float), equal_nan=True, rtol=1e-9)
    for column in ("flag_95", "flag_998", "adjustment"):
        assert (both[f"{column}_fast"].fillna("") == both[f"{column}_slow"].fillna("")).all()
