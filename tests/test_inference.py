"""The attack on the store (:mod:`workbench.answers.inference`): what a viewer reading every view
can learn of a hidden figure, on tiny hand-made stores worked out in the comments (the attack on
a built store: ``test_answers_refresh``'s ``workbench data attack``)."""

from __future__ import annotations

import ibis

from workbench.answers.inference import INF, bounds, disclosed, network, relations
from workbench.answers.protected import aggregates, decide, equations


def _cells(rows):
    return ibis.memtable(
        [{"level": lv, "unit_id": u, "sel": "G", "period": "2025", "sex": sex,
          "age_group": None, "consumption_group": None, "started": None, "patients": n}
         for lv, u, n, *more in rows for sex in [more[0] if more else None]],
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


def _attack(rows, nesting, hide=None, *, oracle=False):
    """Bounds by unit (and sex, when a row has one) of every hidden figure, and the figures
    disclosed; ``hide`` names the hidden units (else the store's decision); ``oracle``: the
    attacker who knows each relation's own truth."""
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
    found = bounds(network(relations(figs, eqs, put, oracle=oracle), put), hidden, put).last
    t = figs.table.join(figs.units, "uid").join(figs.values, "dv")
    name = t.select("id", unit_id=t.unit_id + ibis.ifelse(t.value == "", "", ":" + t.value))
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



# K (7 patients) at practices P1 (no woman, 1 man) and P2 (1 woman, 5 men); the cluster's
# women (1) and men (6)
TWO_BY_TWO = [("cluster", "K", 1, "F"), ("cluster", "K", 6, "M"), ("practice", "P1", 0, "F"),
              ("practice", "P1", 1, "M"), ("practice", "P2", 1, "F"), ("practice", "P2", 5, "M")]
IN_K = [("practice", "P1", "cluster", "K"), ("practice", "P2", "cluster", "K")]


def test_a_chain_of_relations_narrows_what_each_relation_alone_leaves_wide() -> None:
    """The rules hide every figure but K (7) and P1's women (0): in each relation alone a
    hidden part is 1..6 (K = P1 + P2). Chained: P2 = P2:F + P2:M is at least 2 (two hidden
    parts, each at least 1), so P1 = K - P2 is 1..5, and so is P1:M (= P1, its women being 0),
    K:F (= P2:F), P2:F and P2:M (K:M = P1:M + P2:M = K - K:F): counts of 1 narrowed to a
    range of width 4."""
    got, bad = _attack(TWO_BY_TWO, IN_K)
    assert got == {"P1": (1, 5), "P1:M": (1, 5), "P2": (2, 6), "P2:F": (1, 5), "P2:M": (1, 5),
                   "K:F": (1, 5), "K:M": (2, 6)}
    assert bad == {"P1", "P1:M", "P2:F", "K:F"}


def test_the_oracle_knows_what_no_view_tells() -> None:
    """Months of a quarter: a person in two months counts in both, so a viewer knows only that
    the months add up to at least the quarter (Q1 = 9 = M1 (4) + M2 (5) + M3 (0) here, but
    Q2 = 5 < M4 (3) + M5 (4), one person in both). With M1 alone hidden, the viewer has M1 at
    least 9 - 5 - 0 = 4 and at most its quarter, 9: 4..9, not narrow; the oracle, who knows that
    Q1's persons are in one month each, has M1 = 9 - 5 - 0 = 4 exactly."""
    con = ibis.duckdb.connect()

    def put(name, expr):
        return con.create_table(name, expr, overwrite=True)

    rows = [("2025Q1", 9), ("2025-01", 4), ("2025-02", 5), ("2025-03", 0),
            ("2025Q2", 5), ("2025-04", 3), ("2025-05", 4), ("2025-06", 0)]
    cells = ibis.memtable(
        [{"level": "practice", "unit_id": "P", "sel": "G", "period": p, "sex": None,
          "age_group": None, "consumption_group": None, "started": None, "patients": n}
         for p, n in rows], schema=_cells([]).schema())
    quarters = [("2025Q1", "quarter", 0, 3), ("2025Q2", "quarter", 3, 6)]
    months = [(f"2025-{m + 1:02d}", "month", m, m + 1) for m in range(6)]
    periods = ibis.memtable(quarters + months, schema=YEAR.schema())
    figs = aggregates(cells, NO_PARTS, put)
    eqs = put("eqs", equations(figs, ibis.memtable([], schema={
        "child_level": "string", "child_id": "string", "level": "string",
        "unit_id": "string"}), SELECTIONS, periods))
    t = figs.table.join(figs.periods, "pid")
    hidden = put("hidden", t.filter(t.period == "2025-01").select("id"))
    name = t.select("id", "period")

    def bounds_of(oracle):
        found = bounds(network(relations(figs, eqs, put, oracle=oracle), put), hidden, put).last
        return {r.period: (r.lo, r.hi) for r in con.execute(found.join(name, "id"))
                .itertuples()}

    assert bounds_of(False) == {"2025-01": (4, 9)}
    assert bounds_of(True) == {"2025-01": (4, 4)}
