"""Persons, their residence and their GP listings, simulated year by year for an area.

Each municipality starts at its real size on 1 Jan of the first year (never thinned: an area is
generated at full density) with the national age/sex structure, tilted mildly by density. Its
starting persons come from the municipality's own random stream, so they are the same whichever
area contains it. Then, every year, persons die (Gompertz-Makeham mortality), emigrate, move to
another municipality or change practice; babies are born; and persons move in from outside the
area so each municipality follows its real growth. A move to a municipality outside the area
ends the person's time in the register (as for an extract of that area); a national run keeps
everyone. Dates are int32 days since 1970-01-01 throughout (Arrow's date32), NO_DATE meaning none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workbench.data.generator.geography import (
    FEMALE,
    MALE,
    MAX_AGE,
    Geography,
    interpolate_by_age,
)
from workbench.data.generator.parameters import GeneratorParameters
from workbench.data.generator.practices import PracticeLayout
from workbench.data.generator.streams import stream

NO_DATE = np.iinfo(np.int32).max
NOT_LISTED = -1
GONE = -1
DAYS_PER_YEAR = 365.25
DYNAMIC_PERSON_BASE = 900_000_000


def day(year: int, month: int = 1, dom: int = 1) -> int:
    """Days since 1970-01-01 of a calendar date."""
    return int(np.datetime64(f"{year:04d}-{month:02d}-{dom:02d}", "D").astype(np.int64))


@dataclass
class Segments:
    """Periods [start, end) of a person in a unit (municipality or practice); end NO_DATE = open."""

    person: np.ndarray
    unit: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def select(self, mask: np.ndarray) -> Segments:
        return Segments(self.person[mask], self.unit[mask], self.start[mask], self.end[mask])

    def sorted(self) -> Segments:
        order = np.lexsort((self.start, self.person))
        return self.select(order)


@dataclass
class Population:
    """Everyone who lived in the area during the years, with residence and listing periods.

    Persons are ordered by the area municipality they entered in (first_municipality), so the
    treatment simulation can take one municipality's persons as a contiguous slice.
    """

    number: np.ndarray  # person number (before scrambling into the person id)
    sex: np.ndarray  # FEMALE / MALE
    birth: np.ndarray
    death: np.ndarray
    emigration: np.ndarray
    entry: np.ndarray  # first day in the area
    exit: np.ndarray  # day the person left the area (died, emigrated, moved out) or NO_DATE
    last_municipality: np.ndarray  # last known municipality (may lie outside the area)
    first_municipality: np.ndarray
    residence: Segments
    listings: Segments


@dataclass
class _State:
    """Per-person arrays while the years are simulated (grown as persons are added)."""

    number: list[np.ndarray] = field(default_factory=list)
    sex: list[np.ndarray] = field(default_factory=list)
    birth: list[np.ndarray] = field(default_factory=list)
    entry: list[np.ndarray] = field(default_factory=list)
    municipality: list[np.ndarray] = field(default_factory=list)  # current, GONE once left
    practice: list[np.ndarray] = field(default_factory=list)  # current, NOT_LISTED if none
    residence_start: list[np.ndarray] = field(default_factory=list)
    listing_start: list[np.ndarray] = field(default_factory=list)
    unlisted: list[np.ndarray] = field(default_factory=list)  # never listed (group 2)

    def add(self, **arrays: np.ndarray) -> None:
        for name, values in arrays.items():
            getattr(self, name).append(values)

    def merge(self) -> None:
        """Concatenate the appended batches into one array per field (kept as a 1-item list)."""
        for name in self.__dataclass_fields__:
            parts = getattr(self, name)
            if len(parts) > 1:
                setattr(self, name, [np.concatenate(parts)])

    def get(self, name: str) -> np.ndarray:
        return getattr(self, name)[0]


class _Tables:
    """Age-indexed annual probabilities, looked up with an age array."""

    def __init__(self, params: GeneratorParameters, geo: Geography, area: np.ndarray):
        pop = params.population
        self.death = geo.death
        self.emigrate = interpolate_by_age(pop.emigration_by_age)
        self.move = interpolate_by_age(pop.internal_move_by_age)
        mover = geo.national_shares * (self.emigrate + self.move)[:, None]
        self.mover_cum = np.cumsum(mover.ravel()) / mover.sum()
        self.destination_cum = _destination_cum(geo, pop.within_region_share)
        self.in_area = np.zeros(geo.n, dtype=bool)
        self.in_area[area] = True


def _destination_cum(geo: Geography, within_share: float) -> np.ndarray:
    """Row-wise cumulative probabilities of a move's destination municipality."""
    pop = geo.population_2025.astype(float)
    same_region = geo.region[:, None] == geo.region[None, :]
    np.fill_diagonal(same_region, False)
    other_region = geo.region[:, None] != geo.region[None, :]
    within = same_region * pop[None, :]
    outside = other_region * pop[None, :]
    within /= np.maximum(within.sum(axis=1, keepdims=True), 1.0)
    outside /= np.maximum(outside.sum(axis=1, keepdims=True), 1.0)
    p = within_share * within + (1 - within_share) * outside
    return np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)


