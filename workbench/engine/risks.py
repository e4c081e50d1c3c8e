"""Risky combinations and patterns of use, each a measure like any other.

The definitions are data (``parameters/risks.yaml``: the classes of drugs, thresholds, rationale
and source); the rule of each ``kind`` is a named function here. Every risk answers, per unit of a
level and period:

* ``population``: the unit's patients of the risk's classes in the period (persons with net DDD
  > 0 of a class, attributed by prescriber as every measure) — the denominator of ``share``; for
  ``large_start`` the persons who *started* a class in the period, attributed to the practice of
  their starting redemption (as :mod:`workbench.engine.journeys` does);
* ``patients``: those of the population the rule flags, judged on the person's use from *every*
  prescriber (like the consumption group: a combination is risky whoever prescribed each part);
* ``listed``, ``patients_per_1000`` and ``share`` = patients / population.

**Periods of use** are estimated from DDD coverage: each day's dispensings of a class (packs > 0;
returns are ignored) cover their DDD in days from that day, rounded up to whole days (one DDD a
day, the WHO assumption); coverage of one person and class (or substance) that overlaps or
touches (or, for long-term use, leaves a gap of at most ``max_gap_days``) is merged into one
period of use. Days are counted as integers since 1970-01-01, periods half-open ``[start, end)``.

The rules:

* ``concurrent_use``: a period of use of the first class and one of the second overlap for at
  least ``min_overlap_days``, and the overlap has a day in the reporting period;
* ``multiple_substances``: periods of use of two different substances (ATC codes) of the class
  overlap for at least ``min_overlap_days`` in a row, with a day in the reporting period;
* ``age_on_class``: the patient is ``min_age`` or older on the period's first day; ``listed`` is
  then the listed persons of that age (the rate's natural denominator);
* ``long_term_use``: on some day of the period the person had been in one period of use of a class
  for more than ``min_days`` (each class on its own: an opioid year and a benzodiazepine year are
  two short uses, not one long one);
* ``large_start``: the start-day supply (DDD dispensed on the index day, every prescriber) is at
  least ``min_start_ddd``.

Every redemption before a period's end is read: a period of use is a chain of dispensings, and
one that reaches the period may have started any time before it (cutting the history short
would cut such a chain, and make a period's answer depend on which other periods were asked
with it).
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import (
    AgeOnClass,
    ConcurrentUse,
    Definitions,
    LargeStart,
    LongTermUse,
    MultipleSubstances,
)
from workbench.engine.facts import matches_rule
from workbench.engine.journeys import (
    facts_of,
    persons_of_units,
    start_days,
    start_practices,
)
from workbench.engine.listed import listed_persons, listing_days
from workbench.engine.marts import Marts
from workbench.engine.months import NET_DECIMALS
from workbench.engine.periods import Period, periods_table
from workbench.engine.persons import add_person_attributes
from workbench.engine.registers import Registers
from workbench.engine.units import unit_ids, unit_map

RISK_MEASURES = ("patients", "population", "listed", "patients_per_1000", "share")


def class_facts(facts: ir.Table, definitions: Definitions, classes: Sequence[str]) -> ir.Table:
    """The facts of each named class, with the class id in ``group`` (a redemption of two
    classes appears in each), so the engine's per-group helpers apply to classes too."""
    parts = []
    for cid in classes:
        rule = definitions.risk_classes[cid]
        parts.append(facts.filter(matches_rule(facts.drug, rule)).mutate(group=ibis.literal(cid)))
    return ibis.union(*parts) if len(parts) > 1 else parts[0]


def coverage_periods(rows: ir.Table, key: str, max_gap_days: int = 0) -> ir.Table:
    """``(person_id, <key>, start, end)``: merged periods of use (epoch days, ``end`` exclusive).

    ``rows`` are facts with ``person_id``, ``key``, ``dispensed_on``, ``packs`` and ``ddd``. Each
    day's dispensings cover ``ceil(DDD)`` days (at least one) from that day; a period that starts
    no more than ``max_gap_days`` after the furthest end so far continues it (0: overlapping or
    touching coverage merges).

    >>> import datetime as dt, ibis
    >>> t = ibis.memtable({"person_id": ["a"] * 3, "k": ["x"] * 3, "packs": [1, 1, 1],
    ...     "dispensed_on": [dt.date(2024, 1, 1), dt.date(2024, 1, 5), dt.date(2024, 1, 20)],
    ...     "ddd": [10.0, 2.5, 3.0]})
    >>> p = coverage_periods(t, "k").order_by("start").to_pandas()
    >>> (p.end - p.start).tolist()   # 1-10 Jan (5-7 Jan inside it), then 20-22 Jan
    [10, 3]
    """
    given = rows.filter(rows.packs > 0)
    daily = given.group_by(["person_id", key, "dispensed_on"]).aggregate(supply=given.ddd.sum())
    start = daily.dispensed_on.epoch_days()
    days = ibis.greatest(daily.supply.ceil().cast("int64"), 1)
    spans = daily.select("person_id", key, start=start, end=start + days)
    # Explicit row frames: an ordered Ibis window without bounds spans the whole partition.
    ordered = ibis.window(group_by=["person_id", key], order_by=["start", "end"], rows=(None, 0))
    before = ibis.window(group_by=["person_id", key], order_by=["start", "end"], rows=(None, -1))
    spans = spans.mutate(reach=spans.end.max().over(before))
    fresh = spans.reach.isnull() | (spans.start > spans.reach + max_gap_days)
    spans = spans.mutate(fresh=fresh.cast("int64"))
    spans = spans.mutate(island=spans.fresh.sum().over(ordered))
    merged = spans.group_by(["person_id", key, "island"]).aggregate(
        start=spans.start.min(), end=spans.end.max()
    )
    return merged.drop("island")


