"""Peer comparison, as OpenPrescribing shows it: a practice's national percentile, and the deciles.

Both take any measures table (from :func:`~workbench.engine.measures.compute_measures`) and
compare units within the same level, period, group and breakdown cell, i.e. within every column
that is neither ``unit_id`` nor a measure. Units whose measure is null (no listed persons, so no
rate) are left out of the ranking and the deciles, and get a null percentile.

* ``percentile`` = ``percent_rank`` × 100 = (rank − 1) / (units − 1) × 100, ties sharing the
  lower rank: the lowest unit is 0, the highest 100, a single unit 0.
* deciles are the 10th … 90th percentiles with linear interpolation between units (numpy's and
  OpenPrescribing's default).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from workbench.engine.query import MEASURES

DECILES = tuple(range(10, 100, 10))


def _peer_columns(table: ir.Table) -> list[str]:
    return [c for c in table.columns if c not in MEASURES and c != "unit_id"]


def percentile_ranks(table: ir.Table, measure: str) -> ir.Table:
    """``table`` with ``percentile`` (0–100): each unit's rank on ``measure`` among its peers.

    >>> import ibis
    >>> t = ibis.memtable({"level": ["practice"] * 4, "unit_id": list("abcd"),
    ...                    "period": ["2024"] * 4, "ddd_per_1000": [5.0, 1.0, 3.0, None]})
    >>> percentile_ranks(t, "ddd_per_1000").order_by("unit_id").to_pandas().percentile.tolist()
    [100.0, 0.0, 50.0, nan]
    """
    peers = _peer_columns(table)
    known = table.filter(table[measure].notnull())
    window = ibis.window(group_by=peers, order_by=known[measure])
    ranked = known.mutate(percentile=known[measure].percent_rank().over(window) * 100)
    unknown = table.filter(table[measure].isnull()).mutate(percentile=ibis.null("float64"))
    return ibis.union(ranked, unknown.select(*ranked.columns))


def deciles(table: ir.Table, measure: str) -> ir.Table:
    """One row per peer set and decile (10, 20, …, 90) with the value of ``measure`` there.

    >>> import ibis
    >>> t = ibis.memtable({"level": ["practice"] * 11, "unit_id": list("abcdefghijk"),
    ...                    "period": ["2024"] * 11, "ddd": [float(v) for v in range(11)]})
    >>> deciles(t, "ddd").order_by("decile").to_pandas().ddd.tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    """
    peers = _peer_columns(table)
    wide = table.group_by(peers).aggregate(
        **{f"decile_{d}": table[measure].quantile(d / 100) for d in DECILES}
    )
    long = wide.pivot_longer(
        ibis.selectors.startswith("decile_"), names_to="decile", values_to=measure
    )
    return long.mutate(decile=long.decile.replace("decile_", "").cast("int64"))
