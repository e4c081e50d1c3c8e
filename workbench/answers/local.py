"""The answer store of a dataset folder, built on the embedded DuckDB.

``DATA/answers.duckdb`` sits beside the register (its answers are unsuppressed, as secret as the
register, and never inside a site). :func:`build_store` builds it into ``answers.duckdb.building``
with its intermediate tables in a scratch file beside it, writes the state row last and renames
the file into place: a build killed midway leaves the previous store in use (and its leftovers are
removed by the next build). The state row names what the answers were built from — the data's
fingerprint, the definitions and the code of the engine, the analysis and the store — so a store
of other data or code is never read (:func:`current`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import ibis
import ibis.expr.types as ir

from workbench.answers.build import (
    CHUNK_ROWS,
    PARTS,
    Phase,
    Progress,
    build_answers,
    data_span,
    protect,
)
from workbench.answers.cells import LEVELS
from workbench.answers.codes import period_codes
from workbench.answers.judged import build_judged
from workbench.answers.periods import store_periods
from workbench.answers.persons import CONSUMPTION_GROUPS
from workbench.data.schema import SEX
from workbench.definitions import Definitions, load_definitions
from workbench.engine.journeys import FOLLOW_UP_DAYS
from workbench.engine.marts import FINGERPRINT_KEY, METADATA_TABLE, definitions_digest
from workbench.engine.periods import Period
from workbench.engine.query import CONTINUED, STARTED
from workbench.engine.registers import Registers
from workbench.paths import Dataset

STATE_TABLE = "answer_state"
REGISTER_ALIAS = "register"
SCRATCH_ALIAS = "scratch"
# A store build sorts and groups the whole register; it runs alone (``workbench data build``,
# or before a batch or a server starts), so it may use more than a page's session.
BUILD_MEMORY_LIMIT = "5GB"
CODE_DIRS = ("engine", "analysis", "answers")
PACKAGE = Path(__file__).resolve().parent.parent


class StoreError(RuntimeError):
    """No store can be built or read here; the message says what to do."""


@cache
def code_digest() -> str:
    """A hash of the code the answers come from: a change to how anything is computed makes
    every stored answer stale."""
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        for path in sorted((PACKAGE / folder).glob("*.py")):
            digest.update(f"{folder}/{path.name}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def store_path(dataset: Dataset) -> Path:
    return dataset.answers


def _fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    """The loader's fingerprint of the register (None: it wrote none)."""
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if METADATA_TABLE not in tables:
        return None
    found = con.execute(f"SELECT value FROM {METADATA_TABLE} WHERE key = ?",
                        [FINGERPRINT_KEY]).fetchall()
    return found[0][0] if len(found) == 1 else None


def store_key(fingerprint: str, definitions: Definitions) -> str:
    """What a store must have been built from to answer this data, definitions and code."""
    return f"{fingerprint}:{definitions_digest(definitions)}:{_bands(definitions)}:{code_digest()}"


def _bands(definitions: Definitions) -> str:
    bands = json.dumps([b.model_dump(mode="json") for b in definitions.age_bands],
                       sort_keys=True)
    risks = json.dumps({k: v.model_dump(mode="json") for k, v in definitions.risks.items()},
                       sort_keys=True, default=str)
    return hashlib.sha256((bands + risks).encode()).hexdigest()[:16]


def data_key(dataset: Dataset, definitions: Definitions | None = None) -> str | None:
    """The key a current store of ``dataset`` holds (None: the data has no fingerprint)."""
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        fingerprint = _fingerprint(con)
    if fingerprint is None:
        return None
    return store_key(fingerprint, definitions or load_definitions())


def stored_key(path: Path) -> str | None:
    """The key a store file was built with (None: missing, unfinished or unreadable)."""
    if not path.is_file():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            found = con.execute(f"SELECT store_key FROM {STATE_TABLE}").fetchall()
    except duckdb.Error:
        return None
    return found[0][0] if len(found) == 1 else None


def current(dataset: Dataset, definitions: Definitions | None = None) -> bool:
    """Whether the dataset's store answers its data, definitions and code as they are."""
    key = data_key(dataset, definitions)
    return key is not None and stored_key(store_path(dataset)) == key


