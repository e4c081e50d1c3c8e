"""The set-based build of the answer store: every answer, for every unit, once.

:func:`build_answers` takes the register (on any Ibis backend) and returns the answer tables as
Ibis expressions materialised one phase at a time through ``put`` (the caller decides where: a
DuckDB file, a Spark catalogue). Every phase is one query over all units: nothing loops over
units, pages or periods. The phases, in order:

1. **codes** — periods, selections, practices and persons as small integers (:mod:`.codes`);
2. **persons** — every person's cell per group and period: sex, age group, consumption group,
   started (:mod:`.persons`);
3. **cells** — patients, DDD and DDD² of every unit × selection (group or drug) × period × cell,
   every level (:mod:`.cells`);
4. **parts** — the same for the parts of a selection by a property of what was dispensed:
   depot, addictive, pack size, product;
5. **listed** — listed persons per unit × period × stratum (:mod:`.listed`).

The engine's expressions stay the definition: the build calls them (redemption facts, redemption
days and their new-use flag, the listed marts, the consumption-group labels) and
``tests/test_answers.py`` checks random slices of the store against the engine on the raw tables.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir

from workbench.answers import cells as C
from workbench.answers import persons as P
from workbench.answers.codes import (
    Selections,
    lookback_codes,
    period_codes,
    period_month_codes,
    practice_codes,
    unit_codes,
)
from workbench.answers.listed import practice_listed, unit_listed
from workbench.answers.periods import store_periods
from workbench.definitions import Definitions
from workbench.engine.facts import redemption_facts
from workbench.engine.months import month_index
from workbench.engine.periods import Period
from workbench.engine.registers import Registers

Put = Callable[[str, ir.Table], ir.Table]
# The parts of a selection by a property of the product: (selection code column, property).
# A drug's addictive flag is its own (an ATC property), so only groups are split by it; a
# product is one drug's, so products are listed under their drug.
PARTS = (("gid", "depot"), ("did", "depot"), ("gid", "addictive"), ("gid", "pack_size"),
         ("did", "pack_size"), ("did", "product"))


@dataclass
class Phase:
    """One step of the build: its name, seconds and the rows it wrote."""

    name: str
    seconds: float
    rows: int


@dataclass
class Progress:
    """What the build reports as it goes (``say`` prints a line; tests pass a list's append)."""

    say: Callable[[str], None] = print
    phases: list[Phase] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def phase(self, name: str) -> Iterator[list[int]]:
        rows: list[int] = []
        began = time.perf_counter()
        self.say(f"answers: {name} …")
        yield rows
        seconds = time.perf_counter() - began
        self.phases.append(Phase(name, seconds, sum(rows)))
        total = time.perf_counter() - self.started
        self.say(f"answers: {name} done in {seconds:.1f} s ({sum(rows):,} rows; "
                 f"{total:.0f} s so far)")


def data_span(reg: Registers) -> tuple[dt.date, dt.date]:
    """The first and last dispensing day of the register."""
    bounds = reg.redemptions.aggregate(first=reg.redemptions.dispensed_on.min(),
                                       last=reg.redemptions.dispensed_on.max())
    row = bounds.to_pyarrow().to_pylist()[0]
    if row["first"] is None:
        raise ValueError("the register has no redemptions: nothing to answer")
    return _as_date(row["first"]), _as_date(row["last"])


def _as_date(value: object) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value  # type: ignore[return-value]


def build_answers(reg: Registers, definitions: Definitions, put: Put,
                  progress: Progress | None = None,
                  periods: tuple[Period, ...] | None = None) -> dict[str, ir.Table]:
    """Every answer table, materialised through ``put(name, expression)`` (which returns the
    stored table). Intermediate tables are named ``scratch_*``; the answers are ``cells``,
    ``parts``, ``listed``, ``periods`` and ``selections``."""
    progress = progress or Progress(say=lambda _: None)
    if periods is None:
        periods = store_periods(*data_span(reg))
    if not periods:
        raise ValueError("the data hold no whole month: nothing to answer")

    def keep(rows: list[int], name: str, expr: ir.Table) -> ir.Table:
        table = put(name, expr)
        rows.append(int(table.count().to_pyarrow().as_py()))
        return table

    with progress.phase("codes") as rows:
        ptable = keep(rows, "periods", period_codes(periods))
        pmonths = keep(rows, "scratch_period_months", period_month_codes(periods))
        facts = redemption_facts(reg.redemptions, reg.products, reg.practices, definitions)
        # the drugs someone redeemed (the catalogue holds many nobody is prescribed)
        used = facts.filter(facts.product_group.notnull()).select("drug").distinct()
        sels = Selections.of(definitions, used.to_pyarrow().column(0).to_pylist())
        selections = keep(rows, "selections", sels.table(definitions))
        practices = keep(rows, "scratch_practices", practice_codes(reg.practices))
        units = keep(rows, "units", ibis.union(*(
            unit_codes(practices, level).select("unit_id").distinct()
            .mutate(level=ibis.literal(level)) for level in C.LEVELS)).select("level", "unit_id"))
        keys = keep(rows, "scratch_person_keys", P.person_keys(facts))
        coded = keep(rows, "scratch_facts", P.coded_facts(
            facts, keys, practices, sels.group_table(), sels.drug_table()))

    with progress.phase("persons") as rows:
        days = keep(rows, "scratch_days", P.day_codes(coded))
        months = keep(rows, "scratch_group_months", P.group_months(coded, days))
        ends = [month_index(p.end_exclusive) - 1 for p in periods]
        windows = keep(rows, "scratch_windows", P.window_sums(months, lookback_codes(ends)))
        firsts = P.first_days(months, pmonths)
        persons = reg.persons.join(keys, "person_id").select("pk", "sex", "birth_date")
        sexes = reg.persons.select("sex").distinct().to_pyarrow().column(0).to_pylist()
        codes = keep(rows, "scratch_cell_codes", P.cell_codes(sexes, definitions))
        person_periods = keep(rows, "scratch_person_periods", P.coded_cells(P.person_periods(
            firsts, windows, persons, ptable, definitions), codes))
        gp = keep(rows, "scratch_gp", coded.filter(coded.px.notnull()))
        multi = keep(rows, "scratch_multi", C.multi_persons(gp))

    cell_keys = ["sid", "pid", "cell"]
    cell_parts = []
    family_nets, family_multi = {}, {}
    for sel in ("gid", "did"):
        with progress.phase(f"cells of {'groups' if sel == 'gid' else 'drugs'}") as rows:
            if sel == "gid":
                nets = C.with_cells(C.period_nets(C.family_months(gp, sel), pmonths, multi),
                                    person_periods)
            else:  # a group's nets split by drug
                labels = C.single_labels(gp, "gid", "did", None)
                fresh = C.with_cells(C.fresh_nets(gp, labels, "gid", "did", None, pmonths,
                                                  multi), person_periods)
                nets = C.split_nets(family_nets["gid"], fresh, labels)
            nets = family_nets[sel] = keep(rows, f"scratch_nets_{sel}", nets)
            sums = keep(rows, f"scratch_sums_{sel}", C.practice_sums(nets, cell_keys))
            # the levels read the few persons seen at several practices, not every net again
            many = family_multi[sel] = keep(rows, f"scratch_multi_{sel}",
                                            nets.filter(nets.multi))
            cell_parts.append(_levels(sums, many, practices, cell_keys, put, rows,
                                      f"cells_{sel}"))
    with progress.phase("cells of every level") as rows:
        cells = keep(rows, "cells", _labelled(P.decoded(ibis.union(*cell_parts), codes),
                                              ptable, selections, units))

    part_keys = ["sid", "pid", "value"]
    part_tables = []
    for sel, dim in PARTS:
        with progress.phase(f"parts by {dim} of {'groups' if sel == 'gid' else 'drugs'}") as rows:
            labels = keep(rows, f"scratch_part_labels_{sel}_{dim}",
                          C.single_labels(gp, sel, sel, dim))
            fresh = keep(rows, f"scratch_part_fresh_{sel}_{dim}",
                         C.fresh_nets(gp, labels, sel, sel, dim, pmonths, multi))
            # the persons' nets are as many as the parent's: summed as they are made, and only
            # the few seen at several practices kept (the levels net them again)
            nets = C.split_nets(family_nets[sel].drop("cell"), fresh, labels)
            sums = keep(rows, f"scratch_part_sums_{sel}_{dim}", C.practice_sums(nets, part_keys))
            nets = keep(rows, f"scratch_part_multi_{sel}_{dim}", C.split_nets(
                family_multi[sel].drop("cell"), fresh.filter(fresh.multi), labels))
            levels = _levels(sums, nets, practices, part_keys, put, rows, f"parts_{sel}_{dim}")
            part_tables.append(levels.mutate(dim=ibis.literal(dim)))
    with progress.phase("parts of every level") as rows:
        parts = keep(rows, "parts", _labelled(ibis.union(*part_tables), ptable, selections, units))

    with progress.phase("listed persons") as rows:
        first = min(month_index(p.start) for p in periods)
        end = max(month_index(p.end_exclusive) for p in periods)
        per_practice = keep(rows, "scratch_listed", practice_listed(
            reg, definitions, ptable, pmonths, practices, first, end))
        levels = [unit_listed(per_practice, unit_codes(practices, level), ptable)
                  .mutate(level=ibis.literal(level)) for level in C.LEVELS]
        listed = ibis.union(*levels)
        listed = listed.join(ptable.select("pid", "period"), "pid").drop("pid")
        listed = keep(rows, "listed", listed.order_by(["level", "period", "unit_id"]))
    return {"cells": cells, "parts": parts, "listed": listed, "periods": ptable,
            "selections": selections,
            # what the later phases (:mod:`.judged`) reuse
            "scratch_facts": coded, "scratch_period_months": pmonths,
            "scratch_practices": practices, "scratch_person_keys": keys}



def _levels(sums: ir.Table, nets: ir.Table, practices: ir.Table, keys: list[str], put: Put,
            rows: list[int], name: str) -> ir.Table:
    """Every level's figures, each materialised (one query a level): as one expression, the
    five levels' aggregations and the final sort ran out of DuckDB's memory on a region."""
    found = []
    for level in C.LEVELS:
        units = unit_codes(practices, level)
        if level == "practice":
            expr = C.practice_level(sums, units, keys)
        else:
            expr = C.level_sums(sums, nets, units, keys)
        table = put(f"scratch_{name}_{level}", expr.mutate(level=ibis.literal(level)))
        rows.append(int(table.count().to_pyarrow().as_py()))
        found.append(table)
    return ibis.union(*found)


def _labelled(table: ir.Table, periods: ir.Table, selections: ir.Table, units: ir.Table
              ) -> ir.Table:
    """Codes back to labels, sorted so a slice of one level, selection and period (every
    unit's rows) or of one unit reads few row groups. The order is the labels' (level, sel,
    period, unit_id), but sorted on one integer made of their ranks: sorting millions of rows
    on four texts took longer than the rest of writing them."""
    period_ranks = periods.select("pid", "period", prank=_rank(periods.period))
    sel_ranks = selections.select("sid", "sel", srank=_rank(selections.sel))
    names = units.select("unit_id").distinct()
    unit_ranks = names.mutate(urank=_rank(names.unit_id))
    named = table.join(period_ranks, "pid").join(sel_ranks, "sid").join(unit_ranks, "unit_id")
    lrank = ibis.cases(*((named.level == level, i) for i, level in enumerate(sorted(C.LEVELS))))
    # ranks below 2**15 (selection codes are int16), 2**16 (periods), 2**24 (units)
    key = ((lrank.cast("int64") * 2**15 + named.srank) * 2**16 + named.prank) * 2**24 + named.urank
    front = ["level", "sel", "period", "unit_id"]
    rest = [c for c in table.columns if c not in (*front, "pid", "sid")]
    return named.select(*front, *rest, order=key).order_by("order").drop("order")


def _rank(column: ir.Value) -> ir.IntegerValue:
    """Each value's place in the sorted distinct values (from 0)."""
    return ibis.dense_rank().over(order_by=column).cast("int64")
