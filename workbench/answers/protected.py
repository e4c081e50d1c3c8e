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
or the hidden parts together are under ``threshold`` beside a published total, the smallest
published non-zero part is hidden too, and when no part can be, the total. Every round reads only
the relations a figure hidden in the previous round is in. Zero is published: it describes nobody.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

PERSON_DIMS = ("sex", "age_group", "consumption_group", "started")
KEYS = ("level", "unit_id", "sel", "period", "dim", "value")
TOTAL = "total"  # the dim of a figure for the whole unit, selection and period (value "")
MAX_ROUNDS = 100

Put = Callable[[str, ir.Table], ir.Table]


def aggregates(cells: ir.Table, parts: ir.Table) -> ir.Table:
    """Every figure a view can publish, ``(level, unit_id, sel, period, dim, value, patients,
    id)``: totals and person breakdowns summed from the cells, the parts as stored."""
    base = ["level", "unit_id", "sel", "period"]
    text = {c: cells[c].cast("string") for c in base}
    cells = cells.mutate(**text)
    pieces = [cells.group_by(base).aggregate(patients=cells.patients.sum())
              .mutate(dim=ibis.literal(TOTAL), value=ibis.literal(""))]
    for dim in PERSON_DIMS:
        known = cells.filter(cells[dim].notnull())
        pieces.append(known.group_by([*base, known[dim].cast("string").name("value")])
                      .aggregate(patients=known.patients.sum()).mutate(dim=ibis.literal(dim)))
    parts = parts.mutate(**{c: parts[c].cast("string") for c in (*base, "dim", "value")})
    pieces.append(parts.group_by([*base, "dim", "value"]).aggregate(
        patients=parts.patients.sum()))
    found = ibis.union(*(p.select(*KEYS, "patients") for p in pieces))
    return found.mutate(id=ibis.row_number().over(order_by=list(KEYS)).cast("int64"))


# An equation is named by its total's figure and which of the total's relations it is (a
# figure is the total of one relation per breakdown, per level nested in its unit, of its
# drugs, and per kind of shorter period): ``total id * 64 + code`` — integers, not the labels
# joined (as text, a municipality's equations ran out of the build's memory).
CODES = {"sex": 1, "age_group": 2, "consumption_group": 3, "started": 4, "depot": 5,
         "addictive": 6, "pack_size": 7, "product": 8,
         "unit:practice": 10, "unit:cluster": 11, "unit:municipality": 12, "unit:region": 13,
         "drugs": 20, "period:month": 30, "period:quarter": 31}
OTHER = 9  # a breakdown the codes don't name (none today)


def _code(value: ir.StringValue, prefix: str = "") -> ir.IntegerValue:
    names = [(k.removeprefix(prefix), v) for k, v in CODES.items() if k.startswith(prefix)
             and (prefix or ":" not in k)]
    return ibis.cases(*((value == name, code) for name, code in names), else_=OTHER)


def _eq(total: ir.IntegerValue, code: ir.IntegerValue) -> ir.IntegerValue:
    return total * 64 + code


def equations(aggs: ir.Table, nesting: ir.Table, selections: ir.Table, periods: ir.Table
              ) -> ir.Table:
    """``(eq, id, total)``: the figure ``id`` is a part, or the total, of relation ``eq``.

    ``nesting`` is ``(child_level, child_id, level, unit_id)`` (each unit and the unit of the
    next level it lies in), ``selections`` the store's (``sel``, ``kind``, ``group``),
    ``periods`` the store's (``period``, ``kind``, ``first``, ``end``: months as integers)."""
    a = aggs.select(*KEYS, "id")
    totals = a.select(*KEYS, tid=a.id)
    pieces = []

    def members(parts: ir.Table, code: ir.IntegerValue) -> None:
        """``parts`` (``id``, ``tid``): a part and its total, of the relation ``code``."""
        eq = _eq(parts.tid, code)
        pieces.append(parts.select(eq=eq, id=parts.id, total=ibis.literal(False)))
        pieces.append(parts.select(eq=eq, id=parts.tid, total=ibis.literal(True)).distinct())

    # breakdowns: a unit's values of one dim, and its total
    split = a.filter(a.dim != TOTAL)
    whole = totals.filter(totals.dim == TOTAL).drop("dim", "value")
    found = split.join(whole, ["level", "unit_id", "sel", "period"])
    members(found, _code(found.dim))
    # units: the units of a level in the unit of the next
    child = a.join(nesting, [a.level == nesting.child_level, a.unit_id == nesting.child_id])
    child = child.select("id", "sel", "period", "dim", "value", "child_level",
                         level=child.level_right, unit_id=child.unit_id_right)
    found = child.join(totals, list(KEYS))
    members(found, _code(found.child_level, "unit:"))
    # drugs: a group's drugs
    drugs = selections.filter(selections.kind == "drug").select("sel", "group")
    drug = a.join(drugs, "sel")
    drug = drug.select("id", "level", "unit_id", "period", "dim", "value", sel=drug.group)
    found = drug.join(totals, list(KEYS))
    members(found, ibis.literal(CODES["drugs"]))
    # periods: the months (and quarters) a longer period is made of
    spans = periods.select("period", "kind", "first", "end")
    small = spans.filter(spans.kind.isin(["month", "quarter"]))
    big = spans.filter(spans.kind.isin(["quarter", "year", "r12"]))
    inside = small.join(big, [small.first >= big.first, small.end <= big.end,
                              small.kind != big.kind])
    inside = inside.filter((inside.kind == "month") | (inside.kind_right == "year")).select(
        sub=inside.period, sub_kind=inside.kind, whole=inside.period_right)
    sub = a.join(inside, a.period == inside.sub)
    sub = sub.select("id", "level", "unit_id", "sel", "dim", "value", "sub_kind",
                     period=sub.whole)
    found = sub.join(totals, list(KEYS))
    members(found, _code(found.sub_kind, "period:"))
    return ibis.union(*pieces)


