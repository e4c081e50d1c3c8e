"""Treatment episodes: who starts which drug when, in which pattern, on which product.

For each component (rates.py) and pattern, a person's episodes are a Poisson process whose rate
is the component's age/sex intensity x the pattern's yearly start rate x the person's frailty x
the prescribing propensity of the practice they are listed with when the episode starts (by
thinning: draw at the person's highest propensity, keep with the ratio at the start day). Each
episode then gets a prescriber category, a substance, a form (depot forms favoured by chronic
users), a daily dose, a strength that suits the dose, and the pack size that suits the wanted
supply (large packs for chronic users). Everything is vectorised over the persons of a chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.data.generator.catalogue import ProductIndex
from workbench.data.generator.geography import MAX_AGE
from workbench.data.generator.parameters import (
    PATTERNS,
    PRESCRIBER_CATEGORIES,
    Component,
    GeneratorParameters,
)
from workbench.data.generator.population import DAYS_PER_YEAR, NO_DATE, Segments
from workbench.data.generator.rates import ComponentRates

SHORT, CHRONIC = PATTERNS.index("short"), PATTERNS.index("chronic")
GP_LISTED = PRESCRIBER_CATEGORIES.index("gp_listed")
TIME_OFFSET = 60_000  # days, so every date from 1805 on gives a non-negative key
TIME_SCALE = 1 << 17


class Timeline:
    """Which unit (practice or municipality) each person of a chunk is in on a given day."""

    def __init__(self, segments: Segments, first: int, last: int):
        lo, hi = np.searchsorted(segments.person, [first, last])
        self.person = segments.person[lo:hi].astype(np.int64) - first
        self.unit = segments.unit[lo:hi]
        self.end = segments.end[lo:hi]
        self.keys = self.person * TIME_SCALE + (
            segments.start[lo:hi].astype(np.int64) + TIME_OFFSET
        )

    def at(self, person: np.ndarray, when: np.ndarray) -> np.ndarray:
        """The unit of ``person`` (chunk-local) on day ``when``, or -1 if none."""
        if len(self.keys) == 0:
            return np.full(len(person), -1, dtype=np.int64)
        key = person.astype(np.int64) * TIME_SCALE + (when.astype(np.int64) + TIME_OFFSET)
        j = np.searchsorted(self.keys, key, side="right") - 1
        jj = np.maximum(j, 0)
        ok = (j >= 0) & (self.person[jj] == person) & (when < self.end[jj])
        return np.where(ok, self.unit[jj], -1).astype(np.int64)


@dataclass(frozen=True)
class ChunkPersons:
    """The persons of one chunk (a contiguous slice of the Population) and their timelines.

    ``cell`` (age x 2 + sex at mid-year) and ``exposed`` (years alive and present in the run-in
    or window) are (simulated year, person) arrays shared by every component; years first so a
    pattern's years are contiguous rows.
    """

    first: int  # global index of the chunk's first person
    birth: np.ndarray
    sex: np.ndarray
    entry: np.ndarray
    exit: np.ndarray  # NO_DATE replaced by the window end
    first_municipality: int
    listings: Timeline
    residence: Timeline
    cell: np.ndarray
    exposed: np.ndarray

    @property
    def n(self) -> int:
        return len(self.birth)


def chunk_persons(
    first: int,
    birth: np.ndarray,
    sex: np.ndarray,
    entry: np.ndarray,
    exit_day: np.ndarray,
    first_municipality: int,
    listings: Timeline,
    residence: Timeline,
    year_bounds: np.ndarray,
) -> ChunkPersons:
    """Assemble a chunk, computing its age/sex cells and exposure per simulated year.

    Age is the age reached at the middle of the first simulated year, plus one per year.
    """
    bounds = year_bounds.astype(np.int32)
    days = np.minimum(exit_day.astype(np.int32)[None, :], bounds[1:, None])
    days -= np.maximum(birth.astype(np.int32)[None, :], bounds[:-1, None])
    exposed = np.clip(days, 0, None).astype(np.float32) * np.float32(1 / DAYS_PER_YEAR)
    first_mid = (year_bounds[0] + year_bounds[1]) // 2
    age = ((first_mid - birth) // DAYS_PER_YEAR).astype(np.intp)[None, :]
    age = np.clip(age + np.arange(len(bounds) - 1)[:, None], 0, MAX_AGE)
    cell = age * 2 + sex[None, :]
    return ChunkPersons(
        first, birth, sex, entry, exit_day, first_municipality, listings, residence, cell, exposed
    )


@dataclass
class Episodes:
    """One row per treatment episode of one component in one chunk."""

    person: np.ndarray  # chunk-local
    start: np.ndarray  # day of the first redemption
    pattern: np.ndarray
    category: np.ndarray  # index into PRESCRIBER_CATEGORIES
    sfsp: np.ndarray  # substance-form-strength-pack, see ProductIndex
    packs: np.ndarray  # packs per redemption
    interval: np.ndarray  # mean days between redemptions
    count: np.ndarray  # redemptions from start (before clipping to the window)


@dataclass(frozen=True)
class SubstanceTable:
    """Per component: substances, their form choices per pattern, and dose factors."""

    cum_weight: np.ndarray  # cumulative substance weights
    dose_factor: np.ndarray
    form_sf: np.ndarray  # (n_substances, max forms) sf index, -1 padded
    form_cum: np.ndarray  # (n_patterns, n_substances, max forms) cumulative form weights


def substance_table(
    comp: Component, params: GeneratorParameters, products: ProductIndex
) -> SubstanceTable:
    atcs = list(comp.substances)
    weights = np.array([comp.substances[a] for a in atcs], dtype=float)
    forms = [products.forms_of(a) for a in atcs]
    width = max(len(f) for f in forms)
    form_sf = np.full((len(atcs), width), -1)
    form_cum = np.zeros((len(PATTERNS), len(atcs), width))
    for i, sfs in enumerate(forms):
        form_sf[i, : len(sfs)] = sfs
        for k, pattern in enumerate(PATTERNS):
            pref = np.where(products.sf_depot[sfs], params.depot_preference[pattern], 1.0)
            w = products.sf_weight[sfs] * pref
            form_cum[k, i, : len(sfs)] = np.cumsum(w) / w.sum()
            form_cum[k, i, len(sfs) :] = 2.0  # never chosen
    factors = params.catalogue.dose_factors
    return SubstanceTable(
        cum_weight=np.cumsum(weights) / weights.sum(),
        dose_factor=np.array([factors.get(a, 1.0) for a in atcs]),
        form_sf=form_sf,
        form_cum=form_cum,
    )


@dataclass(frozen=True)
class ComponentModel:
    """Everything needed to simulate one component's episodes in any chunk."""

    rates: ComponentRates
    component: Component
    group_index: int
    prescribers: np.ndarray  # base shares per PRESCRIBER_CATEGORIES
    substances: SubstanceTable


