"""Load a register extract into the workbench database (``workbench data load DIR``).

The loader reads the six tables of the contract (see :mod:`workbench.data.schema`) as delivered,
checks every row, and builds the DuckDB database the engine runs on. Three promises shape it:

* **Nothing disappears silently.** Every row read is either loaded or quarantined with a reason
  naming its file, row and field; valid-but-suspicious rows are loaded and listed as warnings;
  ``rows_in = loaded + quarantined`` is checked for every table before the database is kept.
* **A failed load changes nothing.** The database is built in a scratch folder next to the old
  one and moved over it only at the end (``os.replace`` is atomic), so an error or a killed
  process never leaves a half-built database and never destroys the previous one; the next load
  removes what a killed one left.
* **It scales to the nation** (6 million persons, ~60 million redemptions) on 2 cores and
  < 4 GiB: files are streamed in chunks of a million rows; per-row checks are vectorised
  pandera checks; checks across rows and tables are SQL in DuckDB; checked rows are staged as
  Parquet, so the database is written once and holds only what was loaded.

A table is ``<table>.parquet``, ``<table>.csv`` (or ``.csv.gz``; comma, semicolon or tab
separated, UTF-8) or a folder ``<table>/`` of such part files, read in name order. Row numbers
in messages count data rows from 1 in each file; for a CSV the line is also given (the row + 1,
exact unless a quoted value spans lines).

Problems with the input as a whole (a missing table or column, an unreadable file) raise
:class:`LoadError` with a message saying what to fix; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm import tqdm

from workbench.data import reference
from workbench.data.deliveries import record_delivery
from workbench.data.schema import TABLES, TABLES_BY_NAME, ColumnSpec, Kind, TableSpec
from workbench.data.validation import (
    ARROW_TYPES,
    ROW_FIELD,
    ChunkResult,
    SetRule,
    quote,
    reject_rules,
    validate_chunk,
    warning_rules,
)
from workbench.paths import Dataset

CHUNK_ROWS = 1_000_000
CSV_BLOCK_BYTES = 32 << 20  # about half a million redemption lines per CSV block
ROW_BITS = 40  # a staged row's id is (file number << ROW_BITS) | row number in that file
ROW_MASK = (1 << ROW_BITS) - 1
DUCKDB_MEMORY = "2GB"  # DuckDB spills beyond this; Python's chunks stay well under 1 GB
REFERENCE_TABLES = {
    "reference_atc_ddd": reference.atc_ddd,
    "reference_regions": reference.regions,
    "reference_municipalities": reference.municipalities,
    "reference_population_by_age_sex": reference.population_by_age_sex,
}


class LoadError(Exception):
    """The extract can't be loaded as a whole; the message names the file, the problem and the
    fix. Row-level problems never raise: they are quarantined."""


# --------------------------------------------------------------------------------------------
# Finding the tables and reading their headers.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """One file of one table, with its columns mapped to the contract's names."""

    table: str
    path: Path
    name: str  # as shown in messages: relative to the source folder
    index: int  # the file's number in row ids
    format: str  # "csv" or "parquet"
    columns: dict[str, str]  # column as written -> contract name (or its own name, if extra)
    delimiter: str = ","

    @property
    def spec(self) -> TableSpec:
        return TABLES_BY_NAME[self.table]


def _format_of(path: Path) -> str | None:
    name = path.name.casefold()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    return None


