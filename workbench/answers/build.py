"""The set-based build of the answer store: every answer, for every unit, once.

:func:`build_answers` takes the register (on any Ibis backend) and returns the answer tables as
Ibis expressions materialised one phase at a time through ``put`` (the caller decides where: a
DuckDB file, a Spark catalogue). Every phase is one query over all units: nothing loops over
units, pages or periods. The person-level phases take a share of the persons (or of the
practices, for the nets) at a time when the register is larger than a region: a share's
person × period rows fit in memory, the whole nation's spill (``chunk_rows``). The phases, in
order:

1. **codes** — periods, selections, practices and persons as small integers (:mod:`.codes`);
2. **persons** — every person's cell per group and period: sex, age group, consumption group,
   started (:mod:`.persons`);
3. **cells** — patients, DDD and DDD² of every unit × selection (group or drug) × period × cell,
   every level (:mod:`.cells`);
4. **parts** — the same for the parts of a selection by a property of what was dispensed:
   depot, addictive, pack size, product;
5. **listed** — listed persons per unit × period × stratum (:mod:`.listed`);
6. **protection** — which figures no view may publish, decided over every relation between them
   a viewer can combine (:mod:`.protected`).

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
from workbench.answers import protected as Q
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
from workbench.disclosure import DEFAULT_POLICY
from workbench.engine.facts import redemption_facts
from workbench.engine.months import month_index
from workbench.engine.periods import Period
from workbench.engine.registers import Registers

Put = Callable[[str, ir.Table], ir.Table]
Insert = Callable[[str, ir.Table], None]
# The redemptions a share of the person-level steps holds (see share_count): the demo region's
# 5.2 M build in one share within the build's 5 GB.
CHUNK_ROWS = 6_000_000
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
                  progress: Progress | None = None, insert: Insert | None = None,
                  periods: tuple[Period, ...] | None = None,
                  chunk_rows: int = CHUNK_ROWS) -> dict[str, ir.Table]:
    """Every answer table, materialised through ``put(name, expression)`` (which returns the
    stored table). Intermediate tables are named ``scratch_*``; the answers are ``cells``,
    ``parts``, ``listed``, ``periods`` and ``selections``. The person-level steps take a share
    of the persons (practices) of about ``chunk_rows`` redemptions at a time. Built whole
    (``periods`` not given), the figures no view may publish are ``hidden`` (:func:`protect`)."""
    progress = progress or Progress(say=lambda _: None)
    whole = periods is None
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

    total = int(coded.count().to_pyarrow().as_py())
    with progress.phase("persons") as rows:
        ends = [month_index(p.end_exclusive) - 1 for p in periods]
        lookback = lookback_codes(ends)
        persons = reg.persons.join(keys, "person_id").select("pk", "sex", "birth_date")
        sexes = reg.persons.select("sex").distinct().to_pyarrow().column(0).to_pylist()
        codes = keep(rows, "scratch_cell_codes", P.cell_codes(sexes, definitions))
        people = int(keys.count().to_pyarrow().as_py())
        found = []
        for i, (lo, hi) in enumerate(even_ranges(people, share_count(total, chunk_rows))):
            mine = coded.filter(coded.pk.between(lo, hi))
            days = put("scratch_days", P.day_codes(mine))
            months = put("scratch_group_months", P.group_months(mine, days))
            windows = put("scratch_windows", P.window_sums(months, lookback))
            firsts = P.first_days(months, pmonths)
            found.append(keep(rows, f"scratch_person_periods_{i}", P.coded_cells(
                P.person_periods(firsts, windows, persons, ptable, definitions), codes)))
        person_periods = ibis.union(*found)
        gp = keep(rows, "scratch_gp", coded.filter(coded.px.notnull()))
        multi = keep(rows, "scratch_multi", C.multi_persons(gp))

    # every person's nets at a practice, a share of the practices at a time (see share_count)
    cell_keys = ["sid", "pid", "cell"]
    part_keys = ["sid", "pid", "value"]
    sums: dict[str, list[ir.Table]] = {}
    many: dict[str, list[ir.Table]] = {}
    chunks = _practice_ranges(gp, share_count(total, chunk_rows))
    for i, (lo, hi) in enumerate(chunks):
        where = f", share {i + 1} of {len(chunks)}" if len(chunks) > 1 else ""
        mine = gp.filter(gp.px.between(lo, hi))
        with progress.phase(f"cells{where}") as rows:
            family_nets, family_multi = _cell_nets(mine, pmonths, multi, person_periods, put)
            for sel, nets in family_nets.items():
                sums.setdefault(sel, []).append(keep(
                    rows, f"scratch_sums_{sel}_{i}", C.practice_sums(nets, cell_keys)))
                # the levels read the few persons seen at several practices, not every net
                many.setdefault(sel, []).append(keep(
                    rows, f"scratch_multi_{sel}_{i}", family_multi[sel]))
        with progress.phase(f"parts{where}") as rows:
            for sel, dim in PARTS:
                name = f"{sel}_{dim}"
                labels = put("scratch_part_labels", C.single_labels(mine, sel, sel, dim))
                fresh = put("scratch_part_fresh",
                            C.fresh_nets(mine, labels, sel, sel, dim, pmonths, multi))
                # the persons' nets are as many as the parent's: summed as they are made, and
                # only the few seen at several practices kept (the levels net them again)
                nets = C.split_nets(family_nets[sel].drop("cell"), fresh, labels)
                sums.setdefault(name, []).append(keep(
                    rows, f"scratch_part_sums_{name}_{i}", C.practice_sums(nets, part_keys)))
                many.setdefault(name, []).append(keep(
                    rows, f"scratch_part_multi_{name}_{i}", C.split_nets(
                        family_multi[sel].drop("cell"), fresh.filter(fresh.multi), labels)))
    order = _store_order(selections, ptable)
    with progress.phase("cells of every level") as rows:
        levels = [_levels(sums[sel], ibis.union(*many[sel]), practices,
                          cell_keys, put, rows, f"cells_{sel}") for sel in ("gid", "did")]
        cells = _write_sorted("cells", _joined(levels), order, put, insert, rows, lambda t: (
            _labelled(P.decoded(t, codes), ptable, selections, units)), chunk_rows)
    with progress.phase("parts of every level") as rows:
        part_levels = []
        for sel, dim in PARTS:
            name = f"{sel}_{dim}"
            levels = _levels(sums[name], ibis.union(*many[name]), practices,
                             part_keys, put, rows, f"parts_{name}")
            part_levels.append({level: (t.mutate(dim=ibis.literal(dim)), n)
                                for level, (t, n) in levels.items()})
        parts = _write_sorted("parts", _joined(part_levels), order, put, insert, rows,
                              lambda t: _labelled(t, ptable, selections, units), chunk_rows)

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
    found = {"cells": cells, "parts": parts, "listed": listed, "periods": ptable,
             "selections": selections}
    if whole:  # a refresh decides again over the whole store once it is merged
        with progress.phase("protection") as rows:
            found["hidden"] = keep(rows, "hidden", protect(
                cells, parts, practices, selections, ptable, put, progress.say))
    return {**found,
            # what the later phases (:mod:`.judged`) reuse
            "scratch_facts": coded, "scratch_period_months": pmonths,
            "scratch_practices": practices, "scratch_person_keys": keys}



def protect(cells: ir.Table, parts: ir.Table, practices: ir.Table, selections: ir.Table,
            periods: ir.Table, put: Put, say: Callable[[str], None]) -> ir.Table:
    """Every figure a view may not publish, decided once over their relations
    (:mod:`.protected`), by its keys."""
    figs = Q.aggregates(cells, parts, put)
    eqs = put("scratch_equations", Q.equations(figs, Q.nesting(practices), selections, periods))
    hidden = Q.decide(figs, eqs, put, DEFAULT_POLICY.threshold, say)
    return Q.hidden_figures(figs, hidden).order_by(list(Q.KEYS))


def _cell_nets(gp: ir.Table, pmonths: ir.Table, multi: ir.Table, person_periods: ir.Table,
               put: Put) -> tuple[dict[str, ir.Table], dict[str, ir.Table]]:
    """The nets with cells of groups (``gid``) and drugs (``did``) of the redemptions ``gp``
    (:mod:`.cells`), and those of the persons seen at several practices."""
    nets = put("scratch_nets_gid", C.with_cells(
        C.period_nets(C.family_months(gp, "gid"), pmonths, multi), person_periods))
    # a group's nets split by drug
    labels = C.single_labels(gp, "gid", "did", None)
    fresh = C.with_cells(C.fresh_nets(gp, labels, "gid", "did", None, pmonths, multi),
                         person_periods)
    drugs = put("scratch_nets_did", C.split_nets(nets, fresh, labels))
    family = {"gid": nets, "did": drugs}
    return family, {sel: put(f"scratch_many_{sel}", t.filter(t.multi))
                    for sel, t in family.items()}


def share_count(rows: int, chunk_rows: int) -> int:
    """How many shares of the persons (or the practices) the person-level steps take at a
    time: each step holds every person × period of its share, and past a region's size a
    national share no longer fits DuckDB's memory and spills (the nation's persons and cells
    took three times their share of a region's time)."""
    return max(1, -(-rows // max(1, chunk_rows)))


def even_ranges(count: int, n: int) -> list[tuple[int, int]]:
    """``n`` ranges of ``0 … count`` (inclusive bounds; the person codes run from 0)."""
    step = -(-max(count, 1) // n)
    return [(lo, lo + step - 1) for lo in range(0, max(count, 1), step)]


def _practice_ranges(gp: ir.Table, n: int) -> list[tuple[int, int]]:
    """Ranges of practice codes of about equal redemptions, ``n`` at most (a practice is in
    one, so its sums are whole in it)."""
    if n == 1:
        return [(0, 2**31 - 1)]
    counts = gp.group_by("px").aggregate(rows=gp.count()).order_by("px").to_pyarrow()
    px, rows = counts.column("px").to_pylist(), counts.column("rows").to_pylist()
    target = sum(rows) / n
    found, lo, seen = [], px[0], 0
    for code, size in zip(px, rows, strict=True):
        seen += size
        if seen >= target * (len(found) + 1) or code == px[-1]:
            found.append((lo, code))
            lo = code + 1
        if code == px[-1] or len(found) == n - 1:
            break
    if found[-1][1] != px[-1]:
        found.append((lo, px[-1]))
    return found


Levels = dict[str, tuple[ir.Table, int]]


def _store_order(selections: ir.Table, periods: ir.Table) -> list[tuple[int, int]]:
    """Every (selection code, period code) in the store's order: by their labels."""
    sels = sorted(selections.select("sid", "sel").to_pyarrow().to_pylist(),
                  key=lambda row: row["sel"])
    pers = sorted(periods.select("pid", "period").to_pyarrow().to_pylist(),
                  key=lambda row: row["period"])
    return [(s["sid"], p["pid"]) for s in sels for p in pers]


def _runs(counts: dict[tuple[int, int], int], order: list[tuple[int, int]], most: int
          ) -> list[list[tuple[int, int]]]:
    """The (selection, period) pairs that have rows, in ``order``, cut into runs of at most
    ``most`` rows (a pair with more is a run of its own)."""
    runs: list[list[tuple[int, int]]] = [[]]
    size = 0
    for pair in order:
        n = counts.get(pair, 0)
        if not n:
            continue
        if runs[-1] and size + n > most:
            runs.append([])
            size = 0
        runs[-1].append(pair)
        size += n
    return [run for run in runs if run]


def _run_filter(table: ir.Table, run: list[tuple[int, int]], pids: dict[int, set[int]]
                ) -> ir.BooleanValue:
    """Rows of the run's pairs: whole selections by code, the others' periods listed."""
    by_sel: dict[int, list[int]] = {}
    for sid, pid in run:
        by_sel.setdefault(sid, []).append(pid)
    whole = [sid for sid, got in by_sel.items() if set(got) >= pids[sid]]
    conditions = [table.sid.isin(whole)] if whole else []
    conditions += [(table.sid == sid) & table.pid.isin(got) for sid, got in by_sel.items()
                   if sid not in whole]
    found = conditions[0]
    for condition in conditions[1:]:
        found = found | condition
    return found


def _joined(families: list[Levels]) -> Levels:
    """Each level's tables of several families as one, with their rows."""
    return {level: (ibis.union(*(f[level][0] for f in families)),
                    sum(f[level][1] for f in families)) for level in families[0]}


def _write_sorted(name: str, levels: Levels, order: list[tuple[int, int]], put: Put,
                  insert: Insert | None,
                  rows: list[int], labelled: Callable[[ir.Table], ir.Table],
                  sort_rows: int) -> ir.Table:
    """``name``: the levels' rows labelled and in the store's order (level, selection,
    period, unit), written a level and a run of its (selection, period) pairs at a time in that
    order. Sorted as one, the nation's 270 million cells ran out of the build's memory, and so
    did runs of selections cut by their number (a group has many more rows than a drug): each
    run now holds at most ``sort_rows`` rows (counted first), and the runs are appended in
    order. Without
    ``insert`` (a backend without appends) it is one statement."""
    if insert is None:
        return put(name, labelled(ibis.union(*(t for t, _ in levels.values()))))
    table = None
    for level in sorted(levels):
        part, _ = levels[level]
        sizes = part.group_by("sid", "pid").aggregate(n=part.count()).to_pyarrow().to_pylist()
        counts = {(r["sid"], r["pid"]): r["n"] for r in sizes}
        pids: dict[int, set[int]] = {}
        for sid, pid in counts:
            pids.setdefault(sid, set()).add(pid)
        for run in _runs(counts, order, sort_rows):
            piece = labelled(part.filter(_run_filter(part, run, pids)))
            if table is None:
                table = put(name, piece)
            else:
                insert(name, piece)
    if table is None:  # no rows at all
        table = put(name, labelled(ibis.union(*(t for t, _ in levels.values()))))
    rows.append(int(table.count().to_pyarrow().as_py()))
    return table


def _levels(shares: list[ir.Table], nets: ir.Table, practices: ir.Table, keys: list[str],
            put: Put, rows: list[int], name: str) -> Levels:
    """Every level's figures from the practice sums of each share (``shares``) and the nets of
    the persons seen at several practices, each level materialised (one query a level: as one
    expression, the five levels' aggregations and the sort ran out of DuckDB's memory on a
    region). A practice's figures are whole in its share, so the practices are summed a share
    at a time: as one aggregation the nation's 200 million practice cells ran out of memory.
    Regions and the nation add up the single-practice persons' sums of the level that nests in
    them (:func:`_nesting`), not every practice's again."""
    found = {}
    sums = ibis.union(*shares)
    nests = _nesting(practices)
    single: dict[str, ir.Table] = {}
    for level in C.LEVELS:
        units = unit_codes(practices, level)
        if level == "practice":
            pieces = [put(f"scratch_{name}_{level}_{i}", C.practice_level(share, units, keys)
                          .mutate(level=ibis.literal(level))) for i, share in enumerate(shares)]
            table = ibis.union(*pieces)
        else:
            finer = nests.get(level)
            ones = (C.rolled_up(single[finer], _parents(practices, finer, level), keys)
                    if finer else C.single_sums(sums, units, keys))
            if level in nests.values():
                ones = put(f"scratch_{name}_{level}_single", ones)
            single[level] = ones
            table = put(f"scratch_{name}_{level}",
                        C.level_sums(ones, nets, units, keys).mutate(level=ibis.literal(level)))
        count = int(table.count().to_pyarrow().as_py())
        rows.append(count)
        found[level] = (table, count)
    return found


def _nesting(practices: ir.Table) -> dict[str, str]:
    """``{level: finer level}`` where every unit of the finer level lies in one unit of the
    level and every practice of the level is in a unit of the finer: regions from
    municipalities, the nation from regions (clusters may span municipalities)."""
    rows = practices.select("municipality_code", "region_code").to_pyarrow().to_pylist()
    regions: dict[str, set[str | None]] = {}
    for row in rows:
        regions.setdefault(row["municipality_code"], set()).add(row["region_code"])
    found = {}
    unplaced = regions.get(None, set()) - {None}  # a region's practice without a municipality
    if not unplaced and all(len(v) == 1 and None not in v for m, v in regions.items()
                            if m is not None):
        found["region"] = "municipality"
    if all(row["region_code"] is not None for row in rows):
        found["nation"] = "region"
    return found


def _parents(practices: ir.Table, finer: str, level: str) -> ir.Table:
    """``(child, unit_id)``: the units of ``finer`` and the unit of ``level`` each lies in."""
    pairs = unit_codes(practices, finer).join(unit_codes(practices, level), "px")
    return pairs.select(child=pairs.unit_id, unit_id=pairs.unit_id_right).distinct()


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