def simulate_episodes(
    model: ComponentModel,
    params: GeneratorParameters,
    products: ProductIndex,
    persons: ChunkPersons,
    multiplier: np.ndarray,
    year_bounds: np.ndarray,
    rng: np.random.Generator,
) -> Episodes:
    """All episodes of one component for the persons of a chunk.

    ``multiplier`` is the practice x cluster propensity of this component's group per practice;
    ``year_bounds`` the first day of each simulated year and the day after the last.
    """
    m_max = _max_multiplier(model, persons, multiplier)
    shape = model.component.frailty_shape
    frailty = rng.gamma(shape, 1.0 / shape, persons.n)
    parts = []
    for k, pattern in enumerate(PATTERNS):
        tau = model.rates.tau[pattern]
        first = int(np.argmax(tau > 0))  # years before the pattern's burn-in have rate 0
        years = np.arange(first, len(tau))
        lam = model.rates.lam[pattern].ravel().astype(np.float32)
        rates = np.take(lam, persons.cell[first:])
        rates *= persons.exposed[first:]
        rates *= tau[first:, None].astype(np.float32)
        expected = rates.sum(axis=0, dtype=np.float64) * frailty * m_max
        count = rng.poisson(expected)
        person = np.repeat(np.arange(persons.n), count)
        start = _start_days(rates[:, person], years, persons, person, year_bounds, rng)
        parts.append((person, start, np.full(len(person), k, dtype=np.int8)))
    person = np.concatenate([p[0] for p in parts])
    start = np.concatenate([p[1] for p in parts])
    pattern = np.concatenate([p[2] for p in parts])
    practice = persons.listings.at(person, start)
    own = np.where(practice >= 0, multiplier[np.maximum(practice, 0)], 1.0)
    share_gp = model.prescribers[GP_LISTED]
    effective = share_gp * own + (1.0 - share_gp)
    keep = rng.random(len(person)) * m_max[person] < effective
    person, start, pattern = person[keep], start[keep], pattern[keep]
    category = _categories(model.prescribers, share_gp * own[keep] / effective[keep], rng)
    return _products_and_timing(model, params, products, person, start, pattern, category, rng)


