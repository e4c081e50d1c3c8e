"""The public API: connect() to a database file or backend; compare() a unit with its context."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_fixtures import MORPHINE, rows, world

import workbench.engine as engine
from workbench.engine import Workbench, connect


def small_world():
    reg = world()
    reg.person("p1").listing("p1", "000001", "2020-01-01")  # cluster K1, region 1081
    reg.person("p3").listing("p3", "000003", "2020-01-01")  # cluster K2, region 1081
    reg.person("p4").listing("p4", "000004", "2020-01-01")  # cluster K3, region 1084
    reg.redeem("p1", "2024-02-01", MORPHINE, packs=2, prescriber="000001")  # 20 DDD
    reg.redeem("p3", "2024-02-01", MORPHINE, packs=1, prescriber="000003")  # 10 DDD
    reg.redeem("p4", "2024-02-01", MORPHINE, packs=4, prescriber="000004")  # 40 DDD
    return reg


def test_public_names() -> None:
    assert set(engine.__all__) >= {"connect", "Workbench", "parse_period", "period_series"}


def test_connect_opens_a_database_file_read_only(tmp_path: Path) -> None:
    path = tmp_path / "workbench.duckdb"
    small_world().backend(path).disconnect()
    session = connect(path)
    assert isinstance(session, Workbench)
    table = session.measures("opioids", "nation", "2024", measures=["patients", "ddd"])
    assert rows(table)[["patients", "ddd"]].values.tolist() == [[3, 70]]
    with pytest.raises(Exception, match="read-only"):
        session.con.raw_sql("CREATE TABLE scratch (x INTEGER)")


def test_connect_leaves_the_garbage_collector_alone(tmp_path: Path) -> None:
    """Opening a session changes nothing process-wide: no frozen heap, no collector settings
    (warm-up belongs to the publishing layer's kernels)."""
    import gc

    path = tmp_path / "workbench.duckdb"
    small_world().backend(path).disconnect()
    before = (gc.get_freeze_count(), gc.get_threshold(), gc.isenabled())
    connect(path).con.disconnect()
    assert (gc.get_freeze_count(), gc.get_threshold(), gc.isenabled()) == before


def _setting(session: Workbench, name: str) -> str:
    return session.con.raw_sql(f"SELECT current_setting('{name}')").fetchone()[0]


def test_connect_caps_duckdb_memory_and_spills_to_a_temp_folder(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "workbench.duckdb"
    small_world().backend(path).disconnect()
    # the engine reads no environment variable: a limit comes as an argument or not at all
    monkeypatch.setenv("WORKBENCH_DUCKDB_MEMORY_LIMIT", "1GB")
    session = connect(path)
    # DuckDB reports the limit in its own units (3GB = 2.7 GiB).
    assert _setting(session, "memory_limit") in {"2.7 GiB", "2.8 GiB", "3.0 GB"}
    temp = _setting(session, "temp_directory")
    assert "workbench-duckdb-" in temp and not temp.startswith(str(tmp_path))
    session.con.disconnect()
    session = connect(path, memory_limit="512MB", temp_directory=tmp_path / "spill")
    assert _setting(session, "memory_limit") in {"488.2 MiB", "512.0 MB"}
    assert _setting(session, "temp_directory") == str(tmp_path / "spill")
    session.con.disconnect()
    # A backend passed in keeps its settings unless asked.
    backend = small_world().backend()
    before = backend.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert _setting(connect(backend), "memory_limit") == before
    assert _setting(connect(backend, memory_limit="256MB"), "memory_limit") in {
        "244.1 MiB",
        "256.0 MB",
    }


def test_connect_defaults_to_the_dataset_database(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="workbench.duckdb"):
        connect()
    small_world().backend(tmp_path / "workbench.duckdb").disconnect()
    assert connect().measures(None, "nation", "2024", measures="listed").count().execute() == 1


def test_compare_puts_a_practice_beside_its_cluster_region_and_nation() -> None:
    session = small_world().session()
    table = session.compare("000001", "practice", "opioids", "2024", measures=["patients", "ddd"])
    got = rows(table).set_index("level")[["unit_id", "patients", "ddd"]]
    assert got.to_dict("index") == {
        "practice": {"unit_id": "000001", "patients": 1, "ddd": 20},
        "cluster": {"unit_id": "K1", "patients": 1, "ddd": 20},
        "region": {"unit_id": "1081", "patients": 2, "ddd": 30},  # 000001 + 000003
        "nation": {"unit_id": "DK", "patients": 3, "ddd": 70},
    }


@pytest.mark.parametrize(
    ("unit", "level", "context"),
    [
        ("K2", "cluster", [("cluster", "K2"), ("region", "1081"), ("nation", "DK")]),
        ("101", "municipality", [("municipality", "101"), ("region", "1084"), ("nation", "DK")]),
        ("1084", "region", [("region", "1084"), ("nation", "DK")]),
        ("DK", "nation", [("nation", "DK")]),
    ],
)
def test_compare_context_of_other_levels(unit: str, level: str, context: list) -> None:
    session = small_world().session()
    assert session.context_of(unit, level) == context
    compared = session.compare(unit, level, "opioids", "2024", measures="patients")
    assert sorted(rows(compared).level) == sorted(lvl for lvl, _ in context)


def test_compare_an_unknown_unit_says_so() -> None:
    with pytest.raises(ValueError, match="no practice belongs to cluster 'K9'"):
        small_world().session().compare("K9", "cluster", "opioids", "2024")