def simulate_population(
    geo: Geography,
    layout: PracticeLayout,
    params: GeneratorParameters,
    area: np.ndarray,
    years: tuple[int, int],
    seed: int,
) -> Population:
    """Everyone resident in ``area`` at some time in ``years``, with residence and listings."""
    first, last = years
    tables = _Tables(params, geo, area)
    state = _State()
    closed_res: list[Segments] = []
    closed_lst: list[Segments] = []
    for m in area:
        _initial_population(state, geo, layout, params, int(m), first, seed)
    state.merge()
    records = _Records(state)
    next_number = DYNAMIC_PERSON_BASE
    for year in range(first, last + 1):
        rng = stream(seed, "dynamics", year)
        _yearly_events(state, records, tables, layout, params, year, rng, closed_res, closed_lst)
        next_number = _births(state, geo, layout, params, area, year, rng, next_number)
        next_number = _in_movers(state, tables, geo, layout, params, area, year, rng, next_number)
        state.merge()
        records.grow(state)
    return _finish(state, records, closed_res, closed_lst, day(last + 1))


class _Records:
    """Per-person outcome arrays (death, emigration, exit, last municipality)."""

    def __init__(self, state: _State):
        n = len(state.get("number"))
        self.death = np.full(n, NO_DATE, dtype=np.int32)
        self.emigration = np.full(n, NO_DATE, dtype=np.int32)
        self.exit = np.full(n, NO_DATE, dtype=np.int32)
        self.last_municipality = state.get("municipality").copy()
        self.first_municipality = state.get("municipality").copy()

    def grow(self, state: _State) -> None:
        n_new = len(state.get("number")) - len(self.death)
        if n_new <= 0:
            return
        fill = np.full(n_new, NO_DATE, dtype=np.int32)
        new_muni = state.get("municipality")[-n_new:]
        self.death = np.concatenate([self.death, fill])
        self.emigration = np.concatenate([self.emigration, fill])
        self.exit = np.concatenate([self.exit, fill])
        self.last_municipality = np.concatenate([self.last_municipality, new_muni])
        self.first_municipality = np.concatenate([self.first_municipality, new_muni])


