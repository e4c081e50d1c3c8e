"""What a viewer can learn of each hidden figure from everything the store lets views publish.

The attacker of issue 18 reads every view: every figure of the store that is not hidden
(:mod:`.protected`), for every unit, selection, period and breakdown value. Each relation between
figures (:func:`.protected.equations`) bounds its hidden members by the published ones. The
attacker here is the strongest we can state: one who knows, for every relation, whether its parts
add up to its total exactly, to more (a person in two practices, drugs, months or products) or to
less (persons whose value of a breakdown is unknown), and whether any part exceeds the total (a
breakdown that depends on the period) — the truth, read from the data (:func:`relations`).
Starting from what hiding says (a hidden figure is at least 1: zero is always published), the
bounds of every hidden figure are tightened over every relation, round by round, until no bound
moves (interval propagation, the audit statistical offices run after secondary suppression,
bounded by the relations rather than a full linear programme).

:func:`disclosed` names each figure of 1 to ``threshold - 1`` patients whose bounds are exact or
narrower than ``threshold``: what the attack suite (``tests/test_inference.py``) requires to be
empty for the store's decision, and finds for tables protected one at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

from workbench.answers.protected import Figures, Put

INF = 2**40  # no upper bound known (far above any count)
MAX_ROUNDS = 60


def relations(figs: Figures, eqs: ir.Table, put: Put) -> ir.Table:
    """``(eq, tid, id, patients, total, ge, le, within)``: every relation's parts with the
    total's patients (``total``) and what holds of them in truth: the parts add up to at least
    the total (``ge``), to at most (``le``: both, exactly), no part exceeds it (``within``: not
    so for a breakdown that depends on the period, e.g. persons who started in a month but not
    in its quarter)."""
    f = figs.table.select("id", "patients")
    sums = eqs.group_by(["eq", "tid"]).aggregate(parts=eqs.patients.sum(),
                                                 largest=eqs.patients.max())
    sums = sums.join(f.select(tid="id", total="patients"), "tid")
    sums = sums.select("eq", "total", ge=sums.parts >= sums.total,
                       le=sums.parts <= sums.total, within=sums.largest <= sums.total)
    return put("scratch_inference_relations", eqs.join(sums, "eq"))


def bounds(rel: ir.Table, hidden: ir.Table, put: Put,
           say: Callable[[str], None] = lambda _: None) -> list[ir.Table]:
    """``(id, lo, hi)`` of every hidden figure after each round, the last when no bound moves:
    what every published figure and every relation allow (``hi`` = :data:`INF` when nothing
    bounds it above). After round 1, what each relation alone tells from the published
    figures; after round n, chains of n relations. Each round reads only the relations a bound
    that moved in the last one is in."""
    b = put("scratch_inference_bounds_0", hidden.select(
        "id", lo=ibis.literal(1, "int64"), hi=ibis.literal(INF, "int64")))
    moved = None
    rounds = []
    for round_ in range(1, MAX_ROUNDS + 1):
        active = rel
        if moved is not None:
            touched = ibis.union(rel.semi_join(moved, "id").select("eq"),
                                 rel.semi_join(moved, rel.tid == moved.id).select("eq"))
            active = rel.semi_join(touched.distinct(), "eq")
        part = active.left_join(b, "id").drop("id_right")
        part = part.mutate(hid=part.lo.notnull(), lo=part.lo.fill_null(part.patients),
                           hi=part.hi.fill_null(part.patients))
        kinds = ["eq", "tid", "total", "ge", "le", "within"]
        sums = part.group_by(kinds).aggregate(
            s_lo=part.lo.sum(), s_hi=part.hi.sum(), max_lo=part.lo.max())
        tb = b.select(tid="id", t_lo="lo", t_hi="hi")
        sums = sums.left_join(tb, "tid").drop("tid_right")
        sums = sums.mutate(t_lo=sums.t_lo.fill_null(sums.total),
                           t_hi=sums.t_hi.fill_null(sums.total), t_hid=sums.t_lo.notnull())
        # a hidden part: at least the total less the others at their most (when the parts add
        # up to at least the total), at most the total less the others at their least (when
        # they add up to at most), or the total (when no part exceeds it)
        p = part.filter(part.hid).join(sums.drop("total"), kinds[:2])
        lo = ibis.ifelse(p.ge, p.t_lo - (p.s_hi - p.hi), 0)
        hi = ibis.cases((p.t_hi >= INF, INF), (p.le, p.t_hi - (p.s_lo - p.lo)),
                        (p.within, p.t_hi), else_=INF)
        from_parts = p.select("id", lo=lo, hi=hi)
        # a hidden total: at most the parts at their most (when they add up to at least it), at
        # least the parts at their least (when they add up to at most it) or their largest
        t = sums.filter(sums.t_hid)
        lo = ibis.cases((t.le, t.s_lo), (t.within, t.max_lo), else_=0)
        hi = ibis.ifelse(t.ge & (t.s_hi < INF), t.s_hi, INF)
        from_totals = t.select(id="tid", lo=lo, hi=hi)
        found = ibis.union(from_parts, from_totals)
        found = found.group_by("id").aggregate(lo=found.lo.max(), hi=found.hi.min())
        found = found.join(b, "id")
        tighter = found.filter((found.lo > found.lo_right) | (found.hi < found.hi_right))
        moved = put(f"scratch_inference_moved_{round_}", tighter.select(
            "id", lo=ibis.greatest(tighter.lo, tighter.lo_right),
            hi=ibis.least(tighter.hi, tighter.hi_right)))
        count = int(moved.count().to_pyarrow().as_py())
        say(f"inference, round {round_}: {count:,} bounds moved")
        if not count:
            return rounds or [b]
        kept = b.anti_join(moved, "id")
        b = put(f"scratch_inference_bounds_{round_}", ibis.union(kept, moved))
        rounds.append(b)
        moved = moved.select("id")
    raise RuntimeError(f"bounds did not settle in {MAX_ROUNDS} rounds")


def disclosed(figs: Figures, found: ir.Table, threshold: int) -> ir.Table:
    """``(id, patients, lo, hi)``: hidden figures of 1 to ``threshold - 1`` patients pinned to
    an interval narrower than ``threshold`` (exact when ``lo == hi``)."""
    f = figs.table.select("id", "patients").join(found, "id")
    small = f.filter(f.patients.between(1, threshold - 1))
    return small.filter(small.hi - small.lo < threshold)


def hidden_ids(figs: Figures, labelled: ir.Table) -> ir.Table:
    """The ids of figures named by their labels (the store's ``hidden``)."""
    t = (figs.table.join(figs.units, "uid").join(figs.sels, "sid").join(figs.periods, "pid")
         .join(figs.values, "dv"))
    keys = ["level", "unit_id", "sel", "period", "dim", "value"]
    named = labelled.select(*(labelled[k].cast("string").name(k) for k in keys))
    return t.semi_join(named, keys).select("id")