@dataclass
class StoreReport:
    """What a build did: the file, its seconds, its phases, its tables' rows and its size."""

    path: Path
    built: bool
    seconds: float
    phases: list[Phase] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    refreshed_from: dt.date | None = None  # a refresh: the day its periods were built from

    def summary(self) -> dict:
        """The report as plain values (a batch's manifest records it)."""
        return {"path": str(self.path), "built": self.built, "seconds": round(self.seconds, 1),
                "refreshed_from": self.refreshed_from and self.refreshed_from.isoformat(),
                "bytes": self.bytes, "tables": self.tables,
                "phases": [{"name": p.name, "seconds": round(p.seconds, 1), "rows": p.rows}
                           for p in self.phases]}

    def __str__(self) -> str:
        if not self.built:
            return f"answers: current, {self.path} ({self.bytes / 2**20:,.0f} MiB)"
        rows = ", ".join(f"{name} {n:,}" for name, n in self.tables.items())
        done = "built"
        if self.refreshed_from == dt.date.max:
            done = "kept (nothing changed)"
        elif self.refreshed_from is not None:
            done = f"refreshed from {self.refreshed_from.isoformat()}"
        return (f"answers: {done} in {self.seconds:.0f} s, {self.bytes / 2**20:,.0f} MiB "
                f"({rows}), {self.path}")


def build_store(dataset: Dataset, *, force: bool = False, progress: Progress | None = None,
                memory_limit: str = BUILD_MEMORY_LIMIT,
                definitions: Definitions | None = None,
                chunk_rows: int = CHUNK_ROWS) -> StoreReport:
    """Build the dataset's store unless a current one is there (``force``: build anyway). A
    store of the same register before a delivery (``workbench data load --append``) is
    refreshed: only the periods the delivery can change are built again."""
    definitions = definitions or load_definitions()
    path = store_path(dataset)
    started = time.perf_counter()
    if not dataset.exists():
        raise StoreError(f"{dataset.database}: no register; generate or load one first")
    key = data_key(dataset, definitions)
    if key is None:
        raise StoreError(f"{dataset.database} has no data fingerprint: load it with the loader")
    if not force and stored_key(path) == key:
        return StoreReport(path, False, time.perf_counter() - started,
                           bytes=path.stat().st_size)
    since = None if force else changed_since(dataset, path, key)
    building = path.with_name(path.name + ".building")
    scratch = path.with_name(path.name + ".scratch")
    for leftover in (building, scratch, *(Path(f"{p}.wal") for p in (building, scratch))):
        leftover.unlink(missing_ok=True)
    progress = progress or Progress()
    if since == dt.date.max:
        progress.say("answers: the deliveries changed no answer; the store is kept")
    elif since is not None:
        progress.say(f"answers: refreshing what changed from {since.isoformat()} on")
    if since is not None:
        shutil.copyfile(path, building)
    con = ibis.duckdb.connect(str(building), memory_limit=memory_limit,
                              temp_directory=str(path.parent / ".answers-spill"))
    try:
        con.raw_sql("SET preserve_insertion_order = false")
        con.raw_sql("SET enable_progress_bar = false")  # the build reports its own phases
        con.raw_sql(f"ATTACH '{sql_path(dataset.database)}' AS {REGISTER_ALIAS} (READ_ONLY)")
        con.raw_sql(f"ATTACH '{sql_path(scratch)}' AS {SCRATCH_ALIAS}")
        reg = Registers(**{name: con.table(name, database=REGISTER_ALIAS)
                           for name in ("persons", "listings", "practices", "clusters",
                                        "products", "redemptions")})
        first, last = data_span(reg)
        if since is None:
            _build(con, reg, definitions, progress, FRESH_NONE, None, chunk_rows=chunk_rows)
        elif periods := refreshed_periods(store_periods(first, last), since):
            cohorts = followed_into(store_periods(first, last), since)
            answers = _build(con, reg, definitions, progress, FRESH, periods, cohorts,
                             chunk_rows=chunk_rows)
            _merge(con, store_periods(first, last), cohorts, progress)
            _protect(con, answers["scratch_practices"], progress)
        con.raw_sql(f"DETACH {SCRATCH_ALIAS}")
        scratch.unlink(missing_ok=True)
        Path(f"{scratch}.wal").unlink(missing_ok=True)
        con.con.execute(f"CREATE OR REPLACE TABLE {STATE_TABLE} (store_key VARCHAR, "
                        "built_at TIMESTAMP, first_day DATE, last_day DATE)")
        con.con.execute(f"INSERT INTO {STATE_TABLE} VALUES (?, now(), ?, ?)", [key, first, last])
        con.raw_sql(f"DETACH {REGISTER_ALIAS}")
        con.raw_sql("CHECKPOINT")
        tables = {name: int(con.table(name).count().to_pyarrow().as_py())
                  for name in (*ANSWER_TABLES, "hidden", "periods", "selections", "units")}
    finally:
        con.disconnect()
        scratch.unlink(missing_ok=True)
        Path(f"{scratch}.wal").unlink(missing_ok=True)
    os.replace(building, path)
    Path(f"{building}.wal").unlink(missing_ok=True)
    return StoreReport(path, True, time.perf_counter() - started, progress.phases, tables,
                       path.stat().st_size, refreshed_from=since)


