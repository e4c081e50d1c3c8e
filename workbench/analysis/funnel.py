"""Funnel plots: which units are further from the reference than chance allows?

A small practice always looks extreme by chance; a funnel plot draws each unit's indicator against
its size (the precision) with control limits that narrow as units grow, so only units beyond the
limits are "special-cause" (Spiegelhalter, *Funnel plots for comparing institutional performance*,
Stat Med 2005;24:1185–1202, and *Handling over-dispersion of performance indicators*, Qual Saf
Health Care 2005;14:347–351).

For each peer set (a period and group, or a risk) among the *reference* units (e.g. the nation's
practices; by default the units shown):

* **target** θ₀ = Σ observed / Σ exposure — the level's overall ratio of sums (patients per
  listed person for a rate; 1-ish for an observed/expected ratio, where the exposure is E);
* **within-unit spread** s_i: Poisson, ``s_i² = κ·θ₀/D_i`` (``κ = 1`` for counts; for DDD,
  ``κ = ΣV/ΣO`` with ``V`` each unit's Σ persons' DDD², the compound Poisson scale); binomial for
  proportions, ``s_i² = θ₀(1−θ₀)/D_i``;
* **overdispersion**: z-scores ``z_i = (y_i − θ₀)/s_i`` winsorised at their 10th and 90th
  percentiles (so the outliers being looked for don't set the limits), ``φ = Σ z_w² / I``;
* **adjustment** (``method``):

  - ``"additive"`` (default): a random-effects variance τ² (DerSimonian–Laird)
    ``τ² = (Iφ − (I − 1)) / (Σw − Σw²/Σw)``, ``w = 1/s²``, when ``Iφ > I − 1``; limits
    ``θ₀ ± z_p·sqrt(s_i² + τ²)``;
  - ``"multiplicative"``: when ``φ > 1``, limits ``θ₀ ± z_p·sqrt(φ)·s_i``;
  - ``"none"``.

  Additive is the default because practices really do differ (list profiles, local services)
  and that difference does not shrink with list size: with a multiplicative φ the limits still
  close in on the target for large practices, so the largest practices get flagged for the same
  relative difference a small one is forgiven. The additive model gives every unit the same
  between-unit allowance, which is what the NHS Summary Hospital-level Mortality Indicator and
  the Care Quality Commission's funnels do.
* **limits** at 95 % (z = 1.96) and 99.8 % (z = 3.09): without adjustment, exact Poisson or
  binomial limits with Spiegelhalter's interpolation (``(r_p − α)/D``, ``α`` the share of the
  probability mass at the quantile ``r_p`` beyond ``p``); with adjustment, normal limits;
* **flags**: ``high`` or ``low`` beyond each pair of limits; ``z`` is the adjusted z-score.

Everything here works on the small table of units (pandas at the edge); the session helper
:func:`funnel` asks the engine for the figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats

from workbench.analysis.standardise import NATION, ddd_moments, standardised
from workbench.engine import Workbench
from workbench.engine.units import unit_map

LEVELS = {"95": 0.95, "998": 0.998}  # two-sided coverage of the control limits
Kind = Literal["poisson", "binomial"]
Method = Literal["additive", "multiplicative", "none"]
INDICATORS = ("patients_per_1000", "ddd_per_1000", "standardised_patients", "standardised_ddd")


@dataclass(frozen=True)
class Fit:
    """The reference's funnel for one peer set: target, spread scale and overdispersion."""

    target: float
    kappa: float  # within-unit variance scale (1 for counts)
    phi: float  # winsorised dispersion ratio
    tau2: float  # additive between-unit variance (0 unless used)
    adjustment: str  # "none", "multiplicative" or "additive"
    units: int  # reference units with an exposure


