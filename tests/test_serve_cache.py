"""``workbench serve``'s result cache: built for the shapes the profile serves, reused while
current, rebuilt when stale; a page built from it equals the page built without it; a kernel
whose session opened before the file existed (a preheated one) uses it once it is there; and
neither Voilà nor the site server hands the file out.

On the generated municipality (Samsø: one cluster K025, practices 172409 and 236372). The
cache is built from the register's first units (K025, 172409); the comparisons use practice
236372, a unit whose page was never built during the precompute.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import workbench.pages as pages
from workbench.definitions import load_definitions
from workbench.disclosure import publishing
from workbench.engine import connect
from workbench.engine.cache import (
    RESULT_CACHE_ENV,
    RESULT_CACHE_WATCH_ENV,
    WatchedCache,
    cache_key,
    stored_state,
)
from workbench.paths import Dataset
from workbench.profiles import PROFILE_ENV, Profile
from workbench.publish.serve import (
    CACHE_READY,
    build_cache,
    child_environment,
    serve_site,
)

pytestmark = pytest.mark.slow

OTHER_PRACTICE = "236372"  # not the register's first practice: no page of it was precomputed


def shapes(profile: str, kinds: tuple[str, ...]) -> set[str]:
    """The shapes serve records: profile/kind/theme/period/group/drug/measure/breakdown with
    every page's defaults: the newest complete year of the data (Samsø 2020-2025: 2025), the
    theme's first group, no drug, patients per 1,000 and consumption groups."""
    first = {"psychotropics": "sedatives", "analgesics": "opioids"}
    assert {t: load_definitions().groups_of(t)[0] for t in first} == first
    return {f"{profile}/{kind}/{theme}/2025/{group}//patients_per_1000/consumption_group"
            for kind in kinds for theme, group in first.items()}


@pytest.fixture(scope="module")
def dataset(writable_pages_dataset: Dataset) -> Dataset:
    return writable_pages_dataset


@pytest.fixture(scope="module")
def built(dataset: Dataset):
    """The analyst's cache (every page kind), as ``workbench serve --profile analyst`` builds
    it (publishing, as its background process runs), over a stale file left by a serve of
    other data: one that claims every shape and holds one answer of its own."""
    dataset.serve_cache.parent.mkdir()
    with duckdb.connect(str(dataset.serve_cache)) as con:
        con.execute("CREATE TABLE result_state AS SELECT 'another fingerprint' AS cache_key")
        con.execute("CREATE TABLE r_old AS SELECT 'K025' AS unit_id, 99 AS patients")
        con.execute("CREATE TABLE result_index AS SELECT 'old' AS key, 'r_old' AS table_name, "
                    "1::BIGINT AS rows, 0.0::DOUBLE AS seconds, '{}' AS query")
        con.execute("CREATE TABLE result_shapes (shape VARCHAR)")
        con.executemany("INSERT INTO result_shapes VALUES (?)",
                        [[s] for s in sorted(shapes("analyst", pages.PAGE_KINDS))])
    with publishing():
        outcome = build_cache(dataset, Profile("analyst"))
    return outcome


@pytest.fixture
def watching(monkeypatch):
    """A kernel's environment: the analyst profile, publishing, the cache path to watch."""
    def watch(path: Path) -> None:
        monkeypatch.setenv(PROFILE_ENV, "analyst")
        monkeypatch.setenv(RESULT_CACHE_ENV, str(path))
        monkeypatch.setenv(RESULT_CACHE_WATCH_ENV, "1")
    return watch


def test_the_cache_holds_the_shapes_served_and_is_reused(built, dataset: Dataset) -> None:
    assert built.built and built.path == dataset.serve_cache == (
        dataset.root / "serve-cache" / "results.duckdb")
    session = connect(dataset.database)
    key = cache_key(session)
    session.con.disconnect()
    stored, held, questions = stored_state(built.path)
    assert stored == key  # rebuilt: the stale file's claim to every shape was not believed
    with duckdb.connect(str(built.path), read_only=True) as con:
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()")
                  .fetchall()}
        assert "r_old" not in tables  # nothing of the stale file was kept
        assert con.execute("SELECT count(*) FROM result_index WHERE key = 'old'").fetchone() \
            == (0,)
    assert held == shapes("analyst", pages.PAGE_KINDS)  # 5 kinds x 2 themes = 10
    assert built.shapes == 10 and questions == built.questions > 0
    modified = built.path.stat().st_mtime_ns
    with publishing():
        again = build_cache(dataset, Profile("analyst"))
    assert not again.built and again.questions == built.questions
    assert built.path.stat().st_mtime_ns == modified  # reused as it was, not rewritten
    assert not list(built.path.parent.glob("*.tmp-wb*"))  # no temporary file left behind


