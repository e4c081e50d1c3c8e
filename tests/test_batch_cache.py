"""The result cache: answers computed once for all units give each unit what the engine gives
it directly, pages built from the cache equal pages built without it, and a cache of other data
is never used. On the generated municipality (Samsø: cluster K025, practices 172409, 236372)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import workbench.pages as pages
from workbench.definitions import load_definitions
from workbench.disclosure import publishing
from workbench.engine import connect
from workbench.engine.cache import RESULT_CACHE_ENV, ResultCache, query_key
from workbench.engine.query import MEASURES, Query
from workbench.paths import Dataset
from workbench.profiles import PROFILE_ENV

pytestmark = pytest.mark.slow

FLOATS_RTOL = 1e-12  # float sums in another order differ in the last bits, nothing more


@pytest.fixture(scope="module", autouse=True)
def analyst_profile():
    """Pages of every kind, practice pages included (a publishing process is public)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PROFILE_ENV, "analyst")
        yield


@pytest.fixture(scope="module")
def dataset(pages_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    copy = Dataset.at(tmp_path_factory.mktemp("batch-cache"))
    shutil.copy2(pages_dataset.database, copy.database)
    return copy


ASKED = ("measures", "risks", "journeys", "transitions")  # what the result cache answers


def record_page_calls(session, kind: str, **choices: str) -> list[tuple[str, tuple, dict]]:
    """The engine calls a page build makes (``percentiles`` calls ``measures`` too)."""
    calls: list[tuple[str, tuple, dict]] = []

    def recorder(method: str):
        original = getattr(session, method)

        def recording(*args, **kwargs):
            calls.append((method, args, kwargs))
            return original(*args, **kwargs)

        return recording

    for method in ASKED:
        setattr(session, method, recorder(method))
    try:
        pages.build_page(kind, session, **choices)
    finally:
        for method in ASKED:
            delattr(session, method)
    return calls


def choices_for(kind: str, unit_index: int) -> dict[str, str]:
    """Samsø's units: the one cluster, or the first/second practice."""
    unit = {"cluster": "K025", "practice": ("172409", "236372")[unit_index]}.get(
        kind.split("_")[0], "")
    return {"theme": "analgesics", "unit": unit, "group": "nsaids", "breakdown": "sex"}


@pytest.fixture(scope="module")
def built(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory):
    """Every measures call of every page kind (second practice), answered without a cache;
    then a cache built from pages of the *first* practice, as a batch precompute does."""
    path = tmp_path_factory.mktemp("cache") / "results.duckdb"
    session = connect(dataset.database)
    with publishing():
        calls = {kind: record_page_calls(session, kind, **choices_for(kind, 1))
                 for kind in pages.PAGE_KINDS}
        direct = {kind: [getattr(session, m)(*a, **k).to_pandas() for m, a, k in found]
                  for kind, found in calls.items()}
        session.con.disconnect()
        # a new session, as the precompute has: nothing remembered from the pages above
        session = connect(dataset.database)
        cache = ResultCache.build(session, path)
        session.result_cache = cache
        for kind in pages.PAGE_KINDS:
            pages.build_page(kind, session, **choices_for(kind, 0))
        computed = list(cache.computed)
        cache.close()
    session.con.disconnect()
    return path, calls, direct, computed


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in df.columns if c not in MEASURES]
    return df.sort_values(keys).reset_index(drop=True)


def assert_same_answer(cached: pd.DataFrame, direct: pd.DataFrame) -> None:
    """Same columns, rows, labels and counts; floats equal to the last bits."""
    assert list(cached.columns) == list(direct.columns)
    cached, direct = sort_rows(cached), sort_rows(direct)
    assert len(cached) == len(direct)
    for column in cached.columns:
        a, b = cached[column], direct[column]
        if pd.api.types.is_float_dtype(a) and column != "patients":
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=FLOATS_RTOL,
                                       atol=0, equal_nan=True, err_msg=column)
        else:
            assert a.tolist() == b.tolist(), column


def test_each_question_is_computed_once_for_all_units(built) -> None:
    path, calls, _, computed = built
    asked = {query_key(Query.build(load_definitions(), **normalised(a, k)))
             for found in calls.values() for m, a, k in found if m == "measures"}
    others = {(m, repr(a), repr(sorted(k.items()))) for found in calls.values()
              for m, a, k in found if m != "measures"}
    kept = {key for key, _, _ in computed}
    judged = stored_judgements(path)
    assert len(judged) == 4  # the practices' and the clusters' judgement: groups and risks
    assert asked <= kept  # every measures question is stored ...
    assert len(kept - judged) <= len(asked) + len(others)  # ... once, the others at most once
    assert any(m == "risks" for found in calls.values() for m, _, _ in found)
    with duckdb.connect(str(path), read_only=True) as con:
        # the stored practice-level answers hold both practices, not only the first one
        names = [n for (n,) in con.execute("SELECT table_name FROM result_index").fetchall()]
        practice_units = set()
        for name in names:
            rows = con.execute(f"SELECT DISTINCT level, unit_id FROM {name}").fetchall()
            practice_units |= {u for level, u in rows if level == "practice"}
    assert practice_units == {"172409", "236372"}