def _initial_population(
    state: _State,
    geo: Geography,
    layout: PracticeLayout,
    params: GeneratorParameters,
    m: int,
    first_year: int,
    seed: int,
) -> None:
    """The municipality's real-size population on 1 Jan of the first year (own stream)."""
    rng = stream(seed, "population", int(geo.codes[m]), first_year)
    n = int(geo.population_on(first_year)[m])
    shares = geo.age_sex_shares(m, params, first_year).ravel()
    counts = rng.multinomial(n, shares)
    cell = np.repeat(np.arange(len(shares)), counts)
    age, sex = np.divmod(cell, 2)
    start = day(first_year)
    birth = start - np.floor((age + rng.random(n)) * DAYS_PER_YEAR).astype(np.int64) - 1
    unlisted = rng.random(n) < params.population.unlisted_share
    practice = np.where(unlisted, NOT_LISTED, layout.sample_practice(np.full(n, m), rng.random(n)))
    back = rng.exponential(params.population.initial_listing_mean_years * DAYS_PER_YEAR, n)
    listing_start = np.maximum(birth, start - np.floor(back).astype(np.int64))
    state.add(
        number=int(geo.codes[m]) * 1_000_000 + np.arange(n, dtype=np.int64),
        sex=sex.astype(np.int8),
        birth=birth.astype(np.int32),
        entry=np.full(n, start, dtype=np.int32),
        municipality=np.full(n, m, dtype=np.int16),
        practice=practice.astype(np.int32),
        residence_start=np.full(n, start, dtype=np.int32),
        listing_start=listing_start.astype(np.int32),
        unlisted=unlisted,
    )


