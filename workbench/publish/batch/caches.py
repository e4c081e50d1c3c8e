"""The batches' result caches beside a dataset: whose site each serves, and tidying up.

A batch keeps its precomputed answers in ``DATA/batch-cache/<site hash>/`` (:meth:`Dataset.
batch_cache`): unsuppressed, so beside the register and never in the site. The folder is named by
a hash of the site's path, which can't be turned back into the path, so without a note a cache
outlives its site: every region site rendered and deleted leaves megabytes of figures as secret
as the register that nobody will read again. Each cache folder therefore records its site in
``site.json``, and every batch removes the caches whose site is gone before it builds its own.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from workbench.paths import Dataset
from workbench.publish.batch import atomic

SITE_RECORD = "site.json"
# A cache folder written before sites were recorded can't say whose it is. Removed once it has
# been left alone this long (a batch that just made it writes its record at once).
UNRECORDED_GRACE_SECONDS = 3600.0


def record_site(cache: Path, site: Path) -> None:
    """Note beside ``cache`` (a batch's results file) which site it serves."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(cache.parent / SITE_RECORD,
                      json.dumps({"site": str(site.resolve())}, ensure_ascii=False) + "\n")


def recorded_site(folder: Path) -> Path | None:
    """The site a cache folder serves, or ``None`` if it has no readable record."""
    try:
        return Path(json.loads((folder / SITE_RECORD).read_text())["site"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sweep(dataset: Dataset, keep: Path | None = None) -> list[Path]:
    """Remove the cache folders of ``dataset`` whose site no longer exists; returns them.

    A site that exists (even half-rendered, without its manifest yet) keeps its cache: another
    batch may be rendering it right now. ``keep`` (a results file) is never removed."""
    root = dataset.root / "batch-cache"
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if keep is not None and folder == keep.parent:
            continue
        site = recorded_site(folder)
        if site is None:
            stale = now - folder.stat().st_mtime > UNRECORDED_GRACE_SECONDS
        else:
            stale = not site.is_dir()
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