def published_tables(page) -> dict[str, pd.DataFrame]:
    tables = {"key_figures": page.key_table}
    tables.update({s.id: s.table for s in page.sections if s.table is not None})
    return tables


def assert_same_tables(plain: dict[str, pd.DataFrame], cached: dict[str, pd.DataFrame]) -> None:
    """Same tables, rows, labels and hidden cells; floats equal up to the last bits (sums in
    another order)."""
    assert plain.keys() == cached.keys()
    for name, table in plain.items():
        other = cached[name]
        assert list(table.columns) == list(other.columns), name
        assert len(table) == len(other), name
        labels = [c for c in table.columns if not pd.api.types.is_float_dtype(table[c])]
        table, other = (t.sort_values(labels).reset_index(drop=True) for t in (table, other))
        for column in table.columns:
            a, b = table[column], other[column]
            if pd.api.types.is_float_dtype(a):
                np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-12,
                                           equal_nan=True, err_msg=f"{name} {column}")
            else:
                assert a.astype(str).tolist() == b.astype(str).tolist(), (name, column)


def practice_page(session) -> dict[str, pd.DataFrame]:
    with publishing():
        page = pages.build_page("practice_insight", session, theme="analgesics",
                                unit=OTHER_PRACTICE)
    return published_tables(page)


def test_a_kernel_computes_until_the_file_is_there_then_reads_it(
        built, tmp_path: Path, dataset: Dataset, watching) -> None:
    """A preheated kernel: its session opens before serve has renamed the file into place;
    its first page computes everything; once the file is there the same session reads every
    question from it, and the page is the same."""
    later = tmp_path / "serve-cache" / "results.duckdb"
    watching(later)
    pages.forget_sessions()
    session = pages.session_for(str(dataset.root))
    try:
        threads = session.con.raw_sql("SELECT current_setting('threads')").fetchone()[0]
        cache = session.result_cache
        assert isinstance(cache, WatchedCache) and cache.check() is None
        plain = practice_page(session)
        asked = cache.misses
        assert asked > 0 and cache.hits == 0  # computed, as without a cache
        later.parent.mkdir()
        shutil.copy2(built.path, later.with_suffix(".part"))
        os.replace(later.with_suffix(".part"), later)  # as serve puts it in place
        assert pages.session_for(str(dataset.root)) is session  # the kernel's one session
        cached = practice_page(session)
        assert cache.misses == asked and cache.hits > 0  # nothing computed again
        # a dashboard keeps its threads (only a batch reads single-threaded, for exact bits)
        assert session.con.raw_sql("SELECT current_setting('threads')").fetchone()[0] == threads
    finally:
        pages.forget_sessions()
    assert_same_tables(plain, cached)


def test_a_batch_kernel_opens_its_session_ahead_and_attaches_the_cache_on_its_first_page(
        built, tmp_path: Path, dataset: Dataset, monkeypatch) -> None:
    """A batch's page kernel opens the session and its catalogue while the precompute is still
    writing the cache (not watched: a batch page reads every question it can from the cache);
    its first page gets that session, with the cache attached, single-threaded as batch pages
    read it, and reading what is there."""
    later = tmp_path / "batch-cache" / "results.duckdb"
    monkeypatch.setenv(PROFILE_ENV, "analyst")
    monkeypatch.setenv(RESULT_CACHE_ENV, str(later))
    pages.forget_sessions()
    try:
        pages.open_ahead(str(dataset.root))
        later.parent.mkdir()
        shutil.copy2(built.path, later)  # the precompute has finished
        session = pages.session_for(str(dataset.root))
        assert pages.CATALOGS in session.__dict__  # the one opened ahead, catalogue and all
        assert session.result_cache is not None and session.result_cache.single_thread
        assert session.con.raw_sql("SELECT current_setting('threads')").fetchone()[0] == 1
        practice_page(session)
        assert session.result_cache.hits > 0
        assert pages.session_for(str(dataset.root)) is session
    finally:
        pages.forget_sessions()


