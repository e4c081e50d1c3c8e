"""Which published figures are hidden, decided once for every view over the store's linked cells.

A page, an export or a site page publishes *aggregates* of the store: the patients (and the DDD
and rates built on them) of a unit × selection × period, in total or for one value of one
breakdown (:func:`aggregates`). Protected one table at a time, a figure hidden in one view was
published in another (a drug hidden in its group's drugs table, shown when that drug is chosen),
and a total published beside its parts gave a hidden part back by subtraction. So suppression is
decided here, over every relation a viewer can combine, and every view hides at least what this
table hides (:mod:`workbench.disclosure` adds a table's own rules on top).

The relations (:func:`equations`): each is a total and its parts, the total being (close to) the
parts' sum —

* **breakdowns**: a unit's figure and its values of one breakdown (sex, age group, consumption
  group, started; depot, addictive, pack size, product);
* **units**: a unit and the units of the next level in it (practices in clusters and
  municipalities, clusters and municipalities in regions, regions in the nation; a person seen
  at two practices makes the parts add to a little more than the total: treated as equal);
* **drugs**: a group and its drugs (patients on two drugs: as above);
* **periods**: a quarter, a year or an R12 period and its months; a year and its quarters
  (exact for DDD; for patients the parts add to at least the total).

The rules (:func:`decide`), repeated until nothing changes: a figure of 1 to ``threshold - 1``
patients is hidden (primary); in every relation with a hidden figure, when exactly one is hidden
or, beside a published total, the hidden parts would each be pinned to a range narrower than
``threshold`` (k of them adding to H are each 1 to H - k + 1), the smallest published non-zero
part is hidden too, and when no part can be, the total; a published total under
``threshold + 1`` beside a hidden part is hidden itself (each part is 1 to the total). Every
round reads only the relations a figure hidden in the previous round is in. Zero is published:
it describes nobody. :mod:`.inference` checks the outcome against an attacker reading every view.

Figures and relations are integers (:class:`Figures`): a figure's id packs its unit, selection,
period and breakdown value, so a part's total is its id with one of them swapped, found by
arithmetic or a join with a small table; a relation is named by its total's id and a code. Joined
on their six labels, Odense's relations took 6 minutes to find (and a municipality's ran out of
memory); see docs/figures.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

PERSON_DIMS = ("sex", "age_group", "consumption_group", "started")
KEYS = ("level", "unit_id", "sel", "period", "dim", "value")
TOTAL = "total"  # the dim of a figure for the whole unit, selection and period (value "")
MAX_ROUNDS = 100
SHARE_ROWS = 40_000_000  # relation rows aggregated at once (a region's 338 M: 9 shares)

Put = Callable[[str, ir.Table], ir.Table]

# A relation is named ``total id * 64 + code``: a figure is the total of one relation per
# breakdown, per level nested in its unit, of its drugs and per kind of shorter period.
CODES = {"sex": 1, "age_group": 2, "consumption_group": 3, "started": 4, "depot": 5,
         "addictive": 6, "pack_size": 7, "product": 8,
         "unit:practice": 10, "unit:cluster": 11, "unit:municipality": 12, "unit:region": 13,
         "drugs": 20, "period:month": 30, "period:quarter": 31}
OTHER = 9  # a breakdown the codes don't name (none today)
SLOTS = 64


@dataclass(frozen=True)
class Figures:
    """Every figure a view can publish, ``table`` (``id``, ``uid``, ``sid``, ``pid``, ``dv``,
    ``code``, ``patients``), and the small tables naming its codes: ``units`` (``uid``,
    ``level``, ``unit_id``), ``sels`` (``sid``, ``sel``), ``periods`` (``pid``, ``period``),
    ``values`` (``dv``, ``dim``, ``value``; ``dv`` 0 is the total). ``id`` is
    ``((uid * n_sels + sid) * n_periods + pid) * n_values + dv``."""

    table: ir.Table
    units: ir.Table
    sels: ir.Table
    periods: ir.Table
    values: ir.Table
    n_units: int
    n_sels: int
    n_periods: int
    n_values: int

    @property
    def id_bits(self) -> int:
        """How many bits the ids take (a part's patients and id order in one integer)."""
        return (self.n_units * self.unit_step).bit_length()

    @property
    def unit_step(self) -> int:
        return self.n_sels * self.n_periods * self.n_values

    @property
    def sel_step(self) -> int:
        return self.n_periods * self.n_values


def labelled(cells: ir.Table, parts: ir.Table) -> ir.Table:
    """Every figure by its labels (``KEYS``, ``patients``): totals and person breakdowns summed
    from the cells, the parts as stored."""
    base = ["level", "unit_id", "sel", "period"]
    cells = cells.mutate(**{c: cells[c].cast("string") for c in base})
    pieces = [cells.group_by(base).aggregate(patients=cells.patients.sum())
              .mutate(dim=ibis.literal(TOTAL), value=ibis.literal(""))]
    for dim in PERSON_DIMS:
        known = cells.filter(cells[dim].notnull())
        pieces.append(known.group_by([*base, known[dim].cast("string").name("value")])
                      .aggregate(patients=known.patients.sum()).mutate(dim=ibis.literal(dim)))
    parts = parts.mutate(**{c: parts[c].cast("string") for c in (*base, "dim", "value")})
    pieces.append(parts.group_by([*base, "dim", "value"]).aggregate(
        patients=parts.patients.sum()))
    return ibis.union(*(p.select(*KEYS, "patients") for p in pieces))


def _count(table: ir.Table) -> int:
    return int(table.count().to_pyarrow().as_py())


def aggregates(cells: ir.Table, parts: ir.Table, put: Put) -> Figures:
    """Every figure a view can publish, coded (:class:`Figures`), materialised through ``put``."""
    found = put("scratch_figure_labels", labelled(cells, parts))

    def coded(name: str, cols: list[str], code: str, order: list) -> ir.Table:
        names = found.select(*cols).distinct()
        return put(name, names.mutate(**{code: ibis.row_number().over(order_by=order)
                                         .cast("int64")}))

    units = coded("scratch_figure_units", ["level", "unit_id"], "uid", ["level", "unit_id"])
    sels = coded("scratch_figure_sels", ["sel"], "sid", ["sel"])
    periods = coded("scratch_figure_periods", ["period"], "pid", ["period"])
    d = found.select("dim", "value").distinct()
    values = coded("scratch_figure_values", ["dim", "value"], "dv",
                   [(d.dim != TOTAL).cast("int8"), "dim", "value"])
    n_units, n_sels, n_periods, n_values = (_count(t) for t in (units, sels, periods, values))
    t = (found.join(units, ["level", "unit_id"]).join(sels, "sel").join(periods, "period")
         .join(values, ["dim", "value"]))
    table = t.select(
        id=((t.uid * n_sels + t.sid) * n_periods + t.pid) * n_values + t.dv,
        uid=t.uid, sid=t.sid, pid=t.pid, dv=t.dv,
        code=ibis.ifelse(t.dim == TOTAL, 0, _code(t.dim)), patients=t.patients)
    return Figures(put("scratch_figures", table), units, sels, periods, values,
                   n_units, n_sels, n_periods, n_values)


def _code(value: ir.StringValue, prefix: str = "") -> ir.IntegerValue:
    names = [(k.removeprefix(prefix), v) for k, v in CODES.items() if k.startswith(prefix)
             and (prefix or ":" not in k)]
    return ibis.cases(*((value == name, code) for name, code in names), else_=OTHER)


def equations(figs: Figures, nesting: ir.Table, selections: ir.Table, periods: ir.Table
              ) -> ir.Table:
    """``(eq, tid, id, patients)``: the figure ``id`` (of ``patients``) is a part of relation
    ``eq``, whose total is the figure ``tid`` (``eq // 64``).

    ``nesting`` is ``(child_level, child_id, level, unit_id)`` (each unit and the unit of the
    next level it lies in), ``selections`` the store's (``sel``, ``kind``, ``group``),
    ``periods`` the store's (``period``, ``kind``, ``first``, ``end``: months as integers)."""
    f = figs.table
    pieces = []

    def members(parts: ir.Table, tid: ir.IntegerValue, code: ir.IntegerValue | int) -> None:
        pieces.append(parts.select(eq=tid * SLOTS + code, tid=tid, id=parts.id,
                                   patients=parts.patients))

    # breakdowns: a unit's values of one dim, and its total (the same id with dv 0)
    split = f.filter(f.dv != 0)
    members(split, split.id - split.dv, split.code)
    # units: the units of a level in the unit of the next
    u = figs.units
    pairs = (nesting.join(u, [nesting.child_level == u.level, nesting.child_id == u.unit_id])
             .select("level", "unit_id", "child_level", child_uid="uid"))
    pairs = pairs.join(u.select("level", "unit_id", parent_uid="uid"), ["level", "unit_id"])
    pairs = pairs.select("child_uid", "child_level", "parent_uid")
    pairs = pairs.mutate(unit_code=_code(pairs.child_level, "unit:"))
    child = f.join(pairs, f.uid == pairs.child_uid)
    members(child, child.id + (child.parent_uid - child.uid) * figs.unit_step, child.unit_code)
    # drugs: a group's drugs
    s = figs.sels
    drugs = selections.filter(selections.kind == "drug").select("sel", "group")
    drugs = drugs.join(s, "sel").select("group", drug_sid="sid")
    drugs = drugs.join(s.select(group="sel", group_sid="sid"), "group").select(
        "drug_sid", "group_sid")
    drug = f.join(drugs, f.sid == drugs.drug_sid)
    members(drug, drug.id + (drug.group_sid - drug.sid) * figs.sel_step, CODES["drugs"])
    # periods: the months (and quarters) a longer period is made of
    spans = periods.select("period", "kind", "first", "end").join(figs.periods, "period")
    spans = spans.select("pid", "kind", "first", "end")
    small = spans.filter(spans.kind.isin(["month", "quarter"]))
    big = spans.filter(spans.kind.isin(["quarter", "year", "r12"])).select(
        whole="pid", whole_kind="kind", whole_first="first", whole_end="end")
    inside = small.join(big, [small.first >= big.whole_first, small.end <= big.whole_end,
                              small.kind != big.whole_kind])
    inside = inside.filter((inside.kind == "month") | (inside.whole_kind == "year")).select(
        sub=inside.pid, whole=inside.whole, period_code=_code(inside.kind, "period:"))
    sub = f.join(inside, f.pid == inside.sub)
    members(sub, sub.id + (sub.whole - sub.pid) * figs.n_values, sub.period_code)
    # a total no view publishes (a consumption group a person is in for a month, not for the
    # year) has no relation
    found = ibis.union(*pieces)
    return found.semi_join(f.select(tid="id"), "tid")


def decide(figs: Figures, eqs: ir.Table, put: Put, threshold: int = 5,
           say: Callable[[str], None] = lambda _: None) -> ir.Table:
    """``(id, primary)`` of every hidden figure (see the module's docstring); ``put``
    materialises each round (the rounds build on the last)."""
    figures = figs.table.select("id", "patients")
    most = int(figures.patients.max().to_pyarrow().as_py() or 0)
    if most.bit_length() + figs.id_bits > 62:
        raise ValueError(f"{most:,} patients in one figure beside {figs.id_bits}-bit ids: "
                         "too many to order parts by patients and id in one integer")
    order = 1 << figs.id_bits
    hidden = put("scratch_hidden_0", figures.filter(
        figures.patients.between(1, threshold - 1)).select("id", primary=ibis.literal(True)))
    fresh = hidden.select("id")
    for round_ in range(1, MAX_ROUNDS + 1):
        # the relations a figure hidden last round is a part or the total of
        touched = ibis.union(eqs.join(fresh, "id").select("eq"),
                             eqs.join(fresh, eqs.tid == fresh.id).select("eq")).distinct()
        # round 1 touches most relations; later rounds' are gathered once
        members = eqs if round_ == 1 else put(f"scratch_touched_{round_}",
                                              eqs.join(touched, "eq"))
        # relations in shares (by name): one aggregation over every relation of a region
        # ran out of the build's memory
        shares = max(1, -(-_count(members) // SHARE_ROWS))
        chosen = []
        for share in range(shares):
            mine = members if shares == 1 else members.filter(members.eq % shares == share)
            chosen.append(put(f"scratch_hidden_new_{round_}_{share}",
                              _complements(mine, hidden, figures, order, threshold)))
        new = put(f"scratch_hidden_new_{round_}", ibis.union(*chosen).distinct())
        count = _count(new)
        say(f"answers: protection, round {round_}: {count:,} complements")
        if not count:
            return hidden
        hidden = put(f"scratch_hidden_{round_}", ibis.union(
            hidden, new.select("id", primary=ibis.literal(False))))
        fresh = new
    raise RuntimeError(f"suppression did not settle in {MAX_ROUNDS} rounds")


def _complements(members: ir.Table, hidden: ir.Table, figures: ir.Table, order: int,
                 threshold: int) -> ir.Table:
    """``(id)``: what to hide next in the relations ``members`` are the parts of."""
    hid = hidden.select("id", hid=ibis.literal(True))
    marked = members.left_join(hid, "id").drop("id_right")
    marked = marked.mutate(hid=marked.hid.fill_null(False))
    open_part = ~marked.hid & (marked.patients > 0)
    # one pass: what is hidden in each relation, and its smallest published non-zero part
    # (by id on a tie)
    stats = marked.group_by(["eq", "tid"]).aggregate(
        n_hidden=marked.hid.cast("int64").sum(),
        hidden_sum=ibis.ifelse(marked.hid, marked.patients, 0).sum(),
        smallest=marked.id.argmin(marked.patients * order + marked.id, where=open_part))
    stats = stats.left_join(hid, stats.tid == hid.id).drop("id")
    stats = stats.mutate(total_hidden=stats.hid.fill_null(False)).drop("hid")
    stats = stats.join(figures.select(tid="id", total="patients"), "tid")
    # beside a published total T, k hidden parts adding to H are each 1 to H - k + 1, and
    # at most T: either range must be at least ``threshold`` wide
    beside = ~stats.total_hidden & (stats.n_hidden > 0)
    stats = stats.mutate(small_total=beside & (stats.total - 1 < threshold),
                         narrow=beside & (stats.hidden_sum - stats.n_hidden < threshold),
                         alone=stats.n_hidden + stats.total_hidden.cast("int64") == 1)
    exposed = stats.filter(stats.alone | stats.small_total | stats.narrow)
    # the smallest published part; the total when none can be, or when it is small
    exposed = exposed.filter(exposed.smallest.notnull() | ~exposed.total_hidden)
    chosen = exposed.select(id=ibis.ifelse(exposed.small_total, exposed.tid,
                                           exposed.smallest.fill_null(exposed.tid)))
    return chosen.select("id")


def nesting(practices: ir.Table) -> ir.Table:
    """``(child_level, child_id, level, unit_id)``: each unit and the unit of the next level
    it lies in (practices in clusters and municipalities, clusters and municipalities in
    regions, regions in the nation), from the coded practices; a unit spread over several
    (a cluster across two regions) is in none."""
    from workbench.engine.units import NATION_ID

    p = practices.mutate(nation=ibis.literal(NATION_ID))
    pairs = [("practice", "practice_id", "cluster", "cluster_id"),
             ("practice", "practice_id", "municipality", "municipality_code"),
             ("cluster", "cluster_id", "region", "region_code"),
             ("municipality", "municipality_code", "region", "region_code"),
             ("region", "region_code", "nation", "nation")]
    found = []
    for child_level, child, level, unit in pairs:
        known = p.filter(p[child].notnull() & p[unit].notnull())
        links = known.select(child_id=known[child].cast("string"),
                             unit_id=known[unit].cast("string")).distinct()
        single = links.group_by("child_id").aggregate(n=links.count()).filter(lambda t: t.n == 1)
        found.append(links.join(single.select("child_id"), "child_id").select(
            child_level=ibis.literal(child_level), child_id="child_id",
            level=ibis.literal(level), unit_id="unit_id"))
    return ibis.union(*found)


def hidden_figures(figs: Figures, hidden: ir.Table) -> ir.Table:
    """The hidden figures by their labels (what the pages read), with ``primary``."""
    t = (figs.table.select("id", "uid", "sid", "pid", "dv").join(hidden, "id")
         .join(figs.units, "uid").join(figs.sels, "sid").join(figs.periods, "pid")
         .join(figs.values, "dv"))
    return t.select(*KEYS, "primary")