# Every answer table holds one period's answers per row: a refresh replaces the rows of the
# periods it builds again. The others (periods, selections, units) are replaced whole.
ANSWER_TABLES = ("cells", "parts", "listed", "standardised", "funnels", "deciles", "risks",
                 "journeys")
FRESH = "fresh_"  # a refresh's new answers, in the scratch file until merged
FRESH_NONE = ""


def _build(con: ibis.BaseBackend, reg: Registers, definitions: Definitions,
           progress: Progress, prefix: str, periods: tuple[Period, ...] | None,
           cohorts: tuple[Period, ...] | None = None, *, chunk_rows: int = CHUNK_ROWS
           ) -> dict[str, ir.Table]:
    """Every answer through ``put``: into the store, or (``prefix``) into the scratch file."""

    def where(name: str) -> tuple[str, str] | None:
        return (SCRATCH_ALIAS, "main") if name.startswith("scratch_") or prefix else None

    typed = {} if prefix else _create_vocabularies(con, definitions)

    def put(name: str, expr: ir.Table) -> ir.Table:
        target = name if name.startswith("scratch_") else prefix + name
        columns = [c for c in expr.columns if c in typed] if name in TYPED_TABLES else []
        if columns:
            con.create_table(target, schema=expr.schema(), database=where(name), overwrite=True)
            for column in columns:
                con.raw_sql(f'ALTER TABLE "{target}" ALTER "{column}" TYPE {typed[column]}')
            con.insert(target, expr, database=where(name))
        else:
            con.create_table(target, expr, database=where(name), overwrite=True)
        return con.table(target, database=where(name))

    def insert(name: str, expr: ir.Table) -> None:
        target = name if name.startswith("scratch_") else prefix + name
        con.insert(target, expr, database=where(name))

    answers = build_answers(reg, definitions, put, progress, insert, periods=periods,
                            chunk_rows=chunk_rows)
    answers["units"] = con.table(prefix + "units", database=where("units"))
    answers.update(build_judged(reg, definitions, answers, put, insert, progress,
                                None if cohorts is None else list(cohorts),
                                chunk_rows=chunk_rows))
    return answers


# The store's two big tables, whose label columns of a fixed vocabulary are ENUMs
# (:func:`vocabularies`).
TYPED_TABLES = ("cells", "parts")


def vocabularies(definitions: Definitions) -> dict[str, tuple[str, ...]]:
    """The values of the answer columns fixed by the definitions and the register's schema: the
    levels, a cell's four dimensions, the property a part is split by. The store keeps them as
    DuckDB ENUMs (a small integer a row): writing the national cells' text labels took about
    three times as long as writing the rest of them. A refresh keeps the same vocabularies (the
    same definitions), so its rows go into the same columns."""
    return {
        "level": LEVELS,
        "sex": tuple(sorted(SEX.values())),
        "age_group": tuple(band.id for band in definitions.age_bands),
        "consumption_group": CONSUMPTION_GROUPS,
        "started": (STARTED, CONTINUED),
        "dim": tuple(dict.fromkeys(dim for _, dim in PARTS)),
    }


