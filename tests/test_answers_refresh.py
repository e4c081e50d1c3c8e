"""A month appended to a loaded register (``workbench data load --append``): the loader records
what it changed, and the answer store refreshes only the periods that change can move — and then
holds exactly what a store built whole on the same register holds."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, SCHEMAS, ZOPICLONE, world
from typer.testing import CliRunner

from workbench.answers import Progress, build_store
from workbench.answers.local import ANSWER_TABLES, followed_into, refreshed_periods
from workbench.answers.periods import store_periods
from workbench.data.loader import LoadError, append_register, load_register
from workbench.paths import Dataset
from workbench.publish.cli import app

QUIET = Progress(say=lambda _: None)
CUT = dt.date(2025, 3, 1)  # the delivery: March 2025
PRACTICES = ("000001", "000002", "000003")


def register_rows(seed: int = 3) -> dict[str, list[dict]]:
    """Forty persons over 2022 – March 2025: random redemptions of four drugs at three
    practices (some persons at two), a few returns, a listing that ends in March 2025 and a
    death in it."""
    rng = random.Random(seed)
    reg = world()
    for i in range(40):
        pid = f"p{i:02d}"
        born = f"{rng.randint(1930, 2004)}-0{rng.randint(1, 9)}-15"
        reg.person(pid, sex=rng.choice("FM"), born=born)
        home = rng.choice(PRACTICES)
        reg.listing(pid, home, "2019-01-01")
        days = sorted(rng.sample(range((dt.date(2025, 3, 31) - dt.date(2022, 1, 1)).days), 12))
        for offset in days:
            on = dt.date(2022, 1, 1) + dt.timedelta(days=offset)
            product = rng.choice((MORPHINE, OXYCODONE_DEPOT, IBUPROFEN, ZOPICLONE))
            prescriber = home if rng.random() < 0.8 else rng.choice(PRACTICES)
            reg.redeem(pid, on, product, packs=rng.choice((1, 1, 2, 3)), prescriber=prescriber)
            if rng.random() < 0.05:
                reg.redeem(pid, on + dt.timedelta(days=3), product, packs=-1,
                           prescriber=prescriber)
    return reg.rows


def write_extract(rows: dict[str, list[dict]], folder: Path,
                  tables: tuple[str, ...] = tuple(SCHEMAS)) -> Path:
    folder.mkdir(parents=True)
    for name in tables:
        pq.write_table(pa.Table.from_pylist(rows[name], schema=SCHEMAS[name]),
                       folder / f"{name}.parquet")
    return folder


def split(rows: dict[str, list[dict]]) -> tuple[dict, dict, dict]:
    """The register as it stood at the end of February 2025, and March's delivery: its
    redemptions, and the persons and listings registers as they now stand (p01 died on
    2025-03-20; p02's listing ended on 2025-03-10)."""
    before = {name: [dict(r) for r in table] for name, table in rows.items()}
    before["redemptions"] = [r for r in rows["redemptions"] if r["dispensed_on"] < CUT]
    after = {name: [dict(r) for r in table] for name, table in rows.items()}
    after["redemptions"] = [r for r in rows["redemptions"] if r["dispensed_on"] >= CUT]
    for person in after["persons"]:
        if person["person_id"] == "p01":
            person["death_date"] = dt.date(2025, 3, 20)
    for listing in after["listings"]:
        if listing["person_id"] == "p02":
            listing["end_date"] = dt.date(2025, 3, 10)
    whole = {name: list(table) for name, table in after.items()}
    whole["redemptions"] = rows["redemptions"]
    return before, after, whole


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, Dataset, list[str]]:
    """A register loaded to February, its store built, March appended through the CLI; and
    the whole register loaded and built at once."""
    root = tmp_path_factory.mktemp("append")
    before, after, whole = split(register_rows())
    monthly = Dataset.at(root / "monthly")
    load_register(write_extract(before, root / "extract"), monthly, progress=False)
    build_store(monthly, progress=QUIET)
    delivery = write_extract(after, root / "2025-03", ("persons", "listings", "redemptions"))
    said = CliRunner().invoke(app, ["data", "load", str(delivery), "--append",
                                    "--data", str(monthly.root), "--no-progress"])
    assert said.exit_code == 0, said.output
    at_once = Dataset.at(root / "at_once")
    load_register(write_extract(whole, root / "whole"), at_once, progress=False)
    build_store(at_once, progress=QUIET)
    return monthly, at_once, said.output.splitlines()


def test_the_delivery_is_recorded_with_the_first_day_it_changes(refreshed) -> None:
    monthly, _, _ = refreshed
    with duckdb.connect(str(monthly.database), read_only=True) as con:
        folder, changed, added = con.execute(
            "SELECT folder, changed_from, redemptions_added FROM deliveries").fetchone()
        files = con.execute("SELECT file FROM source_files WHERE \"table\" = 'redemptions' "
                            "ORDER BY file").fetchall()
    assert folder.endswith("2025-03")
    # the first March redemption, p02's listing end (03-10) and p01's death (03-20): the first
    first_march = min(r["dispensed_on"] for r in register_rows()["redemptions"]
                      if r["dispensed_on"] >= CUT)
    assert changed == min(first_march, dt.date(2025, 3, 10))
    assert added == sum(r["dispensed_on"] >= CUT for r in register_rows()["redemptions"])
    assert files == [("2025-03/redemptions.parquet",), ("redemptions.parquet",)]


