"""The attack on the store (:mod:`workbench.answers.inference`): what a viewer reading every view
can learn of a hidden figure, on tiny hand-made stores worked out in the comments (the attack on
a built store: ``test_answers_refresh``'s ``workbench data attack``)."""

from __future__ import annotations

import ibis

from workbench.answers.inference import INF, bounds, disclosed, relations
from workbench.answers.protected import aggregates, decide, equations


def _cells(rows):
    return ibis.memtable(
        [{"level": lv, "unit_id": u, "sel": "G", "period": "2025", "sex": None,
          "age_group": None, "consumption_group": None, "started": None, "patients": n}
         for lv, u, n in rows],
        schema={"level": "string", "unit_id": "string", "sel": "string", "period": "string",
                "sex": "string", "age_group": "string", "consumption_group": "string",
                "started": "string", "patients": "int64"})


NO_PARTS = ibis.memtable([], schema={"level": "string", "unit_id": "string", "sel": "string",
                                     "period": "string", "dim": "string", "value": "string",
                                     "patients": "int64"})
SELECTIONS = ibis.memtable([("G", "group", "G")],
                           schema={"sel": "string", "kind": "string", "group": "string"})
YEAR = ibis.memtable([("2025", "year", 0, 12)],
                     schema={"period": "string", "kind": "string", "first": "int64",
                             "end": "int64"})


def _attack(rows, nesting, hide=None):
    """Bounds by unit of every hidden figure, and the units disclosed; ``hide`` names the
    hidden units (else the store's decision)."""
    con = ibis.duckdb.connect()

    def put(name, expr):
        return con.create_table(name, expr, overwrite=True)

    figs = aggregates(_cells(rows), NO_PARTS, put)
    nest = ibis.memtable(nesting, schema={"child_level": "string", "child_id": "string",
                                          "level": "string", "unit_id": "string"})
    eqs = put("eqs", equations(figs, nest, SELECTIONS, YEAR))
    if hide is None:
        hidden = decide(figs, eqs, put).select("id")
    else:
        t = figs.table.join(figs.units, "uid")
        hidden = t.filter(t.unit_id.isin(hide)).select("id")
    hidden = put("hidden", hidden)
    found = bounds(relations(figs, eqs, put), hidden, put)[-1]
    name = figs.table.join(figs.units, "uid").select("id", "unit_id")
    got = {r.unit_id: (r.lo, r.hi) for r in con.execute(found.join(name, "id")).itertuples()}
    bad = {r.unit_id for r in con.execute(disclosed(figs, found, 5).join(name, "id"))
           .itertuples()}
    return got, bad


def test_one_hidden_cluster_is_its_region_less_the_others() -> None:
    """R = 17 = K1 (13) + K2 (4): with K2 alone hidden, a viewer has K2 = 4 exactly."""
    rows = [("region", "R", 17), ("cluster", "K1", 13), ("cluster", "K2", 4)]
    nesting = [("cluster", "K1", "region", "R"), ("cluster", "K2", "region", "R")]
    got, bad = _attack(rows, nesting, hide=["K2"])
    assert got == {"K2": (4, 4)} and bad == {"K2"}
    got, bad = _attack(rows, nesting)  # the store's decision hides K1 too: 1..16 each
    assert got == {"K1": (1, 16), "K2": (1, 16)} and bad == set()


def test_hidden_clusters_adding_up_to_little_are_narrowed() -> None:
    """R = 16 = A (2) + B (4) + C (10): A and B hidden add to 6, so each is 1..5 (width 4 < 5):
    narrowed, not exact. The store's decision hides C too: each of A, B is 1..14."""
    rows = [("region", "R", 16), ("cluster", "A", 2), ("cluster", "B", 4),
            ("cluster", "C", 10)]
    nesting = [("cluster", k, "region", "R") for k in "ABC"]
    got, bad = _attack(rows, nesting, hide=["A", "B"])
    assert got == {"A": (1, 5), "B": (1, 5)} and bad == {"A", "B"}
    got, bad = _attack(rows, nesting)
    assert got == {"A": (1, 14), "B": (1, 14), "C": (1, 14)} and bad == set()


def test_bounds_travel_across_relations() -> None:
    """K = P1 (3) + P2 (9) and M = P1 + P3 (20): K published, P1 and P2 hidden; M and P3
    published give P1 = 3 exactly, and then K gives P2 = 9: two relations, one chain. A hidden
    figure nothing bounds above keeps ``INF``."""
    rows = [("cluster", "K", 12), ("municipality", "M", 23), ("practice", "P1", 3),
            ("practice", "P2", 9), ("practice", "P3", 20), ("practice", "Q", 7)]
    nesting = [("practice", "P1", "cluster", "K"), ("practice", "P2", "cluster", "K"),
               ("practice", "P1", "municipality", "M"), ("practice", "P3", "municipality", "M")]
    got, bad = _attack(rows, nesting, hide=["P1", "P2", "Q"])
    assert got == {"P1": (3, 3), "P2": (9, 9), "Q": (1, INF)} and bad == {"P1"}

