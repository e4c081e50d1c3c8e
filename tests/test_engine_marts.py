"""The marts give the very answers the raw tables give, and go stale when the data change."""

from __future__ import annotations

from pathlib import Path

import ibis
import pandas as pd
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, ZOPICLONE, TinyRegister, world

from workbench.engine import build_marts, connect
from workbench.engine.marts import STATE_TABLE


def busy_world() -> TinyRegister:
    """Returns, moves between practices, non-GP prescribers, long and new users."""
    reg = world()
    for i, practice in enumerate(["000001", "000002", "000003", "000004", "000001", "000003"]):
        pid = f"p{i}"
        reg.person(pid, sex="FM"[i % 2], born=f"19{40 + 9 * i}-06-15")
        reg.listing(pid, practice, "2020-01-01", "2024-05-01").listing(pid, "000002", "2024-05-01")
        reg.redeem(pid, "2023-03-01", MORPHINE, packs=i, prescriber=practice)
        reg.redeem(pid, f"2024-0{1 + i}-10", OXYCODONE_DEPOT, packs=1 + i % 3, prescriber=practice)
        reg.redeem(pid, f"2024-0{2 + i}-11", MORPHINE, packs=-1, prescriber=practice)
        reg.redeem(pid, "2024-06-01", IBUPROFEN, prescriber=None, prescriber_type="hospital")
        reg.redeem(pid, "2024-07-01", ZOPICLONE, packs=4 * i, prescriber="000002")
    return reg


def with_fingerprint(con: ibis.BaseBackend, fingerprint: str) -> None:
    con.create_table(
        "metadata",
        ibis.memtable({"key": ["data_fingerprint"], "value": [fingerprint]}),
        overwrite=True,
    )


QUESTIONS = [
    dict(groups=["opioids", "nsaids"], level="practice", periods="2024Q1..2024Q4"),
    dict(groups="opioids", level="cluster", periods="2024", by=["consumption_group", "sex"]),
    dict(groups=["opioids", "sedatives"], level="region", periods="R12-2024-06", by="started"),
    dict(groups="N02AA", level="nation", periods="2024", by=["started", "depot"], non_gp=True),
    dict(groups=None, level="municipality", periods="2024-01..2024-06", by="age_group"),
    dict(groups="opioids", level="practice", periods="2024", filters={"started": "continued"}),
]


def frame(table: ibis.Table) -> pd.DataFrame:
    df = table.to_pandas()
    return df.sort_values(list(df.columns)).reset_index(drop=True)


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q['level']}-{q['periods']}")
def test_marts_answer_exactly_as_the_raw_tables(question: dict) -> None:
    con = busy_world().backend()
    with_fingerprint(con, "abc")
    build_marts(con, connect(con).definitions)
    from_marts = connect(con)
    from_raw = connect(con, use_marts=False)
    assert from_marts.marts is not None and from_raw.marts is None
    pd.testing.assert_frame_equal(
        frame(from_marts.measures(**question)), frame(from_raw.measures(**question))
    )


def test_marts_go_stale_when_the_data_change(tmp_path: Path) -> None:
    path = tmp_path / "workbench.duckdb"
    con = busy_world().backend(path)
    with_fingerprint(con, "first load")
    con.disconnect()
    # Writable: built on connect. Read-only: found and used.
    assert connect(path, read_only=False).marts is not None
    assert connect(path).marts is not None
    # A new load writes a new fingerprint: read-only sessions stop trusting the marts...
    con = ibis.duckdb.connect(str(path))
    with_fingerprint(con, "second load")
    con.disconnect()
    assert connect(path).marts is None
    # ...and the next writable session rebuilds them.
    assert connect(path, read_only=False).marts is not None
    assert connect(path).marts is not None


def test_without_a_fingerprint_marts_are_never_used() -> None:
    con = busy_world().backend()
    assert connect(con, read_only=False).marts is None
    assert STATE_TABLE not in con.list_tables()
    with pytest.raises(ValueError, match="data_fingerprint"):
        build_marts(con, connect(con).definitions)


def test_a_build_lifts_the_sessions_duckdb_memory_cap_and_restores_it(monkeypatch) -> None:
    """A dashboard's cap (connect's 3GB) can't hold a national build's sorts: the build runs
    with DuckDB's default (or the limit it is given) and puts the cap back."""
    con = world().backend()
    con.create_table("metadata", ibis.memtable({"key": ["data_fingerprint"], "value": ["x"]}))
    con.raw_sql("SET memory_limit = '1GB'")

    def limit() -> str:
        return con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]

    seen = []
    real = con.create_table

    def spy(*args, **kwargs):
        seen.append(limit())
        return real(*args, **kwargs)

    monkeypatch.setattr(con, "create_table", spy)
    build_marts(con, connect(con).definitions, memory_limit="2GB")
    assert set(seen) == {"1.8 GiB"}
    assert limit() in {"953.5 MiB", "953.6 MiB"}  # DuckDB shows one decimal


def test_a_build_lifts_a_cap_set_when_connecting(tmp_path: Path, monkeypatch) -> None:
    """``RESET`` would return to the cap given at connect; the build uses DuckDB's default."""
    path = tmp_path / "workbench.duckdb"
    con = world().backend(path)
    con.create_table("metadata", ibis.memtable({"key": ["data_fingerprint"], "value": ["x"]}))
    con.disconnect()
    session = connect(path, read_only=False, memory_limit="1GB")
    assert session.marts is not None
    seen = []
    real = session.con.create_table

    def spy(*args, **kwargs):
        seen.append(session.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(session.con, "create_table", spy)
    build_marts(session.con, session.definitions)
    assert seen and all(s not in {"953.6 MiB", "953.5 MiB"} for s in seen)
    limit = session.con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit in {"953.5 MiB", "953.6 MiB"}