def test_only_the_periods_a_change_can_move_are_built_again(refreshed) -> None:
    _, _, said = refreshed
    assert any(line.startswith("answers: refreshing what changed from 2025-03") for line in said)
    assert any(line.startswith("answers: refreshed from 2025-03") for line in said)
    held = store_periods(dt.date(2022, 1, 1), dt.date(2025, 3, 31))
    again = {p.label for p in refreshed_periods(held, dt.date(2025, 3, 1))}
    # March's own periods: the month, its quarter and R12 (the year 2025 isn't whole yet)
    assert again == {"2025-03", "2025Q1", "R12-2025-03"}
    # journeys: the cohorts whose starters are followed into March
    followed = {p.label for p in followed_into(held, dt.date(2025, 3, 1))}
    assert {"2025-03", "2024", "2024Q1", "2024-03", "R12-2024-03"} <= followed
    assert not followed & {"2023", "2023Q4", "2024-02", "R12-2024-02"}


def _rows(dataset: Dataset, table: str) -> list[tuple]:
    """The table's rows in a fixed order, floats to six decimals (sums in another order)."""
    with duckdb.connect(str(dataset.answers), read_only=True) as con:
        kinds = con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                            "WHERE table_name = ? ORDER BY column_index", [table]).fetchall()
        shown = ", ".join(f'round("{c}", 6)' if kind in ("DOUBLE", "FLOAT") else f'"{c}"'
                          for c, kind in kinds)
        return sorted(con.execute(f"SELECT {shown} FROM {table}").fetchall(), key=repr)


@pytest.mark.parametrize("table", [*ANSWER_TABLES, "hidden", "periods", "selections", "units"])
def test_the_refreshed_store_equals_one_built_whole(refreshed, table: str) -> None:
    monthly, at_once, _ = refreshed
    got, expected = _rows(monthly, table), _rows(at_once, table)
    assert expected  # the whole register answers something in every table
    assert got == expected


def test_an_append_needs_the_files_loaded_before_unchanged(tmp_path: Path) -> None:
    before, after, _ = split(register_rows())
    dataset = Dataset.at(tmp_path / "data")
    extract = write_extract(before, tmp_path / "extract")
    load_register(extract, dataset, progress=False)
    delivery = write_extract(after, tmp_path / "2025-03", ("redemptions",))
    pq.write_table(pa.Table.from_pylist(before["persons"][:-1], schema=SCHEMAS["persons"]),
                   extract / "persons.parquet")
    with pytest.raises(LoadError, match="persons.parquet: changed since it was loaded"):
        append_register(delivery, dataset, progress=False)
    (extract / "persons.parquet").unlink()
    with pytest.raises(LoadError, match="persons.parquet: loaded before and needed again"):
        append_register(delivery, dataset, progress=False)


def test_a_month_delivered_twice_is_quarantined_and_changes_nothing(refreshed,
                                                                    tmp_path: Path) -> None:
    import shutil

    monthly, _, _ = refreshed
    copy = Dataset.at(tmp_path / "copy")
    shutil.copytree(monthly.root, copy.root)
    _, after, _ = split(register_rows())
    again = write_extract(after, tmp_path / "2025-03-again", ("redemptions",))
    report = append_register(again, copy, progress=False)
    (row,) = [r for r in report.reconciliation if r.table == "redemptions"]
    assert row.quarantined == len(after["redemptions"])
    with duckdb.connect(str(copy.database), read_only=True) as con:
        assert con.execute("SELECT changed_from, redemptions_added FROM deliveries "
                           "ORDER BY loaded_at DESC LIMIT 1").fetchone() == (None, 0)
    said: list[str] = []
    built = build_store(copy, progress=Progress(say=said.append))
    assert "answers: the deliveries changed no answer; the store is kept" in said
    assert str(built).startswith("answers: kept (nothing changed)")
    assert _rows(copy, "cells") == _rows(monthly, "cells")


@pytest.fixture(scope="module")
def chunked(refreshed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, list[str]]:
    """The whole register's store built again a few persons and practices at a time."""
    import shutil

    _, at_once, _ = refreshed
    copy = Dataset.at(tmp_path_factory.mktemp("chunked") / "data")
    shutil.copytree(at_once.root, copy.root)
    said: list[str] = []
    build_store(copy, force=True, progress=Progress(say=said.append), chunk_rows=60)
    return copy, said


def test_a_build_in_shares_says_so(chunked) -> None:
    _, said = chunked
    shares = [line for line in said if line.startswith("answers: cells, share")
              and "done" in line]
    assert len(shares) == 3  # three practices: each its own share
    assert any(line.startswith("answers: persons done") for line in said)


