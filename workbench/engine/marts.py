"""Materialised marts: the expensive, query-independent steps stored once in the database.

Every query starts from the same two things, whatever its filters: the redemptions classified
and attributed (:func:`~workbench.engine.facts.redemption_facts`: product join, DDD, group by
ATC rules, attribution) and, for started/continued, each person's redemption days per group with
the 365-day look-back already judged (:func:`~workbench.engine.patients.redemption_days`, a
window over the whole history). The marts store exactly those expressions' results, so answers
from the marts are identical to answers from the raw tables — the engine runs the same code on
either — only faster. ``engine_facts`` is sorted by date so a period reads few row groups.

On top of those, the month-grain marts of :mod:`workbench.engine.months` (net DDD per person ×
practice × group × month, per-person month figures for consumption group and started, listed
person-days per practice × sex × month) answer every period kind by re-aggregating whole months,
so a dashboard question reads thousands of rows instead of millions of redemptions; listed
persons by age (on the period's first day) come from ``engine_listed_age``, per period.

They are keyed on the data fingerprint the loader writes (``metadata``: ``key =
'data_fingerprint'``), on the drug definitions and on :data:`MARTS_VERSION`: when any of them
changes the marts are stale, a writable session rebuilds them, and a read-only one computes from
the raw tables instead (correct, slower). Without a fingerprint the engine can't tell whether the
data changed, so it never trusts marts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from workbench.definitions import Definitions
from workbench.engine.facts import redemption_facts
from workbench.engine.months import (
    age_period_keys,
    by_practice,
    listed_ages,
    listed_months,
    month_facts,
    month_index,
    period_key,
    person_group_months,
    person_group_months_by_practice,
)
from workbench.engine.patients import redemption_days
from workbench.engine.periods import Period
from workbench.engine.registers import Registers

# Bump when what the marts hold changes, so old databases rebuild.
MARTS_VERSION = "4"
FACTS_TABLE = "engine_facts"
DAYS_TABLE = "engine_group_days"
MONTH_TABLE = "engine_month"
PERSON_MONTH_TABLE = "engine_person_group_month"
MONTH_BY_PRACTICE_TABLE = "engine_month_by_practice"
PERSON_MONTH_BY_PRACTICE_TABLE = "engine_person_group_month_by_practice"
LISTED_TABLE = "engine_listed_month"
LISTED_AGE_TABLE = "engine_listed_age"
STATE_TABLE = "engine_marts_state"
METADATA_TABLE = "metadata"
FINGERPRINT_KEY = "data_fingerprint"


@dataclass(frozen=True)
class Marts:
    """The stored tables: ``facts`` (redemption facts, every product), ``days`` (redemption
    days with ``new_use``, per definitions group), and the month-grain marts (see
    :mod:`workbench.engine.months`): ``month``, ``person_month``, ``listed`` with the months it
    covers, ``listed_months`` = ``(first, end)`` month indexes (end exclusive), and
    ``listed_age`` (listed person-days by age per period within those months);
    ``month_by_practice`` and ``person_month_by_practice`` are the by-practice copies a
    practice or cluster question reads, and ``cluster_practices`` the practices of each
    cluster (the ids such a question filters those copies on)."""

    facts: ir.Table
    days: ir.Table
    month: ir.Table | None = None
    person_month: ir.Table | None = None
    listed: ir.Table | None = None
    listed_months: tuple[int, int] | None = None
    listed_age: ir.Table | None = None
    month_by_practice: ir.Table | None = None
    person_month_by_practice: ir.Table | None = None
    cluster_practices: Mapping[str, tuple[str, ...]] | None = None

    def lists_months(self, first: int, end: int) -> bool:
        """Whether the listed mart covers the months ``first ≤ m < end``."""
        if self.listed is None or self.listed_months is None:
            return False
        return self.listed_months[0] <= first and end <= self.listed_months[1]

    def lists_ages(self, periods: tuple[Period, ...] | list[Period]) -> bool:
        """Whether the listed-age mart holds every one of ``periods``."""
        if self.listed_age is None or self.listed_months is None:
            return False
        held = set(age_period_keys(*self.listed_months))
        return all(period_key(p) in held for p in periods)


def definitions_digest(definitions: Definitions) -> str:
    """A hash of everything in the definitions that changes a mart's rows."""
    content = {
        "groups": {gid: g.model_dump(mode="json") for gid, g in definitions.groups.items()},
        "addictive": definitions.addictive.model_dump(mode="json"),
        "depot": definitions.depot.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def data_fingerprint(con: BaseBackend) -> str | None:
    """The loader's fingerprint of the data in ``con``, or None if it wrote none."""
    if METADATA_TABLE not in con.list_tables():
        return None
    meta = con.table(METADATA_TABLE)
    found = meta.filter(meta.key == FINGERPRINT_KEY).select("value").to_pyarrow()
    return found.column("value")[0].as_py() if found.num_rows == 1 else None


def marts_key(con: BaseBackend, definitions: Definitions) -> str | None:
    """What the marts must have been built from to be current (None: unknowable)."""
    fingerprint = data_fingerprint(con)
    if fingerprint is None:
        return None
    return f"{MARTS_VERSION}:{fingerprint}:{definitions_digest(definitions)}"


def _state_row(con: BaseBackend, table: str, key_column: str, key: str) -> dict | None:
    if table not in con.list_tables():
        return None
    state = con.table(table).to_pyarrow()
    if state.num_rows != 1 or state.column(key_column)[0].as_py() != key:
        return None
    return state.to_pylist()[0]


def current_marts(con: BaseBackend, definitions: Definitions) -> Marts | None:
    """The marts if they exist and match the data and definitions, else None."""
    key = marts_key(con, definitions)
    if key is None:
        return None
    row = _state_row(con, STATE_TABLE, "marts_key", key)
    if row is None:
        return None
    return _bind(con, (row["listed_first_month"], row["listed_end_month"]))


def _bind(con: BaseBackend, listed_span: tuple[int | None, int | None]) -> Marts:
    first, end = listed_span
    return Marts(
        facts=con.table(FACTS_TABLE),
        days=con.table(DAYS_TABLE),
        month=con.table(MONTH_TABLE),
        person_month=con.table(PERSON_MONTH_TABLE),
        listed=con.table(LISTED_TABLE),
        listed_months=None if first is None or end is None else (first, end),
        listed_age=con.table(LISTED_AGE_TABLE),
        month_by_practice=con.table(MONTH_BY_PRACTICE_TABLE),
        person_month_by_practice=con.table(PERSON_MONTH_BY_PRACTICE_TABLE),
        cluster_practices=_cluster_practices(con),
    )


def _cluster_practices(con: BaseBackend) -> dict[str, tuple[str, ...]]:
    """``{cluster_id: practice ids}`` from the practices register (a few thousand rows)."""
    practices = con.table("practices").select("cluster_id", "practice_id").to_pyarrow()
    found: dict[str, list[str]] = {}
    for row in practices.to_pylist():
        if row["cluster_id"] is not None:
            found.setdefault(row["cluster_id"], []).append(row["practice_id"])
    return {cluster: tuple(sorted(ids)) for cluster, ids in found.items()}


def listed_span(redemptions: ir.Table) -> tuple[int, int] | None:
    """The months the listed mart covers: the whole calendar years the redemptions span
    (queries outside them read the raw listings)."""
    bounds = redemptions.aggregate(
        first=redemptions.dispensed_on.min(), last=redemptions.dispensed_on.max()
    ).to_pyarrow()
    first, last = bounds.column("first")[0].as_py(), bounds.column("last")[0].as_py()
    if first is None or last is None:
        return None
    return month_index(dt.date(first.year, 1, 1)), month_index(dt.date(last.year + 1, 1, 1))


def build_marts(con: BaseBackend, definitions: Definitions,
                memory_limit: str | None = None) -> Marts:
    """(Re)build the marts in ``con`` from its register tables; needs a writable connection.
    ``memory_limit``: what the build may use on DuckDB (default DuckDB's own, 80 % of RAM).

    The state row is written last, so an interrupted build leaves the marts stale, not wrong.
    """
    key = marts_key(con, definitions)
    if key is None:
        raise ValueError(
            f"no '{FINGERPRINT_KEY}' in table '{METADATA_TABLE}': load the data with the "
            "loader so the engine can tell when the marts go stale"
        )
    with _build_memory(con, memory_limit):
        return _build(con, definitions, key)


# A session's queries are capped (see :func:`~workbench.engine.api.connect`), but building the
# marts sorts and aggregates whole registers once per data load, which that cap can't hold.


def _duckdb_default_limit() -> str | None:
    """DuckDB's own default memory limit, 80 % of the machine's memory (None: unknown here).
    ``RESET memory_limit`` would go back to the connection's configured cap instead."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return f"{int(total * 0.8) // 2**20}MiB"


@contextmanager
def _build_memory(con: BaseBackend, memory_limit: str | None) -> Iterator[None]:
    """Lift a DuckDB connection's memory limit while the marts are built, then restore it (as
    DuckDB shows it: to a tenth of its unit)."""
    if con.name != "duckdb":
        yield
        return
    before = con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    limit = memory_limit or _duckdb_default_limit()
    if limit:
        con.raw_sql(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        con.raw_sql(f"SET memory_limit = '{before}'")


def _build(con: BaseBackend, definitions: Definitions, key: str) -> Marts:
    if STATE_TABLE in con.list_tables():
        con.drop_table(STATE_TABLE)
    reg = Registers.from_backend(con)
    facts = redemption_facts(reg.redemptions, reg.products, reg.practices, definitions)
    con.create_table(FACTS_TABLE, facts.order_by("dispensed_on"), overwrite=True)
    stored = con.table(FACTS_TABLE)
    grouped = stored.filter(stored.product_group.notnull()).mutate(group=stored.product_group)
    con.create_table(DAYS_TABLE, redemption_days(grouped), overwrite=True)
    con.create_table(MONTH_TABLE, month_facts(stored, reg.persons), overwrite=True)
    con.create_table(
        PERSON_MONTH_TABLE, person_group_months(stored, con.table(DAYS_TABLE)), overwrite=True
    )
    month = con.table(MONTH_TABLE)
    con.create_table(MONTH_BY_PRACTICE_TABLE, by_practice(month), overwrite=True)
    con.create_table(
        PERSON_MONTH_BY_PRACTICE_TABLE,
        person_group_months_by_practice(con.table(PERSON_MONTH_TABLE), month),
        overwrite=True,
    )
    span = listed_span(reg.redemptions) or (0, 0)
    con.create_table(LISTED_TABLE, listed_months(reg.listings, reg.persons, *span), overwrite=True)
    con.create_table(
        LISTED_AGE_TABLE, listed_ages(reg.listings, reg.persons, *span), overwrite=True
    )
    state = ibis.memtable(
        {
            "marts_key": [key],
            "listed_first_month": [span[0]],
            "listed_end_month": [span[1]],
        },
        schema=ibis.schema(
            {"marts_key": "string", "listed_first_month": "int64", "listed_end_month": "int64"}
        ),
    )
    con.create_table(STATE_TABLE, state, overwrite=True)
    return _bind(con, span)