def _with_bounds(periods: ir.Table) -> ir.Table:
    return periods.mutate(
        p_start=periods.period_start.epoch_days(), p_end=periods.period_end.epoch_days()
    )


def overlaps(
    spans: ir.Table, key: str, periods: ir.Table, min_days: int, pair: tuple[str, str] | None
) -> ir.Table:
    """``(person_id, period)``: persons with two periods of use of different ``key`` values
    (``pair``: of exactly these two) overlapping for at least ``min_days``, the overlap having
    a day in the period."""
    left = spans.rename(k1=key, s1="start", e1="end")
    right = spans.rename(k2=key, s2="start", e2="end")
    if pair is not None:
        left = left.filter(left.k1 == pair[0])
        right = right.filter(right.k2 == pair[1])
    joined = left.join(
        right,
        [
            left.person_id == right.person_id,
            left.k1 < right.k2 if pair is None else left.k1 != right.k2,
            left.s1 < right.e2,
            right.s2 < left.e1,
        ],
    )
    seg = joined.select(
        "person_id", start=ibis.greatest(joined.s1, joined.s2), end=ibis.least(joined.e1, joined.e2)
    )
    seg = seg.filter(seg.end - seg.start >= min_days)
    bounds = _with_bounds(periods)
    hit = seg.join(bounds, [seg.start < bounds.p_end, seg.end > bounds.p_start])
    return hit.select("person_id", "period").distinct()


def long_use(spans: ir.Table, periods: ir.Table, min_days: int) -> ir.Table:
    """``(person_id, period)``: on some day ``t`` of the period the person had been in one period
    of use for more than ``min_days`` (``t - start > min_days``, ``t < end``)."""
    bounds = _with_bounds(periods)
    first_day = spans.start + (min_days + 1)
    joined = spans.mutate(first_day=first_day).join(
        bounds,
        [spans.end > bounds.p_start],
    )
    ok = ibis.greatest(joined.first_day, joined.p_start) < ibis.least(joined.end, joined.p_end)
    return joined.filter(ok).select("person_id", "period").distinct()


def unit_patients(
    selected: ir.Table, practices: ir.Table, periods: ir.Table, level: str, units: list | None
) -> ir.Table:
    """``(unit_id, person_id, period)``: the unit's patients of any of the selected groups or
    classes in the period (net DDD > 0 in one of them, attributed by prescriber)."""
    rows = selected.filter(selected.practice_id.notnull()).join(
        unit_map(practices, level, units), "practice_id"
    )
    rows = rows.join(
        periods, [rows.dispensed_on >= periods.period_start, rows.dispensed_on < periods.period_end]
    )
    net = rows.group_by(["unit_id", "person_id", "group", "period"]).aggregate(net=rows.ddd.sum())
    return (
        net.filter(net.net.round(NET_DECIMALS) > 0)
        .select("unit_id", "person_id", "period")
        .distinct()
    )


def listed_aged(
    reg: Registers,
    definitions: Definitions,
    periods: ir.Table,
    level: str,
    units: list | None,
    min_age: int,
) -> ir.Table:
    """``(unit_id, period, listed)``: mean list size of persons aged ``min_age`` or more on the
    period's first day (persons missing from the persons register can't be placed)."""
    days = listing_days(reg.listings, periods).join(unit_map(reg.practices, level, units),
                                                    "practice_id")
    days = add_person_attributes(days, reg.persons, definitions)
    days = days.filter(days.age >= min_age)
    summed = days.group_by(["unit_id", "period", "period_days"]).aggregate(
        person_days=days.days.sum()
    )
    return summed.select("unit_id", "period", listed=summed.person_days / summed.period_days)


def _history(facts: ir.Table, periods: Sequence[Period]) -> ir.Table:
    """The facts that can matter for the periods: everything up to their end (a literal bound
    lets the database skip row groups)."""
    last = max(p.end_exclusive for p in periods)
    return facts.filter(facts.dispensed_on < last)


