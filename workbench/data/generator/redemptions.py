"""Pharmacy redemptions of a chunk of persons: episodes expanded into dated rows.

Each episode becomes its redemptions (refills at the episode's rhythm with some jitter), clipped
to the register window and to the person's time in the area, so there is never a redemption
before birth, after death or after moving out. Prescribers follow the episode's category: the
practice the person is listed with on the day (the practice where unlisted), another practice
in the municipality, or a non-GP prescriber without a practice id. A few redemptions are
returned later (a negative row for the same person and product). Rows are sorted by person,
date and product, which also makes the Parquet files compress well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.data.generator.catalogue import ProductIndex
from workbench.data.generator.parameters import PATTERNS, PRESCRIBER_CATEGORIES, GeneratorParameters
from workbench.data.generator.practices import PracticeLayout
from workbench.data.generator.treatment import (
    GP_LISTED,
    ChunkPersons,
    ComponentModel,
    Episodes,
    simulate_episodes,
)

PRESCRIBER_TYPES = ("gp", "specialist", "hospital", "other")
# PRESCRIBER_CATEGORIES -> PRESCRIBER_TYPES
CATEGORY_TYPE = np.array(
    [PRESCRIBER_TYPES.index(t) for t in ("gp", "gp", "specialist", "hospital", "other")]
)
OTHER_PRACTICE = PRESCRIBER_CATEGORIES.index("other_practice")
DAY_OFFSET = 60_000  # makes every day since 1805 non-negative for the sort key


@dataclass
class Redemptions:
    """Redemption rows with integer codes; the writer turns them into contract columns."""

    person: np.ndarray  # global person index
    day: np.ndarray
    product: np.ndarray  # row in the products table
    packs: np.ndarray
    prescriber: np.ndarray  # practice index, -1 for non-GP prescribers
    prescriber_type: np.ndarray  # index into PRESCRIBER_TYPES

    @property
    def n(self) -> int:
        return len(self.person)

    @classmethod
    def concat(cls, parts: list[Redemptions]) -> Redemptions:
        names = ("person", "day", "product", "packs", "prescriber", "prescriber_type")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in names))

    def merged(self) -> Redemptions:
        """Sorted rows with exact repeats (same person, day, product, prescriber and sign of
        packs, e.g. two episodes refilled the same day) merged into one row with their packs
        summed, as a pharmacy would dispense them; the register has no duplicate rows."""
        rows = self.sorted()
        same = np.ones(rows.n, dtype=bool)
        for name in ("person", "day", "product", "prescriber", "prescriber_type"):
            column = getattr(rows, name)
            same[1:] &= column[1:] == column[:-1]
        same[1:] &= np.sign(rows.packs[1:]) == np.sign(rows.packs[:-1])
        same[0] = False
        starts = np.flatnonzero(~same)
        kept = Redemptions(*(getattr(rows, f)[starts] for f in self.__dataclass_fields__))
        kept.packs = np.add.reduceat(rows.packs, starts).astype(np.int32)
        return kept

    def sorted(self) -> Redemptions:
        """Rows by person, day and product (persons chunk-local: fewer than 2**23)."""
        key = self.person.astype(np.int64) << 40
        key |= (self.day.astype(np.int64) + DAY_OFFSET) << 22
        key |= self.product.astype(np.int64)
        order = np.argsort(key, kind="stable")
        return Redemptions(*(getattr(self, f)[order] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class RunContext:
    """What every chunk needs, built once per run."""

    params: GeneratorParameters
    models: list[ComponentModel]
    products: ProductIndex
    layout: PracticeLayout
    multipliers: np.ndarray  # (n_practices, n_groups) effective propensities
    year_bounds: np.ndarray  # first day of each simulated year, and the day after the last
    window: tuple[int, int]  # register window [first day, day after last)


def chunk_redemptions(
    ctx: RunContext, persons: ChunkPersons, rng: np.random.Generator
) -> Redemptions:
    """All redemptions of the chunk's persons, in every group, sorted."""
    parts = []
    for model in ctx.models:
        multiplier = ctx.multipliers[:, model.group_index]
        episodes = simulate_episodes(
            model, ctx.params, ctx.products, persons, multiplier, ctx.year_bounds, rng
        )
        parts.append(_expand(ctx, episodes, persons, rng))
    rows = Redemptions.concat(parts)
    rows = Redemptions.concat([rows, _returns(ctx, rows, persons, rng)]).merged()
    rows.person = rows.person + persons.first
    return rows


