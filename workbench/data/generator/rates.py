"""From published annual prevalence to the rates at which treatment episodes start.

A component (e.g. antidepressants) has a target: the share of a population with at least one
redemption in a year. Users come from three patterns: short courses, intermittent use and
chronic treatment spanning years. Episodes of a pattern start as a Poisson process with rate
lambda(age, sex, year) x a person's frailty (gamma, mean 1). An episode has a redemption in every
calendar year its first-to-last-redemption span touches, so a stationary rate lambda yields
lambda x (1 + E[span in years]) episodes with a redemption per person-year ("coverage"), and with
gamma frailty of shape k the share of users is 1 - (1 + L / k) ** -k where L is the sum over
patterns. Inverting this gives the rates analytically, so the generator is calibrated by
construction rather than by trial runs; the trend over years is met by solving the coverage
convolution year by year (a rising trend needs more starts than the stationary rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.data.generator.geography import N_AGES, Geography, interpolate_by_age
from workbench.data.generator.parameters import PATTERNS, Component, GeneratorParameters

KERNEL_YEARS = 60
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class ComponentRates:
    """Start rates of one component: lam[pattern][age, sex] x tau[pattern][year]."""

    group: str
    component: str
    lam: dict[str, np.ndarray]  # (N_AGES, 2) episode starts per person-year, per pattern
    tau: dict[str, np.ndarray]  # relative start rate per simulated year, per pattern
    chronic_span_extra_days: float


def solve_rates(
    params: GeneratorParameters, geo: Geography, sim_years: np.ndarray, first_year: int
) -> list[ComponentRates]:
    """Rates for every component, for the simulated calendar years ``sim_years``.

    A pattern's episodes are simulated only from its burn-in before ``first_year`` on (rate 0
    before), which is all that can still reach the register window.
    """
    out = []
    for gid, group in params.groups.items():
        for cid, comp in group.components.items():
            chronic_extra = comp.chronic_span_mean_years * DAYS_PER_YEAR
            chronic_extra -= params.patterns.chronic.span_min_days
            if chronic_extra <= 0:
                raise ValueError(f"{cid}: chronic_span_mean_years is shorter than the minimum span")
            spans = _span_quantiles(params, chronic_extra)
            intensity = _intensity(comp, geo)
            lam, tau = {}, {}
            for pattern in PATTERNS:
                kernel = _coverage_kernel(spans[pattern])
                coverage = 1.0 + kernel.sum()
                lam[pattern] = _by_age(comp.mix.get(pattern, 0.0) * intensity, kernel)
                simulated = sim_years >= first_year - params.burn_in_years[pattern]
                tau[pattern] = _start_rates(comp, kernel, coverage, sim_years) * simulated
            out.append(ComponentRates(gid, cid, lam, tau, chronic_extra))
    return out


def target_rate(comp: Component, geo: Geography) -> float:
    """The target share of users in the target population (from per_1000 or a person count)."""
    t = comp.target
    if t.per_1000 is not None:
        return t.per_1000 / 1000.0
    shares = _target_shares(comp, geo)
    return t.persons / (geo.national_population_on(t.year) * shares.sum())


def prevalence_by_age_sex(comp: Component, geo: Geography) -> np.ndarray:
    """Target share of users by (age, sex) at the target year: the shape scaled to the target."""
    shape = np.stack(
        [interpolate_by_age(comp.age_shape["F"]), interpolate_by_age(comp.age_shape["M"])], axis=1
    )
    shares = _target_shares(comp, geo)
    level = target_rate(comp, geo) * shares.sum() / (shares * shape).sum()
    return np.clip(level * shape, 0.0, 0.9)


def _target_shares(comp: Component, geo: Geography) -> np.ndarray:
    t = comp.target
    ages = np.arange(N_AGES)
    lo, hi = t.ages
    in_ages = (ages >= lo) & (ages <= (hi if hi is not None else N_AGES))
    sexes = np.array([t.sex in ("all", "F"), t.sex in ("all", "M")])
    return geo.national_shares_on(t.year) * in_ages[:, None] * sexes[None, :]


def _intensity(comp: Component, geo: Geography) -> np.ndarray:
    """Invert the gamma-frailty prevalence: L = k * ((1 - p) ** (-1 / k) - 1)."""
    p = prevalence_by_age_sex(comp, geo)
    k = comp.frailty_shape
    return k * ((1.0 - p) ** (-1.0 / k) - 1.0)


def _by_age(coverage: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Start rates by age whose episodes, carried along the cohort, give ``coverage`` by age.

    A person of age a has users' coverage from episodes started at a, a-1, ... (kernel), so the
    start rate is solved upward from age 0; where coverage falls with age the carried episodes
    already exceed it and the rate is 0.
    """
    lam = np.zeros_like(coverage)
    for a in range(len(coverage)):
        j = min(a, len(kernel))
        carried = kernel[:j] @ lam[a - j : a][::-1] if j else 0.0
        lam[a] = np.maximum(coverage[a] - carried, 0.0)
    return lam


def _span_quantiles(params: GeneratorParameters, chronic_extra: float) -> dict[str, np.ndarray]:
    """A deterministic quantile grid (days) of each pattern's first-to-last-redemption span."""
    q = (np.arange(400) + 0.5) / 400
    short = params.patterns.short
    lo, hi = short.second_after_days
    two = short.second_redemption_share
    short_span = np.where(q < 1 - two, 0.0, lo + (hi - lo) * (q - (1 - two)) / max(two, 1e-9))
    inter = params.patterns.intermittent
    exp_q = -np.log1p(-q)
    return {
        "short": short_span,
        "intermittent": inter.span_min_days + inter.span_mean_extra_days * exp_q,
        "chronic": params.patterns.chronic.span_min_days + chronic_extra * exp_q,
    }


def _coverage_kernel(span_days: np.ndarray) -> np.ndarray:
    """c[j-1] = P(an episode started uniformly in year y - j has a redemption in year y)."""
    u = (np.arange(200) + 0.5) / 200
    end = u[:, None] + span_days[None, :] / DAYS_PER_YEAR
    j = np.arange(1, KERNEL_YEARS + 1)
    return (end[None, :, :] >= j[:, None, None]).mean(axis=(1, 2))


def _start_rates(
    comp: Component, kernel: np.ndarray, coverage: float, sim_years: np.ndarray
) -> np.ndarray:
    """Relative start rates per year so that coverage follows the trend (stationary before)."""
    years = np.arange(sim_years[0] - KERNEL_YEARS, sim_years[-1] + 1)
    trend_years = np.array(sorted(comp.trend))
    trend_values = np.array([comp.trend[y] for y in trend_years])
    r = np.interp(years, trend_years, trend_values) / np.interp(
        comp.target.year, trend_years, trend_values
    )
    tau = r.copy()
    for t in range(KERNEL_YEARS, len(years)):
        carried = tau[t - KERNEL_YEARS : t][::-1] @ kernel
        tau[t] = max(r[t] * coverage - carried, 0.05 * r[t])
    return tau[KERNEL_YEARS:]
