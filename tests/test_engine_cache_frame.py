"""Slices of a batch's stored answers read in one statement (``Workbench.measures_frame``):
the same frame, rows in the same order, as Ibis' union of the slices. On the generated
municipality (Samsø: cluster K025, practices 172409, 236372)."""

from __future__ import annotations

import ibis
import pandas as pd
import pytest

from workbench.engine import connect
from workbench.engine.cache import ResultCache

pytestmark = pytest.mark.slow

PERIODS = ["2024Q4", "2025Q1"]
ASKS = {  # (level, units) of each part
    "unit": ("practice", ["236372"]),
    "cluster": ("cluster", ["K025"]),
    "nation": ("nation", None),
    "both": ("practice", ["236372", "172409"]),
}


def ask(part: str, **more: object) -> dict:
    level, units = ASKS[part]
    return {"groups": ["opioids", "nsaids"], "level": level, "periods": PERIODS,
            "units": units, **more}


@pytest.fixture(scope="module")
def stored(pages_dataset, tmp_path_factory):
    """A cache holding the questions of ASKS (by sex too), built as a precompute builds it."""
    path = tmp_path_factory.mktemp("frame") / "results.duckdb"
    session = connect(pages_dataset.database)
    cache = ResultCache.build(session, path)
    session.result_cache = cache
    for part in ASKS:
        for by in ((), ("sex",)):
            session.measures(**ask(part, by=by)).to_pandas()
    cache.close()
    session.con.disconnect()
    return path


@pytest.fixture
def reader(pages_dataset, stored):
    session = connect(pages_dataset.database)
    session.result_cache = ResultCache.attach(session, stored)
    yield session
    session.con.disconnect()


def through_ibis(session, asks: list[dict], labels: list[dict]) -> pd.DataFrame:
    """What a page did before: Ibis' union of the cached slices, executed."""
    parts = [session.measures(**a) for a in asks]
    parts = [p.mutate(**{k: ibis.literal(v) for k, v in lab.items()}) if lab else p
             for p, lab in zip(parts, labels, strict=True)]
    return (ibis.union(*parts) if len(parts) > 1 else parts[0]).to_pandas()


@pytest.mark.parametrize("parts", [
    ["unit"], ["nation"], ["unit", "nation"], ["unit", "cluster", "nation"],
    ["nation", "both", "cluster"], ["unit", "cluster", "nation", "both"],
])
@pytest.mark.parametrize("by", [(), ("sex",)])
def test_a_union_of_slices_is_the_frame_ibis_gives(reader, parts, by, monkeypatch) -> None:
    # Ibis orders the parts of a union of three in its own way (third, first, second): the
    # statement must be Ibis' own for the rows to come in the same order
    asks = [ask(p, by=by) for p in parts]
    labels = [{"role": p} for p in parts]
    other = [dict(a, units=["172409"]) if a["units"] == ["236372"] else a for a in asks]
    expected = [through_ibis(reader, a, labels) for a in (asks, other)]
    with monkeypatch.context() as patch:  # read from the cache, not through Ibis ...
        patch.setattr(reader, "measures", _not_through_ibis)
        found = [reader.measures_frame(a, labels) for a in (asks, other)]
    # ... the second for other units, with the statement compiled for the first
    for frame, wanted in zip(found, expected, strict=True):
        pd.testing.assert_frame_equal(frame, wanted, check_exact=True)
        assert frame.to_csv() == wanted.to_csv()


def _not_through_ibis(*args, **kwargs):
    raise AssertionError("a stored union was asked through Ibis")


def test_without_labels_one_slice_is_the_engine_answer(reader) -> None:
    found = reader.measures_frame([ask("both")])
    pd.testing.assert_frame_equal(found, reader.measures(**ask("both")).to_pandas(),
                                  check_exact=True)


def test_a_question_the_cache_lacks_is_asked_through_ibis(reader) -> None:
    # another period was never stored: that slice is computed by the engine (a miss), the
    # stored one read through Ibis beside it, and the frame is still Ibis' union
    asks = [ask("unit"), ask("nation", periods=["2024Q3"])]
    labels = [{"role": "unit"}, {"role": "nation"}]
    misses = reader.result_cache.misses
    found = reader.measures_frame(asks, labels)
    assert reader.result_cache.misses == misses + 1
    pd.testing.assert_frame_equal(found, through_ibis(reader, asks, labels), check_exact=True)
    assert set(found["period"]) == {*PERIODS, "2024Q3"}


def test_two_equal_parts_are_left_to_ibis(reader) -> None:
    asks, labels = [ask("unit"), ask("unit")], [{"role": "x"}, {"role": "x"}]
    hits = reader.result_cache.hits
    found = reader.measures_frame(asks, labels)
    pd.testing.assert_frame_equal(found, through_ibis(reader, asks, labels), check_exact=True)
    assert reader.result_cache.hits == hits + 4  # looked up by Ibis, twice each time


def test_labels_must_match_the_asks(reader) -> None:
    with pytest.raises(ValueError, match="one mapping of labels per ask"):
        reader.measures_frame([ask("unit")], [{"role": "a"}, {"role": "b"}])