def within_se(target: float, exposure: Any, kind: Kind, kappa: float = 1.0) -> np.ndarray:
    """The within-unit standard error of the indicator at the target (null for no exposure)."""
    d = np.asarray(exposure, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = target * (1 - target) / d if kind == "binomial" else kappa * target / d
    return np.where(d > 0, np.sqrt(var), np.nan)


def fit(
    observed: Any,
    exposure: Any,
    *,
    kind: Kind = "poisson",
    variance: Any = None,
    method: Method = "additive",
    trim: float = 0.1,
) -> Fit:
    """Target, κ, φ and τ² from the reference units' ``observed`` and ``exposure``.

    >>> f = fit([10, 20, 30, 80], [100, 100, 100, 100], method="additive")
    >>> round(f.target, 3), f.adjustment
    (0.35, 'additive')
    """
    o = np.asarray(observed, dtype=float)
    d = np.asarray(exposure, dtype=float)
    keep = d > 0
    o, d = o[keep], d[keep]
    units = len(o)
    if units == 0 or d.sum() <= 0:
        return Fit(np.nan, 1.0, np.nan, 0.0, "none", 0)
    target = float(o.sum() / d.sum())
    kappa = 1.0
    if variance is not None:
        v = np.asarray(variance, dtype=float)[keep]
        kappa = float(v.sum() / o.sum()) if o.sum() > 0 and v.sum() > 0 else 1.0
    s = within_se(target, d, kind, kappa)
    if units < 2 or not np.all(s > 0):
        return Fit(target, kappa, np.nan, 0.0, "none", units)
    z = (o / d - target) / s
    low, high = np.quantile(z, [trim, 1 - trim])
    phi = float(np.mean(np.clip(z, low, high) ** 2))
    if method == "additive":
        w = 1 / s**2
        tau2 = (units * phi - (units - 1)) / (w.sum() - (w**2).sum() / w.sum())
        if units * phi > units - 1 and tau2 > 0:
            return Fit(target, kappa, phi, float(tau2), "additive", units)
    elif method == "multiplicative" and phi > 1:
        return Fit(target, kappa, phi, 0.0, "multiplicative", units)
    elif method not in ("additive", "multiplicative", "none"):
        raise ValueError(f"method must be additive, multiplicative or none, not {method!r}")
    return Fit(target, kappa, phi, 0.0, "none", units)


def fit_many(
    frame: pd.DataFrame,
    peers: Sequence[str],
    *,
    observed: str,
    exposure: str,
    variance: str | None = None,
    trim: float = 0.1,
) -> pd.DataFrame:
    """:func:`fit` (Poisson, additive) of every peer set of ``frame`` at once: one row per
    combination of ``peers`` with ``target, kappa, phi, tau2, adjustment, units``. The same
    numbers as calling :func:`fit` on each set, without a Python loop over thousands of sets.
    """
    keep = frame[frame[exposure].to_numpy(float) > 0]
    o = keep[observed].to_numpy(float)
    d = keep[exposure].to_numpy(float)
    v = keep[variance].to_numpy(float) if variance is not None else None
    key = [keep[p].to_numpy() for p in peers]
    rows = pd.DataFrame({"_o": o, "_d": d, **({"_v": v} if v is not None else {})})
    for name, values in zip(peers, key, strict=True):
        rows[name] = values
    grouped = rows.groupby(list(peers), sort=False)
    sums = grouped[["_o", "_d", *(["_v"] if v is not None else [])]].sum()
    sums["units"] = grouped.size()
    every = frame[list(peers)].drop_duplicates()
    out = every.merge(sums.reset_index(), on=list(peers), how="left")
    out["units"] = out["units"].fillna(0).astype(int)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["target"] = np.where(out["units"] > 0, out["_o"] / out["_d"], np.nan)
        if v is not None:
            ok = (out["_o"] > 0) & (out["_v"] > 0)
            out["kappa"] = np.where(ok, out["_v"] / out["_o"], 1.0)
        else:
            out["kappa"] = 1.0
    out.loc[out["units"] == 0, "kappa"] = 1.0
    # each unit's z under its set's target, then the set's winsorised dispersion
    at = rows.merge(out[[*peers, "target", "kappa", "units"]], on=list(peers), how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(at["kappa"].to_numpy(float) * at["target"].to_numpy(float)
                    / at["_d"].to_numpy(float))
        at["_s"] = s
        at["_z"] = (at["_o"].to_numpy(float) / at["_d"].to_numpy(float)
                    - at["target"].to_numpy(float)) / s
        at["_w"] = 1 / s**2
    at["_bad"] = ~(at["_s"] > 0)
    by = at.groupby(list(peers), sort=False)
    bad = by["_bad"].any()
    low = by["_z"].quantile(trim)
    high = by["_z"].quantile(1 - trim)
    at = at.merge(pd.DataFrame({"_low": low, "_high": high}).reset_index(), on=list(peers))
    at["_z2"] = np.clip(at["_z"].to_numpy(float), at["_low"].to_numpy(float),
                        at["_high"].to_numpy(float)) ** 2
    at["_w2"] = at["_w"] ** 2
    by = at.groupby(list(peers), sort=False)
    stats_ = pd.DataFrame({"_phi": by["_z2"].mean(), "_sw": by["_w"].sum(),
                           "_sw2": by["_w2"].sum(), "_bad": bad}).reset_index()
    out = out.merge(stats_, on=list(peers), how="left")
    units = out["units"].to_numpy(float)
    usable = (units >= 2) & ~out["_bad"].fillna(True).to_numpy(bool)
    phi = np.where(usable, out["_phi"].to_numpy(float), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau2 = (units * phi - (units - 1)) / (out["_sw"] - out["_sw2"] / out["_sw"]).to_numpy(
            float)
    additive = usable & (units * phi > units - 1) & (tau2 > 0)
    out["phi"] = phi
    out["tau2"] = np.where(additive, tau2, 0.0)
    out["adjustment"] = np.where(additive, "additive", "none")
    return out[[*peers, "target", "kappa", "phi", "tau2", "adjustment", "units"]]


def funnel_rows(
    frame: pd.DataFrame,
    peers: Sequence[str],
    *,
    observed: str,
    exposure: str,
    per: float = 1.0,
    variance: str | None = None,
) -> pd.DataFrame:
    """:func:`funnel_table` (Poisson, additive) of many peer sets at once, as a frame: the same
    columns and values, each set's fit from :func:`fit_many` and every unit's limits computed
    for all rows together instead of a loop over the sets."""
    fits = fit_many(frame, peers, observed=observed, exposure=exposure, variance=variance)
    out = frame.merge(fits, on=list(peers), how="left")
    o = out[observed].to_numpy(float)
    d = out[exposure].to_numpy(float)
    target = out["target"].to_numpy(float)
    kappa = out["kappa"].to_numpy(float)
    tau2 = out["tau2"].to_numpy(float)
    additive = (out["adjustment"] == "additive").to_numpy(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(d > 0, o / d, np.nan)
        s = np.where(d > 0, np.sqrt(kappa * target / d), np.nan)
        spread = np.where(additive, np.sqrt(s**2 + tau2), s)
        z = (y - target) / spread
    out["value"] = y * per
    out["target"] = target * per
    out["z"] = z
    ok = d > 0
    safe = np.where(ok, d, 1.0)
    for name, coverage in LEVELS.items():
        p_low, p_high = (1 - coverage) / 2, 1 - (1 - coverage) / 2
        normal = stats.norm.ppf(p_high)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_safe = np.sqrt(kappa * target / safe)
            adjusted = np.sqrt(s_safe**2 + tau2)
            lower = np.where(additive, target - normal * adjusted,
                             _exact_many(target, kappa, safe, p_low))
            upper = np.where(additive, target + normal * adjusted,
                             _exact_many(target, kappa, safe, p_high))
        lower = np.where(ok, np.maximum(lower, 0.0), np.nan)
        upper = np.where(ok, np.maximum(upper, 0.0), np.nan)
        out[f"lower_{name}"] = lower * per
        out[f"upper_{name}"] = upper * per
        flag = np.where(y > upper, "high", np.where(y < lower, "low", None))
        out[f"flag_{name}"] = pd.Series(flag, index=out.index, dtype="object")
    columns = [*frame.columns, *_ADDED]
    return out.drop(columns=["kappa", "units"])[columns]


def _exact_many(target: np.ndarray, kappa: np.ndarray, d: np.ndarray, p: float) -> np.ndarray:
    """:func:`_exact` (Poisson) for rows of different fits."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = d / kappa
        mu = np.nan_to_num(target * scale, nan=0.0)
        r = stats.poisson.ppf(p, mu)
        at, below = stats.poisson.cdf(r, mu), stats.poisson.cdf(r - 1, mu)
        alpha = np.where(at > below, (at - p) / (at - below), 0.0)
        found = (r - alpha) / scale
    return np.where(np.isnan(target), np.nan, found)


def limits(
    f: Fit, exposure: Any, coverage: float, kind: Kind = "poisson"
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` control limits of the indicator (per unit of exposure) at ``coverage``
    for units of the given exposures, under fit ``f`` (see the module doc)."""
    d = np.asarray(exposure, dtype=float)
    p_low, p_high = (1 - coverage) / 2, 1 - (1 - coverage) / 2
    ok = d > 0
    safe = np.where(ok, d, 1.0)
    s = within_se(f.target, safe, kind, f.kappa)
    if f.adjustment != "none":
        spread = np.sqrt(s**2 + f.tau2) if f.adjustment == "additive" else s * np.sqrt(f.phi)
        z = stats.norm.ppf(p_high)
        lower, upper = f.target - z * spread, f.target + z * spread
    else:
        lower, upper = (_exact(f, safe, p, kind) for p in (p_low, p_high))
    # A rate can't go below 0 (nor a share above 1); the interpolated exact limit does at small
    # expected counts, and at a target of 0 it would put the upper limit below 0 and flag
    # every unit "high".
    lower, upper = np.maximum(lower, 0.0), np.maximum(upper, 0.0)
    if kind == "binomial":
        upper = np.minimum(upper, 1.0)
    return np.where(ok, lower, np.nan), np.where(ok, upper, np.nan)


def _exact(f: Fit, d: np.ndarray, p: float, kind: Kind) -> np.ndarray:
    """Spiegelhalter's interpolated exact limit ``(r_p − α)/ρ`` for the p-quantile."""
    if kind == "binomial":
        n = np.rint(d)
        dist = stats.binom(n, f.target)
        scale = n
    else:
        scale = d / f.kappa  # effective number of counts per unit of indicator
        dist = stats.poisson(f.target * scale)
    r = dist.ppf(p)
    at, below = dist.cdf(r), dist.cdf(r - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(at > below, (at - p) / (at - below), 0.0)
    return (r - alpha) / scale


def funnel_table(
    table: ir.Table | pd.DataFrame,
    *,
    observed: str,
    exposure: str,
    kind: Kind = "poisson",
    per: float = 1.0,
    peers: Sequence[str] = ("period", "group"),
    reference: str | None = None,
    variance: str | None = None,
    method: Method = "additive",
    trim: float = 0.1,
) -> ir.Table:
    """Each unit's indicator ``observed / exposure × per`` with its funnel, per peer set.

    ``reference``: a boolean column marking the units that set target and overdispersion
    (default: all rows). ``variance``: a column of per-unit variance of ``observed`` (compound
    Poisson DDD). Adds ``value, target, z, lower_95, upper_95, lower_998, upper_998, flag_95,
    flag_998, phi, tau2, adjustment`` (limits and target on the ``per`` scale).
    """
    df = table.to_pandas() if isinstance(table, ir.Table) else table.copy()
    parts = []
    for _, rows in df.groupby(list(peers), sort=True, dropna=False):
        parts.append(_fit_rows(rows, observed, exposure, kind, per, reference, variance,
                               method, trim))
    columns = [*df.columns, *_ADDED]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return ibis.memtable(out[columns])


_ADDED = ["value", "target", "z", "lower_95", "upper_95", "lower_998", "upper_998",
          "flag_95", "flag_998", "phi", "tau2", "adjustment"]


def _fit_rows(
    rows: pd.DataFrame, observed: str, exposure: str, kind: Kind, per: float,
    reference: str | None, variance: str | None, method: Method, trim: float,
) -> pd.DataFrame:
    ref = rows if reference is None else rows[rows[reference].astype(bool)]
    f = fit(
        ref[observed], ref[exposure], kind=kind,
        variance=None if variance is None else ref[variance], method=method, trim=trim,
    )
    o = rows[observed].to_numpy(float)
    d = rows[exposure].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(d > 0, o / d, np.nan)
        s = within_se(f.target, d, kind, f.kappa)
        if f.adjustment == "additive":
            s = np.sqrt(s**2 + f.tau2)
        elif f.adjustment == "multiplicative":
            s = s * np.sqrt(f.phi)
        z = (y - f.target) / s
    out = rows.copy()
    out["value"] = y * per
    out["target"] = f.target * per
    out["z"] = z
    for name, coverage in LEVELS.items():
        lower, upper = limits(f, d, coverage, kind)
        out[f"lower_{name}"] = lower * per
        out[f"upper_{name}"] = upper * per
        flag = np.where(y > upper, "high", np.where(y < lower, "low", None))
        out[f"flag_{name}"] = pd.Series(flag, index=out.index, dtype="object")
    out["phi"] = f.phi
    out["tau2"] = f.tau2
    out["adjustment"] = f.adjustment
    return out


def contours(
    fitted: ir.Table | pd.DataFrame,
    *,
    exposure: str,
    kind: Kind = "poisson",
    per: float = 1.0,
    peers: Sequence[str] = ("period", "group"),
    reference: str | None = None,
    observed: str,
    variance: str | None = None,
    method: Method = "additive",
    trim: float = 0.1,
    points: int = 100,
) -> ir.Table:
    """The funnel's limit lines for drawing: ``(*peers, exposure, target, lower_95, upper_95,
    lower_998, upper_998)`` at ``points`` exposures spread (log scale) over the units' range.
    Same arguments as :func:`funnel_table`, whose fit it repeats."""
    df = fitted.to_pandas() if isinstance(fitted, ir.Table) else fitted
    rows_out = []
    for key, rows in df.groupby(list(peers), sort=True, dropna=False):
        ref = rows if reference is None else rows[rows[reference].astype(bool)]
        f = fit(ref[observed], ref[exposure], kind=kind,
                variance=None if variance is None else ref[variance], method=method, trim=trim)
        d = rows[exposure].to_numpy(float)
        d = d[d > 0]
        if len(d) == 0 or np.isnan(f.target):
            continue
        grid = np.geomspace(max(d.min() * 0.8, 1e-9), d.max() * 1.2, points)
        part = pd.DataFrame(dict(zip(peers, key if isinstance(key, tuple) else (key,),
                                     strict=True)), index=range(points))
        part["exposure"] = grid
        part["target"] = f.target * per
        for name, coverage in LEVELS.items():
            lower, upper = limits(f, grid, coverage, kind)
            part[f"lower_{name}"] = lower * per
            part[f"upper_{name}"] = upper * per
        rows_out.append(part)
    columns = [*peers, "exposure", "target", *(f"{b}_{n}" for n in LEVELS for b in ("lower",
                                                                                     "upper"))]
    out = pd.concat(rows_out, ignore_index=True) if rows_out else pd.DataFrame(columns=columns)
    return ibis.memtable(out[columns])


def members(session: Workbench, level: str, within: tuple[str, str]) -> list[str]:
    """The units of ``level`` inside ``within`` = ``(level, unit_id)``, e.g. the practices of a
    cluster or the clusters of a region (a unit belongs when one of its practices does)."""
    outer_level, outer_unit = within
    practices = session.registers.practices
    inside = unit_map(practices, outer_level, [outer_unit]).select("practice_id")
    mine = unit_map(practices, level).semi_join(inside, "practice_id")
    return sorted(mine.select("unit_id").distinct().to_pandas()["unit_id"].tolist())


def funnel(
    session: Workbench,
    groups: str | Iterable[str],
    periods: Any,
    *,
    level: str = "practice",
    within: tuple[str, str] = NATION,
    reference: tuple[str, str] | None = None,
    indicator: str = "patients_per_1000",
    method: Method = "additive",
    filters: Mapping[str, Any] | None = None,
) -> ir.Table:
    """The funnel of the units of ``level`` inside ``within`` (the nation, a region, a cluster)
    for each period and group, limits set by the units inside ``reference`` (default: the same
    units; e.g. ``within=("cluster", "K1"), reference=("nation", "DK")`` draws a cluster's
    practices against national limits, steadier than limits from 10 practices).

    ``indicator``: ``patients_per_1000`` or ``ddd_per_1000`` (crude, per 1,000 listed), or
    ``standardised_patients`` / ``standardised_ddd`` (the age/sex-standardised ratio O/E,
    exposure E). Columns: ``level, unit_id, period, group, patients, listed, observed,
    exposure`` and those of :func:`funnel_table`.
    """
    if indicator not in INDICATORS:
        raise ValueError(f"indicator must be one of {INDICATORS}, not {indicator!r}")
    reference = reference or within
    shown = members(session, level, within)
    basis = members(session, level, reference)
    everyone = reference[0] == "nation" or within[0] == "nation"
    units = None if everyone else sorted(set(shown) | set(basis))
    if indicator.startswith("standardised_"):
        measure = indicator.removeprefix("standardised_")
        table = standardised(session, groups, level, periods, units=units, measure=measure,
                             filters=filters).to_pandas()
        table = table.rename(columns={"expected": "exposure"})
        kind_args: dict[str, Any] = {"per": 1.0, "variance": "variance"}
    else:
        measure = indicator.removesuffix("_per_1000")
        table = session.measures(groups, level, periods, units=units, filters=filters,
                                 measures=["patients", "ddd", "listed"]).to_pandas()
        table["observed"] = table[measure].astype(float)
        table["exposure"] = table["listed"]
        kind_args = {"per": 1000.0, "variance": None}
        if measure == "ddd":
            moments = ddd_moments(session, groups, level, periods, units=units, filters=filters,
                                  by=()).to_pandas()
            table = table.merge(moments, on=["unit_id", "period", "group"], how="left")
            table["variance"] = table["ddd_variance"].fillna(0.0)
            kind_args["variance"] = "variance"
    table["in_reference"] = table["unit_id"].isin(basis)
    keep = ["level", "unit_id", "period", "group", "patients", "listed", "observed", "exposure",
            "in_reference", *([kind_args["variance"]] if kind_args["variance"] else [])]
    fitted = funnel_table(
        table[keep], observed="observed", exposure="exposure", kind="poisson",
        reference="in_reference", method=method, **kind_args,
    )
    return fitted.filter(fitted.unit_id.isin(shown)).drop("in_reference")
