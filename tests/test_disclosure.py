"""Disclosure control: boundaries, derived values, secondary suppression, the audit, modes, keys.

The property tests are the ones that try to break it: hundreds of random one- to four-way tables
with margins and random small cells, each audited as an attacker would after ``apply``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from workbench.disclosure import (
    PUBLISHING_ENV,
    Derived,
    DisclosureError,
    DisclosurePolicy,
    Margin,
    TableSpec,
    analyst_mode,
    analyst_mode_active,
    apply,
    publishing,
    publishing_active,
    recoverable_cells,
    require_safe,
    scan_for_person_keys,
    set_analyst_mode,
    suppression_mask,
)


@pytest.fixture(autouse=True)
def _session(monkeypatch: pytest.MonkeyPatch):
    """Each test starts as a plain session: not publishing, analyst mode off."""
    monkeypatch.delenv(PUBLISHING_ENV, raising=False)
    set_analyst_mode(False)
    yield
    set_analyst_mode(False)


def _units(values: dict[str, int], total: str | None = None) -> tuple[pd.DataFrame, TableSpec]:
    """A one-way table of units (practices), with the cluster total as the row ``total``."""
    df = pd.DataFrame({"unit": list(values), "patients": list(values.values())})
    margins = (Margin("unit", total),) if total else ()
    return df, TableSpec(keys=("unit",), counts=("patients",), margins=margins)


def _hidden(published: pd.DataFrame, column: str = "patients") -> list:
    return published.loc[published[column].isna(), "unit"].tolist()


# --- primary suppression -----------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [5, 3, 10])
def test_counts_below_the_threshold_are_hidden_and_zero_is_published(threshold: int) -> None:
    df, spec = _units({"zero": 0, "one": 1, "below": threshold - 1, "at": threshold,
                       "above": threshold + 1})
    out = apply(df, spec, DisclosurePolicy(threshold=threshold))
    assert _hidden(out) == ["one", "below"]
    assert out.set_index("unit").loc[["zero", "at", "above"], "patients"].tolist() == [
        0, threshold, threshold + 1]
    assert out["patients_suppressed"].tolist() == [False, True, True, False, False]
    assert str(out["patients"].dtype) == "Int64"


def test_default_threshold_is_five() -> None:
    df, spec = _units({"a": 4, "b": 5, "c": 6})
    assert _hidden(apply(df, spec)) == ["a"]


def test_listed_persons_below_the_threshold_are_hidden() -> None:
    df = pd.DataFrame({"unit": ["a", "b", "c", "d"], "listed": [0.0, 0.4, 4.99, 5.0]})
    out = apply(df, TableSpec(keys=("unit",), counts=("listed",)))
    assert out["listed"].isna().tolist() == [False, True, True, False]
    assert str(out["listed"].dtype) == "Float64"


def test_rates_shares_and_ddd_built_on_a_hidden_count_are_hidden() -> None:
    df = pd.DataFrame({
        "unit": ["few patients", "few listed", "plenty"],
        "patients": [3, 8, 40],
        "listed": [900.0, 3.0, 1000.0],
        "ddd": [120.0, 300.0, 2000.0],
    })
    df["per_1000"] = df.patients / df.listed * 1000
    df["ddd_per_1000"] = df.ddd / df.listed * 1000
    spec = TableSpec(keys=("unit",), counts=("patients", "listed"), derived=(
        Derived("per_1000", on=("patients", "listed")),
        Derived("ddd", on="patients", additive=True),
        Derived("ddd_per_1000", on=("patients", "listed")),
    ))
    out = apply(df, spec).set_index("unit")
    assert out.loc["few patients"][["patients", "per_1000", "ddd", "ddd_per_1000"]].isna().all()
    assert out.loc["few patients", "listed"] == 900.0
    assert out.loc["few listed"][["listed", "per_1000", "ddd_per_1000"]].isna().all()
    assert out.loc["few listed", "ddd"] == 300.0  # a DDD sum is built on patients, not on listed
    assert not out.loc["plenty"][["patients", "listed", "per_1000", "ddd"]].isna().any()
    mask = suppression_mask(out.reset_index(), spec)
    assert mask.to_dict("list") == {
        "patients": [True, False, False], "listed": [False, True, False],
        "per_1000": [True, True, False], "ddd": [True, False, False],
        "ddd_per_1000": [True, True, False],
    }


def test_a_share_is_hidden_with_its_denominator() -> None:
    groups = ["under 3 months", "3 months to 1 year", "over 1 year", "all"]
    df = pd.DataFrame({
        "unit": ["A"] * 4 + ["B"] * 4,
        "consumption_group": groups * 2,
        "patients": [0, 2, 1, 3, 10, 12, 30, 52],
    })
    total = df.groupby("unit").patients.transform(lambda s: s.iloc[-1])
    df["share"] = df.patients / total
    spec = TableSpec(
        keys=("unit", "consumption_group"), counts=("patients",),
        derived=(Derived("share", on="patients", share_of={"consumption_group": "all"}),),
        margins=(Margin("consumption_group", "all"),),
    )
    out = apply(df, spec)
    a, b = out[out.unit == "A"], out[out.unit == "B"]
    assert a["share"].isna().all()  # the published 0 shares 0/3: its denominator is hidden
    assert a["patients"].tolist()[0] == 0
    assert not b["share"].isna().any()
    assert recoverable_cells(out, spec) == []


# --- secondary suppression ---------------------------------------------------------------------


def test_one_small_cell_gets_the_smallest_nonzero_complement() -> None:
    df, spec = _units({"A": 3, "B": 0, "C": 12, "D": 7, "E": 40, "cluster": 62}, total="cluster")
    with analyst_mode():
        reasons = apply(df, spec).set_index("unit")["patients_suppression"]
    assert reasons.dropna().to_dict() == {"A": "primary", "D": "secondary"}
    out = apply(df, spec)
    assert _hidden(out) == ["A", "D"]  # B's zero would protect nothing: 62 - 52 - 0 = A
    assert recoverable_cells(out, spec) == []


def test_small_cells_that_sum_below_the_threshold_get_a_third() -> None:
    """Two hidden cells summing to 3 are both confined to [0, 3]; (1, 1) would even be exact."""
    df, spec = _units({"A": 1, "B": 2, "C": 30, "D": 50, "cluster": 83}, total="cluster")
    out = apply(df, spec)
    assert _hidden(out) == ["A", "B", "C"]
    assert recoverable_cells(out, spec) == []


def test_a_small_total_hides_its_parts_too() -> None:
    df, spec = _units({"A": 0, "B": 4, "cluster": 4}, total="cluster")
    assert _hidden(apply(df, spec)) == ["B", "cluster"]


def test_sex_breakdown_with_total() -> None:
    df = pd.DataFrame({"sex": ["F", "M", "all"], "patients": [38, 2, 40]})
    spec = TableSpec(keys=("sex",), counts=("patients",), margins=(Margin("sex", "all"),))
    out = apply(df, spec)
    assert out["patients"].isna().tolist() == [True, True, False]


def test_two_way_table_with_margins_hides_a_rectangle() -> None:
    interior = np.array([[2, 10, 30], [8, 20, 25], [15, 40, 60]])
    df, spec = _grid(interior)
    out = apply(df, spec)
    hidden = set(map(tuple, out.loc[out.patients.isna(), ["d0", "d1"]].to_numpy()))
    assert hidden == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")}
    assert recoverable_cells(out, spec) == []


def test_periods_are_not_added_up_unless_declared() -> None:
    df = pd.DataFrame({
        "period": ["2024Q1"] * 3 + ["2024Q2"] * 3 + ["2024"] * 3,
        "sex": ["F", "M", "all"] * 3,
        "patients": [3, 30, 33, 20, 25, 45, 22, 50, 72],
    })
    spec = TableSpec(keys=("period", "sex"), counts=("patients",), margins=(Margin("sex", "all"),))
    out = apply(df, spec)
    assert out["patients"].isna().tolist() == [True, True] + [False] * 7


def test_subtotals_are_declared_as_further_margins() -> None:
    df = pd.DataFrame({
        "age": ["0-17", "18-44", "45-64", "0-64", "65+", "all"],
        "patients": [3, 20, 30, 53, 40, 93],
    })
    spec = TableSpec(keys=("age",), counts=("patients",),
                     margins=(Margin("age", "all"),
                              Margin("age", "0-64", parts=("0-17", "18-44", "45-64"))))
    out = apply(df, spec)
    assert out.loc[out.patients.isna(), "age"].tolist() == ["0-17", "18-44"]
    assert recoverable_cells(out, spec) == []


def test_each_count_is_protected_along_the_margins() -> None:
    df = pd.DataFrame({
        "unit": ["A", "B", "C", "cluster"],
        "patients": [12, 9, 30, 51],
        "listed": [3.5, 800.0, 1200.0, 2003.5],
    })
    df["per_1000"] = df.patients / df.listed * 1000
    spec = TableSpec(keys=("unit",), counts=("patients", "listed"),
                     derived=(Derived("per_1000", on=("patients", "listed")),),
                     margins=(Margin("unit", "cluster"),))
    out = apply(df, spec)
    assert out["listed"].isna().tolist() == [True, True, False, False]
    assert out["patients"].isna().sum() == 0
    assert out["per_1000"].isna().tolist() == [True, True, False, False]
    assert recoverable_cells(out, spec) == []


def test_patients_of_a_cluster_are_distinct_persons() -> None:
    """A person treated by two practices is one patient of the cluster: 50, not 3 + 20 + 30."""
    df = pd.DataFrame({"unit": ["A", "B", "C", "cluster"], "patients": [3, 20, 30, 50],
                       "listed": [400.0, 900.0, 1100.0, 2400.0]})
    exact = TableSpec(keys=("unit",), counts=("patients", "listed"),
                      margins=(Margin("unit", "cluster"),))
    with pytest.raises(ValueError, match=r"'patients' of total row \{'unit': 'cluster'\} is 50"):
        apply(df, exact)
    spec = TableSpec(keys=("unit",), counts=("patients", "listed"),
                     margins=(Margin("unit", "cluster", overlapping="patients"),))
    out = apply(df, spec)
    assert out["patients"].isna().tolist() == [True, True, False, False]
    assert not out["listed"].isna().any()
    assert recoverable_cells(out, spec) == []


# --- the audit ---------------------------------------------------------------------------------


def test_audit_recovers_a_total_hidden_alone() -> None:
    published = pd.DataFrame({"unit": ["A", "B", "cluster"],
                              "patients": pd.array([10, 20, None], dtype="Int64")})
    _, spec = _units({"A": 0}, total="cluster")
    [finding] = recoverable_cells(published, spec)
    assert (finding.row, finding.column, finding.why) == (2, "patients", "determined")
    assert finding.key == {"unit": "cluster"}
    assert finding.low == pytest.approx(30) and finding.high == pytest.approx(30)


def test_audit_flags_a_narrow_interval_and_a_shown_small_count() -> None:
    published = pd.DataFrame({"unit": ["A", "B", "C", "D", "cluster"],
                              "patients": pd.array([None, None, 3, 40, 46], dtype="Int64")})
    _, spec = _units({"A": 0}, total="cluster")
    findings = {(f.key["unit"], f.why, f.low, f.high) for f in recoverable_cells(published, spec)}
    assert findings == {("A", "interval", 0, 3), ("B", "interval", 0, 3), ("C", "small", 3, 3)}


def test_audit_of_overlapping_parts_bounds_only_from_below() -> None:
    """With overlapping parts 46 - 43 = 3 bounds the hidden pair from below only: no leak."""
    published = pd.DataFrame({"unit": ["A", "B", "C", "cluster"],
                              "patients": pd.array([None, None, 43, 46], dtype="Int64")})
    exact = _units({"A": 0}, total="cluster")[1]
    overlapping = TableSpec(keys=("unit",), counts=("patients",),
                            margins=(Margin("unit", "cluster", overlapping="patients"),))
    assert {f.why for f in recoverable_cells(published, exact)} == {"interval"}
    assert recoverable_cells(published, overlapping) == []


def test_audit_finds_a_narrow_interval_that_takes_four_equations() -> None:
    """Rows 1 and 3 minus columns 0 and 2 give x02 - x13 = 129.7, so x01 + x03 <= 5: no single
    equation shows it (found by checking the audit against an independent LP solver)."""
    interior = np.array([
        [457.0, 0.7, 132.6, 1.4, 366.0],
        [381.2, 549.8, 300.2, 2.9, 325.0],
        [483.7, 8.6, 342.3, 103.0, 382.1],
        [175.1, 363.1, 6.5, 463.1, 861.0],
        [823.4, 5.9, 160.1, 9.6, 84.4],
    ])
    df, spec = _grid(interior)
    hidden = {"01", "02", "03", "10", "12", "13", "21", "23", "30", "32", "41", "43"}
    published = df.assign(patients=df.patients.mask((df.d0 + df.d1).isin(hidden)))
    narrow = {f.key["d0"] + f.key["d1"]: (round(f.low, 2), round(f.high, 2))
              for f in recoverable_cells(published, spec, DisclosurePolicy(threshold=10))}
    assert narrow["01"] == (0.0, 5.0) and narrow["03"] == (0.0, 5.0)
    assert narrow["02"] == (129.7, 134.7)
    assert set(narrow) == {"01", "02", "03", "13"}
    assert recoverable_cells(apply(df, spec, DisclosurePolicy(threshold=10)), spec,
                             DisclosurePolicy(threshold=10)) == []


def test_audit_finds_a_cell_solved_through_a_chain_of_equations() -> None:
    """Every row and column has two hidden cells, yet (0, 2) is solved: it is a bridge between
    two rectangles (sum rows 0-1, subtract columns 0-1: everything but (0, 2) cancels)."""
    interior = np.arange(16).reshape(4, 4) * 3 + 10
    df, spec = _grid(interior)
    hidden = {"00", "01", "10", "11", "22", "23", "32", "33", "02"}
    published = df.assign(patients=df.patients.astype("Int64").mask((df.d0 + df.d1).isin(hidden)))
    solved = [f for f in recoverable_cells(published, spec) if f.why == "determined"]
    assert [(f.key, f.low) for f in solved] == [({"d0": "0", "d1": "2"}, pytest.approx(16))]
    assert _solved_by_svd(published, spec.keys, "patients") == [solved[0].row]


def test_audit_checks_additive_ddd_without_an_interval() -> None:
    published = pd.DataFrame({"unit": ["A", "B", "cluster"],
                              "patients": pd.array([20, 20, 40], dtype="Int64"),
                              "ddd": pd.array([None, 1.5, 4.0], dtype="Float64")})
    spec = TableSpec(keys=("unit",), counts=("patients",),
                     derived=(Derived("ddd", on="patients", additive=True),),
                     margins=(Margin("unit", "cluster"),))
    [finding] = recoverable_cells(published, spec)
    assert (finding.column, finding.why, finding.low) == ("ddd", "determined", pytest.approx(2.5))


# --- the property tests: random tables, audited ------------------------------------------------


def _grid(interior: np.ndarray, listed: np.ndarray | None = None) -> tuple[pd.DataFrame, TableSpec]:
    """A table with every margin of an n-way array (totals labelled "all")."""
    arrays = {"patients": interior} if listed is None else {"patients": interior, "listed": listed}
    for name, array in arrays.items():
        for axis in range(array.ndim):
            array = np.concatenate([array, array.sum(axis=axis, keepdims=True)], axis=axis)
        arrays[name] = array
    keys = tuple(f"d{i}" for i in range(interior.ndim))
    labels = [[*map(str, range(n)), "all"] for n in interior.shape]
    df = pd.DataFrame(list(itertools.product(*labels)), columns=list(keys))
    for name, array in arrays.items():
        df[name] = array.reshape(-1)
    return df, TableSpec(keys=keys, counts=tuple(arrays),
                         margins=tuple(Margin(k, "all") for k in keys))


def _random_table(rng: np.random.Generator, threshold: int) -> tuple[pd.DataFrame, TableSpec]:
    shape = [(2,), (7,), (2, 2), (3, 3), (3, 5), (2, 3, 3), (3, 3, 3), (2, 2, 2, 3)][
        rng.integers(8)]
    patients = rng.integers(threshold, 6 * threshold, size=shape)
    small = rng.random(shape) < rng.uniform(0.05, 0.4)
    patients[small] = rng.integers(1, threshold, size=small.sum())
    patients[rng.random(shape) < 0.1] = 0
    listed = rng.uniform(50, 900, size=shape).round(1)
    listed[rng.random(shape) < 0.1] = rng.uniform(0.1, threshold)
    df, grid = _grid(patients, listed)
    df["ddd"] = df.patients * 36.5
    df["per_1000"] = df.patients / df.listed * 1000
    spec = TableSpec(keys=grid.keys, counts=grid.counts, margins=grid.margins, derived=(
        Derived("ddd", on="patients", additive=True),
        Derived("per_1000", on=("patients", "listed")),
    ))
    return df, spec


def _solved_by_svd(published: pd.DataFrame, keys: tuple[str, ...], column: str) -> list[int]:
    """Hidden cells the "all" margins solve, found independently of the module: the equations
    rebuilt with pandas, and a cell solved iff its unit vector projects fully onto the row space
    (an SVD, where the module uses row reduction)."""
    hidden = np.flatnonzero(published[column].isna())
    if not hidden.size:
        return []
    unknown = np.full(len(published), -1)
    unknown[hidden] = np.arange(hidden.size)
    rows = []
    for key in keys:
        sign = np.where(published[key].to_numpy() == "all", -1.0, 1.0)
        others = [k for k in keys if k != key]
        groups = published.groupby(others).indices.values() if others else [np.arange(len(sign))]
        for members in groups:
            members = members[unknown[members] >= 0]
            row = np.zeros(hidden.size)
            row[unknown[members]] = sign[members]
            rows.append(row)
    _, singular, vt = np.linalg.svd(np.array(rows), full_matrices=False)
    basis = vt[singular > 1e-9 * singular.max()] if singular.max() > 0 else vt[:0]
    return hidden[np.isclose((basis**2).sum(axis=0), 1.0)].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_random_tables_leak_nothing_after_apply(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        threshold = int(rng.choice([3, 5, 10]))
        policy = DisclosurePolicy(threshold=threshold)
        df, spec = _random_table(rng, threshold)
        out = apply(df, spec, policy)
        assert recoverable_cells(out, spec, policy) == [], df.to_string()
        for count in spec.counts:
            true = df[count].to_numpy(float)
            shown = out[count].to_numpy(float, na_value=np.nan)
            small = (true > 0) & (true < threshold)
            assert np.isnan(shown[small]).all()
            assert not ((shown > 0) & (shown < threshold)).any()
            assert np.array_equal(shown[~np.isnan(shown)], true[~np.isnan(shown)])
            assert np.array_equal(np.isnan(shown), out[f"{count}_suppressed"].to_numpy())
            if not small.any():
                assert not np.isnan(shown).any()
            assert _solved_by_svd(out, spec.keys, count) == []
        assert np.array_equal(out["ddd"].isna(), out["patients_suppressed"])
        either = out.patients_suppressed | out.listed_suppressed
        assert np.array_equal(out["per_1000"].isna(), either)


def _practices_by_sex(rng: np.random.Generator, threshold: int) -> tuple[pd.DataFrame, TableSpec]:
    """Practices x sex with the cluster's distinct patients: at most the sum, at least any part."""
    patients = rng.integers(threshold, 8 * threshold, size=(int(rng.integers(2, 9)), 2))
    small = rng.random(patients.shape) < rng.uniform(0.05, 0.4)
    patients[small] = rng.integers(1, threshold, size=small.sum())
    patients[rng.random(patients.shape) < 0.1] = 0
    spread = patients.sum(axis=0) - patients.max(axis=0)
    cluster = patients.sum(axis=0) - rng.integers(0, spread + 1)
    table = np.vstack([patients, cluster])
    table = np.column_stack([table, table.sum(axis=1)])
    units = [*(f"{i:06d}" for i in range(len(patients))), "cluster"]
    df = pd.DataFrame(list(itertools.product(units, ["F", "M", "all"])), columns=["unit", "sex"])
    df["patients"] = table.reshape(-1)
    return df, TableSpec(keys=("unit", "sex"), counts=("patients",), margins=(
        Margin("unit", "cluster", overlapping="patients"), Margin("sex", "all")))


