"""The comparisons pages show, worked out once for every unit: standardised ratios in their
funnels, and the deciles of the practices.

**Standardised O/E** (:mod:`workbench.analysis.standardise`): a unit's expected patients (or DDD)
are its listed persons per stratum (age group × sex) times the nation's rate in that stratum;
observed are its patients (DDD) of persons the persons register knows; the variance of DDD is the
sum of the persons' net DDD squared. Per level, period and selection this is a small matrix
product (units × strata by strata × selections), done in NumPy a period at a time.

**Funnels** (:mod:`workbench.analysis.funnel`): each level, selection, period and basis is one
peer set whose fit (target, κ, φ, τ²) needs every unit of the level: stored in ``funnels``, with
the range of the units' exposures (the limit lines a page draws span it). A unit's ratio, its
exact interval, z and flags are arithmetic on its own row and the fit
(:func:`judge`, which the reader calls on the slice it reads).

**Deciles** of the practices' *published* values (a value a page would hide, built on 1–4
persons, is no point of a decile) per selection, period and measure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from workbench.analysis.funnel import LEVELS as COVERAGES
from workbench.analysis.funnel import Fit, fit_many, limits, within_se
from workbench.analysis.standardise import garwood, scaled_interval
from workbench.engine.peers import DECILES

FUNNEL_LEVELS = ("practice", "cluster", "region", "municipality")
BASES = ("patients", "ddd")
RATE_MEASURES = ("patients_per_1000", "ddd_per_1000", "ddd_per_1000_per_day", "patients")
THRESHOLD = 5  # the disclosure policy's default: a count of 1–4 persons is hidden
STANDARDISED = ["level", "sel", "period", "unit_id", "patients", "listed", "observed_patients",
                "expected_patients", "observed_ddd", "expected_ddd", "variance_ddd"]
FUNNELS = ["level", "sel", "period", "basis", "target", "kappa", "phi", "tau2", "adjustment",
           "units", "min_exposure", "max_exposure"]


def _known(cells: ir.Table) -> ir.Table:
    """Per unit, selection, period and stratum: the figures of known persons."""
    known = cells.filter(cells.sex.notnull())
    return known.group_by("level", "sel", "period", "unit_id", "sex", "age_group").aggregate(
        patients=known.patients.sum(), ddd=known.ddd.sum(), ddd_sq=known.ddd_sq.sum())


def standardise_period(strata: pd.DataFrame, listed: pd.DataFrame, units: Sequence[str],
                       level: str, period: str, selections: Sequence[str]) -> pd.DataFrame:
    """The :data:`STANDARDISED` rows of every unit of ``level`` and every selection (0
    observed and expected where nobody in the nation had it): ``strata`` are the known-person
    figures of the level's units and the nation's (``unit_id`` ``DK`` at level ``nation``),
    ``listed`` the known persons' listed per stratum of the level's units and the nation's."""
    mine = strata[strata["level"].to_numpy() == level]
    nation = strata[strata["level"].to_numpy() == "nation"]
    own_listed = listed[listed["level"].to_numpy() == level]
    ref_listed = listed[listed["level"].to_numpy() == "nation"]
    sels = pd.Index(sorted(selections))
    unit_pos = pd.Index(list(units))
    if not len(sels) or not len(unit_pos):
        return pd.DataFrame(columns=STANDARDISED)
    stratum = pd.Index(sorted({*_strata(ref_listed), *_strata(own_listed), *_strata(nation)}))
    lmat = _dense(unit_pos.get_indexer(own_listed["unit_id"]),
                  stratum.get_indexer(_strata(own_listed)), own_listed["listed"],
                  (len(unit_pos), len(stratum)))
    ref_l = _dense(np.zeros(len(ref_listed), int), stratum.get_indexer(_strata(ref_listed)),
                   ref_listed["listed"], (1, len(stratum)))[0]
    n_rows, n_cols = sels.get_indexer(nation["sel"]), stratum.get_indexer(_strata(nation))
    expected = {}
    for basis in BASES:
        ref = _dense(n_rows, n_cols, nation[basis], (len(sels), len(stratum)))
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(ref_l > 0, ref / ref_l, 0.0)
        expected[basis] = (lmat @ rate.T).ravel()  # units × sels
    where = (unit_pos.get_indexer(mine["unit_id"]), sels.get_indexer(mine["sel"]))
    shape = (len(unit_pos), len(sels))
    totals = {c: _dense(*where, mine[c], shape).ravel() for c in ("patients", "ddd", "ddd_sq")}
    out = pd.DataFrame({
        "level": level, "sel": np.tile(sels.to_numpy(), len(unit_pos)),
        "period": period, "unit_id": np.repeat(unit_pos.to_numpy(), len(sels)),
        "patients": totals["patients"].astype("int64"),
        "listed": np.repeat(lmat.sum(axis=1), len(sels)),
        "observed_patients": totals["patients"],
        "expected_patients": expected["patients"],
        "observed_ddd": totals["ddd"],
        "expected_ddd": expected["ddd"],
        "variance_ddd": totals["ddd_sq"],
    })
    return out[STANDARDISED]