def decide(aggs: ir.Table, eqs: ir.Table, put: Put, threshold: int = 5,
           say: Callable[[str], None] = lambda _: None) -> ir.Table:
    """``(id, primary)`` of every hidden figure (see the module's docstring); ``put``
    materialises each round (the rounds build on the last)."""
    figures = aggs.select("id", "patients")
    hidden = put("scratch_hidden_0", figures.filter(
        figures.patients.between(1, threshold - 1)).select("id", primary=ibis.literal(True)))
    fresh = hidden.select("id")
    for round_ in range(1, MAX_ROUNDS + 1):
        touched = eqs.join(fresh, "id").select("eq").distinct()
        members = eqs.join(touched, "eq").join(figures, "id")
        marked = members.left_join(hidden.select("id", hid=ibis.literal(True)), "id")
        marked = marked.mutate(hid=marked.hid.fill_null(False)).drop("id_right")
        open_part = ~marked.hid & ~marked.total & (marked.patients > 0)
        stats = marked.group_by("eq").aggregate(
            n_hidden=marked.hid.cast("int64").sum(),
            hidden_sum=ibis.ifelse(marked.hid & ~marked.total, marked.patients, 0).sum(),
            total_hidden=(marked.hid & marked.total).any(),
            open_parts=open_part.cast("int64").sum())
        exposed = stats.filter((stats.n_hidden > 0) & (
            (stats.n_hidden == 1) | (~stats.total_hidden & (stats.hidden_sum < threshold))))
        rows = marked.join(exposed, "eq")
        # the smallest published non-zero part of each exposed relation (by id on a tie) ...
        parts = rows.filter(~rows.hid & ~rows.total & (rows.patients > 0) & (rows.open_parts > 0))
        smallest = parts.group_by("eq").aggregate(
            id=parts.id.argmin(parts.patients.cast("float64") * 2.0**40 + parts.id))
        # ... or, when none can be, its total
        totals = rows.filter(~rows.hid & rows.total & (rows.open_parts == 0)).select("eq", "id")
        new = put(f"scratch_hidden_new_{round_}", ibis.union(
            smallest.select("id"), totals.select("id")).distinct())
        count = int(new.count().to_pyarrow().as_py())
        say(f"answers: protection, round {round_}: {count:,} complements")
        if not count:
            return hidden
        hidden = put(f"scratch_hidden_{round_}", ibis.union(
            hidden, new.select("id", primary=ibis.literal(False))))
        fresh = new
    raise RuntimeError(f"suppression did not settle in {MAX_ROUNDS} rounds")


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
        links = known.select(child_id=known[child], unit_id=known[unit]).distinct()
        single = links.group_by("child_id").aggregate(n=links.count()).filter(lambda t: t.n == 1)
        found.append(links.join(single.select("child_id"), "child_id").select(
            child_level=ibis.literal(child_level), child_id="child_id",
            level=ibis.literal(level), unit_id="unit_id"))
    return ibis.union(*found)


def hidden_figures(aggs: ir.Table, hidden: ir.Table) -> ir.Table:
    """The hidden figures by their keys (what the pages read), with ``primary``."""
    return aggs.join(hidden, "id").select(*KEYS, "primary")
