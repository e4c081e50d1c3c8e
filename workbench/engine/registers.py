"""The six register tables of the schema contract as Ibis tables, from any Ibis backend.

The engine takes this bundle rather than a connection so the same expressions run on the DuckDB
file, on a tiny in-memory test register, or (later) on Spark.

>>> import ibis
>>> from workbench.engine.registers import Registers
>>> Registers.from_backend(ibis.duckdb.connect())  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
ValueError: the database has no table(s) ['clusters', ...]
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import ibis.expr.types as ir
from ibis.backends import BaseBackend


@dataclass(frozen=True)
class Registers:
    """One Ibis table per register table of the contract (see DOMAIN.md)."""

    persons: ir.Table
    listings: ir.Table
    practices: ir.Table
    clusters: ir.Table
    products: ir.Table
    redemptions: ir.Table

    @classmethod
    def from_backend(cls, con: BaseBackend) -> Registers:
        """Bind the contract's tables in ``con``; a missing table is named in the error."""
        names = [f.name for f in fields(cls)]
        missing = sorted(set(names) - set(con.list_tables()))
        if missing:
            raise ValueError(
                f"the database has no table(s) {missing}; build it with the loader first"
            )
        return cls(**{name: con.table(name) for name in names})