def risk_table(
    reg: Registers,
    definitions: Definitions,
    risk_id: str,
    level: str,
    periods: Sequence[Period],
    *,
    units: Sequence[str] | None = None,
    marts: Marts | None = None,
) -> ir.Table:
    """``(unit_id, period, patients, population, listed)`` of one risk for every unit and period
    of the level (zeros included). Each period is judged on the redemptions up to its own end:
    periods ending on different days are answered one end at a time, so a period's answer is
    the same whatever other periods are asked with it."""
    ends = sorted({p.end_exclusive for p in periods})
    if len(ends) > 1:
        return ibis.union(*(
            risk_table(reg, definitions, risk_id, level, [p for p in periods
                                                          if p.end_exclusive == end],
                       units=units, marts=marts) for end in ends))
    risk = definitions.risks[risk_id]
    wanted = None if units is None else list(units)
    ptable = periods_table(periods)
    facts = _history(facts_of(reg, definitions, marts), periods)
    selected = class_facts(facts, definitions, risk.classes)

    if isinstance(risk, LargeStart):
        if wanted is not None:
            who = persons_of_units(selected, reg.practices, level, wanted, periods)
            selected = selected.semi_join(who, "person_id")
        starts = start_practices(selected, start_days(selected, ptable))
        mapped = starts.join(unit_map(reg.practices, level, wanted), "practice_id")
        population = mapped.select("unit_id", "person_id", "period").distinct()
        big = starts.filter(starts.start_ddd.round(NET_DECIMALS) >= risk.min_start_ddd)
        flagged = big.select("person_id", "period").distinct()
    else:
        population = unit_patients(selected, reg.practices, ptable, level, wanted)
        if wanted is not None:  # a few units: only their patients' histories are needed
            selected = selected.semi_join(population.select("person_id").distinct(), "person_id")
        if isinstance(risk, ConcurrentUse):
            spans = coverage_periods(selected, "group")
            pair = (risk.classes[0], risk.classes[1])
            flagged = overlaps(spans, "group", ptable, risk.min_overlap_days, pair)
        elif isinstance(risk, MultipleSubstances):
            spans = coverage_periods(selected, "drug")
            flagged = overlaps(spans, "drug", ptable, risk.min_overlap_days, None)
        elif isinstance(risk, LongTermUse):
            spans = coverage_periods(selected, "group", risk.max_gap_days)
            flagged = long_use(spans, ptable, risk.min_days)
        elif isinstance(risk, AgeOnClass):
            aged = add_person_attributes(
                population.select("person_id", "period").distinct().join(
                    ptable.select("period", "period_start"), "period"
                ),
                reg.persons,
                definitions,
            )
            flagged = aged.filter(aged.age >= risk.min_age).select("person_id", "period")
        else:  # pragma: no cover - the definitions' kinds are closed
            raise ValueError(f"risk {risk_id!r}: unknown kind {risk.kind!r}")

    hits = population.semi_join(flagged, ["person_id", "period"])
    counts = population.group_by(["unit_id", "period"]).aggregate(population=population.count())
    found = hits.group_by(["unit_id", "period"]).aggregate(patients=hits.count())
    if isinstance(risk, AgeOnClass):
        listed = listed_aged(reg, definitions, ptable, level, wanted, risk.min_age)
    else:
        listed = listed_persons(
            reg.listings, reg.practices, reg.persons, ptable, definitions, level=level,
            units=wanted,
        )
    keys = ["unit_id", "period"]
    frame = unit_ids(reg.practices, level, wanted).cross_join(ptable.select("period"))
    out = frame
    for part in (counts, found, listed):
        out = out.left_join(part, keys).drop(*(f"{k}_right" for k in keys))
    return out.select(
        "unit_id",
        "period",
        patients=out.patients.fill_null(0),
        population=out.population.fill_null(0),
        listed=out.listed.fill_null(0.0),
    )


def risk_measures(
    reg: Registers,
    definitions: Definitions,
    risks: Sequence[str] | None,
    level: str,
    periods: Sequence[Period],
    *,
    units: Sequence[str] | None = None,
    marts: Marts | None = None,
) -> ir.Table:
    """``(level, unit_id, period, risk, patients, population, listed, patients_per_1000,
    share)`` for each risk (default: every risk in ``parameters/risks.yaml``)."""
    ids = list(definitions.risks) if risks is None else list(risks)
    unknown = [r for r in ids if r not in definitions.risks]
    if unknown or not ids:
        raise ValueError(f"unknown risk(s) {unknown}; use some of {sorted(definitions.risks)}")
    parts = []
    for rid in ids:
        t = risk_table(reg, definitions, rid, level, periods, units=units, marts=marts)
        parts.append(
            t.select(
                level=ibis.literal(level),
                unit_id=t.unit_id,
                period=t.period,
                risk=ibis.literal(rid),
                patients=t.patients,
                population=t.population,
                listed=t.listed,
                patients_per_1000=ibis.ifelse(
                    t.listed > 0, t.patients / t.listed * 1000, ibis.null("float64")
                ),
                share=ibis.ifelse(
                    t.population > 0, t.patients / t.population, ibis.null("float64")
                ),
            )
        )
    return ibis.union(*parts) if len(parts) > 1 else parts[0]
