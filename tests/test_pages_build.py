"""What makes a page cheaper to build in a kernel that renders many: kept catalogues and
analysis answers, and precomputed judgements, each giving the same page as without them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import workbench.pages as pages
from workbench.analysis import peers
from workbench.engine import connect
from workbench.engine.cache import ResultCache
from workbench.pages import findings
from workbench.profiles import PROFILE_ENV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(pages_dataset):
    session = connect(pages_dataset.database)
    yield session
    session.con.disconnect()  # other modules open the file with their own settings


def test_a_kept_catalogue_does_not_keep_its_session_alive(session) -> None:
    import gc
    import weakref

    other = connect(session.con)
    pages.catalog_for(other)
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None


def test_a_session_keeps_one_catalogue_per_viewing_profile(session, monkeypatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "analyst")
    first = pages.catalog_for(session)
    assert pages.catalog_for(session) is first
    fresh = pages.Catalog(session)
    assert (first.periods, first.clusters, first.practices) == (
        fresh.periods, fresh.clusters, fresh.practices)
    monkeypatch.setenv(PROFILE_ENV, "public")
    public = pages.catalog_for(session)
    assert public is not first and public.profile.name == "public"


def test_another_session_gets_its_own_catalogue(session) -> None:
    other = connect(session.con)
    assert pages.catalog_for(other) is not pages.catalog_for(session)
    assert pages.catalog_for(other).session is other


# --- the level's judgement, stored by a batch's precompute ------------------------------------


def frames_identical(a, b) -> bool:
    """Same columns, types, rows in the same order and the same values (NaN equal to NaN)."""
    return (list(a.columns) == list(b.columns) and list(a.dtypes) == list(b.dtypes)
            and a.equals(b) and a.to_csv() == b.to_csv())


def test_stored_peers_are_the_computed_peers_row_for_row(session, tmp_path, monkeypatch) -> None:
    # a precompute stores the judgement of every unit; a page kernel reads it back as it would
    # have computed it from the same cache (not from the register: the cache's sums are summed
    # in one thread, and may differ from a direct computation in the last bits)
    period = pages.Catalog(session).periods[0]
    groups = session.definitions.groups_of("analgesics")
    own = connect(session.con)
    cache = ResultCache.build(own, tmp_path / "results.duckdb")
    own.result_cache = cache
    try:
        built = {level: findings.stored_peers(own, level, period, groups, risks=True)
                 for level in ("practice", "cluster")}
        assert len([k for k, _, _ in cache.computed]) >= 4  # two tables per level
    finally:
        cache.close()
    reader = connect(session.con)
    reader.result_cache = ResultCache.attach(reader, tmp_path / "results.duckdb")
    try:
        computed = {level: peers(reader, level, period, groups=groups, risks=True)
                    for level in built}
        monkeypatch.setattr(findings, "peers", _must_not_compute)
        for level, expected in computed.items():
            stored = findings.stored_peers(reader, level, period, groups, risks=True)
            assert (stored.level, stored.period, stored.measure, stored.method) == (
                expected.level, expected.period, expected.measure, expected.method)
            for answer in (stored, built[level]):
                assert frames_identical(answer.groups, expected.groups), level
                assert frames_identical(answer.risks, expected.risks), level
    finally:
        reader.result_cache.close()


def _must_not_compute(*args, **kwargs):
    raise AssertionError("a kernel with the stored judgement computed it again")


def test_stored_peers_of_another_analysis_are_not_used(session, tmp_path, monkeypatch) -> None:
    period = pages.Catalog(session).periods[0]
    groups = session.definitions.groups_of("analgesics")
    own = connect(session.con)
    own.result_cache = cache = ResultCache.build(own, tmp_path / "results.duckdb")
    findings.stored_peers(own, "cluster", period, groups, risks=True)
    cache.close()
    reader = connect(session.con)
    reader.result_cache = ResultCache.attach(reader, tmp_path / "results.duckdb")
    monkeypatch.setattr(findings, "analysis_digest", lambda: "another analysis")
    computed = []
    monkeypatch.setattr(findings, "peers", lambda *a, **k: computed.append(1) or peers(*a, **k))
    try:
        findings.stored_peers(reader, "cluster", period, groups, risks=True)
    finally:
        reader.result_cache.close()
    assert computed == [1]


def test_storing_keeps_a_column_of_nulls_and_an_empty_frame() -> None:
    frame = pd.DataFrame({"unit_id": ["b", "a"], "flag": [None, None], "z": [1.5, np.nan]})
    assert frames_identical(findings._restored(findings._storable(frame).to_pandas()), frame)
    empty = frame.iloc[:0].reset_index(drop=True)
    assert frames_identical(findings._restored(findings._storable(empty).to_pandas()), empty)


def test_a_units_answers_do_not_push_out_a_levels(monkeypatch) -> None:
    """A batch kernel renders dozens of practice pages between two cluster pages: their
    per-unit answers must not push out the level's tables the next cluster page reuses."""
    from workbench.pages import base

    class Session:  # stands in for a Workbench: the memo only needs a weak reference
        pass

    session = Session()
    monkeypatch.setattr(base, "MEMO_SIZE", 3)
    monkeypatch.setattr(base, "LEVEL_MEMO_SIZE", 2)
    computed: list[dict] = []

    def ask(**key: object) -> pd.DataFrame:
        return base.memo(session, base.memo_key(**key),  # type: ignore[arg-type]
                         lambda: computed.append(key) or pd.DataFrame({"n": [len(computed)]}))

    level = {"what": "published_level", "level": "cluster", "units": []}
    first = ask(**level)
    for i in range(10):  # ten practices' answers, more than the units' memo holds
        ask(what="opportunities", unit=f"p{i}", level="practice")
        ask(what="measures", level="practice", units=[f"p{i}"])
    assert ask(**level).equals(first) and computed.count(level) == 1
    ask(what="opportunities", unit="p0", level="practice")  # pushed out long ago: asked again
    assert sum(k.get("unit") == "p0" for k in computed) == 2
    for other in ("region", "nation"):  # the levels' own memo is bounded too
        ask(what="published_level", level=other, units=[])
    ask(**level)
    assert computed.count(level) == 2