def _strata(frame: pd.DataFrame) -> np.ndarray:
    """Each row's stratum as one text key (sex and age group): the ``stratum`` column the
    caller added once for a chunk of periods, or made here."""
    if "stratum" in frame.columns:
        return frame["stratum"].to_numpy()
    return with_stratum(frame)["stratum"].to_numpy()


def with_stratum(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(stratum=frame["sex"].astype(str) + "|" + frame["age_group"].astype(str))


def _dense(rows: np.ndarray, cols: np.ndarray, values: pd.Series | np.ndarray,
           shape: tuple[int, int]) -> np.ndarray:
    """Values summed into a dense matrix (rows or columns at -1 are left out)."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    ok = (rows >= 0) & (cols >= 0)
    flat = np.bincount(rows[ok] * shape[1] + cols[ok],
                       weights=np.asarray(values, dtype=float)[ok],
                       minlength=shape[0] * shape[1])
    return flat.reshape(shape)


def funnel_fits(table: pd.DataFrame) -> pd.DataFrame:
    """The :data:`FUNNELS` rows of every level, selection, period and basis of a standardised
    table: the analysis' additive fit (:func:`workbench.analysis.funnel.fit_many`, the same as
    :func:`~workbench.analysis.funnel.funnel_table` fits each set)."""
    peers = ["level", "sel", "period"]
    parts = []
    for basis in BASES:
        frame = table.assign(_v=table["observed_patients"] if basis == "patients"
                             else table["variance_ddd"])
        fitted = fit_many(frame, peers, observed=f"observed_{basis}",
                          exposure=f"expected_{basis}", variance="_v")
        exposure = frame[f"expected_{basis}"].where(frame[f"expected_{basis}"] > 0)
        spread = frame.assign(_e=exposure).groupby(peers, sort=False)["_e"].agg(["min", "max"])
        spread = spread.rename(columns={"min": "min_exposure", "max": "max_exposure"})
        fitted = fitted.merge(spread.reset_index(), on=peers, how="left")
        parts.append(fitted.assign(basis=basis))
    return pd.concat(parts, ignore_index=True)[FUNNELS]


def as_fit(row: pd.Series | dict) -> Fit:
    return Fit(float(row["target"]), float(row["kappa"]), float(row["phi"]),
               float(row["tau2"]), str(row["adjustment"]), int(row["units"]))


def judge(rows: pd.DataFrame, fitted: Fit, basis: str) -> pd.DataFrame:
    """A funnel's columns for the units of ``rows`` (standardised rows of one peer set) under
    its fit: ``observed, expected, variance, value`` (the ratio), its exact interval
    ``ratio_lower, ratio_upper``, ``target, z``, the limits and ``flag_95``/``flag_998``
    (``high``/``low``/None), as :func:`workbench.analysis.funnel.funnel_table` and the pages'
    intervals give them."""
    o = rows[f"observed_{basis}"].to_numpy(float)
    e = rows[f"expected_{basis}"].to_numpy(float)
    v = o if basis == "patients" else rows["variance_ddd"].to_numpy(float)
    out = rows.drop(columns=[c for c in rows.columns if c.endswith(("_patients", "_ddd"))])
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(e > 0, o / e, np.nan)
        s = within_se(fitted.target, e, "poisson", fitted.kappa)
        if fitted.adjustment == "additive":
            s = np.sqrt(s**2 + fitted.tau2)
        elif fitted.adjustment == "multiplicative":
            s = s * np.sqrt(fitted.phi)
        z = (y - fitted.target) / s
        lower, upper = garwood(o) if basis == "patients" else scaled_interval(o, v)
        out = out.assign(observed=o, expected=e, variance=v, value=y,
                         ratio_lower=np.where(e > 0, lower / e, np.nan),
                         ratio_upper=np.where(e > 0, upper / e, np.nan),
                         target=fitted.target, z=z)
    for name, coverage in COVERAGES.items():
        low, high = limits(fitted, e, coverage, "poisson")
        out[f"lower_{name}"] = low
        out[f"upper_{name}"] = high
        flag = np.where(y > high, "high", np.where(y < low, "low", None))
        out[f"flag_{name}"] = pd.Series(flag, index=out.index, dtype="object")
    return out


def contour_lines(fitted: Fit, min_exposure: float, max_exposure: float,
                  points: int = 100) -> pd.DataFrame:
    """The limit lines to draw (as :func:`workbench.analysis.funnel.contours`)."""
    columns = ["exposure", "target", *(f"{b}_{n}" for n in COVERAGES for b in ("lower", "upper"))]
    if np.isnan(fitted.target) or not np.isfinite(max_exposure):
        return pd.DataFrame(columns=columns)
    grid = np.geomspace(max(min_exposure * 0.8, 1e-9), max_exposure * 1.2, points)
    lines = pd.DataFrame({"exposure": grid, "target": fitted.target})
    for name, coverage in COVERAGES.items():
        low, high = limits(fitted, grid, coverage, "poisson")
        lines[f"lower_{name}"] = low
        lines[f"upper_{name}"] = high
    return lines[columns]


def period_deciles(totals: pd.DataFrame, listed: pd.DataFrame, units: Sequence[str],
                   period: str, days: int) -> pd.DataFrame:
    """``(sel, period, measure, units, decile_10 … decile_90)`` of the practices' published
    values in one period: every practice of the nation is a point (0 without a patient)
    unless a page would hide its value (1–4 patients or 1–4 listed persons), and a rate needs
    listed persons. Deciles interpolate linearly, as :func:`workbench.engine.peers.deciles`."""
    unit_pos = pd.Index(list(units))
    sels = sorted(set(totals["sel"]))
    if not sels or not len(unit_pos):
        return pd.DataFrame(columns=DECILE_COLUMNS)
    sel_pos = pd.Index(sels)
    where = (sel_pos.get_indexer(totals["sel"]), unit_pos.get_indexer(totals["unit_id"]))
    shape = (len(sel_pos), len(unit_pos))
    figures = {c: _dense(*where, totals[c], shape).ravel() for c in ("patients", "ddd")}
    n = listed.groupby("unit_id")["listed"].sum().reindex(unit_pos, fill_value=0.0)
    n = np.tile(n.to_numpy(float), len(sels))
    patients = figures["patients"]
    ddd = figures["ddd"]
    hidden = ((patients > 0) & (patients < THRESHOLD)) | ((n > 0) & (n < THRESHOLD))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_ok = (n > 0) & ~hidden
        values = {
            "patients_per_1000": np.where(rate_ok, patients / n * 1000, np.nan),
            "ddd_per_1000": np.where(rate_ok, ddd / n * 1000, np.nan),
            "ddd_per_1000_per_day": np.where(rate_ok, ddd / n * 1000 / days, np.nan),
            "patients": np.where(hidden, np.nan, patients),
        }
    rows = []
    for measure, value in values.items():
        matrix = value.reshape(len(sels), len(unit_pos))
        counts = np.isfinite(matrix).sum(axis=1)
        found = _row_quantiles(matrix, [d / 100 for d in DECILES])
        for i, sel in enumerate(sels):
            rows.append((sel, period, measure, int(counts[i]),
                         *(float(v) if counts[i] else np.nan for v in found[:, i])))
    return pd.DataFrame(rows, columns=DECILE_COLUMNS)


def _row_quantiles(matrix: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.nanquantile(matrix, qs, axis=1)`` (linear interpolation) without a Python loop
    over rows: each row sorted once, NaN last; rows without a value give NaN."""
    ordered = np.sort(matrix, axis=1)
    counts = np.isfinite(matrix).sum(axis=1)
    out = np.full((len(qs), matrix.shape[0]), np.nan)
    have = counts > 0
    for i, q in enumerate(qs):
        pos = q * (counts[have] - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, counts[have] - 1)
        rows = ordered[have]
        a = np.take_along_axis(rows, lo[:, None], axis=1)[:, 0]
        b = np.take_along_axis(rows, hi[:, None], axis=1)[:, 0]
        out[i, have] = a + (b - a) * (pos - lo)
    return out