@pytest.mark.parametrize("seed", range(2))
def test_random_cluster_tables_with_distinct_patients_leak_nothing(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for _ in range(60):
        threshold = int(rng.choice([3, 5, 10]))
        policy = DisclosurePolicy(threshold=threshold)
        df, spec = _practices_by_sex(rng, threshold)
        out = apply(df, spec, policy)
        assert recoverable_cells(out, spec, policy) == [], df.to_string()
        true = df["patients"].to_numpy()
        assert out["patients"][(true > 0) & (true < threshold)].isna().all()


# --- rounding ----------------------------------------------------------------------------------


def test_rounding_after_suppression_never_reads_as_zero_or_small() -> None:
    values = {"a": 0, "b": 3, "c": 5, "d": 6, "e": 7, "f": 8, "g": 12, "h": 13, "i": 14, "j": 15}
    df, spec = _units(values)
    five = apply(df, spec, DisclosurePolicy(rounding=5))["patients"].tolist()
    ten = apply(df, spec, DisclosurePolicy(rounding=10))["patients"].tolist()
    assert five == [0, pd.NA, 5, 5, 5, 10, 10, 15, 15, 15]
    assert ten == [0, pd.NA, 10, 10, 10, 10, 10, 10, 10, 20]


def test_rounding_keeps_the_suppression_pattern_and_leaves_derived_values() -> None:
    df, spec = _units({"A": 3, "B": 7, "C": 12, "cluster": 22}, total="cluster")
    df["listed"] = [500.0, 700.0, 900.0, 2100.0]
    df["per_1000"] = df.patients / df.listed * 1000
    spec = TableSpec(keys=spec.keys, counts=("patients", "listed"), margins=spec.margins,
                     derived=(Derived("per_1000", on=("patients", "listed")),))
    plain, rounded = apply(df, spec), apply(df, spec, DisclosurePolicy(rounding=10))
    assert rounded["patients"].isna().tolist() == plain["patients"].isna().tolist()
    assert rounded["patients"].tolist() == [pd.NA, pd.NA, 10, 20]
    assert rounded["listed"].tolist() == [500.0, 700.0, 900.0, 2100.0]
    pd.testing.assert_series_equal(rounded["per_1000"], plain["per_1000"])


def test_policy_rejects_meaningless_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        DisclosurePolicy(threshold=0)
    with pytest.raises(ValueError, match="rounding"):
        DisclosurePolicy(rounding=1)


# --- analyst mode and publishing mode ----------------------------------------------------------


def test_analyst_mode_shows_values_flags_and_reasons_in_a_session() -> None:
    df, spec = _units({"A": 3, "B": 7, "C": 12, "cluster": 22}, total="cluster")
    with analyst_mode():
        assert analyst_mode_active()
        out = apply(df, spec)
        with pytest.raises(DisclosureError, match="analyst mode"):
            require_safe()
    assert not analyst_mode_active()
    assert out["patients"].tolist() == [3, 7, 12, 22]
    assert out["patients_suppressed"].tolist() == [True, True, False, False]
    assert out["patients_suppression"].tolist() == ["primary", "secondary", pd.NA, pd.NA]
    require_safe()
    assert "patients_suppression" not in apply(df, spec).columns


def test_analyst_mode_is_refused_under_publishing() -> None:
    with publishing():
        assert publishing_active()
        with pytest.raises(DisclosureError, match=PUBLISHING_ENV), analyst_mode():
            pass
        with pytest.raises(DisclosureError):
            set_analyst_mode(True)
    assert not publishing_active()


def test_publishing_mode_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render and serve set it once; the kernels they start inherit it."""
    monkeypatch.setenv(PUBLISHING_ENV, "0")
    assert not publishing_active()
    set_analyst_mode(True)
    set_analyst_mode(False)
    monkeypatch.setenv(PUBLISHING_ENV, "yes")
    assert publishing_active()
    with pytest.raises(DisclosureError):
        set_analyst_mode(True)


def test_analyst_mode_switched_on_before_publishing_cannot_be_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    df, spec = _units({"A": 3, "B": 7})
    set_analyst_mode(True)
    with pytest.raises(DisclosureError, match="analyst mode"), publishing():
        pass
    monkeypatch.setenv(PUBLISHING_ENV, "1")
    with pytest.raises(DisclosureError, match="analyst mode"):
        apply(df, spec)


def test_child_processes_inherit_publishing_mode() -> None:
    probe = [sys.executable, "-c", f"import os; print(os.environ.get('{PUBLISHING_ENV}'))"]
    with publishing():
        inside = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    assert inside.strip() == "1"
    assert PUBLISHING_ENV not in os.environ


# --- person keys -------------------------------------------------------------------------------


def test_a_clean_published_table_passes_the_person_key_scan() -> None:
    df = pd.DataFrame({
        "practice_id": ["012345", "543210"], "period": ["2024Q1", "R12-2024-06"],
        "atc_code": ["N02AX02", "N05CF01"], "ddd": [1_234_567_890, 12],
    })
    scan_for_person_keys(df)


@pytest.mark.parametrize("table", [
    pd.DataFrame({"person_id": ["x"], "patients": [7]}),
    pd.DataFrame({"PNR": [1], "patients": [7]}),
    pd.DataFrame({"who": ["P000000123"], "patients": [7]}),
    pd.DataFrame({"who": pd.Series(["010190-1234"], dtype="category"), "patients": [7]}),
    pd.DataFrame({"who": ["note about 0101901234"], "patients": [7]}, dtype=object),
    pd.DataFrame({"patients": [7]}, index=pd.Index(["P123456789"], name="unit")),
    pd.DataFrame({"P123456789": [7]}),
])
def test_person_keys_are_found(table: pd.DataFrame) -> None:
    with pytest.raises(DisclosureError, match="person key"):
        scan_for_person_keys(table)


def test_the_scan_names_the_column_that_holds_a_key_among_clean_and_missing_values() -> None:
    # the scan searches all text at once first, then column by column to name the culprit
    df = pd.DataFrame({
        "unit": pd.Series(["A", None, "B"], dtype=object),
        "note": pd.Series([None, "x", "see 010190-1234"], dtype="string"),
        "patients": [7, 8, 9],
    })
    with pytest.raises(DisclosureError) as raised:
        scan_for_person_keys(df)
    assert "'note' holds values" in str(raised.value)
    assert "'unit'" not in str(raised.value)
    # keys can't span two values: "P12345" + "6789" are two cells, not one key
    scan_for_person_keys(pd.DataFrame({"a": ["P12345", "6789"], "b": ["0101", "901234"]}))


# --- bad input ---------------------------------------------------------------------------------


def test_every_column_must_be_declared() -> None:
    df, spec = _units({"A": 10})
    with pytest.raises(ValueError, match=r"undeclared \['rate'\]"):
        apply(df.assign(rate=1.0), spec)
    with pytest.raises(ValueError, match=r"missing \['patients'\]"):
        apply(df.drop(columns="patients"), spec)


@pytest.mark.parametrize("patients, message", [
    ([-1, 5], "missing or negative"), ([None, 5], "missing or negative"),
    (["7", "8"], "not numeric"),
])
def test_counts_must_be_complete_nonnegative_numbers(patients: list, message: str) -> None:
    df = pd.DataFrame({"unit": ["A", "B"], "patients": patients})
    with pytest.raises(ValueError, match=f"'patients'.*{message}|{message}.*'patients'"):
        apply(df, TableSpec(keys=("unit",), counts=("patients",)))


def test_a_misspelt_total_is_refused() -> None:
    df, spec = _units({"A": 3, "B": 7, "All": 10}, total="all")
    with pytest.raises(ValueError, match="no row holds the total 'all'"):
        apply(df, spec)


def test_keys_must_identify_rows() -> None:
    df = pd.DataFrame({"unit": ["A", "A"], "patients": [5, 6]})
    with pytest.raises(ValueError, match="uniquely"):
        apply(df, TableSpec(keys=("unit",), counts=("patients",)))
    # missing keys are equal to each other, whichever kind of missing they are
    df = pd.DataFrame({"unit": pd.Series([None, np.nan], dtype=object), "patients": [5, 6]})
    with pytest.raises(ValueError, match="uniquely"):
        apply(df, TableSpec(keys=("unit",), counts=("patients",)))


def test_a_column_named_twice_is_refused() -> None:
    df = pd.DataFrame([["A", 5, 6]], columns=["unit", "patients", "patients"])
    with pytest.raises(ValueError, match="more than once"):
        apply(df, TableSpec(keys=("unit",), counts=("patients",)))


@pytest.mark.parametrize("kwargs, message", [
    ({"derived": (Derived("rate", on="listed"),)}, "built on declared counts"),
    ({"margins": (Margin("sex", "all"),)}, "not a key column"),
    ({"labels": ("patients",)}, "more than one role"),
    ({"derived": (Derived("share", on="patients", share_of={"sex": "all"}),)}, "key columns"),
    ({"margins": (Margin("unit", "all", overlapping="ddd"),)}, "are not counts"),
])
def test_inconsistent_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TableSpec(keys=("unit",), counts=("patients",), **kwargs)


def test_input_is_untouched_and_the_index_kept() -> None:
    df, spec = _units({"A": 3, "B": 7, "cluster": 10}, total="cluster")
    df.index = pd.Index([10, 20, 30])
    before = df.copy()
    out = apply(df, spec)
    pd.testing.assert_frame_equal(df, before)
    assert out.index.tolist() == [10, 20, 30]
    out.loc[20, "patients"] = 7  # B shown: A = 10 - 7
    assert [f.row for f in recoverable_cells(out, spec)] == [10]


def test_the_audit_knows_an_unbounded_total_from_an_infeasible_one() -> None:
    """A hidden total of 7 hidden drugs, each at most the total (patients on two drugs), the total
    at least 12 and at most 12 above the drugs' sum: nothing is narrow — the total and the drugs
    grow without bound. HiGHS's presolve calls maximising the total infeasible (found on a
    practice's drugs table once the store decided its total); the audit must not fail on it."""
    from workbench.disclosure import _narrow

    drugs = [0, 1, 2, 3, 4, 5, 7]
    rows = [(np.array([*drugs, 24]), np.array([-1.0] * 7 + [1.0]), 12.0, True),
            *[(np.array([d, 24]), np.array([1.0, -1.0]), -0.0, True) for d in drugs],
            (np.array([24]), np.array([-1.0]), -12.0, True)]
    assert _narrow(rows, 5) == []
