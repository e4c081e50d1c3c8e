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

from collections.abc import Sequence

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
from workbench.engine.months import NET_DECIMALS, listed_ages
from workbench.engine.periods import Period, periods_table
from workbench.engine.persons import age_on
from workbench.engine.registers import Registers
from workbench.engine.risks import coverage_periods, long_use, overlaps

LEVELS = ("practice", "cluster", "nation")


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


def flagged(risk: object, selected: ir.Table, ptable: ir.Table, persons: ir.Table
            ) -> ir.Table | None:
    """``(pk, period)`` the rule flags (None for ``age_on_class`` and ``large_start``, which
    are judged on the population itself)."""
    if isinstance(risk, ConcurrentUse):
        spans = coverage_periods(selected, "group")
        found = overlaps(spans, "group", ptable, risk.min_overlap_days,
                         (risk.classes[0], risk.classes[1]))
    elif isinstance(risk, MultipleSubstances):
        found = overlaps(coverage_periods(selected, "drug"), "drug", ptable,
                         risk.min_overlap_days, None)
    elif isinstance(risk, LongTermUse):
        found = long_use(coverage_periods(selected, "group", risk.max_gap_days), ptable,
                         risk.min_days)
    else:
        return None
    return found.select(pk="person_id", period="period")


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
               period_months: ir.Table) -> ir.Table:
    """``(level, unit_id, period, risk, patients, population, listed)`` of one risk for every
    unit of :data:`LEVELS` and every period of ``shown`` (zeros included)."""
    risk = definitions.risks[risk_id]
    selected = _selected(facts, drug_classes(definitions, drugs, risk.classes))
    labels = [p.label for p in shown]
    codes = period_codes.filter(period_codes.period.isin(labels))
    ptable = periods_table(shown)
    parts = []
    if isinstance(risk, LargeStart):
        starts = start_practices(selected, start_days(selected, ptable))
        starts = starts.join(codes.select("pid", "period"), "period")
        big = starts.filter(starts.start_ddd.round(NET_DECIMALS) >= risk.min_start_ddd)
        flags = big.select(pk="person_id", pid="pid").distinct().mutate(
            flag=ibis.literal(True))
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
        nets = population_nets(selected, period_months.filter(
            period_months.pid.isin(codes.select("pid").to_pyarrow().column(0).to_pylist())))
        if isinstance(risk, AgeOnClass):
            ages = nets.select("pk", "pid").distinct().join(persons, "pk").join(
                codes.select("pid", "period_start"), "pid")
            aged = ages.filter(age_on(ages.birth_date, ages.period_start) >= risk.min_age)
            flags = aged.select("pk", "pid", flag=ibis.literal(True))
        else:
            found = flagged(risk, selected, ptable, persons)
            assert found is not None
            flags = found.join(codes.select("pid", "period"), "period").select(
                "pk", "pid", flag=ibis.literal(True))
        for level in LEVELS:
            parts.append((level, unit_counts(nets, flags, practices, level, codes)))
    denominators = _listed(reg, risk, listed, practices, codes)
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