def _create_vocabularies(con: ibis.BaseBackend, definitions: Definitions) -> dict[str, str]:
    """The ENUM type of each column of :func:`vocabularies`, created in the store: ``{column:
    type name}``."""
    found = {}
    for column, values in vocabularies(definitions).items():
        name = f"answer_{column}"
        listed = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
        con.raw_sql(f"CREATE TYPE {name} AS ENUM ({listed})")
        found[column] = name
    return found


def _merge(con: ibis.BaseBackend, held: tuple[Period, ...], cohorts: tuple[Period, ...],
           progress: Progress) -> None:
    """The refreshed periods' answers in place of the old ones (journeys: of the ``cohorts``
    followed again); the period, selection and unit lists replaced whole (``held``: every period
    the data now cover)."""
    with progress.phase("merging into the store") as rows:
        fresh = f"{SCRATCH_ALIAS}.main.{FRESH}"
        followed = ", ".join(f"'{p.label}'" for p in cohorts) or "NULL"
        for name in ANSWER_TABLES:
            again = (f"({followed})" if name == "journeys"
                     else f"(SELECT period FROM {fresh}periods)")
            con.raw_sql(f"DELETE FROM {name} WHERE period IN {again}")
            con.raw_sql(f"INSERT INTO {name} BY NAME SELECT * FROM {fresh}{name}")
            rows.append(int(con.table(f"{FRESH}{name}", database=(SCRATCH_ALIAS, "main"))
                            .count().to_pyarrow().as_py()))
        con.create_table("periods", period_codes(held), overwrite=True)
        for name in ("selections", "units"):
            con.raw_sql(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {fresh}{name}")


def _protect(con: ibis.BaseBackend, practices: ir.Table, progress: Progress) -> None:
    """``hidden`` decided again over the merged store: a figure's relations reach into
    periods the refresh kept (a year and its months)."""

    def put(name: str, expr: ir.Table) -> ir.Table:
        con.create_table(name, expr, database=(SCRATCH_ALIAS, "main"), overwrite=True)
        return con.table(name, database=(SCRATCH_ALIAS, "main"))

    with progress.phase("protection") as rows:
        hidden = protect(con.table("cells"), con.table("parts"), practices,
                         con.table("selections"), con.table("periods"), put, progress.say)
        con.create_table("hidden", hidden, overwrite=True)
        rows.append(int(con.table("hidden").count().to_pyarrow().as_py()))


def refreshed_periods(held: tuple[Period, ...], since: dt.date) -> tuple[Period, ...]:
    """The periods a change from ``since`` on can move: those ending after it (a period's
    answers never look past its end)."""
    return tuple(p for p in held if p.last_day >= since)


def followed_into(held: tuple[Period, ...], since: dt.date) -> tuple[Period, ...]:
    """The cohorts whose starters' first year of follow-up (a journey) reaches ``since``."""
    follow = dt.timedelta(days=FOLLOW_UP_DAYS["12m"])
    return tuple(p for p in held if p.last_day + follow >= since)


def changed_since(dataset: Dataset, path: Path, key: str) -> dt.date | None:
    """The earliest day whose answers the deliveries since the store was built can change
    (None: the store can't be refreshed — none there, other definitions or code, the data
    loaded anew — and is built whole)."""
    old = stored_key(path)
    if old is None:
        return None
    old_data, _, old_rest = old.partition(":")
    new_data, _, new_rest = key.partition(":")
    if old_rest != new_rest:
        return None
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = "
                           "'deliveries'").fetchone()[0]:
            return None
        chain = {after: (before, changed) for before, after, changed in con.execute(
            "SELECT fingerprint_before, fingerprint_after, changed_from FROM deliveries"
        ).fetchall()}
    with duckdb.connect(str(path), read_only=True) as con:
        first_day = con.execute(f"SELECT first_day FROM {STATE_TABLE}").fetchone()[0]
    days = []
    at = new_data
    while at != old_data:
        if at not in chain:
            return None
        at, changed = chain[at]
        if changed is not None:
            days.append(changed)
    since = min(days, default=dt.date.max)
    # a change in the first year moves which periods are offered: build it whole
    return since if since > first_day + dt.timedelta(days=366) else None


def sql_path(path: Path) -> str:
    """A path inside a single-quoted SQL string (ATTACH)."""
    return str(path).replace("'", "''")
