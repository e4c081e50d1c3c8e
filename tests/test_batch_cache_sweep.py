"""The batches' result caches: each records its site, and those of deleted sites are removed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from workbench.paths import Dataset
from workbench.publish.batch.caches import (
    SITE_RECORD,
    UNRECORDED_GRACE_SECONDS,
    record_site,
    recorded_site,
    sweep,
)


def cache_of(dataset: Dataset, site: Path) -> Path:
    path = dataset.batch_cache(site)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"results")
    return path


def test_a_cache_records_its_site(tmp_path: Path) -> None:
    dataset, site = Dataset.at(tmp_path / "data"), tmp_path / "site"
    cache = cache_of(dataset, site)
    record_site(cache, site)
    assert json.loads((cache.parent / SITE_RECORD).read_text()) == {"site": str(site.resolve())}
    assert recorded_site(cache.parent) == site.resolve()


def test_only_the_caches_of_deleted_sites_are_removed(tmp_path: Path) -> None:
    dataset = Dataset.at(tmp_path / "data")
    kept_site, deleted_site, own_site = (tmp_path / n for n in ("kept", "deleted", "own"))
    kept_site.mkdir()  # exists without a manifest: a batch may be rendering it right now
    kept, deleted, own = (cache_of(dataset, s) for s in (kept_site, deleted_site, own_site))
    for cache, site in ((kept, kept_site), (deleted, deleted_site), (own, own_site)):
        record_site(cache, site)
    # Two folders from before sites were recorded: one left alone for over the grace period,
    # one just written (its batch may not have recorded it yet).
    old = dataset.root / "batch-cache" / "0123456789abcdef"
    fresh = dataset.root / "batch-cache" / "fedcba9876543210"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "results.duckdb").write_bytes(b"x")
    long_ago = time.time() - UNRECORDED_GRACE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    # A garbled record counts as none.
    (fresh / SITE_RECORD).write_text("{not json")

    removed = sweep(dataset, keep=own)  # own_site doesn't exist, but it is this batch's

    assert sorted(removed) == sorted([deleted.parent, old])
    assert kept.exists() and own.exists() and fresh.exists()
    assert not deleted.parent.exists() and not old.exists()


def test_a_dataset_without_caches_is_left_alone(tmp_path: Path) -> None:
    assert sweep(Dataset.at(tmp_path)) == []