def _table_of(entry: Path) -> str:
    name = entry.name.casefold()
    if entry.is_dir():
        return name
    for suffix in (".parquet", ".csv.gz", ".csv"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return ""


def _visible(path: Path) -> bool:
    """Hidden and bookkeeping files (``.crc``, Spark's ``_SUCCESS``) are not data."""
    return not path.name.startswith((".", "_"))


def find_tables(source_dir: Path, *, every: bool = True) -> dict[str, list[Path]]:
    """The files of each table: ``<table>.parquet``, ``<table>.csv`` or a ``<table>/`` folder
    (``every=False``: a delivery, which holds the tables it changes, at least one)."""
    expected = ", ".join(t.name for t in TABLES)
    if not source_dir.is_dir():
        raise LoadError(
            f"{source_dir}: no such folder. Give the folder that holds the register tables "
            f"({expected}), each as <table>.parquet, <table>.csv or a <table>/ folder of parts."
        )
    entries: dict[str, list[Path]] = {t.name: [] for t in TABLES}
    for entry in sorted(source_dir.iterdir()):
        table = _table_of(entry)
        if table in entries and _visible(entry):
            entries[table].append(entry)
    missing = [t for t, found in entries.items() if not found]
    if not every and len(missing) < len(entries):
        return {table: _parts(source_dir, table, found) for table, found in entries.items()
                if found}
    if missing:
        present = ", ".join(sorted(p.name for p in source_dir.iterdir() if _visible(p)))
        named = ", ".join(f"{t} ({TABLES_BY_NAME[t].description})" for t in missing)
        raise LoadError(
            f"{source_dir}: missing table(s) {named}. Each table must be there as "
            f"<table>.parquet, <table>.csv or a <table>/ folder of part files. "
            f"Found: {present or 'nothing'}."
        )
    return {table: _parts(source_dir, table, found) for table, found in entries.items()}


def _parts(source_dir: Path, table: str, found: list[Path]) -> list[Path]:
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise LoadError(
            f"{source_dir}: table {table} is given more than once ({names}); keep one of them."
        )
    entry = found[0]
    if not entry.is_dir():
        return [entry]
    parts = sorted(p for p in entry.iterdir() if p.is_file() and _visible(p) and _format_of(p))
    if not parts:
        raise LoadError(
            f"{entry}: the folder of table {table} holds no part files; "
            "parts must end in .parquet, .csv or .csv.gz."
        )
    return parts


def _csv_header(path: Path) -> tuple[list[str], str]:
    """The column names and the delimiter (comma, semicolon or tab: whichever the header uses)."""
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            first_line = stream.read(1 << 16).split(b"\n", 1)[0]
    except (OSError, pa.ArrowException) as exc:
        raise LoadError(f"{path}: cannot be read ({exc}).") from None
    try:
        line = first_line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise LoadError(_not_utf8(path)) from None
    if not line.strip():
        raise LoadError(f"{path}: the first line is empty; a CSV file must start with a header.")
    delimiter = max(",;\t", key=line.count)
    return next(csv.reader([line], delimiter=delimiter)), delimiter


def _not_utf8(path: Path) -> str:
    return (
        f"{path}: is not UTF-8 text. Save it as UTF-8, e.g. "
        f"`iconv -f cp1252 -t utf-8 {path.name} > fixed.csv` for a Windows/Latin-1 export."
    )


def _parquet_header(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (OSError, pa.ArrowException) as exc:
        raise LoadError(
            f"{path}: cannot be read as Parquet ({exc}). Check that the file is complete and "
            "really Parquet (re-export it, or deliver the table as CSV)."
        ) from None


def map_columns(spec: TableSpec, names: list[str], where: Path) -> dict[str, str]:
    """Each column as written to its contract name, matching English or Danish, any case.

    Columns outside the contract keep their own name (they are loaded as text).
    """
    aliases = spec.aliases()
    mapping: dict[str, str] = {}
    given_by: dict[str, str] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise LoadError(f"{where}: column {position} has no name; name it or remove it.")
        target = aliases.get(name.strip().casefold(), name.strip())
        key = target.casefold()
        if key in given_by:
            raise LoadError(
                f"{where}: columns {given_by[key]!r} and {name!r} both give {target!r}; "
                "keep one of them (names are matched case-insensitively, English or Danish)."
            )
        if key.startswith("wb_"):
            raise LoadError(f"{where}: column {name!r}: names starting wb_ are reserved; rename.")
        given_by[key] = name
        mapping[name] = target
    missing = [c for c in spec.columns if not c.optional and c.name not in mapping.values()]
    if missing:
        raise LoadError(_missing_columns(spec, missing, names, where))
    return mapping


def _missing_columns(
    spec: TableSpec, missing: list[ColumnSpec], names: list[str], where: Path
) -> str:
    lines = [f"{where}: table {spec.name} lacks required column(s):"]
    for col in missing:
        danish = f" (Danish: {', '.join(col.danish)})" if col.danish else ""
        lines.append(f"  {col.name}{danish}: {col.description}")
    lines.append(f"Columns found: {', '.join(names) or 'none'}.")
    lines.append(
        "Add the column or rename the one that holds it; names are matched case-insensitively, "
        "in English or Danish."
    )
    return "\n".join(lines)


def read_headers(source_dir: Path, tables: dict[str, list[Path]],
                 named: dict[Path, str] | None = None) -> list[SourceFile]:
    """Every file's header, checked before any data is read: a load fails fast, not at minute 3.
    A file is named relative to ``source_dir`` unless ``named`` names it."""
    files = []
    for table, paths in tables.items():
        for path in paths:
            fmt = _format_of(path) or ""
            if fmt == "parquet":
                names, delimiter = _parquet_header(path), ","
            else:
                names, delimiter = _csv_header(path)
            mapping = map_columns(TABLES_BY_NAME[table], names, path)
            name = (named or {}).get(path) or path.relative_to(source_dir).as_posix()
            files.append(SourceFile(table, path, name, len(files), fmt, mapping, delimiter))
    return files


# --------------------------------------------------------------------------------------------
# Streaming a file as chunks of text.
# --------------------------------------------------------------------------------------------


@dataclass
class RawChunk:
    """Rows of one file as text, with their 1-based data row numbers in that file."""

    text: pa.Table
    rows: np.ndarray
    # CSV lines that could not be split into the header's columns: (row, problem, line)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)


def _as_text(values: pa.Array | pa.ChunkedArray, col: ColumnSpec | None) -> pa.Array:
    """A Parquet column as the text a CSV would hold, so both formats are checked alike.

    Integer-typed ids get their leading zeros back (a varenummer 12345 is 012345); timestamps in
    date columns become their (local) date.
    """
    kind = col.kind if col else Kind.TEXT
    if pa.types.is_timestamp(values.type) and kind is Kind.DATE:
        if values.type.tz is not None:
            values = pc.local_timestamp(values)
        values = values.cast(pa.date32())
    try:
        text = values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise LoadError(
            f"a column of type {values.type} can't be read as text; "
            "flatten or drop it before loading"
        ) from None
    if col and col.zero_pad and pa.types.is_integer(values.type):
        text = pc.utf8_lpad(text, col.zero_pad, "0")
    return text


def _parquet_chunks(src: SourceFile) -> Iterator[RawChunk]:
    parquet = pq.ParquetFile(src.path)
    first = 1
    for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
        columns = {}
        for name, target in src.columns.items():
            col = src.spec.column(target) if target in src.spec.names else None
            try:
                columns[target] = _as_text(batch.column(name), col)
            except LoadError as exc:
                raise LoadError(f"{src.path}: column {name!r}: {exc}") from None
        yield RawChunk(pa.table(columns), np.arange(first, first + batch.num_rows))
        first += batch.num_rows


def _csv_chunks(src: SourceFile) -> Iterator[RawChunk]:
    """Stream a CSV as text; lines with the wrong number of fields are kept aside, numbered.

    Arrow reports a skipped line's record number (header = 1) when reading on one thread; the
    good rows' own numbers are recovered from those, so every row keeps its place in the file.
    """
    malformed: list[tuple[int, str, str]] = []

    def set_aside(row: pcsv.InvalidRow) -> str:
        if row.number is None:  # only when multithreaded, which we never ask for
            raise LoadError(f"{src.path}: malformed line; cannot tell which.")
        problem = f"has {row.actual_columns} fields where the header has {row.expected_columns}"
        malformed.append((row.number - 1, problem, row.text))
        return "skip"

    reader = pcsv.open_csv(
        src.path,
        read_options=pcsv.ReadOptions(use_threads=False, block_size=CSV_BLOCK_BYTES),
        # A blank line is read as a row of empty fields (and quarantined): every line counts.
        parse_options=pcsv.ParseOptions(
            delimiter=src.delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=set_aside,
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={name: pa.string() for name in src.columns},
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    names = [src.columns[name] for name in reader.schema.names]
    good, reported, skipped = 0, 0, np.empty(0, np.int64)
    for batch in reader:
        new = malformed[reported:]
        reported = len(malformed)
        skipped = np.concatenate([skipped, np.array([m[0] for m in new], np.int64)])
        ordinal = np.arange(good + 1, good + batch.num_rows + 1)
        # the k-th good row is row k + (number of skipped rows before it)
        before = np.searchsorted(skipped - np.arange(len(skipped)), ordinal, side="right")
        good += batch.num_rows
        yield RawChunk(pa.Table.from_batches([batch]).rename_columns(names), ordinal + before, new)
    if malformed[reported:]:
        empty = pa.table({n: pa.array([], pa.string()) for n in names})
        yield RawChunk(empty, np.empty(0, np.int64), malformed[reported:])


def read_chunks(src: SourceFile) -> Iterator[RawChunk]:
    """The file's rows as text chunks; any read error becomes a LoadError naming the file."""
    chunks = _parquet_chunks(src) if src.format == "parquet" else _csv_chunks(src)
    try:
        yield from chunks
    except (OSError, pa.ArrowException) as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise LoadError(_not_utf8(src.path)) from None
        raise LoadError(
            f"{src.path}: cannot be read ({exc}). Check that the file is complete and "
            f"well-formed {src.format.upper()}."
        ) from None


# --------------------------------------------------------------------------------------------
# The build: stage, check, keep.
# --------------------------------------------------------------------------------------------


def _record_json(columns: list[str]) -> str:
    """SQL for a staged row as a JSON object of text values, like the records of rows rejected
    while read (the quarantine's ``record``)."""
    fields = ", ".join(f"{quote(c)} := CAST(s.{quote(c)} AS VARCHAR)" for c in columns)
    return f"to_json(struct_pack({fields}))"


class Build:
    """One run of the loader: the new database, its scratch folder and the counts.

    Row-checked rows are staged as Parquet in the scratch folder (streamed by pyarrow: cheap,
    compressed, no memory held), the bookkeeping (files, findings) in a scratch DuckDB; the new
    database receives only the finished tables.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        work: Path,
        files: list[SourceFile],
        progress: bool,
    ):
        self.con = con
        self.work = work
        self.files = files
        self.progress = progress
        self.rows_in: dict[int, int] = {f.index: 0 for f in files}
        self.seconds: dict[str, float] = {}
        # Wall-clock (epoch) start and end per table, so a benchmark sampling memory can say
        # which table a peak belongs to.
        self.windows: dict[str, tuple[float, float]] = {}

    def columns(self, table: str) -> list[str]:
        """The contract's columns, then any extra ones in the order the files give them."""
        names = list(TABLES_BY_NAME[table].names)
        for src in self.files:
            if src.table == table:
                names += [t for t in src.columns.values() if t not in names]
        return names

    def staged_schema(self, table: str) -> pa.Schema:
        spec = TABLES_BY_NAME[table]
        kinds = {c.name: c.kind for c in spec.columns}
        fields = [pa.field(c, ARROW_TYPES[kinds.get(c, Kind.TEXT)]) for c in self.columns(table)]
        return pa.schema([*fields, pa.field("wb_rid", pa.int64())])

    def staged(self, table: str) -> str:
        return f"read_parquet('{_sql_text(self.work / f'{table}.parquet')}')"

    def create_bookkeeping(self) -> None:
        self.con.execute(
            """
            CREATE TABLE stage.files (idx BIGINT, "table" VARCHAR, name VARCHAR, format VARCHAR);
            CREATE TABLE stage.bad (wb_rid BIGINT, field VARCHAR, rule VARCHAR,
                                    problem VARCHAR, record VARCHAR);
            CREATE TABLE stage.rejected (wb_rid BIGINT, field VARCHAR, rule VARCHAR,
                                         problem VARCHAR);
            CREATE TABLE stage.warnings (wb_rid BIGINT, field VARCHAR, rule VARCHAR,
                                         problem VARCHAR);
            """
        )
        rows = [(f.index, f.table, f.name, f.format) for f in self.files]
        self.con.executemany("INSERT INTO stage.files VALUES (?, ?, ?, ?)", rows)
        self.con.execute(
            f"""
            CREATE TEMP MACRO wb_place(rid) AS (
                SELECT f.name || ' row ' || (rid & {ROW_MASK}) || CASE WHEN f.format = 'csv'
                    THEN ' (line ' || ((rid & {ROW_MASK}) + 1) || ')' ELSE '' END
                FROM stage.files f WHERE f.idx = rid >> {ROW_BITS})
            """
        )

    def load_reference(self) -> None:
        for name, read in REFERENCE_TABLES.items():
            self.con.register("wb_frame", read())
            self.con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM wb_frame")
            self.con.unregister("wb_frame")

    def load_table(self, spec: TableSpec) -> None:
        """Stage the table's files row-checked, apply the set checks, keep what passed."""
        start, started_at = time.perf_counter(), time.time()
        sources = [f for f in self.files if f.table == spec.name]
        parquet_only = all(f.format == "parquet" for f in sources)
        total = sum(_parquet_rows(f) for f in sources) if parquet_only else None
        schema = self.staged_schema(spec.name)
        bar = tqdm(
            total=total,
            desc=f"{spec.name:12s}",
            unit=" rows",
            unit_scale=True,
            disable=not self.progress,
        )
        with bar:
            with pq.ParquetWriter(self.work / f"{spec.name}.parquet", schema) as writer:
                for src in sources:
                    for chunk in read_chunks(src):
                        self._stage_chunk(src, chunk, writer)
                        bar.update(len(chunk.rows) + len(chunk.malformed))
            bar.set_postfix_str("checking across rows and tables")
            self._apply_rules(spec.name)
        self.seconds[spec.name] = round(time.perf_counter() - start, 2)
        self.windows[spec.name] = (started_at, time.time())

    def _stage_chunk(self, src: SourceFile, chunk: RawChunk, writer: pq.ParquetWriter) -> None:
        base = src.index << ROW_BITS
        self.rows_in[src.index] += len(chunk.rows) + len(chunk.malformed)
        if chunk.malformed:
            self._stage_malformed(base, chunk.malformed)
        if not len(chunk.rows):
            return
        result = validate_chunk(chunk.text, src.table)
        rids = base + chunk.rows
        if len(result.rejected):
            self._stage_rejected(chunk.text, rids, result)
        valid = result.valid.append_column("wb_rid", pa.array(np.delete(rids, result.rejected)))
        writer.write_table(_conform(valid, writer.schema), row_group_size=CHUNK_ROWS)

    def _stage_rejected(self, text: pa.Table, rids: np.ndarray, result: ChunkResult) -> None:
        raw = text.take(pa.array(result.rejected))
        bad = pa.table(
            {
                "wb_rid": pa.array(rids[result.rejected]),
                "field": pa.array(result.fields, pa.string()),
                "rule": pa.array(result.rules, pa.string()),
                "problem": pa.array(result.problems, pa.string()),
                "record": pa.StructArray.from_arrays(
                    [c.combine_chunks() for c in raw.columns], raw.column_names
                ),
            }
        )
        self.con.register("wb_bad", bad)
        self.con.execute(
            "INSERT INTO stage.bad SELECT wb_rid, field, rule, problem, to_json(record) FROM wb_bad"
        )
        self.con.unregister("wb_bad")

    def _stage_malformed(self, base: int, malformed: list[tuple[int, str, str]]) -> None:
        rows = [
            (base + row, ROW_FIELD, "malformed_line", problem, json.dumps({"line": line}))
            for row, problem, line in malformed
        ]
        self.con.executemany("INSERT INTO stage.bad VALUES (?, ?, ?, ?, ?)", rows)

    def _apply_rules(self, table: str) -> None:
        """Set checks in order (each sees only rows no earlier check rejected), then keep the
        rest as the table, then record warnings about what was kept."""
        columns = self.columns(table)
        for rule in reject_rules(table, columns):
            self._run(table, rule, "stage.rejected", self._alive(table))
        if self._rejected(table):
            self.con.execute(
                f"""
                INSERT INTO stage.bad
                SELECT r.wb_rid, r.field, r.rule, r.problem, {_record_json(columns)}
                FROM {self.staged(table)} s JOIN stage.rejected r ON r.wb_rid = s.wb_rid
                """
            )
        alive = self._alive(table)
        cols = ", ".join(quote(c) for c in columns)
        self.con.execute(f"CREATE TABLE main.{table} AS SELECT {cols} FROM {alive}")
        for rule in warning_rules(table):
            self._run(table, rule, "stage.warnings", alive)

    def _run(self, table: str, rule: SetRule, findings: str, rows: str) -> None:
        """One set check; its time is kept, as the checks are most of a national load."""
        start = time.perf_counter()
        self.con.execute(f"INSERT INTO {findings} {rule.sql.replace('{rows}', rows)}")
        self.seconds[f"{table}:{rule.name}"] = round(time.perf_counter() - start, 2)

    def _alive(self, table: str) -> str:
        """The staged rows no check has rejected (a plain scan while there are none: the
        anti-join costs as much as a check on 60 million rows)."""
        staged = self.staged(table)
        if not self._rejected(table):
            return staged
        return f"(SELECT s.* FROM {staged} s ANTI JOIN stage.rejected x ON x.wb_rid = s.wb_rid)"

    def _rejected(self, table: str) -> int:
        files = ", ".join(str(f.index) for f in self.files if f.table == table)
        (n,) = self.con.execute(
            f"SELECT count(*) FROM stage.rejected WHERE wb_rid >> {ROW_BITS} IN ({files})"
        ).fetchone()
        return n

    def write_findings(self) -> None:
        """quarantine and load_warnings: every finding with its place in the source."""
        row = f"(b.wb_rid & {ROW_MASK})"
        place = f"f.name AS file, {row} AS source_row"
        text = (  # as wb_place(), written out: a macro's subquery per row is slow on millions
            f"f.name || ' row ' || {row} || CASE WHEN f.format = 'csv' "
            f"THEN ' (line ' || ({row} + 1) || ')' ELSE '' END "
            f"|| CASE WHEN b.field = '{ROW_FIELD}' THEN '' ELSE ', field ' || b.field END "
            "|| ': ' || b.problem"
        )
        for target, source, extra in (
            ("quarantine", "stage.bad", f"{text} AS reason, b.record"),
            ("load_warnings", "stage.warnings", f"{text} AS warning"),
        ):
            self.con.execute(
                f"""
                CREATE TABLE main.{target} AS
                SELECT f."table", {place}, b.field, b.rule, {extra}
                FROM {source} b JOIN stage.files f ON f.idx = b.wb_rid >> {ROW_BITS}
                ORDER BY b.wb_rid
                """
            )

    def reconcile(self) -> list[TableReconciliation]:
        """rows_in = loaded + quarantined for every table, or the build is abandoned."""
        out = []
        for spec in TABLES:
            rows_in = sum(self.rows_in[f.index] for f in self.files if f.table == spec.name)
            loaded, quarantined, warnings = self.con.execute(
                f"""SELECT (SELECT count(*) FROM main.{spec.name}),
                          (SELECT count(*) FROM main.quarantine WHERE "table" = $t),
                          (SELECT count(*) FROM main.load_warnings WHERE "table" = $t)""",
                {"t": spec.name},
            ).fetchone()
            row = TableReconciliation(spec.name, rows_in, loaded, quarantined, warnings)
            if not row.balanced:
                raise LoadError(
                    f"internal error: table {spec.name} read {rows_in} rows but loaded {loaded} "
                    f"and quarantined {quarantined}; the database was not replaced. "
                    "Please report this with the load's input."
                )
            out.append(row)
        self.con.execute(
            'CREATE TABLE main.reconciliation ("table" VARCHAR, rows_in BIGINT, loaded BIGINT, '
            "quarantined BIGINT, warnings BIGINT)"
        )
        self.con.executemany(
            "INSERT INTO main.reconciliation VALUES (?, ?, ?, ?, ?)",
            [(r.table, r.rows_in, r.loaded, r.quarantined, r.warnings) for r in out],
        )
        return out

    def write_provenance(self, hashes: dict[int, str], metadata: dict[str, str]) -> None:
        self.con.execute(
            'CREATE TABLE main.source_files ("table" VARCHAR, file VARCHAR, format VARCHAR, '
            "bytes BIGINT, sha256 VARCHAR, rows_in BIGINT, path VARCHAR)"
        )
        rows = [
            (
                f.table,
                f.name,
                f.format,
                f.path.stat().st_size,
                hashes[f.index],
                self.rows_in[f.index],
                str(f.path),
            )
            for f in self.files
        ]
        self.con.executemany("INSERT INTO main.source_files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.con.execute("CREATE TABLE main.metadata (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.executemany("INSERT INTO main.metadata VALUES (?, ?)", list(metadata.items()))

    def summarise(self, findings: str) -> list[FindingCount]:
        rows = self.con.execute(
            f"""
            SELECT "table", field, rule, count(*) AS n, min({{'f': file, 'r': source_row}})
            FROM main.{findings} GROUP BY ALL ORDER BY "table", n DESC, field, rule
            """
        ).fetchall()
        return [FindingCount(t, f, r, n, first["f"], first["r"]) for t, f, r, n, first in rows]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A file's rows in the table's staged layout: columns it lacks are null."""
    n = table.num_rows
    names = set(table.column_names)
    arrays = [table[f.name] if f.name in names else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _parquet_rows(src: SourceFile) -> int:
    return pq.ParquetFile(src.path).metadata.num_rows


# --------------------------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableReconciliation:
    """What happened to one table's rows."""

    table: str
    rows_in: int
    loaded: int
    quarantined: int
    warnings: int  # findings recorded in load_warnings (a row may have several)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.loaded + self.quarantined


@dataclass(frozen=True)
class FindingCount:
    """How many rows of a table one rule quarantined or warned about, and the first one."""

    table: str
    field: str
    rule: str
    count: int
    file: str
    row: int


@dataclass(frozen=True)
class LoadReport:
    """The outcome of a load: counts per table, findings by rule, and provenance."""

    source_dir: Path
    database: Path
    reconciliation: tuple[TableReconciliation, ...]
    quarantined_by_rule: tuple[FindingCount, ...]
    warnings_by_rule: tuple[FindingCount, ...]
    metadata: dict[str, str]
    seconds: dict[str, float]
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every row was loaded (warnings allowed). A load with quarantined rows still
        builds the database; ``ok`` tells the caller to look at ``quarantine``."""
        return all(r.quarantined == 0 for r in self.reconciliation)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "source_dir": str(self.source_dir),
            "database": str(self.database),
            "reconciliation": [asdict(r) for r in self.reconciliation],
            "quarantined_by_rule": [asdict(q) for q in self.quarantined_by_rule],
            "warnings_by_rule": [asdict(w) for w in self.warnings_by_rule],
            "metadata": self.metadata,
            "seconds": self.seconds,
            "windows": self.windows,
        }

    def summary(self) -> str:
        lines = [
            f"Loaded {self.source_dir} into {self.database}",
            f"{'table':12s} {'rows in':>12s} {'loaded':>12s} {'quarantined':>12s} "
            f"{'warnings':>10s}",
        ]
        lines += [
            f"{r.table:12s} {r.rows_in:12,d} {r.loaded:12,d} {r.quarantined:12,d} {r.warnings:10,d}"
            for r in self.reconciliation
        ]
        for title, findings, where in (
            ("Quarantined (see table quarantine)", self.quarantined_by_rule, "quarantine"),
            ("Warnings, rows kept (see table load_warnings)", self.warnings_by_rule, "warnings"),
        ):
            if findings:
                lines.append(f"{title}:")
                lines += [
                    f"  {f.table}.{f.field} {f.rule}: {f.count:,d} (first: {f.file} row {f.row})"
                    for f in findings
                ]
            else:
                lines.append(f"No {where}.")
        lines.append("OK: every row loaded." if self.ok else "NOT OK: rows were quarantined.")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The public entry point.
# --------------------------------------------------------------------------------------------


def load_register(source_dir: Path, dataset: Dataset, *, progress: bool = True) -> LoadReport:
    """Validate the register extract in ``source_dir`` and build ``dataset.database`` from it.

    The previous database is replaced only when the new one is complete and reconciled. Also
    writes ``load_report.json`` and ``load_report.txt`` to ``dataset.reports_dir``.
    """
    source_dir = Path(source_dir).resolve()
    files = read_headers(source_dir, find_tables(source_dir))
    return _load(source_dir, dataset, files, progress)


def append_register(delivery_dir: Path, dataset: Dataset, *, progress: bool = True
                    ) -> LoadReport:
    """Add a delivery to the register: a month (or more) of redemptions, and any other table
    given again as it now stands (the CPR, listing and practice registers are delivered as
    snapshots, so a table given replaces the old; redemptions are added to).

    The database is loaded again from the files it was loaded from and the delivery's, with
    every check of a load (a re-delivered redemption is an exact duplicate and quarantined), so
    an append never loads what a full load would refuse. Those files must be where they were
    and unchanged (their hashes are compared). The ``deliveries`` table records the earliest
    day whose answers the delivery can change (``changed_from``): the answer store refreshes the
    periods from there on and keeps the rest.
    """
    delivery_dir = Path(delivery_dir).resolve()
    if not dataset.database.is_file():
        raise LoadError(f"{dataset.database}: no register to append to; load one first "
                        "(workbench data load DIR)")
    before = _loaded_files(dataset.database)
    delivered = find_tables(delivery_dir, every=False)
    tables: dict[str, list[Path]] = {}
    for spec in TABLES:
        kept = [path for table, _, path, _ in before if table == spec.name]
        given = delivered.get(spec.name, [])
        tables[spec.name] = kept + given if spec.name == "redemptions" else (given or kept)
    names = {path: name for _, name, path, _ in before}
    for paths in delivered.values():
        for path in paths:
            names[path] = f"{delivery_dir.name}/{path.relative_to(delivery_dir).as_posix()}"
    if len(set(names.values())) < len(names):
        raise LoadError(f"{delivery_dir}: a file of this delivery has the name of one loaded "
                        "before; give each delivery its own folder name (e.g. 2026-01)")
    missing = [str(path) for _, _, path, _ in before if not path.is_file()]
    if missing:
        raise LoadError(f"{missing[0]}: loaded before and needed again for an append, but "
                        "gone; put it back or load the whole register again (data load DIR)")
    files = read_headers(delivery_dir, tables, names)
    recorded = {path: sha for _, _, path, sha in before}
    return _load(delivery_dir, dataset, files, progress, recorded=recorded)


def _loaded_files(database: Path) -> list[tuple[str, str, Path, str]]:
    """``(table, name, path, sha256)`` of every file the database was loaded from."""
    with duckdb.connect(str(database), read_only=True) as con:
        columns = {c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'source_files'"
        ).fetchall()}
        if not columns:
            raise LoadError(f"{database} records no source files: load the register again "
                            "(workbench data load DIR) before appending")
        meta = dict(con.execute("SELECT key, value FROM metadata").fetchall())
        path = "path" if "path" in columns else "NULL"
        rows = con.execute(f'SELECT "table", file, {path}, sha256 FROM source_files').fetchall()
    base = Path(meta.get("source_dir", "."))
    return [(table, name, Path(where) if where else base / name, sha)
            for table, name, where, sha in rows]


def _load(source_dir: Path, dataset: Dataset, files: list[SourceFile], progress: bool,
          recorded: dict[Path, str] | None = None) -> LoadReport:
    """Build the database from ``files`` and move it into place (``recorded``: an append; the
    earlier files' hashes, checked before anything is replaced)."""
    dataset.root.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(dataset.database)
    work = _work_dir(dataset.database, os.getpid())
    work.mkdir()
    hashing = ThreadPoolExecutor(max_workers=1)  # hashes the files while the load reads them
    try:
        digests = {f.index: hashing.submit(_sha256, f.path) for f in files}
        report = _build(source_dir, dataset, files, digests, work, progress)
        if recorded is not None:
            for f in files:
                if f.path in recorded and digests[f.index].result() != recorded[f.path]:
                    raise LoadError(
                        f"{f.path}: changed since it was loaded; an append adds to what was "
                        "loaded, so load the whole register again (data load DIR)")
            record_delivery(work / "new.duckdb", dataset.database, source_dir)
        wal = dataset.database.with_name(dataset.database.name + ".wal")
        wal.unlink(missing_ok=True)  # a stale log of the old file must not replay into the new
        os.replace(work / "new.duckdb", dataset.database)
    finally:
        hashing.shutdown(cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
    _write_reports(report, dataset.reports_dir)
    return report


def _build(
    source_dir: Path,
    dataset: Dataset,
    files: list[SourceFile],
    digests: dict[int, Future[str]],
    work: Path,
    progress: bool,
) -> LoadReport:
    config = {
        "memory_limit": DUCKDB_MEMORY,
        "temp_directory": str(work / "spill"),
    }
    with duckdb.connect(str(work / "new.duckdb"), config=config) as con:
        con.execute("SET enable_progress_bar = false")  # the loader's own bars show progress
        con.execute(f"ATTACH '{_sql_text(work / 'stage.duckdb')}' AS stage")
        build = Build(con, work, files, progress)
        build.create_bookkeeping()
        build.load_reference()
        for spec in TABLES:
            build.load_table(spec)
        build.write_findings()
        reconciliation = build.reconcile()
        hashes = {i: d.result() for i, d in digests.items()}
        metadata = _metadata(source_dir, files, hashes)
        build.write_provenance(hashes, metadata)
        report = LoadReport(
            source_dir=source_dir,
            database=dataset.database,
            reconciliation=tuple(reconciliation),
            quarantined_by_rule=tuple(build.summarise("quarantine")),
            warnings_by_rule=tuple(build.summarise("load_warnings")),
            metadata=metadata,
            seconds=build.seconds,
            windows=build.windows,
        )
        con.execute(
            "INSERT INTO main.metadata VALUES ('load_report', ?)", [json.dumps(report.to_dict())]
        )
        con.execute("DETACH stage")
        con.execute("CHECKPOINT")
    return report


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def _metadata(source_dir: Path, files: list[SourceFile], hashes: dict[int, str]) -> dict[str, str]:
    fingerprint = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        fingerprint.update(f"{f.name}\t{hashes[f.index]}\n".encode())
    try:
        workbench_version = version("workbench")
    except PackageNotFoundError:
        workbench_version = "unknown"
    return {
        "data_fingerprint": fingerprint.hexdigest(),
        "loaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_dir": str(source_dir),
        "workbench_version": workbench_version,
        "atc_ddd_index_version": reference.atc_ddd_index_version(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def _work_dir(database: Path, pid: int) -> Path:
    """The scratch folder of a load, next to the database (same file system, so the final move
    of the new database over the old one is atomic)."""
    return database.with_name(f".{database.name}.loading-{pid}")


def _remove_stale_builds(database: Path) -> None:
    """Delete what a killed load left behind (its process is gone); a running one is left be."""
    for path in database.parent.glob(f".{database.name}.loading-*"):
        pid = path.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_reports(report: LoadReport, reports_dir: Path) -> None:
    reports_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("load_report.json", json.dumps(report.to_dict(), indent=2) + "\n"),
        ("load_report.txt", report.summary() + "\n"),
    ):
        tmp = reports_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, reports_dir / name)
