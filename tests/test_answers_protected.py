"""Suppression decided once over the store's linked figures (:mod:`workbench.answers.protected`),
on tiny hand-made stores whose answers are worked out in the comments."""

from __future__ import annotations

import ibis
import pytest

from workbench.answers.protected import aggregates, decide, equations, hidden_figures

CELL = {"sex": None, "age_group": None, "consumption_group": None, "started": None}


def _cells(rows: list[tuple]) -> ibis.Table:
    return ibis.memtable([{"level": lv, "unit_id": u, "sel": s, "period": p, **CELL, **extra,
                           "patients": n} for lv, u, s, p, n, *more in rows
                          for extra in [more[0] if more else {}]],
                         schema={"level": "string", "unit_id": "string", "sel": "string",
                                 "period": "string", "sex": "string", "age_group": "string",
                                 "consumption_group": "string", "started": "string",
                                 "patients": "int64"})


NO_PARTS = ibis.memtable([], schema={"level": "string", "unit_id": "string", "sel": "string",
                                     "period": "string", "dim": "string", "value": "string",
                                     "patients": "int64"})
NESTING_SCHEMA = {"child_level": "string", "child_id": "string", "level": "string",
                  "unit_id": "string"}
SELECTIONS_SCHEMA = {"sel": "string", "kind": "string", "group": "string"}
PERIODS_SCHEMA = {"period": "string", "kind": "string", "first": "int64", "end": "int64"}


def _hidden(cells: ibis.Table, nesting: list[tuple], selections: list[tuple],
            periods: list[tuple], parts: ibis.Table = NO_PARTS) -> dict[tuple, bool]:
    con = ibis.duckdb.connect()

    def put(name: str, expr: ibis.Table) -> ibis.Table:
        return con.create_table(name, expr, overwrite=True)

    figs = aggregates(cells, parts, put)
    eqs = put("eqs", equations(
        figs, ibis.memtable(nesting, schema=NESTING_SCHEMA),
        ibis.memtable(selections, schema=SELECTIONS_SCHEMA),
        ibis.memtable(periods, schema=PERIODS_SCHEMA)))
    found = con.execute(hidden_figures(figs, decide(figs, eqs, put)))
    return {(r.unit_id, r.sel, r.period, r.dim, r.value): r.primary
            for r in found.itertuples()}


UNITS = [("practice", "P1", "cluster", "K1"), ("practice", "P2", "cluster", "K1"),
         ("practice", "P3", "cluster", "K2"), ("cluster", "K1", "region", "R"),
         ("cluster", "K2", "region", "R"), ("region", "R", "nation", "DK")]
YEAR = [("2025", "year", 0, 12)]
REGION = [("practice", "P1", "G", "2025", 3), ("practice", "P2", "G", "2025", 10),
          ("practice", "P3", "G", "2025", 4), ("cluster", "K1", "G", "2025", 13),
          ("cluster", "K2", "G", "2025", 4), ("region", "R", "G", "2025", 17),
          ("nation", "DK", "G", "2025", 17)]


def test_a_hidden_cluster_is_not_given_back_by_its_region() -> None:
    """P1 = 3 and P3 = K2 = 4 are hidden (primary). K1 = P1 + P2 with P1 alone hidden gives
    P2 (10) as complement; R = K1 + K2 with K2 alone hidden gives K1 (13): the region's 17
    published beside its clusters no longer gives K2 back (the issue's first leak)."""
    cells = _cells(REGION)
    hidden = _hidden(cells, UNITS, [("G", "group", "G")], YEAR)
    assert hidden == {("P1", "G", "2025", "total", ""): True,
                      ("P3", "G", "2025", "total", ""): True,
                      ("K2", "G", "2025", "total", ""): True,
                      ("P2", "G", "2025", "total", ""): False,
                      ("K1", "G", "2025", "total", ""): False}


