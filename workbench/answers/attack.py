"""The attack on a built store (:mod:`.inference`), run on the embedded DuckDB: what a viewer
reading every view can learn of each hidden figure, and which small counts that gives away.

Run by the attack suite (``tests/test_inference.py``) and ``workbench data attack``; with
``primaries_only`` it plays tables protected one at a time (every figure some view publishes
unless it is 1-4 itself), so a reader can see the attack find what that method gave away; with
``oracle`` the attacker knows, for each relation, whether its persons overlap (no view tells).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from workbench.answers import inference as I
from workbench.answers import protected as Q
from workbench.answers.codes import practice_codes
from workbench.answers.local import sql_path, store_path
from workbench.disclosure import DEFAULT_POLICY
from workbench.paths import Dataset

LABELS = ["level", "unit_id", "sel", "period", "dim", "value"]


@dataclass
class AttackReport:
    """What the attack read and found: ``by_one`` names each small count one relation gives
    away from the published figures, ``by_chains`` each one any chain of relations does
    (labels, true ``patients``, the attacker's ``lo``..``hi``); ``rounds`` is the longest
    chain that still moved a bound."""

    figures: int
    hidden: int
    relations: int
    rounds: int
    seconds: float
    by_one: pd.DataFrame = field(repr=False)
    by_chains: pd.DataFrame = field(repr=False)

    def __str__(self) -> str:
        def told(found: pd.DataFrame) -> str:
            exact = int((found["lo"] == found["hi"]).sum())
            return f"{len(found):,} ({exact:,} exactly)"

        return (f"attack: {self.figures:,} figures, {self.hidden:,} hidden, "
                f"{self.relations:,} relation rows, {self.rounds} rounds; counts of 1-4 given "
                f"away by one relation {told(self.by_one)}, by chains of relations "
                f"{told(self.by_chains)}; {self.seconds:.0f} s")


def attack_store(dataset: Dataset, *, primaries_only: bool = False, oracle: bool = False,
                 threshold: int = DEFAULT_POLICY.threshold, memory_limit: str = "4GB",
                 say: Callable[[str], None] = lambda _: None) -> AttackReport:
    """Attack the dataset's built store (read only; the work is done in a temporary file)."""
    started = time.perf_counter()
    store = store_path(dataset)
    if not store.exists():
        raise FileNotFoundError(f"{store}: no answer store; build it first")
    with tempfile.TemporaryDirectory(prefix="attack-", dir=store.parent) as tmp:
        con = ibis.duckdb.connect(str(Path(tmp) / "attack.duckdb"), memory_limit=memory_limit,
                                  temp_directory=str(Path(tmp) / "spill"))
        try:
            con.raw_sql("SET enable_progress_bar = false")
            con.raw_sql(f"ATTACH '{sql_path(store)}' AS s (READ_ONLY)")
            con.raw_sql(f"ATTACH '{sql_path(dataset.database)}' AS r (READ_ONLY)")

            def put(name: str, expr: ir.Table) -> ir.Table:
                return con.create_table(name, expr, overwrite=True)

            def stored(name: str) -> ir.Table:
                return con.table(name, database=("s", "main"))

            figs = Q.aggregates(stored("cells"), stored("parts"), put)
            practices = practice_codes(con.table("practices", database=("r", "main")))
            eqs = put("equations", Q.equations(figs, Q.nesting(practices),
                                               stored("selections"), stored("periods")))
            f = figs.table
            if primaries_only:
                hidden = f.filter(f.patients.between(1, threshold - 1)).select("id")
            else:
                hidden = I.hidden_ids(figs, stored("hidden"))
            hidden = put("hidden_ids", hidden)
            rel = I.relations(figs, eqs, put, oracle=oracle)
            found = I.bounds(I.network(rel, put), hidden, put, say)

            def named(found: ir.Table) -> pd.DataFrame:
                t = (I.disclosed(figs, found, threshold).join(f, "id")
                     .join(figs.units, "uid").join(figs.sels, "sid")
                     .join(figs.periods, "pid").join(figs.values, "dv"))
                return con.execute(t.select(*LABELS, "patients", "lo", "hi").order_by(LABELS))

            return AttackReport(_count(f), _count(hidden), _count(rel), found.rounds,
                                time.perf_counter() - started, named(found.first),
                                named(found.last))
        finally:
            con.disconnect()


def _count(table: ir.Table) -> int:
    return int(table.count().to_pyarrow().as_py())