@pytest.mark.parametrize("table", [*ANSWER_TABLES, "hidden", "periods", "selections", "units"])
def test_a_build_in_shares_equals_one_built_whole(refreshed, chunked, table: str) -> None:
    _, at_once, _ = refreshed
    copy, _ = chunked
    assert _rows(copy, table) == _rows(at_once, table)


@pytest.mark.parametrize("table", ["cells", "parts"])
def test_a_build_in_shares_writes_the_store_in_order(chunked, table: str) -> None:
    copy, _ = chunked
    with duckdb.connect(str(copy.answers), read_only=True) as con:
        keys = con.execute(f"SELECT level, sel, period, unit_id FROM {table} "
                           "ORDER BY rowid").fetchall()
    assert len(keys) > 1000 and keys == sorted(keys)


@pytest.fixture(scope="module")
def unnested(refreshed, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """The whole register's store built again with every level summed from the practices
    (regions and the nation not from the municipalities and regions that nest in them)."""
    import shutil

    from workbench.answers import build

    _, at_once, _ = refreshed
    copy = Dataset.at(tmp_path_factory.mktemp("unnested") / "data")
    shutil.copytree(at_once.root, copy.root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(build, "_nesting", lambda practices: {})
        build_store(copy, force=True, progress=QUIET)
    return copy


def test_the_register_nests_municipalities_in_regions(refreshed) -> None:
    import ibis

    from workbench.answers.build import _nesting
    from workbench.answers.codes import practice_codes

    _, at_once, _ = refreshed
    con = ibis.duckdb.connect(str(at_once.database), read_only=True)
    assert _nesting(practice_codes(con.table("practices"))) == {
        "region": "municipality", "nation": "region"}
    # a municipality in two regions, or a practice of a region in no municipality: no nesting
    split_up = ibis.memtable({"practice_id": ["a", "b", "c"], "cluster_id": ["x"] * 3,
                              "municipality_code": ["m1", "m1", None],
                              "region_code": ["r1", "r2", None]})
    assert _nesting(practice_codes(split_up)) == {}


@pytest.mark.parametrize("table", ["cells", "parts", "standardised", "funnels"])
def test_levels_added_up_from_the_levels_nested_in_them_equal_the_practices_sums(
        refreshed, unnested, table: str) -> None:
    _, at_once, _ = refreshed
    with duckdb.connect(str(at_once.answers), read_only=True) as con:
        levels = {level for (level,) in con.execute(f"SELECT DISTINCT level FROM {table}")
                  .fetchall()}
    assert "region" in levels and (table not in ("cells", "parts") or "nation" in levels)
    assert _rows(unnested, table) == _rows(at_once, table)


def test_the_attack_command_reads_the_built_store(refreshed) -> None:
    """``workbench data attack`` on the tiny register (3 practices, a few persons a month):
    tables protected one at a time give thousands of counts away, one relation at a time and
    by chains; the store's decision gives none away by one relation, but chains of relations
    still narrow some in data this sparse (docs/disclosure.md): exit 1. The oracle, who knows
    for each relation whether its persons overlap, narrows many more: its bounds hold the
    truth."""
    from workbench.answers.attack import attack_store

    _, at_once, _ = refreshed
    said = CliRunner().invoke(app, ["data", "attack", "--data", str(at_once.root)])
    assert said.exit_code == 1, said.output
    assert "given away by chains of relations (first 50)" in said.output
    store = attack_store(at_once)
    alone = attack_store(at_once, primaries_only=True)
    assert alone.hidden < store.hidden
    assert (alone.by_one["lo"] == alone.by_one["hi"]).sum() > 1000
    assert len(store.by_one) == 0 and (store.by_chains["lo"] == store.by_chains["hi"]).sum() == 0
    assert 0 < len(store.by_chains) * 10 < len(alone.by_chains)
    oracle = attack_store(at_once, oracle=True)
    truth = oracle.by_chains
    assert len(truth) > len(store.by_chains) and (truth["lo"] == truth["hi"]).sum() > 1000
    assert ((truth["lo"] <= truth["patients"]) & (truth["patients"] <= truth["hi"])).all()


def test_the_attack_reads_relations_in_any_blocks_and_batches(refreshed, monkeypatch) -> None:
    """The bounds are the same whether the relations are read and tightened a few at a time
    (a relation cut across batches, many blocks a round) or all at once."""
    from workbench.answers import inference
    from workbench.answers.attack import attack_store

    _, at_once, _ = refreshed
    whole = attack_store(at_once, primaries_only=True)
    monkeypatch.setattr(inference, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(inference, "BATCH_ROWS", 777)
    pieces = attack_store(at_once, primaries_only=True)
    assert pieces.rounds == whole.rounds > 1
    for got, expected in ((pieces.by_one, whole.by_one), (pieces.by_chains, whole.by_chains)):
        pd.testing.assert_frame_equal(got, expected)