def _expand(
    ctx: RunContext, ep: Episodes, persons: ChunkPersons, rng: np.random.Generator
) -> Redemptions:
    """Dated redemption rows of the episodes, inside the window and the person's time here."""
    w0, w1 = ctx.window
    skip = np.where(ep.start < w0, np.maximum(np.floor((w0 - ep.start) / ep.interval) - 1, 0), 0)
    skip = skip.astype(np.int64)
    first = ep.start + skip * ep.interval
    end = np.minimum(persons.exit[ep.person], w1)
    cap = np.floor((end - first) / (0.5 * ep.interval)).astype(np.int64) + 2
    n = np.clip(np.minimum(ep.count - skip, cap), 0, None)
    episode = np.repeat(np.arange(len(n)), n)
    offset = np.cumsum(n) - n
    position = np.arange(len(episode)) - offset[episode]
    pat = ctx.params.patterns
    gap_sigma = {
        "short": 0.0,
        "intermittent": pat.intermittent.gap.sigma,
        "chronic": pat.chronic.gap.sigma,
    }
    sigma = np.array([gap_sigma[p] for p in PATTERNS])[ep.pattern[episode]]
    step = ep.interval[episode] * np.exp(sigma * rng.standard_normal(len(episode)))
    step[position == 0] = 0.0
    elapsed = np.cumsum(step)
    elapsed -= elapsed[offset[episode]]
    day = np.floor(first[episode] + elapsed).astype(np.int64)
    person = ep.person[episode]
    keep = (day >= np.maximum(persons.entry[person], w0)) & (
        day < np.minimum(persons.exit[person], w1)
    )
    episode, day, person = episode[keep], day[keep], person[keep]
    product = _maker(ctx.products, ep.sfsp[episode], rng)
    prescriber = _prescribers(ctx, ep, episode, person, day, persons, rng)
    category = ep.category[episode]
    return Redemptions(
        person=person,
        day=day.astype(np.int32),
        product=product,
        packs=ep.packs[episode],
        prescriber=prescriber,
        prescriber_type=CATEGORY_TYPE[category].astype(np.int8),
    )


def _maker(products: ProductIndex, sfsp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The maker's product dispensed: any offering the pack (pharmacies substitute generics)."""
    count = products.sfsp_count[sfsp]
    slot = np.floor(rng.random(len(sfsp)) * count).astype(np.int64)
    return products.sfsp_products[sfsp, slot]


def _prescribers(
    ctx: RunContext,
    ep: Episodes,
    episode: np.ndarray,
    person: np.ndarray,
    day: np.ndarray,
    persons: ChunkPersons,
    rng: np.random.Generator,
) -> np.ndarray:
    """Practice index of the prescriber per row (-1 for specialists, hospitals, others)."""
    category = ep.category[episode]
    listed = persons.listings.at(person, day)
    municipality = persons.residence.at(person, day)
    municipality = np.where(municipality >= 0, municipality, persons.first_municipality)
    episode_u = rng.random(len(ep.person))
    nearby = ctx.layout.sample_practice(municipality, episode_u[episode])
    gp = np.where((category == GP_LISTED) & (listed >= 0), listed, nearby)
    is_gp = (category == GP_LISTED) | (category == OTHER_PRACTICE)
    return np.where(is_gp, gp, -1).astype(np.int32)


def _returns(
    ctx: RunContext, rows: Redemptions, persons: ChunkPersons, rng: np.random.Generator
) -> Redemptions:
    """A few redemptions returned within days: the whole redemption, or one pack of several."""
    cfg = ctx.params.returns
    pick = np.flatnonzero(rng.random(rows.n) < cfg.share)
    day = rows.day[pick] + rng.integers(1, cfg.max_days_after + 1, size=len(pick))
    limit = np.minimum(persons.exit[rows.person[pick]], ctx.window[1])
    ok = day < limit
    pick, day = pick[ok], day[ok]
    packs = rows.packs[pick]
    partial = (packs > 1) & (rng.random(len(pick)) < cfg.partial_share)
    return Redemptions(
        person=rows.person[pick],
        day=day.astype(np.int32),
        product=rows.product[pick],
        packs=-np.where(partial, 1, packs).astype(np.int32),
        prescriber=rows.prescriber[pick],
        prescriber_type=rows.prescriber_type[pick],
    )