def _yearly_events(
    state: _State,
    records: _Records,
    tables: _Tables,
    layout: PracticeLayout,
    params: GeneratorParameters,
    year: int,
    rng: np.random.Generator,
    closed_res: list[Segments],
    closed_lst: list[Segments],
) -> None:
    """At most one event per resident and year: death, emigration, move or practice change."""
    y0, y1 = day(year), day(year + 1)
    muni = state.get("municipality")
    idx = np.flatnonzero(muni != GONE)
    sex = state.get("sex")[idx]
    age = np.clip((y0 - state.get("birth")[idx]) // DAYS_PER_YEAR, 0, MAX_AGE).astype(np.int64)
    listed = state.get("practice")[idx] != NOT_LISTED
    p_death = tables.death[age, sex]
    p_emig = p_death + tables.emigrate[age]
    p_move = p_emig + tables.move[age]
    p_switch = p_move + np.where(listed, params.population.practice_switch, 0.0)
    u = rng.random(len(idx))
    when = (y0 + np.floor(rng.random(len(idx)) * (y1 - y0))).astype(np.int32)
    when = np.maximum(when, state.get("residence_start")[idx] + 1)  # no empty period on day 1
    dies, emigrates = u < p_death, (u >= p_death) & (u < p_emig)
    moves, switches = (u >= p_emig) & (u < p_move), (u >= p_move) & (u < p_switch)

    leaving = dies | emigrates
    records.death[idx[dies]] = when[dies]
    records.emigration[idx[emigrates]] = when[emigrates]
    destination = _destinations(tables, muni[idx[moves]], rng)
    moves_out = np.zeros(len(idx), dtype=bool)
    moves_out[np.flatnonzero(moves)[~tables.in_area[destination]]] = True
    records.last_municipality[idx[moves]] = destination
    leaving |= moves_out
    records.exit[idx[leaving]] = when[leaving]

    switches, new_practice = _new_practices(state, layout, idx, switches, rng)
    changes_home = leaving | moves
    changes_practice = changes_home | switches
    _close(
        closed_res,
        idx[changes_home],
        muni[idx[changes_home]],
        state.get("residence_start"),
        when[changes_home],
    )
    _close_listing(closed_lst, state, idx[changes_practice], when[changes_practice])
    muni[idx[leaving]] = GONE
    state.get("practice")[idx[leaving]] = NOT_LISTED

    stays = moves & ~moves_out
    new_home = destination[tables.in_area[destination]]
    _settle(state, layout, params, idx[stays], new_home, when[stays], rng)
    state.get("practice")[idx[switches]] = new_practice
    state.get("listing_start")[idx[switches]] = when[switches]


def _destinations(tables: _Tables, origin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(origin))
    out = np.empty(len(origin), dtype=np.int16)
    for o in np.unique(origin):
        sel = origin == o
        out[sel] = np.minimum(
            np.searchsorted(tables.destination_cum[o], u[sel], side="right"),
            len(tables.in_area) - 1,
        )
    return out


def _close(
    closed: list[Segments], who: np.ndarray, unit: np.ndarray, starts: np.ndarray, when: np.ndarray
) -> None:
    closed.append(
        Segments(who.copy(), unit.astype(np.int32), starts[who].copy(), when.astype(np.int32))
    )


def _close_listing(
    closed: list[Segments], state: _State, who: np.ndarray, when: np.ndarray
) -> None:
    """End the current listing of ``who`` at ``when`` (a not yet started listing just vanishes)."""
    practice = state.get("practice")[who]
    start = state.get("listing_start")[who]
    keep = (practice != NOT_LISTED) & (start < when)
    closed.append(Segments(who[keep], practice[keep], start[keep], when[keep].astype(np.int32)))


def _settle(
    state: _State,
    layout: PracticeLayout,
    params: GeneratorParameters,
    who: np.ndarray,
    municipality: np.ndarray,
    when: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Persons moving within the area: new home, new practice there after a short delay."""
    state.get("municipality")[who] = municipality
    state.get("residence_start")[who] = when
    delay = np.floor(rng.exponential(params.population.listing_delay_mean_days, len(who)))
    new_practice = layout.sample_practice(municipality.astype(np.int64), rng.random(len(who)))
    unlisted = state.get("unlisted")[who]
    state.get("practice")[who] = np.where(unlisted, NOT_LISTED, new_practice)
    state.get("listing_start")[who] = when + delay.astype(np.int32)


def _new_practices(
    state: _State,
    layout: PracticeLayout,
    idx: np.ndarray,
    switches: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Another practice in the same municipality for those switching; a switch that draws the
    current practice twice (certain where the municipality has one) does not happen."""
    who = idx[switches]
    muni = state.get("municipality")[who].astype(np.int64)
    current = state.get("practice")[who]
    u = rng.random(len(who))
    new = layout.sample_practice(muni, u)
    new = np.where(new == current, layout.sample_practice(muni, (u + 0.5) % 1.0), new)
    switching = switches.copy()
    switching[np.flatnonzero(switches)[new == current]] = False
    return switching, new[new != current].astype(np.int32)


def _births(
    state: _State,
    geo: Geography,
    layout: PracticeLayout,
    params: GeneratorParameters,
    area: np.ndarray,
    year: int,
    rng: np.random.Generator,
    next_number: int,
) -> int:
    """Babies born in the year, listed from birth with a practice in their municipality.

    Births (like arrivals) fall after 1 January, so 1 January holds exactly the year's start.
    """
    y0, y1 = day(year), day(year + 1)
    muni, birth, sex = state.get("municipality"), state.get("birth"), state.get("sex")
    age = (y0 - birth) / DAYS_PER_YEAR
    fertile = (muni != GONE) & (sex == FEMALE) & (age >= 15) & (age < 50)
    women = np.bincount(muni[fertile], minlength=geo.n)
    counts = rng.poisson(params.population.births_per_woman_15_49 * women[area])
    where = np.repeat(area, counts).astype(np.int16)
    n = len(where)
    born = (y0 + 1 + np.floor(rng.random(n) * (y1 - y0 - 1))).astype(np.int32)
    boys = rng.random(n) < params.population.male_share_at_birth
    _add_persons(
        state,
        layout,
        params,
        where,
        born,
        born,
        np.where(boys, MALE, FEMALE),
        born,
        rng,
        next_number,
    )
    return next_number + n


def _in_movers(
    state: _State,
    tables: _Tables,
    geo: Geography,
    layout: PracticeLayout,
    params: GeneratorParameters,
    area: np.ndarray,
    year: int,
    rng: np.random.Generator,
    next_number: int,
) -> int:
    """Persons arriving from outside the area: enough to keep each municipality on its real path."""
    y0, y1 = day(year), day(year + 1)
    muni = np.concatenate(state.municipality)
    present = np.bincount(muni[muni != GONE], minlength=geo.n)
    target = geo.population_on(year + 1)
    counts = np.maximum(target[area] - present[area], 0)
    where = np.repeat(area, counts).astype(np.int16)
    n = len(where)
    cell = np.minimum(
        np.searchsorted(tables.mover_cum, rng.random(n), side="right"), len(tables.mover_cum) - 1
    )
    age, sex = np.divmod(cell, 2)
    arrive = (y0 + 1 + np.floor(rng.random(n) * (y1 - y0 - 1))).astype(np.int32)
    birth = (arrive - np.floor((age + rng.random(n)) * DAYS_PER_YEAR) - 1).astype(np.int32)
    delay = np.floor(rng.exponential(params.population.listing_delay_mean_days, n)).astype(np.int32)
    _add_persons(state, layout, params, where, arrive, birth, sex, arrive + delay, rng, next_number)
    return next_number + n


def _add_persons(
    state: _State,
    layout: PracticeLayout,
    params: GeneratorParameters,
    municipality: np.ndarray,
    entry: np.ndarray,
    birth: np.ndarray,
    sex: np.ndarray,
    listing_start: np.ndarray,
    rng: np.random.Generator,
    next_number: int,
) -> None:
    n = len(municipality)
    unlisted = rng.random(n) < params.population.unlisted_share
    practice = layout.sample_practice(municipality.astype(np.int64), rng.random(n))
    state.add(
        number=next_number + np.arange(n, dtype=np.int64),
        sex=sex.astype(np.int8),
        birth=birth.astype(np.int32),
        entry=entry.astype(np.int32),
        municipality=municipality.astype(np.int16),
        practice=np.where(unlisted, NOT_LISTED, practice).astype(np.int32),
        residence_start=entry.astype(np.int32),
        listing_start=listing_start.astype(np.int32),
        unlisted=unlisted,
    )


def _finish(
    state: _State,
    records: _Records,
    closed_res: list[Segments],
    closed_lst: list[Segments],
    window_end: int,
) -> Population:
    """Add the periods still open at the end (end NO_DATE); order persons by entry municipality."""
    muni = state.get("municipality")
    present = np.flatnonzero(muni != GONE)
    closed_res.append(
        Segments(
            present,
            muni[present].astype(np.int32),
            state.get("residence_start")[present],
            np.full(len(present), NO_DATE, np.int32),
        )
    )
    practice, lst_start = state.get("practice"), state.get("listing_start")
    listed = present[(practice[present] != NOT_LISTED) & (lst_start[present] < window_end)]
    closed_lst.append(
        Segments(
            listed, practice[listed], lst_start[listed], np.full(len(listed), NO_DATE, np.int32)
        )
    )

    order = np.lexsort((np.arange(len(muni)), records.first_municipality))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    residence = _segments(closed_res, rank)
    listings = _segments(closed_lst, rank)
    return Population(
        number=state.get("number")[order],
        sex=state.get("sex")[order],
        birth=state.get("birth")[order],
        death=records.death[order],
        emigration=records.emigration[order],
        entry=state.get("entry")[order],
        exit=records.exit[order],
        last_municipality=records.last_municipality[order],
        first_municipality=records.first_municipality[order],
        residence=residence,
        listings=listings,
    )


def _segments(closed: list[Segments], rank: np.ndarray) -> Segments:
    seg = Segments(
        person=rank[np.concatenate([c.person for c in closed])],
        unit=np.concatenate([c.unit for c in closed]).astype(np.int32),
        start=np.concatenate([c.start for c in closed]).astype(np.int32),
        end=np.concatenate([c.end for c in closed]).astype(np.int32),
    )
    return seg.sorted()