def test_a_kernel_ignores_a_stale_cache_and_uses_the_one_replacing_it(
        built, dataset: Dataset, tmp_path: Path, watching) -> None:
    """Serve found a cache of other data (another fingerprint in its key): until its rebuild
    replaces the file, a kernel ignores it and computes; then it reads the new one."""
    stale = tmp_path / "serve-cache" / "results.duckdb"
    stale.parent.mkdir()
    shutil.copy2(built.path, stale)
    with duckdb.connect(str(stale)) as con:
        con.execute("UPDATE result_state SET cache_key = 'another fingerprint'")
    watching(stale)
    session = connect(dataset.database)
    try:
        cache = session.result_cache
        assert isinstance(cache, WatchedCache) and cache.check() is None
        # a question the practice insight page asks (the ranking of the default group)
        asked = {"groups": "opioids", "level": "practice", "periods": "2025",
                 "units": [OTHER_PRACTICE], "measures": ["patients", "listed",
                                                         "patients_per_1000"]}
        table = session.measures(**asked).to_pandas()
        assert table["unit_id"].tolist() == [OTHER_PRACTICE] and cache.misses == 1
        shutil.copy2(built.path, tmp_path / "new.duckdb")
        os.replace(tmp_path / "new.duckdb", stale)  # the rebuild, renamed into place
        again = session.measures(**asked).to_pandas()
        assert cache.check() is not None and cache.hits == 1 and cache.misses == 1
        assert again["patients"].tolist() == table["patients"].tolist()
    finally:
        session.con.disconnect()


def test_kernels_get_the_serve_cache_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(RESULT_CACHE_ENV, "/somewhere/a-batch-cache.duckdb")  # a caller's shell
    dataset = Dataset.at(tmp_path)
    env = child_environment(dataset, Profile("public"), result_cache=dataset.serve_cache)
    assert env[RESULT_CACHE_ENV] == str(dataset.serve_cache)
    assert env[RESULT_CACHE_WATCH_ENV] == "1"
    off = child_environment(dataset, Profile("public"))  # --no-precompute
    assert RESULT_CACHE_ENV not in off and RESULT_CACHE_WATCH_ENV not in off


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(url: str, child: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            if child.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)


def test_the_site_server_never_serves_the_cache(built, dataset: Dataset) -> None:
    """Even with ``--site`` pointed at the dataset folder itself (a mistake), the file stays
    out of reach: the site server hands out only what a site publishes."""
    port = _free_port()
    server = serve_site(dataset.root, port)
    base = f"http://127.0.0.1:{port}"
    try:
        (dataset.root / "index.html").write_text("<p>site</p>")
        _wait_for(f"{base}/index.html", server, Path(os.devnull), 60)
        for path in ("/serve-cache/results.duckdb", "/serve-cache/",
                     "/%73erve-cache/results.duckdb", "/serve-cache/./results.duckdb",
                     "/x/../serve-cache/results.duckdb", "/workbench.duckdb"):
            status, body = _status(f"{base}{path}")
            assert status == 404 and b"DUCK" not in body, path
    finally:
        (dataset.root / "index.html").unlink(missing_ok=True)
        server.terminate()
        server.wait(timeout=10)


def test_serve_builds_it_in_the_background_and_voila_never_serves_it(
        pages_dataset: Dataset, tmp_path: Path) -> None:
    """``workbench serve`` answers at once, prints the ready line when the file is in place,
    and no Voilà URL reaches the file."""
    dataset = Dataset.at(tmp_path / "data")
    dataset.root.mkdir()
    shutil.copy2(pages_dataset.database, dataset.database)
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "workbench.publish.cli", "serve", "--port", str(port),
             "--data", str(dataset.root), "--profile", "public",
             "--site", str(tmp_path / "no-site")],
            stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/", child, log)
        deadline = time.monotonic() + 300
        while CACHE_READY not in log.read_text():
            assert child.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert dataset.serve_cache.is_file()
        assert stored_state(dataset.serve_cache)[1] == shapes(
            "public", ("overview", "cluster_insight", "cluster_intervention"))
        cache = dataset.serve_cache
        for path in (f"/voila/files/{cache}", f"/files/{cache}", "/voila/files/../serve-cache/"
                     "results.duckdb", f"/voila/render/{cache}", "/voila/static/../../../"
                     "serve-cache/results.duckdb", "/serve-cache/results.duckdb",
                     f"/voila/files{cache}", "/voila/render/%2e%2e/serve-cache/results.duckdb",
                     f"/api/contents{cache}"):
            status, body = _status(f"{base}{path}")
            assert status in (403, 404, 405), f"{path} answered {status}"
            assert b"DUCK" not in body, path
    finally:
        child.terminate()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