def stored_judgements(path: Path) -> set[str]:
    """Keys of the stored tables that are the analysis' judgement of a level's units (stored
    frames: they keep their row order in ``_row``), not answers of the engine."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {key for (key,) in con.execute(
            "SELECT r.key FROM result_index r JOIN duckdb_columns() c "
            "ON c.table_name = r.table_name WHERE c.column_name = '_row'").fetchall()}


def normalised(args: tuple, kwargs: dict) -> dict:
    """A recorded ``measures(groups, level, periods, ...)`` call as ``Query.build`` keywords."""
    names = ("groups", "level", "periods")
    found = {**dict(zip(names, args, strict=False)), **kwargs}
    found.setdefault("groups", None)
    found.setdefault("level", "nation")
    found.setdefault("units", None)
    return found


def test_cached_slices_equal_the_engine_unit_by_unit(built, dataset: Dataset,
                                                     monkeypatch) -> None:
    path, calls, direct, _ = built
    monkeypatch.setenv(RESULT_CACHE_ENV, str(path))
    session = connect(dataset.database)
    try:
        cache = session.result_cache
        assert cache is not None
        for kind, found in calls.items():
            for (method, args, kwargs), expected in zip(found, direct[kind], strict=True):
                answer = getattr(session, method)(*args, **kwargs).to_pandas()
                assert_same_answer(answer, expected)
        assert cache.misses == 0 and cache.hits == sum(len(f) for f in calls.values())
    finally:
        session.con.disconnect()


def published_tables(page) -> dict[str, pd.DataFrame]:
    tables = {"key_figures": page.key_table}
    tables.update({s.id: s.table for s in page.sections if s.table is not None})
    return tables


def test_pages_from_the_cache_equal_pages_without_it(built, dataset: Dataset,
                                                     monkeypatch) -> None:
    path = built[0]
    with publishing():
        session = connect(dataset.database)
        plain = {k: published_tables(pages.build_page(k, session, **choices_for(k, 1)))
                 for k in pages.PAGE_KINDS}
        session.con.disconnect()
        monkeypatch.setenv(RESULT_CACHE_ENV, str(path))
        session = connect(dataset.database)
        cached = {k: published_tables(pages.build_page(k, session, **choices_for(k, 1)))
                  for k in pages.PAGE_KINDS}
        assert session.result_cache is not None and session.result_cache.misses == 0
        session.con.disconnect()
    for kind in pages.PAGE_KINDS:
        assert plain[kind].keys() == cached[kind].keys()
        for name, table in plain[kind].items():
            other = cached[kind][name]
            assert list(table.columns) == list(other.columns), (kind, name)
            assert len(table) == len(other), (kind, name)
            # The engine's rows come in no particular order (the cache's are sorted): compare
            # row by row in one order; hidden cells and labels must match exactly.
            labels = [c for c in table.columns if not pd.api.types.is_float_dtype(table[c])]
            table, other = (t.sort_values(labels).reset_index(drop=True) for t in (table, other))
            for column in table.columns:
                a, b = table[column], other[column]
                if pd.api.types.is_float_dtype(a):
                    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float),
                                               rtol=FLOATS_RTOL, equal_nan=True,
                                               err_msg=f"{kind} {name} {column}")
                else:
                    assert a.astype(str).tolist() == b.astype(str).tolist(), (kind, name, column)


def test_a_cache_of_other_data_is_ignored(built, dataset: Dataset, tmp_path: Path,
                                          monkeypatch) -> None:
    stale = tmp_path / "stale.duckdb"
    shutil.copy2(built[0], stale)
    with duckdb.connect(str(stale)) as con:
        con.execute("UPDATE result_state SET cache_key = 'another fingerprint'")
    monkeypatch.setenv(RESULT_CACHE_ENV, str(stale))
    with pytest.warns(UserWarning, match="other data"):
        session = connect(dataset.database)
    try:
        assert session.result_cache is None
        table = session.measures("opioids", "practice", "2025", units=["172409"]).to_pandas()
        assert table["unit_id"].tolist() == ["172409"]
    finally:
        session.con.disconnect()


def test_question_keys_ignore_units_only() -> None:
    defs = load_definitions()

    def key(**changes: object) -> str:
        asked = {"groups": "opioids", "level": "practice", "units": ["172409"],
                 "periods": "2025", "measures": ["patients"], **changes}
        return query_key(Query.build(defs, **asked))

    assert key() == key(units=["236372"]) == key(units=None)
    assert len({key(), key(periods="2024"), key(level="cluster"), key(by="sex"),
                key(measures=["patients", "listed"]), key(groups="nsaids")}) == 6