def _max_multiplier(
    model: ComponentModel, persons: ChunkPersons, multiplier: np.ndarray
) -> np.ndarray:
    """Per person the highest rate factor over their listings (at least 1, for unlisted time)."""
    share_gp = model.prescribers[GP_LISTED]
    out = np.ones(persons.n)
    seg_factor = share_gp * multiplier[persons.listings.unit] + (1.0 - share_gp)
    np.maximum.at(out, persons.listings.person, seg_factor)
    return out


def _start_days(
    rates: np.ndarray,
    years: np.ndarray,
    persons: ChunkPersons,
    person: np.ndarray,
    year_bounds: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Start day per episode: a year drawn by its rate, then a day in the exposed part of it.

    ``rates`` is (years, episodes): each episode's person's start rate per simulated year.
    """
    if len(person) == 0:
        return np.zeros(0, dtype=np.int64)
    cum = np.cumsum(rates, axis=0)
    pick = rng.random(len(person)) * cum[-1]
    year = years[np.minimum((cum < pick[None, :]).sum(axis=0), len(years) - 1)]
    lo = np.maximum(persons.birth[person], year_bounds[year])
    hi = np.minimum(persons.exit[person], year_bounds[year + 1])
    return lo + np.floor(rng.random(len(person)) * np.maximum(hi - lo, 1)).astype(np.int64)


def _categories(base: np.ndarray, p_gp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Prescriber category per episode: listed GP with p_gp, else the others by their shares."""
    others = base.copy()
    others[GP_LISTED] = 0.0
    cum_others = np.cumsum(others) / others.sum()
    other = np.minimum(
        np.searchsorted(cum_others, rng.random(len(p_gp)), side="right"), len(base) - 1
    )
    return np.where(rng.random(len(p_gp)) < p_gp, GP_LISTED, other).astype(np.int8)


def _lognormal(
    rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int
) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


def _products_and_timing(
    model: ComponentModel,
    params: GeneratorParameters,
    products: ProductIndex,
    person: np.ndarray,
    start: np.ndarray,
    pattern: np.ndarray,
    category: np.ndarray,
    rng: np.random.Generator,
) -> Episodes:
    """Substance, form, dose, strength, pack and refill rhythm of each episode."""
    n = len(person)
    table = model.substances
    pat = params.patterns
    substance = np.minimum(
        np.searchsorted(table.cum_weight, rng.random(n), side="right"), len(table.cum_weight) - 1
    )
    form_cum = table.form_cum[pattern, substance]
    slot = (form_cum < rng.random(n)[:, None]).sum(axis=1)
    sf = table.form_sf[substance, slot]

    base = model.component.chronic_dose * table.dose_factor[substance]
    dose = np.where(
        pattern == CHRONIC,
        _lognormal(rng, pat.chronic.dose.median * base, pat.chronic.dose.sigma, n),
        _lognormal(rng, pat.intermittent.dose.median * base, pat.intermittent.dose.sigma, n),
    )
    dose = np.where(pattern == SHORT, base, dose)
    supply = np.where(
        pattern == CHRONIC,
        _lognormal(rng, pat.chronic.supply_days.median, pat.chronic.supply_days.sigma, n),
        _lognormal(rng, pat.intermittent.supply_days.median, pat.intermittent.supply_days.sigma, n),
    )
    course = _lognormal(rng, pat.short.course_ddd.median * base, pat.short.course_ddd.sigma, n)
    wanted = np.where(pattern == SHORT, course, dose * supply)

    sfs = _choose_strength(products, sf, dose, rng)
    sfsp, pack_ddd = _choose_pack(products, sfs, wanted, rng)
    packs = np.clip(np.rint(wanted / pack_ddd), 1, 5).astype(np.int32)
    per_redemption = packs * pack_ddd

    gap = np.where(
        pattern == CHRONIC,
        _lognormal(rng, pat.chronic.gap.median, pat.chronic.gap.sigma, n),
        _lognormal(rng, pat.intermittent.gap.median, pat.intermittent.gap.sigma, n),
    )
    interval = np.maximum(per_redemption / dose * gap, 7.0)
    count = _redemption_counts(model, params, pattern, interval, rng)
    short_gap = rng.uniform(*pat.short.second_after_days, size=n)
    interval = np.where(pattern == SHORT, short_gap, interval)
    return Episodes(person, start, pattern, category, sfsp, packs, interval, count)


def _redemption_counts(
    model: ComponentModel,
    params: GeneratorParameters,
    pattern: np.ndarray,
    interval: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Redemptions per episode: 1-2 for short courses, span / interval + 1 otherwise."""
    n = len(pattern)
    inter, chronic = params.patterns.intermittent, params.patterns.chronic
    exp = rng.exponential(1.0, n)
    span = np.where(
        pattern == CHRONIC,
        chronic.span_min_days + model.rates.chronic_span_extra_days * exp,
        inter.span_min_days + inter.span_mean_extra_days * exp,
    )
    count = 1 + np.floor(span / interval).astype(np.int64)
    second = rng.random(n) < params.patterns.short.second_redemption_share
    return np.where(pattern == SHORT, 1 + second, count)


def _choose_strength(
    products: ProductIndex, sf: np.ndarray, dose: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The strength whose daily amount at one or two units a day best matches the dose."""
    daily = products.sf_daily_ddd[sf]
    units = 1.0 + (rng.random(len(sf)) < 0.35)
    score = np.abs(np.log(dose[:, None] / (daily * units[:, None])))
    score += 0.3 * rng.random(score.shape)
    score = np.where(np.isnan(score), np.inf, score)
    return products.sf_sfs[sf, np.argmin(score, axis=1)]


def _choose_pack(
    products: ProductIndex, sfs: np.ndarray, wanted: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The pack size whose DDD best matches the wanted supply; returns (sfsp, DDD per pack)."""
    pack_ddd = products.sfs_pack_ddd[sfs]
    score = np.abs(np.log(pack_ddd / wanted[:, None])) + 0.2 * rng.random(pack_ddd.shape)
    score = np.where(np.isnan(score), np.inf, score)
    slot = np.argmin(score, axis=1)
    rows = np.arange(len(sfs))
    return products.sfs_sfsp[sfs, slot], pack_ddd[rows, slot]


def window_exit(exit_day: np.ndarray, window_end: int) -> np.ndarray:
    """Exit days with 'still here' (NO_DATE) replaced by the end of the window."""
    return np.where(exit_day == NO_DATE, window_end, exit_day).astype(np.int64)