def test_a_drug_hidden_in_its_group_is_hidden_in_its_own_view_too() -> None:
    """G = 20 with drugs D1 = 3 (primary), D2 = 7, D3 = 10: D2 is the complement. It is one
    figure (the drug's total), so the view of drug D2 hides it as the group's drugs table does
    (the issue's second leak); and P's breakdown by sex (F = 7, all of D2's) hides F too, or it
    would give D2 back."""
    cells = _cells([
        ("practice", "P", "G", "2025", 20), ("practice", "P", "D1", "2025", 3),
        ("practice", "P", "D2", "2025", 7, {"sex": "F"}), ("practice", "P", "D3", "2025", 10)])
    selections = [("G", "group", "G"), ("D1", "drug", "G"), ("D2", "drug", "G"),
                  ("D3", "drug", "G")]
    hidden = _hidden(cells, [], selections, YEAR)
    assert hidden == {("P", "D1", "2025", "total", ""): True,
                      ("P", "D2", "2025", "total", ""): False,
                      ("P", "D2", "2025", "sex", "F"): False}


def test_months_hidden_in_a_quarter_need_a_complement_and_zero_is_none() -> None:
    """Q1 = 11 = M1 (2, primary) + M2 (9) + M3 (0): the complement is M2 (a zero hides
    nothing). Hidden M1 and M2 add to 11 ≥ 5 beside the published quarter: settled."""
    cells = _cells([("nation", "DK", "G", p, n) for p, n in
                    (("2025-01", 2), ("2025-02", 9), ("2025-03", 0), ("2025Q1", 11))])
    periods = [("2025-01", "month", 0, 1), ("2025-02", "month", 1, 2),
               ("2025-03", "month", 2, 3), ("2025Q1", "quarter", 0, 3)]
    hidden = _hidden(cells, [], [("G", "group", "G")], periods)
    assert hidden == {("DK", "G", "2025-01", "total", ""): True,
                      ("DK", "G", "2025-02", "total", ""): False}


def test_hidden_parts_adding_to_less_than_the_threshold_get_another() -> None:
    """T = 30 = A (1) + B (2) + C (12) + D (15): A and B are both primary, but they add to 3
    beside the published total, so each is known to be 1–2: C is hidden too (3 + 12 ≥ 5)."""
    cells = _cells([("region", "R", "G", "2025", 30),
                    *[("cluster", k, "G", "2025", n) for k, n in
                      (("A", 1), ("B", 2), ("C", 12), ("D", 15))]])
    nesting = [("cluster", k, "region", "R") for k in "ABCD"]
    hidden = _hidden(cells, nesting, [("G", "group", "G")], YEAR)
    assert {k[0]: v for k, v in hidden.items()} == {"A": True, "B": True, "C": False}


def test_a_part_that_is_the_whole_hides_its_total() -> None:
    """K = P (a cluster of one practice): P's D2 (6) is the complement of its primary D1 (2),
    and K's D2 is the same number: it is hidden too (in K = P, no part is left to hide, so the
    total is), while G (8 at both, no hidden drug left alone) stays published."""
    cells = _cells([("practice", "P", "G", "2025", 8), ("practice", "P", "D1", "2025", 2),
                    ("practice", "P", "D2", "2025", 6), ("cluster", "K", "G", "2025", 8),
                    ("cluster", "K", "D1", "2025", 2), ("cluster", "K", "D2", "2025", 6)])
    selections = [("G", "group", "G"), ("D1", "drug", "G"), ("D2", "drug", "G")]
    hidden = _hidden(cells, [("practice", "P", "cluster", "K")], selections, YEAR)
    # D1 primary at P and K; D2 their complements; D2 at K = D2 at P (one practice): both hidden
    assert hidden == {("P", "D1", "2025", "total", ""): True,
                      ("K", "D1", "2025", "total", ""): True,
                      ("P", "D2", "2025", "total", ""): False,
                      ("K", "D2", "2025", "total", ""): False}
    assert ("P", "G", "2025", "total", "") not in hidden


@pytest.mark.parametrize("threshold", [3, 5])
def test_nothing_is_hidden_when_no_figure_is_small(threshold) -> None:
    cells = _cells([("region", "R", "G", "2025", 30), ("cluster", "A", "G", "2025", 10),
                    ("cluster", "B", "G", "2025", 20)])
    assert _hidden(cells, [("cluster", "A", "region", "R"), ("cluster", "B", "region", "R")],
                   [("G", "group", "G")], YEAR) == {}


