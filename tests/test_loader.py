"""The register loader: a valid extract loads exactly; every kind of bad input is quarantined or
warned with its file, row and field, or stops the load with a message saying what to fix; a
failed load leaves the previous database as it was; CSV and Parquet give the same database.

Fixtures are hand-made CSVs: ``fixtures/valid`` is a whole register and each folder of
``fixtures/bad_input`` carries one defect in the tables it holds (see its README).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from workbench.data import schema
from workbench.data.loader import LoadError, LoadReport, load_register
from workbench.data.schema import TABLES, TABLES_BY_NAME
from workbench.data.validation import ARROW_TYPES, validate_chunk
from workbench.paths import Dataset

FIXTURES = Path(__file__).parent / "fixtures"
VALID = FIXTURES / "valid"
BAD = FIXTURES / "bad_input"
BASE = {
    "clusters": 2,
    "practices": 3,
    "products": 4,
    "persons": 6,
    "listings": 7,
    "redemptions": 10,
}


def make_register(where: Path, defect: str | None = None) -> Path:
    """The valid register, with the files of ``defect`` put over it."""
    register = where / "register"
    shutil.copytree(VALID, register)
    if defect is None:
        return register
    for path in sorted((BAD / defect).iterdir()):
        if path.name == "absent.txt":
            for table in path.read_text().split():
                (register / f"{table}.csv").unlink()
            continue
        table = path.name.split(".", 1)[0]
        for old in register.glob(f"{table}.*"):
            old.unlink()
        shutil.copy(path, register / path.name)
    return register


def load(tmp_path: Path, defect: str | None = None) -> tuple[LoadReport, Dataset]:
    dataset = Dataset.at(tmp_path / "dataset")
    return load_register(make_register(tmp_path, defect), dataset, progress=False), dataset


def query(dataset: Dataset, sql: str) -> list[tuple]:
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        return con.execute(sql).fetchall()


def counts(report: LoadReport) -> dict[str, tuple[int, int, int, int]]:
    return {
        r.table: (r.rows_in, r.loaded, r.quarantined, r.warnings) for r in report.reconciliation
    }


def expected_counts(changed: dict[str, tuple[int, int, int, int]]) -> dict:
    return {t: changed.get(t, (n, n, 0, 0)) for t, n in BASE.items()}


# --------------------------------------------------------------------------------------------
# A valid register
# --------------------------------------------------------------------------------------------


def test_valid_register_loads_every_row(tmp_path: Path) -> None:
    report, dataset = load(tmp_path)
    assert report.ok
    assert counts(report) == expected_counts({})
    tables = {name for (name,) in query(dataset, "SELECT table_name FROM duckdb_tables()")}
    assert {t.name for t in TABLES} | {
        "quarantine",
        "load_warnings",
        "reconciliation",
        "metadata",
        "source_files",
        "reference_atc_ddd",
        "reference_regions",
        "reference_municipalities",
        "reference_population_by_age_sex",
    } <= tables
    assert query(
        dataset,
        'SELECT "table", rows_in, loaded, quarantined, warnings FROM reconciliation ORDER BY 1',
    ) == sorted((t, n, n, 0, 0) for t, n in BASE.items())


def test_valid_register_has_the_contract_types(tmp_path: Path) -> None:
    _, dataset = load(tmp_path)
    types = dict(
        query(
            dataset,
            "SELECT table_name || '.' || column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main'",
        )
    )
    for spec in TABLES:
        for col in spec.columns:  # emigration_date is optional: present anyway, all null
            assert types[f"{spec.name}.{col.name}"] == col.kind.value, (spec.name, col.name)
    rows = query(dataset, "SELECT practice_id, cluster_id FROM practices ORDER BY 1")
    assert rows == [("000001", "K1"), ("000002", "K1"), ("000003", "K2")]  # leading zeros kept
    assert query(dataset, "SELECT sum(packs) FROM redemptions") == [(10,)]


def test_valid_register_records_provenance_and_reports(tmp_path: Path) -> None:
    report, dataset = load(tmp_path)
    metadata = dict(query(dataset, "SELECT key, value FROM metadata"))
    assert len(metadata["data_fingerprint"]) == 64
    assert metadata["atc_ddd_index_version"].startswith("WHO ATC/DDD Index")
    assert {"loaded_at", "workbench_version", "source_dir", "load_report"} <= set(metadata)
    assert query(dataset, "SELECT count(*), sum(rows_in) FROM source_files") == [(6, 32)]
    saved = json.loads((dataset.reports_dir / "load_report.json").read_text())
    assert saved["ok"] is True
    assert saved["reconciliation"][0] == {
        "table": "clusters",
        "rows_in": 2,
        "loaded": 2,
        "quarantined": 0,
        "warnings": 0,
    }
    text = (dataset.reports_dir / "load_report.txt").read_text()
    assert text.strip() == report.summary()
    assert "redemptions" in text and "OK: every row loaded." in text


def test_fingerprint_follows_the_bytes(tmp_path: Path) -> None:
    first, _ = load(tmp_path / "a")
    again, _ = load(tmp_path / "b")
    changed, _ = load(tmp_path / "c", "unlisted_person_redemption")
    assert first.metadata["data_fingerprint"] == again.metadata["data_fingerprint"]
    assert first.metadata["data_fingerprint"] != changed.metadata["data_fingerprint"]


def test_danish_column_names_load_the_same_register(tmp_path: Path) -> None:
    report, danish = load(tmp_path / "da", "danish_column_names")
    _, english = load(tmp_path / "en")
    assert report.ok and counts(report) == expected_counts({})
    for table in BASE:
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert query(danish, sql) == query(english, sql), table


# --------------------------------------------------------------------------------------------
# Bad rows: quarantined or warned, each with its file, row and field
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    table: str
    file: str
    row: int
    field: str
    rule: str
    text: str  # part of the reason/warning after "<file> row <row> (line <line>)"


@dataclass(frozen=True)
class Case:
    defect: str
    counts: dict[str, tuple[int, int, int, int]]  # table: rows_in, loaded, quarantined, warnings
    quarantined: list[Finding] = field(default_factory=list)
    warned: list[Finding] = field(default_factory=list)


def red(row: int, fld: str, rule: str, text: str) -> Finding:
    return Finding("redemptions", "redemptions.csv", row, fld, rule, text)


CASES = [
    Case(
        "unparseable_date",
        {"redemptions": (10, 9, 1, 0)},
        [red(2, "dispensed_on", "not_a_date", "'2024-02-30' is not a date (write YYYY-MM-DD)")],
    ),
    Case(
        "wrong_type",
        {"redemptions": (10, 9, 1, 0)},
        [red(4, "packs", "not_an_integer", "'two' is not a whole number")],
    ),
    Case(
        "zero_packs",
        {"redemptions": (11, 10, 1, 0)},
        [red(11, "packs", "zero", "0 is not allowed (a return has a negative number)")],
    ),
    Case(
        "unknown_product_id",
        {"redemptions": (10, 9, 1, 0)},
        [red(5, "product_id", "unknown_product", "product_id 999999 is not in products")],
    ),
    Case(
        "person_not_in_persons",
        {"listings": (8, 7, 1, 0), "redemptions": (11, 10, 1, 0)},
        [
            Finding(
                "listings",
                "listings.csv",
                8,
                "person_id",
                "unknown_person",
                "person_id p99 is not in persons",
            ),
            red(11, "person_id", "unknown_person", "person_id p99 is not in persons"),
        ],
    ),
    Case(
        "dispensed_after_death",
        {"redemptions": (11, 10, 1, 0)},
        [
            red(
                11,
                "dispensed_on",
                "after_death",
                "dispensed_on 2024-08-01 is after the death of person p04 on 2024-06-30",
            )
        ],
    ),
    Case(
        "duplicate_rows",
        {"persons": (7, 6, 1, 0), "redemptions": (11, 10, 1, 0)},
        [
            Finding(
                "persons",
                "persons.csv",
                7,
                "*",
                "duplicate_row",
                "exact duplicate of persons.csv row 6 (line 7)",
            ),
            red(11, "*", "duplicate_row", "exact duplicate of redemptions.csv row 1 (line 2)"),
        ],
    ),
    Case(
        "duplicate_key",
        {"persons": (7, 6, 1, 0)},
        [
            Finding(
                "persons",
                "persons.csv",
                7,
                "person_id",
                "duplicate_key",
                "person_id p06 is already given at persons.csv row 6 (line 7)",
            )
        ],
    ),
    Case(
        "sex_not_fm",
        {"persons": (7, 6, 1, 0)},
        [Finding("persons", "persons.csv", 7, "sex", "not_allowed", "'X' is not F or M")],
    ),
    Case(
        "unknown_municipality",
        {"persons": (7, 6, 1, 0)},
        [
            Finding(
                "persons",
                "persons.csv",
                7,
                "municipality_code",
                "not_allowed",
                "'999' is not a municipality code of data/reference/dk_municipalities.csv",
            )
        ],
    ),
    Case(
        "death_before_birth",
        {"persons": (7, 6, 1, 0)},
        [
            Finding(
                "persons",
                "persons.csv",
                7,
                "death_date",
                "death_before_birth",
                "death_date is before birth_date: birth_date 1990-01-01, death_date 1989-12-31",
            )
        ],
    ),
    Case(
        "unknown_region",
        {"clusters": (3, 2, 1, 0)},
        [
            Finding(
                "clusters",
                "clusters.csv",
                3,
                "region_code",
                "not_allowed",
                "'1086' is not a region code 1081-1085",
            )
        ],
    ),
    Case(
        "bad_practice_id",
        {"practices": (4, 3, 1, 0)},
        [
            Finding(
                "practices",
                "practices.csv",
                4,
                "practice_id",
                "bad_format",
                "'12345' is not exactly 6 digits",
            )
        ],
    ),
    Case(
        "practice_unknown_cluster",
        {"practices": (4, 3, 1, 0)},
        [
            Finding(
                "practices",
                "practices.csv",
                4,
                "cluster_id",
                "unknown_cluster",
                "cluster_id K9 is not in clusters",
            )
        ],
    ),
    Case(
        "bad_product_id",
        {"products": (5, 4, 1, 0)},
        [
            Finding(
                "products",
                "products.csv",
                5,
                "product_id",
                "bad_format",
                "'40001' is not exactly 6 digits",
            )
        ],
    ),
    Case(
        "negative_ddd",
        {"products": (5, 4, 1, 0)},
        [Finding("products", "products.csv", 5, "ddd_per_pack", "too_small", "-3 is not > 0")],
    ),
    Case(
        # A quarantined product takes its redemptions with it, each saying why.
        "negative_pack_size",
        {"products": (4, 3, 1, 0), "redemptions": (10, 7, 3, 0)},
        [Finding("products", "products.csv", 4, "pack_size", "too_small", "-30 is not > 0")]
        + [
            red(
                row,
                "product_id",
                "unknown_product",
                "product_id 300001 is not in products (absent there, or quarantined)",
            )
            for row in (5, 6, 9)
        ],
    ),
    Case(
        "end_before_start",
        {"listings": (9, 7, 2, 0)},
        [
            Finding(
                "listings",
                "listings.csv",
                8,
                "end_date",
                "end_not_after_start",
                "start_date 2017-01-01, end_date 2016-01-01",
            ),
            Finding(
                "listings",
                "listings.csv",
                9,
                "end_date",
                "end_not_after_start",
                "end_date is not after start_date (a period is [start, end)): "
                "start_date 2019-01-01, end_date 2019-01-01",
            ),
        ],
    ),
    Case(
        "listing_unknown_practice",
        {"listings": (8, 7, 1, 0)},
        [
            Finding(
                "listings",
                "listings.csv",
                8,
                "practice_id",
                "unknown_practice",
                "practice_id 000009 is not in practices",
            )
        ],
    ),
    Case(
        # The malformed line is row 3; the rows after it keep their own numbers.
        "malformed_line",
        {"redemptions": (10, 8, 2, 0)},
        [
            red(3, "*", "malformed_line", "has 7 fields where the header has 6"),
            red(6, "dispensed_on", "not_a_date", "'2024-04-31' is not a date"),
        ],
    ),
    Case(
        # A blank line is counted and quarantined; the rows after it keep their numbers.
        "blank_line",
        {"redemptions": (11, 10, 1, 0)},
        [red(4, "*", "empty_row", "the row is empty (a blank line?)")],
    ),
    Case(
        "unlisted_person_redemption",
        {"redemptions": (11, 11, 0, 1)},
        warned=[
            red(
                11, "person_id", "not_listed", "person p05 is listed with no practice on 2019-06-01"
            )
        ],
    ),
    Case(
        "unknown_prescriber",
        {"redemptions": (11, 11, 0, 1)},
        warned=[
            red(
                11,
                "prescriber_id",
                "unknown_prescriber",
                "prescriber_id 999998 is not a practice in practices",
            )
        ],
    ),
    Case(
        "gp_without_prescriber",
        {"redemptions": (11, 11, 0, 1)},
        warned=[
            red(
                11,
                "prescriber_id",
                "gp_without_prescriber",
                "prescriber_type is gp but prescriber_id is empty",
            )
        ],
    ),
    Case(
        "overlapping_listing",
        {"listings": (8, 8, 0, 1)},
        warned=[
            Finding(
                "listings",
                "listings.csv",
                8,
                "start_date",
                "overlapping_listing",
                "person p06 is still listed from 2018-04-01 "
                "(listings.csv row 7 (line 8)) on 2020-01-01",
            )
        ],
    ),
    Case(
        "region_mismatch",
        {"practices": (4, 4, 0, 2)},
        warned=[
            Finding(
                "practices",
                "practices.csv",
                4,
                "cluster_id",
                "region_differs_from_cluster",
                "cluster K2 is in region 1084, the practice in 1081",
            ),
            Finding(
                "practices",
                "practices.csv",
                4,
                "region_code",
                "region_differs_from_municipality",
                "region_code 1081 differs from 1084, the region of municipality 101",
            ),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.defect for c in CASES])
def test_bad_rows_are_quarantined_or_warned(tmp_path: Path, case: Case) -> None:
    report, dataset = load(tmp_path, case.defect)
    assert counts(report) == expected_counts(case.counts)
    assert all(r.rows_in == r.loaded + r.quarantined for r in report.reconciliation)
    assert report.ok == (not case.quarantined)
    for table, findings in (("quarantine", case.quarantined), ("load_warnings", case.warned)):
        text = "reason" if table == "quarantine" else "warning"
        rows = query(
            dataset,
            f'SELECT "table", file, source_row, field, rule, {text} FROM {table} '
            'ORDER BY "table", source_row, field',
        )
        expected = sorted(findings, key=lambda f: (f.table, f.row, f.field))
        assert [r[:5] for r in rows] == [
            (f.table, f.file, f.row, f.field, f.rule) for f in expected
        ]
        for row, finding in zip(rows, expected, strict=True):
            line = f" (line {finding.row + 1})"
            where = f"{finding.file} row {finding.row}{line}"
            where += "" if finding.field == "*" else f", field {finding.field}"
            assert row[5].startswith(where + ": "), row[5]
            assert finding.text in row[5], row[5]


def test_quarantine_keeps_the_record_as_read(tmp_path: Path) -> None:
    _, dataset = load(tmp_path, "wrong_type")
    ((record,),) = query(dataset, "SELECT record FROM quarantine")
    assert json.loads(record) == {
        "person_id": "p02",
        "dispensed_on": "2024-03-05",
        "product_id": "200001",
        "packs": "two",
        "prescriber_id": "000001",
        "prescriber_type": "gp",
    }


def test_summary_names_each_rule_and_its_first_row(tmp_path: Path) -> None:
    report, _ = load(tmp_path, "negative_pack_size")
    summary = report.summary()
    assert "products.pack_size too_small: 1 (first: products.csv row 4)" in summary
    assert "redemptions.product_id unknown_product: 3 (first: redemptions.csv row 5)" in summary
    assert "NOT OK" in summary


# --------------------------------------------------------------------------------------------
# Bad input as a whole: a LoadError saying what to fix
# --------------------------------------------------------------------------------------------

FATAL = {
    "missing_column": [
        "redemptions.csv",
        "lacks required column(s)",
        "packs (Danish: APK, ANTAL_PAKNINGER)",
        "Columns found: person_id, dispensed_on, product_id, prescriber_id, prescriber_type.",
    ],
    "missing_table": [
        "missing table(s) products (varenumre: the product catalogue)",
        "<table>.parquet, <table>.csv",
    ],
    "ambiguous_column": ["persons.csv", "columns 'person_id' and 'PNR' both give 'person_id'"],
    "not_utf8": ["redemptions.csv: is not UTF-8", "iconv -f cp1252 -t utf-8"],
    "unreadable_parquet": ["products.parquet: cannot be read as Parquet"],
}


@pytest.mark.parametrize("defect", sorted(FATAL))
def test_bad_input_stops_the_load_with_a_clear_message(tmp_path: Path, defect: str) -> None:
    with pytest.raises(LoadError) as caught:
        load(tmp_path, defect)
    for part in FATAL[defect]:
        assert part in str(caught.value)


def test_missing_folder_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no such folder"):
        load_register(tmp_path / "nowhere", Dataset.at(tmp_path / "dataset"), progress=False)


# --------------------------------------------------------------------------------------------
# Atomicity
# --------------------------------------------------------------------------------------------


def _leftovers(dataset: Dataset) -> list[str]:
    return [p.name for p in dataset.root.iterdir() if ".loading-" in p.name]


def test_a_failed_load_leaves_the_previous_database_intact(tmp_path: Path) -> None:
    _, dataset = load(tmp_path / "first")
    before = query(dataset, "SELECT key, value FROM metadata ORDER BY key")
    bad = make_register(tmp_path / "second", "not_utf8")  # fails reading the last table
    with pytest.raises(LoadError):
        load_register(bad, dataset, progress=False)
    assert query(dataset, "SELECT key, value FROM metadata ORDER BY key") == before
    assert query(dataset, "SELECT count(*) FROM redemptions") == [(10,)]
    assert _leftovers(dataset) == []


def test_an_interrupted_load_leaves_the_previous_database_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, dataset = load(tmp_path / "first")
    before = query(dataset, "SELECT key, value FROM metadata ORDER BY key")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("workbench.data.loader.Build.write_findings", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_register(make_register(tmp_path / "second"), dataset, progress=False)
    assert query(dataset, "SELECT key, value FROM metadata ORDER BY key") == before
    assert _leftovers(dataset) == []


def test_leftovers_of_a_killed_load_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    dataset = Dataset.at(tmp_path / "dataset")
    dataset.root.mkdir()
    stale = dataset.root / f".workbench.duckdb.loading-{dead.pid}"
    stale.mkdir()
    (stale / "new.duckdb").write_bytes(b"half a database")
    load_register(make_register(tmp_path), dataset, progress=False)
    assert _leftovers(dataset) == []
    assert os.path.exists(dataset.database)


# --------------------------------------------------------------------------------------------
# Truncated files (a copy or transfer cut short)
# --------------------------------------------------------------------------------------------


def test_a_csv_cut_mid_line_quarantines_that_line_and_loads_the_rest(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    path = register / "redemptions.csv"
    path.write_bytes(path.read_bytes()[:-12])  # the last row loses "1,000003,gp\n"
    report = load_register(register, Dataset.at(tmp_path / "dataset"), progress=False)
    assert counts(report)["redemptions"] == (10, 9, 1, 0)  # 10 read = 9 loaded + 1 kept aside
    assert report.reconciliation and all(r.balanced for r in report.reconciliation)
    assert query(Dataset.at(tmp_path / "dataset"),
                 "SELECT file, source_row, rule, reason, record FROM quarantine") == [(
        "redemptions.csv", 10, "malformed_line",
        "redemptions.csv row 10 (line 11): has 4 fields where the header has 6",
        '{"line": "p06,2024-06-01,100001,"}',
    )]


def _cut_gzip(register: Path) -> str:
    plain = register / "redemptions.csv"
    (register / "redemptions.csv.gz").write_bytes(gzip.compress(plain.read_bytes())[:-20])
    plain.unlink()
    return "redemptions.csv.gz: cannot be read (Truncated compressed stream)"


def _cut_parquet(register: Path) -> str:
    shutil.rmtree(register)
    write_parquet_register(VALID, register)
    part = register / "redemptions" / "part-1.parquet"
    part.write_bytes(part.read_bytes()[:-40])
    return "redemptions/part-1.parquet: cannot be read as Parquet"


@pytest.mark.parametrize("cut", [_cut_gzip, _cut_parquet], ids=["csv.gz", "parquet"])
def test_a_truncated_file_stops_the_load_and_keeps_the_previous_database(
    tmp_path: Path, cut: object
) -> None:
    """Through the CLI, as an operator runs it: the load stops with status 2 naming the file,
    and the database and reports of the load before are untouched (nothing half-written)."""
    dataset = Dataset.at(tmp_path / "dataset")
    load_register(make_register(tmp_path / "first"), dataset, progress=False)
    before = query(dataset, "SELECT key, value FROM metadata ORDER BY key")
    reports = {p.name: p.read_bytes() for p in dataset.reports_dir.iterdir()}
    register = make_register(tmp_path / "second")
    message = cut(register)
    done = subprocess.run(
        [sys.executable, "-m", "workbench.publish.cli", "data", "load", str(register),
         "--data", str(dataset.root), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert query(dataset, "SELECT key, value FROM metadata ORDER BY key") == before
    assert query(dataset, "SELECT count(*) FROM redemptions") == [(10,)]
    assert {p.name: p.read_bytes() for p in dataset.reports_dir.iterdir()} == reports
    assert _leftovers(dataset) == []


# --------------------------------------------------------------------------------------------
# Parquet and CSV
# --------------------------------------------------------------------------------------------


def write_parquet_register(csv_dir: Path, out: Path) -> Path:
    """The CSV register as typed Parquet, the way a generator writes it: native dates, numbers
    and booleans, practice ids as integers (leading zeros lost), redemptions as two parts."""
    out.mkdir(parents=True)
    for spec in TABLES:
        text = pcsv.read_csv(
            csv_dir / f"{spec.name}.csv",
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in spec.names}, strings_can_be_null=True
            ),
        )
        columns = {}
        for name in text.column_names:
            kind = TABLES_BY_NAME[spec.name].column(name).kind
            columns[name] = text[name].cast(ARROW_TYPES[kind])
        if "practice_id" in columns:
            columns["practice_id"] = columns["practice_id"].cast(pa.int64())
        table = pa.table(columns)
        if spec.name == "redemptions":
            (out / "redemptions").mkdir()
            pq.write_table(table.slice(0, 6), out / "redemptions" / "part-0.parquet")
            pq.write_table(table.slice(6), out / "redemptions" / "part-1.parquet")
        else:
            pq.write_table(table, out / f"{spec.name}.parquet")
    return out


def test_parquet_and_csv_give_the_same_database(tmp_path: Path) -> None:
    parquet = write_parquet_register(VALID, tmp_path / "parquet")
    assert pq.read_schema(parquet / "practices.parquet").field("practice_id").type == pa.int64()
    from_parquet = Dataset.at(tmp_path / "p")
    report = load_register(parquet, from_parquet, progress=False)
    _, from_csv = load(tmp_path / "c")
    assert report.ok and counts(report) == expected_counts({})
    for table in (*BASE, "reconciliation"):
        sql = f"SELECT * FROM {table} ORDER BY ALL"
        assert query(from_parquet, sql) == query(from_csv, sql), table


def test_parquet_rows_are_numbered_per_part(tmp_path: Path) -> None:
    parquet = write_parquet_register(VALID, tmp_path / "parquet")
    part = parquet / "redemptions" / "part-1.parquet"
    table = pq.read_table(part)
    packs = pc.if_else(pc.equal(table["packs"], 1), 0, table["packs"])
    pq.write_table(table.set_column(3, "packs", packs), part)
    dataset = Dataset.at(tmp_path / "dataset")
    load_register(parquet, dataset, progress=False)
    rows = query(dataset, "SELECT file, source_row, reason FROM quarantine ORDER BY source_row")
    assert [r[:2] for r in rows] == [("redemptions/part-1.parquet", n) for n in (1, 2, 3, 4)]
    assert rows[0][2].startswith("redemptions/part-1.parquet row 1, field packs: 0 is not")


# --------------------------------------------------------------------------------------------
# Row checks on their own
# --------------------------------------------------------------------------------------------


def chunk(**columns: list[str | None]) -> pa.Table:
    return pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})


def test_dates_must_exist_and_be_iso() -> None:
    days = ["2024-02-29", "2023-02-29", "2024-1-5", "05-01-2024", "2024-01-05T00:00", "9999-12-31"]
    n = len(days)
    result = validate_chunk(
        chunk(
            person_id=[f"p{i}" for i in range(n)],
            dispensed_on=days,
            product_id=["100001"] * n,
            packs=["1"] * n,
            prescriber_id=[None] * n,
            prescriber_type=["other"] * n,
        ),
        "redemptions",
    )
    assert list(result.rejected) == [1, 2, 3, 4]
    assert set(result.rules) == {"not_a_date"}
    assert result.valid["dispensed_on"].to_pylist()[0].isoformat() == "2024-02-29"


def test_numbers_reject_text_and_infinities() -> None:
    values = ["2.5", "1e1", "inf", "nan", "2,5", "-1", "0"]
    n = len(values)
    result = validate_chunk(
        chunk(
            product_id=[f"10000{i}" for i in range(n)],
            product_name=["x"] * n,
            atc_code=["N02AA01"] * n,
            form=["tablet"] * n,
            strength=[None] * n,
            strength_unit=[None] * n,
            pack_size=["10"] * n,
            ddd_per_pack=values,
            depot=["false"] * n,
        ),
        "products",
    )
    assert dict(zip(result.rejected.tolist(), result.rules, strict=True)) == {
        2: "not_a_number",
        3: "not_a_number",
        4: "not_a_number",
        5: "too_small",
        6: "too_small",
    }
    assert result.valid["ddd_per_pack"].to_pylist() == [2.5, 10.0]


def test_register_codes_are_normalised() -> None:
    result = validate_chunk(
        chunk(
            person_id=["a", "b", "c", "d"],
            sex=["K", "2", "1", "m"],
            birth_date=["2000-01-01"] * 4,
            death_date=[None] * 4,
            municipality_code=["0101", "101", "0851", "851"],
        ),
        "persons",
    )
    assert len(result.rejected) == 0
    assert result.valid["sex"].to_pylist() == ["F", "F", "M", "M"]
    assert result.valid["municipality_code"].to_pylist() == ["101", "101", "851", "851"]


def test_a_row_gets_its_first_problem_in_contract_order() -> None:
    result = validate_chunk(
        chunk(
            person_id=[None],
            dispensed_on=["never"],
            product_id=["1"],
            packs=["0"],
            prescriber_id=[None],
            prescriber_type=["nurse"],
        ),
        "redemptions",
    )
    assert (result.fields, result.rules) == (["person_id"], ["not_nullable"])
    assert result.problems == ["is empty but required"]


def test_the_documented_danish_names_are_the_ones_read() -> None:
    doc = " ".join((schema.__doc__ or "").split())
    for spec in TABLES:
        for col in spec.columns:
            if col.danish:
                assert f"{'/'.join(col.danish)}→{col.name}" in doc, (spec.name, col.name)


def test_extra_columns_are_kept_as_text(tmp_path: Path) -> None:
    register = make_register(tmp_path)
    lines = (register / "persons.csv").read_text().splitlines()
    lines = [lines[0] + ",Civilstand"] + [
        f"{line},{'G' if i % 2 else 'U'}" for i, line in enumerate(lines[1:])
    ]
    (register / "persons.csv").write_text("\n".join(lines) + "\n")
    dataset = Dataset.at(tmp_path / "dataset")
    report = load_register(register, dataset, progress=False)
    assert report.ok
    assert query(
        dataset, "SELECT data_type FROM duckdb_columns() WHERE column_name = 'Civilstand'"
    ) == [("VARCHAR",)]
    assert query(dataset, 'SELECT "Civilstand", count(*) FROM persons GROUP BY 1 ORDER BY 1') == [
        ("G", 3),
        ("U", 3),
    ]
