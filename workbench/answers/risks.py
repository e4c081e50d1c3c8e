"""Risky patterns of use for every unit and period, counted once per person.

A risk's figures (:mod:`workbench.engine.risks`) are counts of persons: its ``population`` (the
unit's patients of the risk's classes: net DDD > 0 in one of them, attributed by prescriber) and
its ``patients`` (those of the population the rule flags, judged on their use from every
prescriber). Asked of the engine a level at a time, each level joins every redemption with
every period again. Here:

* whether a person is **flagged** in a period depends on the person alone: it is worked out once
  per risk, with the engine's own rules (:func:`~workbench.engine.risks.coverage_periods`,
  :func:`~workbench.engine.risks.overlaps`, :func:`~workbench.engine.risks.long_use`, age on
  the period's first day, the start-day supply of :func:`~workbench.engine.journeys.
  start_practices`);
* the **population** is counted as the cells are (:mod:`.cells`): each month's net given to the
  periods it lies in, per person, practice and class; a person who got the risk's classes from
  one practice only is counted at that practice and added up to every level, the others are
  netted again per unit;
* a ``large_start`` population is the starters, each attributed to the practice of the start:
  per unit, the distinct starters of its practices.

``tests/test_answers.py`` checks the result against :func:`~workbench.engine.risks.
risk_measures` on the raw tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import ibis
import ibis.expr.types as ir

from workbench.answers.codes import unit_codes
from workbench.definitions import (
    AgeOnClass,
    ConcurrentUse,
    Definitions,
    LargeStart,
    LongTermUse,
    MultipleSubstances,
)
from workbench.engine.journeys import start_days, start_practices
from workbench.engine.months import NET_DECIMALS, listed_ages, month_index
from workbench.engine.periods import Period, periods_table
from workbench.engine.persons import age_on
from workbench.engine.registers import Registers

LEVELS = ("practice", "cluster", "nation")
Put = Callable[[str, ir.Table], ir.Table]


def drug_classes(definitions: Definitions, drugs: Sequence[tuple[int, str]],
                 classes: Sequence[str]) -> ir.Table:
    """``(did, cls)``: the drugs (codes and ATC codes) of each named class."""
    rows = [(did, cid) for cid in classes for did, atc in drugs
            if definitions.risk_classes[cid].matches(atc)]
    return ibis.memtable({"did": [r[0] for r in rows], "cls": [r[1] for r in rows]},
                         schema={"did": "int16", "cls": "string"})


def _selected(facts: ir.Table, classes: ir.Table) -> ir.Table:
    """The risk's redemptions (every prescriber) in the engine's shape: ``person_id`` (the
    person code), ``group`` (the class), ``drug`` (the drug code), ``practice_id`` (the
    practice code, null when no GP practice), ``dispensed_on``, ``packs``, ``ddd``."""
    joined = facts.join(classes, "did")
    return joined.select(person_id=joined.pk, group=joined.cls, drug=joined.did,
                         practice_id=joined.px, dispensed_on=joined.day, packs=joined.packs,
                         ddd=joined.ddd, month=joined.month)


def asof_spans(selected: ir.Table, key: str, first_month: int, last_month: int,
               max_gap_days: int = 0) -> ir.Table:
    """``(person_id, <key>, island, e, start, end)``: each period of use as it stood at the end
    of month ``e`` — what :func:`workbench.engine.risks.coverage_periods` gives from the
    redemptions up to that month's end, which is what the engine reads for a period ending then
    (a period's answer never looks ahead).

    A period of use is an island of coverage; which island a dispensing day starts or continues
    depends only on the days before it, so the islands are the same at every cut-off: only
    their ``end`` grows as later days are added. So the islands are found once, each one's
    reach is carried month by month (its running maximum), and each stays listed for twelve
    months after its last dispensing, as long as a period ending then could still meet it.
    """
    given = selected.filter(selected.packs > 0)
    daily = given.group_by(["person_id", key, "dispensed_on", "month"]).aggregate(
        supply=given.ddd.sum())
    start = daily.dispensed_on.epoch_days()
    days = ibis.greatest(daily.supply.ceil().cast("int64"), 1)
    spans = daily.select("person_id", key, "month", start=start, end=start + days)
    ordered = ibis.window(group_by=["person_id", key], order_by=["start", "end"], rows=(None, 0))
    before = ibis.window(group_by=["person_id", key], order_by=["start", "end"],
                         rows=(None, -1))
    spans = spans.mutate(reach=spans.end.max().over(before))
    fresh = spans.reach.isnull() | (spans.start > spans.reach + max_gap_days)
    spans = spans.mutate(island=fresh.cast("int64").sum().over(ordered))
    monthly = spans.group_by(["person_id", key, "island", "month"]).aggregate(
        month_end=spans.end.max(), month_start=spans.start.min())
    islands = monthly.group_by(["person_id", key, "island"]).aggregate(
        start=monthly.month_start.min(), first=monthly.month.min(),
        final=monthly.month_end.max())
    # the month of the island's last covered day: a period ending up to eleven months later
    # can still meet it
    islands = islands.mutate(final_month=_month_of_epoch(islands.final - 1))
    # every month from an island's first dispensing to the last a period could meet it in
    months = ibis.memtable({"e": list(range(first_month, last_month + 1))},
                           schema={"e": "int32"})
    grid = islands.join(months, [months.e >= islands.first,
                                 months.e <= ibis.least(last_month, islands.final_month + 11)])
    steps = grid.left_join(monthly, [grid.person_id == monthly.person_id,
                                     grid[key] == monthly[key],
                                     grid.island == monthly.island,
                                     grid.e == monthly.month])
    steps = steps.select(person_id=steps.person_id, **{key: steps[key]},
                         island=steps.island, e=steps.e, start=steps.start,
                         month_end=steps.month_end)
    carried = ibis.window(group_by=["person_id", key, "island"], order_by="e",
                          rows=(None, 0))
    return steps.mutate(end=steps.month_end.max().over(carried)).drop("month_end")


def _month_of_epoch(day: ir.IntegerValue) -> ir.IntegerValue:
    """The month index (``year × 12 + month − 1``) of an epoch day."""
    date = ibis.date(1970, 1, 1) + day.cast("int32").as_interval("D")
    return (date.year() * 12 + date.month() - 1).cast("int32")


def _bounds(periods: Sequence[Period]) -> ir.Table:
    """``(period, e, p_start, p_end)``: each period with its last month and its bounds as
    epoch days."""
    epoch = dt.date(1970, 1, 1)
    return ibis.memtable({
        "period": [p.label for p in periods],
        "e": [month_index(p.end_exclusive) - 1 for p in periods],
        "p_start": [(p.start - epoch).days for p in periods],
        "p_end": [(p.end_exclusive - epoch).days for p in periods],
    }, schema={"period": "string", "e": "int32", "p_start": "int64", "p_end": "int64"})


def flagged(risk: object, selected: ir.Table, periods: Sequence[Period], first_month: int,
            last_month: int) -> ir.Table | None:
    """``(pk, period)`` the rule flags, each period judged on the redemptions up to its end
    (None for ``age_on_class`` and ``large_start``, judged on the population itself)."""
    bounds = _bounds(periods)
    if isinstance(risk, (ConcurrentUse, MultipleSubstances)):
        key = "group" if isinstance(risk, ConcurrentUse) else "drug"
        spans = asof_spans(selected, key, first_month, last_month)
        left = spans.rename(k1=key, s1="start", e1="end")
        right = spans.rename(k2=key, s2="start", e2="end")
        if isinstance(risk, ConcurrentUse):
            left = left.filter(left.k1 == risk.classes[0])
            right = right.filter(right.k2 == risk.classes[1])
        joined = left.join(right, [
            left.person_id == right.person_id, left.e == right.e,
            left.k1 < right.k2 if isinstance(risk, MultipleSubstances) else left.k1 != right.k2,
            left.s1 < right.e2, right.s2 < left.e1])
        seg = joined.select(person_id=joined.person_id, e=joined.e,
                            start=ibis.greatest(joined.s1, joined.s2),
                            end=ibis.least(joined.e1, joined.e2))
        seg = seg.filter(seg.end - seg.start >= risk.min_overlap_days)
        hit = seg.join(bounds, [seg.e == bounds.e, seg.start < bounds.p_end,
                                seg.end > bounds.p_start])
    elif isinstance(risk, LongTermUse):
        spans = asof_spans(selected, "group", first_month, last_month, risk.max_gap_days)
        joined = spans.join(bounds, "e")
        first_day = joined.start + (risk.min_days + 1)
        ok = ibis.greatest(first_day, joined.p_start) < ibis.least(joined.end, joined.p_end)
        hit = joined.filter(ok)
    else:
        return None
    return hit.select(pk=hit.person_id, period=hit.period).distinct()


def population_nets(selected: ir.Table, period_months: ir.Table) -> ir.Table:
    """``(pk, px, cls, pid, net, multi)``: GP nets per person, practice, class and period;
    ``multi`` marks a person who got the risk's classes from more than one practice."""
    gp = selected.filter(selected.practice_id.notnull())
    months = gp.group_by(pk=gp.person_id, px=gp.practice_id, cls=gp.group,
                         month=gp.month).aggregate(ddd=gp.ddd.sum())
    expanded = months.join(period_months, "month")
    nets = expanded.group_by("pk", "px", "cls", "pid").aggregate(net=expanded.ddd.sum())
    counted = gp.group_by(pk=gp.person_id).aggregate(practices=gp.practice_id.nunique())
    multi = counted.filter(counted.practices > 1).select("pk", multi=ibis.literal(True))
    joined = nets.left_join(multi, "pk").drop("pk_right")
    return joined.mutate(multi=joined.multi.fill_null(False))


def _persons_of(nets: ir.Table, keys: Sequence[str]) -> ir.Table:
    """Per person and ``keys``: whether they are a patient of one of the classes there."""
    patient = (nets.net.round(NET_DECIMALS) > 0).cast("int8")
    return nets.group_by(["pk", *keys]).aggregate(patient=patient.max())


def unit_counts(nets: ir.Table, flags: ir.Table, practices: ir.Table, level: str,
                periods: ir.Table) -> ir.Table:
    """``(unit_id, pid, population, patients)`` of one level: single-practice persons counted
    at their practice and added up, ``multi`` persons netted again at the unit."""
    units = unit_codes(practices, level)

    def counted(people: ir.Table, keys: Sequence[str]) -> ir.Table:
        withflag = people.left_join(flags, ["pk", "pid"]).drop("pk_right", "pid_right")
        hit = (withflag.patient == 1) & withflag.flag.fill_null(False)
        return withflag.group_by(list(keys)).aggregate(
            population=(withflag.patient == 1).sum().cast("int64"),
            patients=hit.sum().cast("int64"))

    single = _persons_of(nets.filter(~nets.multi), ["px", "pid"])
    at_practice = counted(single, ["px", "pid"]).join(units, "px")
    added = at_practice.group_by("unit_id", "pid").aggregate(
        population=at_practice.population.sum(), patients=at_practice.patients.sum())
    multi = nets.filter(nets.multi).join(units, "px")
    renetted = multi.group_by("pk", "unit_id", "cls", "pid").aggregate(net=multi.net.sum())
    people = _persons_of(renetted, ["unit_id", "pid"])
    both = ibis.union(added, counted(people, ["unit_id", "pid"]).select(*added.columns))
    return both.group_by("unit_id", "pid").aggregate(
        population=both.population.sum(), patients=both.patients.sum())


def risk_table(reg: Registers, definitions: Definitions, risk_id: str, facts: ir.Table,
               drugs: Sequence[tuple[int, str]], practices: ir.Table, persons: ir.Table,
               listed: ir.Table, shown: Sequence[Period], period_codes: ir.Table,
               period_months: ir.Table, put: Put,
               shares: Sequence[tuple[int, int]] = ((0, 2**62),)) -> ir.Table:
    """``(level, unit_id, period, risk, patients, population, listed)`` of one risk for every
    unit of :data:`LEVELS` and every period of ``shown`` (zeros included). What every level
    reads — the population's nets, the flags, the starts — is materialised through ``put``
    once: as one expression each level's counts worked them out again (a risk took four times
    its flags' and nets' time). The nets, flags and counts are made a share of the persons at a
    time (``shares``: ranges of person codes, bounds included): each person is in one share, so
    the shares' counts add up."""
    risk = definitions.risks[risk_id]
    selected = _selected(facts, drug_classes(definitions, drugs, risk.classes))
    labels = [p.label for p in shown]
    codes = period_codes.filter(period_codes.period.isin(labels))
    ptable = periods_table(shown)
    parts = []
    if isinstance(risk, LargeStart):
        starts = start_practices(selected, start_days(selected, ptable))
        starts = put("scratch_risk_starts", starts.join(codes.select("pid", "period"), "period"))
        big = starts.filter(starts.start_ddd.round(NET_DECIMALS) >= risk.min_start_ddd)
        flags = put("scratch_risk_flags", big.select(pk="person_id", pid="pid").distinct()
                    .mutate(flag=ibis.literal(True)))
        for level in LEVELS:
            units = unit_codes(practices, level).rename(practice_id="px")
            mapped = starts.join(units, "practice_id")
            people = mapped.select(pk="person_id", unit_id="unit_id", pid="pid").distinct()
            withflag = people.left_join(flags, ["pk", "pid"])
            counts = withflag.group_by("unit_id", "pid").aggregate(
                population=withflag.count(),
                patients=withflag.flag.fill_null(False).sum().cast("int64"))
            parts.append((level, counts))
    else:
        pids = codes.select("pid").to_pyarrow().column(0).to_pylist()
        last_month = max(month_index(p.end_exclusive) for p in shown) - 1
        first_month = selected.month.min().to_pyarrow().as_py()
        counted: dict[str, list[ir.Table]] = {level: [] for level in LEVELS}
        for i, (lo, hi) in enumerate(shares):
            mine = selected.filter(selected.person_id.between(lo, hi))
            nets = put("scratch_risk_nets", population_nets(
                mine, period_months.filter(period_months.pid.isin(pids))))
            flags = put("scratch_risk_flags", _flags(risk, mine, nets, persons, codes, shown,
                                                     first_month, last_month))
            for level in LEVELS:
                counted[level].append(put(f"scratch_risk_counts_{level}_{i}", unit_counts(
                    nets, flags, practices, level, codes)))
        for level, pieces in counted.items():
            both = ibis.union(*pieces)
            parts.append((level, both.group_by("unit_id", "pid").aggregate(
                population=both.population.sum(), patients=both.patients.sum())))
    denominators = put("scratch_risk_listed", _listed(reg, risk, listed, practices, codes))
    out = []
    for level, counts in parts:
        frame = unit_codes(practices, level).select("unit_id").distinct().cross_join(
            codes.select("pid", "period"))
        table = frame.left_join(counts, ["unit_id", "pid"]).drop("unit_id_right", "pid_right")
        mine = denominators.filter(denominators.level == level).drop("level")
        table = table.left_join(mine, ["unit_id", "period"]).drop("unit_id_right",
                                                                  "period_right")
        out.append(table.select(
            level=ibis.literal(level), unit_id=table.unit_id, period=table.period,
            risk=ibis.literal(risk_id), patients=table.patients.fill_null(0).cast("int64"),
            population=table.population.fill_null(0).cast("int64"),
            listed=table.listed.fill_null(0.0)))
    return ibis.union(*out)


def _flags(risk: object, selected: ir.Table, nets: ir.Table, persons: ir.Table,
           codes: ir.Table, shown: Sequence[Period], first_month: int | None,
           last_month: int) -> ir.Table:
    """``(pk, pid, flag)``: the persons the risk flags in each period (``selected``: the
    redemptions of its classes; ``nets``: their population nets)."""
    if isinstance(risk, AgeOnClass):
        ages = nets.select("pk", "pid").distinct().join(persons, "pk").join(
            codes.select("pid", "period_start"), "pid")
        aged = ages.filter(age_on(ages.birth_date, ages.period_start) >= risk.min_age)
        return aged.select("pk", "pid", flag=ibis.literal(True))
    if first_month is None:  # nobody redeemed the risk's drugs: nobody flagged
        return nets.select("pk", "pid", flag=ibis.literal(True)).limit(0)
    found = flagged(risk, selected, shown, first_month, last_month)
    assert found is not None
    return found.join(codes.select("pid", "period"), "period").select(
        "pk", "pid", flag=ibis.literal(True))


def _listed(reg: Registers, risk: object, listed: ir.Table, practices: ir.Table,
            codes: ir.Table) -> ir.Table:
    """``(level, unit_id, period, listed)``: the unit's listed persons (aged ``min_age`` or
    more for ``age_on_class``: the rate's natural denominator)."""
    if not isinstance(risk, AgeOnClass):
        total = listed.filter(listed.level.isin(list(LEVELS)))
        return total.group_by("level", "unit_id", "period").aggregate(
            listed=total.listed.sum())
    bounds = codes.aggregate(first=codes.first.min(), end=codes.end.max()).to_pyarrow()
    first, end = bounds.column("first")[0].as_py(), bounds.column("end")[0].as_py()
    ages = listed_ages(reg.listings, reg.persons, first, end)
    aged = ages.filter(ages.age >= risk.min_age)
    keyed = aged.join(codes.select("period", "days", period_month="first",
                                   months=(codes.end - codes.first).cast("int64")),
                      ["period_month", "months"])
    coded = keyed.join(practices.select("practice_id", "px"), "practice_id")
    parts = []
    for level in LEVELS:
        mapped = coded.join(unit_codes(practices, level), "px")
        summed = mapped.group_by("unit_id", "period", "days").aggregate(
            person_days=mapped.person_days.sum())
        parts.append(summed.select(level=ibis.literal(level), unit_id=summed.unit_id,
                                   period=summed.period,
                                   listed=summed.person_days / summed.days))
    return ibis.union(*parts)