def test_every_relation_a_viewer_can_combine_is_found_once() -> None:
    """P1 in K1; drug D in group G; months M1, M2 in the quarter Q; P1's D in M1 split by sex.
    The relations, worked out by hand: K1 = P1 (per selection × period × value), G = D (per
    unit × period × value), Q = M1 + M2 (per unit × selection × value), and P1's D in M1 = its
    F (K1's too, one practice). G has no F (a hand-made store): D's F has no relation in G, nor
    M1's F in Q."""
    rows = [(lv, u, s, p, 4, {"sex": "F"} if (s, p) == ("D", "M1") else {})
            for lv, u in (("practice", "P1"), ("cluster", "K1"))
            for s in ("G", "D") for p in ("M1", "M2", "Q")]
    con = ibis.duckdb.connect()

    def put(name: str, expr: ibis.Table) -> ibis.Table:
        return con.create_table(name, expr, overwrite=True)

    figs = aggregates(_cells(rows), NO_PARTS, put)
    eqs = equations(figs, ibis.memtable([("practice", "P1", "cluster", "K1")],
                                        schema=NESTING_SCHEMA),
                    ibis.memtable([("G", "group", "G"), ("D", "drug", "G")],
                                  schema=SELECTIONS_SCHEMA),
                    ibis.memtable([("M1", "month", 0, 1), ("M2", "month", 1, 2),
                                   ("Q", "quarter", 0, 3)], schema=PERIODS_SCHEMA))
    labels = (figs.table.join(figs.units, "uid").join(figs.sels, "sid")
              .join(figs.periods, "pid").join(figs.values, "dv"))
    name = {r.id: (r.unit_id, r.sel, r.period, r.value or r.dim)
            for r in con.execute(labels).itertuples()}
    found = {(name[r.tid], r.eq % 64, name[r.id]) for r in con.execute(eqs).itertuples()}
    assert len(found) == len(con.execute(eqs))  # no relation twice
    expected = set()
    for s in ("G", "D"):
        for p in ("M1", "M2", "Q"):
            expected.add((("K1", s, p, "total"), 10, ("P1", s, p, "total")))
    for u in ("P1", "K1"):
        for p in ("M1", "M2", "Q"):
            expected.add(((u, "G", p, "total"), 20, (u, "D", p, "total")))
        for s in ("G", "D"):
            for m in ("M1", "M2"):
                expected.add(((u, s, "Q", "total"), 30, (u, s, m, "total")))
        expected.add(((u, "D", "M1", "total"), 1, (u, "D", "M1", "F")))
    expected.add((("K1", "D", "M1", "F"), 10, ("P1", "D", "M1", "F")))
    assert found == expected


def test_hidden_parts_pinned_to_a_narrow_range_get_another() -> None:
    """R = 16 = A (2) + B (4) + C (10): A and B are primary and add to 6 ≥ 5, but beside the
    published 16 each is then known to be 1 to 5 (a range 4 wide): C is hidden too, and each
    is 1 to 14."""
    cells = _cells([("region", "R", "G", "2025", 16),
                    *[("cluster", k, "G", "2025", n) for k, n in (("A", 2), ("B", 4), ("C", 10))]])
    nesting = [("cluster", k, "region", "R") for k in "ABC"]
    hidden = _hidden(cells, nesting, [("G", "group", "G")], YEAR)
    assert {k[0]: v for k, v in hidden.items()} == {"A": True, "B": True, "C": False}


def test_relations_decided_in_shares_decide_the_same(monkeypatch) -> None:
    """A region's relations are aggregated a share at a time (the build's memory): two relation
    rows a share decide what one pass does (the case of the region and its clusters above)."""
    from workbench.answers import protected

    cells = _cells(REGION)
    whole = _hidden(cells, UNITS, [("G", "group", "G")], YEAR)
    monkeypatch.setattr(protected, "SHARE_ROWS", 2)
    assert _hidden(cells, UNITS, [("G", "group", "G")], YEAR) == whole
    assert len(whole) == 5
