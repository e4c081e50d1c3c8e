"""Patients and DDD of every unit, selection, period and cell, counted once for all units.

The contract's patients are distinct persons whose net DDD *at the unit* is above 0, so a
cluster's patients are not the sum of its practices' (a person treated by two of its practices is
one patient of the cluster). Counting every level from the persons again would repeat the
costliest step five times. But most persons get a group from one practice only, and for them the
net at any level is the net at that practice: their counts add up exactly from practices to every
level. So:

* per person, practice, selection and period: the net DDD (each month given to every period it
  lies in: itself, its quarter and year, and twelve R12 periods) — :func:`period_nets`;
* a person who got the group from more than one practice (ever) is ``multi``; every other
  person's rows are summed per practice and cell once, and those sums are added up to clusters
  and municipalities, and on from municipalities to regions and the nation where they nest —
  :func:`practice_sums`, :func:`single_sums`, :func:`rolled_up`;
* the ``multi`` persons' nets are summed again per unit of each level and counted there —
  :func:`level_sums`.

Each row of the result is a unit × selection × period × cell: ``patients`` (net DDD > 0, rounded
as the engine rounds), ``ddd`` (the sum of the persons' nets), ``ddd_sq`` (the sum of their
squares: the variance of a DDD total read as a compound Poisson sum over persons, which the DDD
funnels need) and ``persons`` (everyone with a redemption in it, patient or not: the engine
shows such a cell with 0 patients).
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.engine.months import NET_DECIMALS

LEVELS = ("practice", "cluster", "municipality", "region", "nation")
FIGURES = ("patients", "ddd", "ddd_sq", "persons")


def period_nets(months: ir.Table, period_months: ir.Table, multi: ir.Table) -> ir.Table:
    """Each month's sums given to every period it lies in and summed: one row per person,
    practice, selection (and value) and period, with ``net`` and ``multi``."""
    joined = months.join(period_months, "month")
    keys = [c for c in months.columns if c not in ("month", "ddd")]
    nets = joined.group_by([*keys, "pid"]).aggregate(net=joined.ddd.sum())
    flagged = nets.left_join(multi, ["pk", "gid"]).drop("pk_right", "gid_right")
    return flagged.mutate(multi=flagged.multi.fill_null(False))


def _labels(gp: ir.Table, sel: str, dim: str | None) -> dict[str, ir.Value]:
    """A family's labels of each redemption: ``sid`` (its ``sel`` code) and, with ``dim``, the
    property's ``value`` as text (flags as Python writes them, "True"/"False", as a page labels
    the engine's values)."""
    labels: dict[str, ir.Value] = {"sid": gp[sel]}
    if dim is not None:
        value = gp[dim]
        labels["value"] = (ibis.ifelse(value, "True", "False") if value.type().is_boolean()
                           else value.cast("string"))
    return labels


def family_months(gp: ir.Table, sel: str, dim: str | None = None) -> ir.Table:
    """GP-attributed month sums per person, practice and selection (``sel``: ``gid`` or
    ``did``), and per value of ``dim`` when given (a property of the product: ``depot``,
    ``addictive``, ``pack_size``, ``product``) as text in ``value``."""
    keys = {"pk": gp.pk, "px": gp.px, "gid": gp.gid, **_labels(gp, sel, dim), "month": gp.month}
    return gp.group_by(**keys).aggregate(ddd=gp.ddd.sum())


def single_labels(gp: ir.Table, parent: str, sel: str, dim: str | None) -> ir.Table:
    """``(pk, px, gid, psid, sid, [value], single)``: per person, practice and parent selection
    (``parent``: its code column), the child family's labels when every redemption has the same
    (``single``), else ``single`` false. Most persons get one drug of a group, one pack size of
    a drug, at a practice: their child nets are their parent nets, relabelled (no new
    expansion to periods)."""
    labels = _labels(gp, sel, dim)
    rows = gp.select(pk=gp.pk, px=gp.px, gid=gp.gid, psid=gp[parent], **labels)
    label = rows.value if dim is not None else rows.sid
    # a null is a label of its own (nunique skips it)
    kinds = label.nunique() + label.isnull().cast("int64").max()
    found = rows.group_by("pk", "px", "gid", "psid").aggregate(
        kinds=kinds, **{name: rows[name].max() for name in labels})
    return found.mutate(single=found.kinds == 1).drop("kinds")


def relabelled(parent: ir.Table, labels: ir.Table) -> ir.Table:
    """The child nets of the persons with one label under a parent selection
    (:func:`single_labels`): the ``parent``'s rows (:func:`period_nets`, with or without cells)
    with the child's ``sid`` (and ``value``)."""
    single = labels.filter(labels.single).drop("single", "gid").rename(child="sid")
    taken = parent.join(single.rename(sid="psid"), ["pk", "px", "sid"])
    return taken.mutate(sid=taken.child).drop("child")