DECILE_COLUMNS = ["sel", "period", "measure", "units", *(f"decile_{d}" for d in DECILES)]


Put = Callable[[str, ir.Table], ir.Table]


def build_comparisons(cells: ir.Table, listed: ir.Table, units: ir.Table, periods: ir.Table,
                      selections: ir.Table, put: Put, insert: Callable[[str, ir.Table], None],
                      say: Callable[[str], None] = lambda _: None) -> dict[str, ir.Table]:
    """``standardised``, ``funnels`` and ``deciles`` for every period (one read of the
    period's strata and listed persons each, appended period by period)."""
    levels = list(FUNNEL_LEVELS)
    unit_lists = units.to_pyarrow().to_pandas().groupby("level")["unit_id"].apply(
        lambda ids: sorted(ids)).to_dict()
    strata_all = _known(cells.filter(cells.level.isin([*levels, "nation"])))
    practice_totals = cells.filter(cells.level == "practice")
    labels = periods.select("period", "days").to_pyarrow().to_pylist()
    every = selections.select("sel").to_pyarrow().column(0).to_pylist()
    written: dict[str, ir.Table] = {}

    def write(name: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        table = ibis.memtable(frame)
        if name in written:
            insert(f"scratch_{name}", table)
        else:
            written[name] = put(f"scratch_{name}", table)

    size = 8  # periods read at once: a national period is ~1.5 M stratum rows
    for first in range(0, len(labels), size):
        chunk = labels[first:first + size]
        names = [row["period"] for row in chunk]
        strata = strata_all.filter(strata_all.period.isin(names)).to_pyarrow().to_pandas()
        strata = with_stratum(strata)
        persons = listed.filter(listed.period.isin(names) & listed.sex.notnull())
        persons = with_stratum(persons.to_pyarrow().to_pandas())
        by_period = dict(tuple(strata.groupby("period", sort=False)))
        listed_by_period = dict(tuple(persons.groupby("period", sort=False)))
        here = practice_totals.filter(practice_totals.period.isin(names))
        totals = here.group_by("period", "sel", "unit_id").aggregate(
            patients=here.patients.sum(), ddd=here.ddd.sum()).to_pyarrow().to_pandas()
        everyone = listed.filter(listed.period.isin(names) & (listed.level == "practice"))
        everyone = everyone.to_pyarrow().to_pandas()
        judged, band = [], []
        for row in chunk:
            period, days = row["period"], int(row["days"])
            mine = by_period.get(period, strata.iloc[:0])
            theirs = listed_by_period.get(period, persons.iloc[:0])
            judged += [standardise_period(mine, theirs, unit_lists.get(level, []), level,
                                          period, every) for level in levels]
            band.append(period_deciles(totals[totals["period"] == period],
                                       everyone[everyone["period"] == period],
                                       unit_lists.get("practice", []), period, days))
        standardised = pd.concat([p for p in judged if not p.empty] or judged[:1],
                                 ignore_index=True)
        write("standardised", standardised)
        write("funnels", funnel_fits(standardised))
        write("deciles", pd.concat(band, ignore_index=True))
        say(f"answers: comparisons, {min(first + size, len(labels))} of {len(labels)} periods")
    order = {"standardised": ["level", "sel", "period", "unit_id"],
             "funnels": ["level", "sel", "period", "basis"],
             "deciles": ["sel", "period", "measure"]}
    return {name: put(name, table.order_by(order[name])) for name, table in written.items()}
