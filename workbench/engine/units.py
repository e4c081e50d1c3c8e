"""Units of geography and organisation, all built from practices.

The contract makes every unit "the sum of its practices": a cluster, municipality or region is
the set of practices whose row in ``practices`` names it, and the nation is all practices. So
both redemptions (by prescriber) and listings (by practice) reach a unit through one map
``practice_id -> unit_id``, and a practice missing from ``practices`` counts for no unit at all.
"""

from __future__ import annotations

from typing import Literal

import ibis
import ibis.expr.types as ir

Level = Literal["nation", "region", "municipality", "cluster", "practice"]
LEVELS: tuple[Level, ...] = ("nation", "region", "municipality", "cluster", "practice")

# The one unit of the nation level.
NATION_ID = "DK"

_UNIT_COLUMN: dict[str, str] = {
    "region": "region_code",
    "municipality": "municipality_code",
    "cluster": "cluster_id",
    "practice": "practice_id",
}


def check_level(level: str) -> Level:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; use one of {list(LEVELS)}")
    return level  # type: ignore[return-value]


def unit_map(practices: ir.Table, level: str, units: list[str] | None = None) -> ir.Table:
    """``(practice_id, unit_id)`` for every practice that belongs to a unit of ``level``.

    ``units`` keeps only those units (ids as strings, e.g. practice ids or region codes).

    >>> import ibis
    >>> p = ibis.memtable({"practice_id": ["000001", "000002"], "region_code": ["1081"] * 2,
    ...                    "municipality_code": ["851", "860"], "cluster_id": ["K1", None]})
    >>> unit_map(p, "cluster").to_pandas().values.tolist()
    [['000001', 'K1']]
    """
    level = check_level(level)
    if level == "nation":
        mapped = practices.select("practice_id", unit_id=ibis.literal(NATION_ID))
    else:
        mapped = practices.select("practice_id", unit_id=practices[_UNIT_COLUMN[level]])
        mapped = mapped.filter(mapped.unit_id.notnull())
    if units is not None:
        mapped = mapped.filter(mapped.unit_id.isin(list(units)))
    return mapped


def unit_ids(practices: ir.Table, level: str, units: list[str] | None = None) -> ir.Table:
    """The distinct ``unit_id`` of a level: every unit that has at least one practice."""
    return unit_map(practices, level, units).select("unit_id").distinct()