def fresh_nets(gp: ir.Table, labels: ir.Table, parent_sel: str, sel: str, dim: str | None,
               period_months: ir.Table, multi: ir.Table) -> ir.Table:
    """The child nets (:func:`period_nets`) of the persons with several labels under a parent
    selection: only their months are expanded to periods again."""
    mixed = labels.filter(~labels.single).select("pk", "px", "psid")
    rows = gp.semi_join(mixed, [gp.pk == mixed.pk, gp.px == mixed.px,
                                gp[parent_sel] == mixed.psid])
    return period_nets(family_months(rows, sel, dim), period_months, multi)


def split_nets(parent: ir.Table, fresh: ir.Table, labels: ir.Table) -> ir.Table:
    """A child family's nets (the drugs of a group, the parts of a selection by a property) from
    its ``parent``'s: the persons with one label under a parent selection take the parent's
    rows relabelled (:func:`relabelled`), the others' are ``fresh`` (:func:`fresh_nets`, with
    the parent's columns). Each person's net is a sum of the same redemptions either way."""
    return ibis.union(relabelled(parent, labels).select(*fresh.columns), fresh)


def multi_persons(gp: ir.Table) -> ir.Table:
    """``(pk, gid, multi)``: the persons who got a group from more than one practice."""
    counted = gp.group_by("pk", "gid").aggregate(practices=gp.px.nunique())
    counted = counted.filter(counted.practices > 1)
    return counted.select("pk", "gid", multi=ibis.literal(True))


def with_cells(nets: ir.Table, person_periods: ir.Table) -> ir.Table:
    """The nets with the cell each person is in (:func:`workbench.answers.persons.
    person_periods`)."""
    joined = nets.left_join(person_periods, ["pk", "gid", "pid"])
    return joined.drop("pk_right", "gid_right", "pid_right")


def _figures(rows: ir.Table, net: ir.FloatingValue) -> dict[str, ir.Value]:
    return {
        "patients": rows.count(where=net.round(NET_DECIMALS) > 0),
        "ddd": net.sum(),
        "ddd_sq": (net * net).sum(),
        "persons": rows.count(),
    }


def practice_sums(rows: ir.Table, keys: Sequence[str]) -> ir.Table:
    """Per practice, ``multi`` and ``keys`` (selection, period, cell or value): the figures of
    the persons' nets."""
    return rows.group_by(["px", "multi", *keys]).aggregate(**_figures(rows, rows.net))


def single_sums(sums: ir.Table, units: ir.Table, keys: Sequence[str]) -> ir.Table:
    """``(unit_id, *keys, *FIGURES)``: the single-practice persons' practice sums (``sums``:
    :func:`practice_sums`) added up per unit (``units``: ``(px, unit_id)`` of one level)."""
    single = sums.filter(~sums.multi).join(units, "px")
    return single.group_by(["unit_id", *keys]).aggregate(**{f: single[f].sum() for f in FIGURES})


def rolled_up(single: ir.Table, parents: ir.Table, keys: Sequence[str]) -> ir.Table:
    """:func:`single_sums` of a level added up to the units of a level they nest in
    (``parents``: ``(child, unit_id)``, each child in one unit): a person seen at one practice
    is counted in each unit it lies in, so their sums add up level by level."""
    joined = single.rename(child="unit_id").join(parents, "child")
    return joined.group_by(["unit_id", *keys]).aggregate(
        **{f: joined[f].sum() for f in FIGURES})


def level_sums(single: ir.Table, rows: ir.Table, units: ir.Table, keys: Sequence[str]
               ) -> ir.Table:
    """The figures per unit (``units``: ``(px, unit_id)`` of one level) and ``keys``: the
    single-practice persons' sums (``single``: :func:`single_sums` or :func:`rolled_up`), and
    the ``multi`` persons' nets summed again at the unit and counted."""
    grain = ["unit_id", *keys]
    multi = rows.filter(rows.multi).join(units, "px")
    renetted = multi.group_by(["pk", *grain]).aggregate(net=multi.net.sum())
    # each multi person's own figures beside the single persons' sums: one sum over both
    net = renetted.net
    own = renetted.select(*grain, patients=(net.round(NET_DECIMALS) > 0).cast("int64"),
                          ddd=net, ddd_sq=net * net, persons=ibis.literal(1, "int64"))
    both = ibis.union(single.select(*grain, *FIGURES), own)
    return both.group_by(grain).aggregate(**{f: both[f].sum() for f in FIGURES})


def practice_level(sums: ir.Table, units: ir.Table, keys: Sequence[str]) -> ir.Table:
    """The practices' own figures: both kinds of persons' sums, per practice id."""
    named = sums.join(units, "px")
    return named.group_by(["unit_id", *keys]).aggregate(**{f: named[f].sum() for f in FIGURES})
