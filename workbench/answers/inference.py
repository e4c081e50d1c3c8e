"""What a viewer can learn of each hidden figure from everything the store lets views publish.

The attacker of issue 18 reads every view: every figure of the store that is not hidden
(:mod:`.protected`), for every unit, selection, period and breakdown value. Each relation between
figures (:func:`.protected.equations`) bounds its hidden members by the published ones. The
attacker knows what the definitions guarantee for every relation of a kind (:func:`relations`):
whether the parts add up to the total exactly (the sexes of a figure's patients), to at least it
(practices of a cluster, drugs of a group, months of a quarter: a person in two counts twice) or
to at most it (persons whose value is unknown), and whether a part can exceed it (persons who
started in a month need not have started in its quarter). That is learned from the data as what
holds for every relation of the kind, so the attacker is never wrong. The *oracle*
(``oracle=True``) knows it for each relation on its own — whether the persons of these two
months happen to be different persons — which no viewer can read from any view; it is kept to
measure how far beyond a viewer's reach the remaining risk lies (docs/disclosure.md).
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
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

from workbench.answers.protected import SLOTS, Figures, Put

INF = 2**40  # no upper bound known (far above any count)
MAX_ROUNDS = 60


def relations(figs: Figures, eqs: ir.Table, put: Put, *, oracle: bool = False) -> ir.Table:
    """``(eq, tid, id, patients, total, ge, le, within)``: every relation's parts with the
    total's patients (``total``) and what the attacker knows of them: the parts add up to at
    least the total (``ge``), to at most (``le``: both, exactly), no part exceeds it
    (``within``: not so for a breakdown that depends on the period, e.g. persons who started in
    a month but not in its quarter). What holds for every relation of its kind (the relation's
    code and the breakdown of its figures), or with ``oracle`` for the relation itself."""
    f = figs.table.select("id", "patients")
    sums = eqs.group_by(["eq", "tid"]).aggregate(parts=eqs.patients.sum(),
                                                 largest=eqs.patients.max())
    sums = sums.join(f.select(tid="id", total="patients"), "tid")
    sums = sums.select("eq", "tid", "total", ge=sums.parts >= sums.total,
                       le=sums.parts <= sums.total, within=sums.largest <= sums.total)
    if not oracle:
        sums = sums.mutate(code=sums.eq % SLOTS, dv=sums.tid % figs.n_values)
        sums = sums.join(figs.values.select("dv", "dim"), "dv")
        kinds = sums.group_by(["code", "dim"]).aggregate(
            kge=sums.ge.all(), kle=sums.le.all(), kwithin=sums.within.all())
        sums = sums.join(kinds, ["code", "dim"])
        sums = sums.select("eq", "tid", "total", ge="kge", le="kle", within="kwithin")
    return put("scratch_inference_relations", eqs.join(sums.drop("tid"), "eq"))


@dataclass(frozen=True)
class Bounds:
    """``(id, lo, hi)`` of every hidden figure after round 1 (``first``: what each relation
    alone tells) and when no bound moves (``last``: chains of relations); ``rounds``: how many
    rounds moved a bound (the longest chain that still told something)."""

    first: ir.Table
    last: ir.Table
    rounds: int


def bounds(net: Network, hidden: ir.Table, put: Put,
           say: Callable[[str], None] = lambda _: None) -> Bounds:
    """The bounds of every hidden figure: what every published figure and every relation of
    ``net`` (:func:`network`) allow (``hi`` = :data:`INF` when nothing bounds it above),
    tightened round by round (each round from the last one's bounds) until no bound moves.

    Rounds are whole-array arithmetic over the relations a bound that moved in the last round
    is in. Done as queries, each round rescanned every relation (12 s a round on Odense's
    116 M relation rows even when few bounds moved; 518 s an attack, 110 s as arrays)."""
    wanted = hidden.select("id").distinct().to_pyarrow().column("id").to_numpy()
    at = np.searchsorted(net.ids, wanted)
    found = at < len(net.ids)
    found[found] = net.ids[at[found]] == wanted[found]
    hid = np.zeros(len(net.ids), dtype=bool)
    hid[at[found]] = True
    alone = wanted[~found]  # hidden, in no relation: nothing bounds it
    lo = np.where(hid, 1, net.patients).astype(np.int64)
    hi = np.where(hid, INF, net.patients).astype(np.int64)
    first = None
    changed = np.ones(len(lo), dtype=bool)
    rounds = 0
    for round_ in range(1, MAX_ROUNDS + 1):
        new_lo, new_hi = lo.copy(), hi.copy()
        for a, b in net.blocks:
            _tighten(net, hid, a, b, lo, hi, new_lo, new_hi,
                     None if round_ == 1 else changed)
        changed = (new_lo > lo) | (new_hi < hi)
        count = int(changed.sum())
        say(f"inference, round {round_}: {count:,} bounds moved")
        lo, hi = new_lo, new_hi
        if count:
            rounds = round_
        if first is None:
            first = put("scratch_inference_first", _table(net.ids, hid, lo, hi, alone))
        if not count:
            return Bounds(first, put("scratch_inference_last",
                                     _table(net.ids, hid, lo, hi, alone)), rounds)
    raise RuntimeError(f"bounds did not settle in {MAX_ROUNDS} rounds")


@dataclass
class Network:
    """The relations (:func:`relations`) as arrays, read once for every attack on them:
    relation r's parts are ``part[start[r]:start[r] + size[r]]`` (figure indices), its total
    ``total[r]``, what holds of it ``ge``, ``le``, ``within``; figure i is ``ids[i]`` of
    ``patients``; ``blocks`` cut the relations into runs of at most :data:`BLOCK_ROWS` parts."""

    ids: np.ndarray
    patients: np.ndarray
    part: np.ndarray
    start: np.ndarray
    size: np.ndarray
    total: np.ndarray
    ge: np.ndarray
    le: np.ndarray
    within: np.ndarray
    blocks: list[tuple[int, int]]


BLOCK_ROWS = 8_000_000  # parts a round tightens at once
BATCH_ROWS = 2_000_000  # parts read at once


def network(rel: ir.Table, put: Put) -> Network:
    """The relations ``rel`` (:func:`relations`) as arrays (:class:`Network`)."""
    known = ibis.union(rel.select("id", "patients"),
                       rel.select(id=rel.tid, patients=rel.total))
    known = known.group_by("id").aggregate(patients=known.patients.max())
    nodes = put("scratch_inference_nodes", known.mutate(
        idx=(ibis.row_number().over(order_by="id")).cast("int32")))
    index = nodes.select("id", "idx")
    rows = rel.join(index, "id").join(index.select(tid="id", tidx="idx"), "tid")
    rows = rows.select("eq", part=rows.idx, total=rows.tidx, ge=rows.ge, le=rows.le,
                       within=rows.within).order_by("eq")
    # streamed: each batch's parts into one array, each relation's total and kind kept at its
    # first row (a region's 338 M rows whole would be gigabytes beside the store's)
    part = np.empty(_count(rows), np.int32)
    head: list[np.ndarray] = []
    kept: list[list[np.ndarray]] = [[], [], [], []]
    pos, last = 0, None
    for batch in rows.to_pyarrow_batches(chunk_size=BATCH_ROWS):
        eq = batch.column(0).to_numpy()
        part[pos:pos + len(eq)] = batch.column(1).to_numpy()
        first = np.flatnonzero(np.r_[last is None or eq[0] != last, eq[1:] != eq[:-1]])
        head.append(first + pos)
        for store, i in zip(kept, range(2, 6), strict=True):
            store.append(batch.column(i).to_numpy(zero_copy_only=False)[first])
        pos, last = pos + len(eq), eq[-1]
    start = np.concatenate(head).astype(np.int64) if head else np.zeros(0, np.int64)
    total, ge, le, within = (np.concatenate(k) if k else np.zeros(0) for k in kept)
    size = np.diff(np.r_[start, len(part)]).astype(np.int64)
    blocks, a = [], 0
    while a < len(start):
        b = max(int(np.searchsorted(start, start[a] + BLOCK_ROWS, side="left")), a + 1)
        blocks.append((a, b))
        a = b
    n = nodes.order_by("idx").select("id", "patients").to_pyarrow()
    return Network(n.column("id").to_numpy(), n.column("patients").to_numpy().astype(np.int64),
                   part, start, size, total.astype(np.int32), ge.astype(bool), le.astype(bool),
                   within.astype(bool), blocks)


def _count(table: ir.Table) -> int:
    return int(table.count().to_pyarrow().as_py())


def _tighten(net: Network, hid: np.ndarray, a: int, b: int, lo: np.ndarray, hi: np.ndarray,
             new_lo: np.ndarray, new_hi: np.ndarray, changed: np.ndarray | None) -> None:
    """Relations ``a``..``b``: tighten ``new_lo``/``new_hi`` of their hidden members from
    ``lo``/``hi``; with ``changed``, only the relations one of whose figures moved."""
    r0 = int(net.start[a])
    r1 = int(net.start[b - 1] + net.size[b - 1])
    part = net.part[r0:r1]
    size, total = net.size[a:b], net.total[a:b]
    ge, le, within = net.ge[a:b], net.le[a:b], net.within[a:b]
    if changed is not None:
        seg = net.start[a:b] - r0
        touched = np.logical_or.reduceat(changed[part], seg) | changed[total]
        if not touched.any():
            return
        part = part[np.repeat(touched, size)]
        size, total = size[touched], total[touched]
        ge, le, within = ge[touched], le[touched], within[touched]
    seg = np.r_[0, np.cumsum(size)[:-1]]
    p_lo, p_hi = lo[part], hi[part]
    s_lo = np.add.reduceat(p_lo, seg)
    s_hi = np.add.reduceat(p_hi, seg)
    t_lo, t_hi = lo[total], hi[total]
    # a hidden part: at least the total less the others at their most (when the parts add up
    # to at least the total), at most the total less the others at their least (when they add
    # up to at most), or the total (when no part exceeds it)
    mine = hid[part]
    if mine.any():
        def spread(values: np.ndarray) -> np.ndarray:
            return np.repeat(values, size)[mine]

        x_lo, x_hi, x_t_hi = p_lo[mine], p_hi[mine], spread(t_hi)
        cand_lo = np.where(spread(ge), spread(t_lo) - (spread(s_hi) - x_hi), 0)
        cand_hi = np.where(x_t_hi >= INF, INF,
                           np.where(spread(le), x_t_hi - (spread(s_lo) - x_lo),
                                    np.where(spread(within), x_t_hi, INF)))
        np.maximum.at(new_lo, part[mine], cand_lo)
        np.minimum.at(new_hi, part[mine], cand_hi)
    # a hidden total: at most the parts at their most (when they add up to at least it), at
    # least the parts at their least (when they add up to at most it) or their largest
    mine = hid[total]
    if mine.any():
        m_lo = np.maximum.reduceat(p_lo, seg)
        t_cand_lo = np.where(le, s_lo, np.where(within, m_lo, 0))[mine]
        t_cand_hi = np.where(ge & (s_hi < INF), s_hi, INF)[mine]
        np.maximum.at(new_lo, total[mine], t_cand_lo)
        np.minimum.at(new_hi, total[mine], t_cand_hi)


def _table(ids: np.ndarray, hid: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           alone: np.ndarray) -> ir.Table:
    return ibis.memtable(pa.table({
        "id": np.r_[ids[hid], alone].astype(np.int64),
        "lo": np.r_[lo[hid], np.ones(len(alone), np.int64)],
        "hi": np.r_[hi[hid], np.full(len(alone), INF, np.int64)]}))


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
