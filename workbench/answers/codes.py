"""Small integer codes for what the build joins and groups on: periods, selections, practices,
persons.

A national build groups hundreds of millions of person × period rows; hashing an integer is
several times cheaper than hashing ``'R12-2024-06'`` or ``'P123456789'``. So the build works on
codes and the answers are given their labels back at the end, from these small tables. The codes
never leave the build (the person code least of all).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from workbench.definitions import Definitions
from workbench.engine.months import month_index
from workbench.engine.periods import LOOKBACK_DAYS, Period

DRUG_CODES_FROM = 100  # selection codes: groups 0, 1, …; drugs from here


def _first_of(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def period_codes(periods: Sequence[Period]) -> ir.Table:
    """``(pid, period, kind, first, end, period_start, days)``: ``first``/``end`` are month
    indexes (end exclusive)."""
    return ibis.memtable(pa.table({
        "pid": pa.array(range(len(periods)), pa.int32()),
        "period": [p.label for p in periods],
        "kind": [p.kind for p in periods],
        "first": pa.array([month_index(p.start) for p in periods], pa.int32()),
        "end": pa.array([month_index(p.end_exclusive) for p in periods], pa.int32()),
        "period_start": pa.array([p.start for p in periods], pa.date32()),
        "days": pa.array([p.days for p in periods], pa.int32()),
    }))


def period_month_codes(periods: Sequence[Period]) -> ir.Table:
    """``(pid, month)``: the months each period is made of."""
    rows = [(i, m) for i, p in enumerate(periods)
            for m in range(month_index(p.start), month_index(p.end_exclusive))]
    return ibis.memtable(pa.table({
        "pid": pa.array([r[0] for r in rows], pa.int32()),
        "month": pa.array([r[1] for r in rows], pa.int32()),
    }))


def window_starts_on_2nd(end_month: int) -> bool:
    """Whether the 365 days ending on ``end_month``'s last day start on a month's 2nd (the 12
    months hold a 29 February): the window then leaves out its first month's 1st day."""
    end = _first_of(end_month + 1)
    return (end - dt.timedelta(days=LOOKBACK_DAYS)).day == 2


def lookback_codes(end_months: Sequence[int]) -> ir.Table:
    """``(e, month, minus_day1)``: the months of the consumption-group window ending with
    month ``e``, and whether its first month counts without its 1st day."""
    rows = [(e, m, m == e - 11 and window_starts_on_2nd(e))
            for e in sorted(set(end_months)) for m in range(e - 11, e + 1)]
    return ibis.memtable(pa.table({
        "e": pa.array([r[0] for r in rows], pa.int32()),
        "month": pa.array([r[1] for r in rows], pa.int32()),
        "minus_day1": pa.array([r[2] for r in rows], pa.bool_()),
    }))


@dataclass(frozen=True)
class Selections:
    """The selections a page can choose: the drug groups (codes 0…) and the drugs of each
    (codes from :data:`DRUG_CODES_FROM`), a drug being an ATC code some product of the
    register has."""

    groups: tuple[str, ...]
    drugs: tuple[tuple[str, str], ...]  # (atc code, its group)

    @classmethod
    def of(cls, definitions: Definitions, atc_codes: Sequence[str]) -> Selections:
        drugs = []
        for code in sorted(set(atc_codes)):
            group = definitions.group_for_atc(code)
            if group is not None:
                drugs.append((code, group))
        return cls(tuple(definitions.groups), tuple(drugs))

    def group_table(self) -> ir.Table:
        """``(product_group, gid)``."""
        return ibis.memtable(pa.table({
            "product_group": list(self.groups),
            "gid": pa.array(range(len(self.groups)), pa.int16()),
        }))

    def drug_table(self) -> ir.Table:
        """``(drug, did)``."""
        return ibis.memtable(pa.table({
            "drug": [d for d, _ in self.drugs],
            "did": pa.array(range(DRUG_CODES_FROM, DRUG_CODES_FROM + len(self.drugs)),
                            pa.int16()),
        }))

    def table(self, definitions: Definitions) -> ir.Table:
        """``(sid, sel, kind, group, addictive)``: every selection by code, with its label
        (``addictive``: a drug's flag, an ATC property; null for a group)."""
        sels = [(i, g, "group", g, None) for i, g in enumerate(self.groups)]
        sels += [(DRUG_CODES_FROM + i, d, "drug", g, definitions.is_addictive(d))
                 for i, (d, g) in enumerate(self.drugs)]
        return ibis.memtable(pa.table({
            "sid": pa.array([s[0] for s in sels], pa.int16()),
            "sel": [s[1] for s in sels],
            "kind": [s[2] for s in sels],
            "group": [s[3] for s in sels],
            "addictive": pa.array([s[4] for s in sels], pa.bool_()),
        }))


def practice_codes(practices: ir.Table) -> ir.Table:
    """``(px, practice_id, cluster_id, municipality_code, region_code)``."""
    ordered = practices.select("practice_id", "cluster_id", "municipality_code", "region_code")
    return ordered.mutate(px=(ibis.row_number().over(order_by="practice_id")).cast("int32"))


UNIT_COLUMNS = {"practice": "practice_id", "cluster": "cluster_id",
                "municipality": "municipality_code", "region": "region_code"}


def unit_codes(practices: ir.Table, level: str) -> ir.Table:
    """``(px, unit_id)`` of every coded practice that belongs to a unit of ``level`` (the
    nation: all of them, as ``DK``)."""
    from workbench.engine.units import NATION_ID

    if level == "nation":
        return practices.select("px", unit_id=ibis.literal(NATION_ID))
    mapped = practices.select("px", unit_id=practices[UNIT_COLUMNS[level]])
    return mapped.filter(mapped.unit_id.notnull())
