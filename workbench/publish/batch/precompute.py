"""Compute once, then slice: the set-based build of everything a batch's pages will ask.

Pages of one *shape* (same kind, theme, period, area, measure, breakdown; any unit) ask the
engine the same questions for different units. Before any notebook runs, the batch builds one
page of each shape in this process on a session whose result cache is writable
(:class:`workbench.engine.cache.ResultCache`): every question that page asks is computed for
*all* units at once and stored; the page itself is thrown away. Discovery is the recording:
nothing lists the questions a page asks, so the precompute can't drift from the pages.

The cache file is written under a temporary name and renamed when complete, so a kill leaves
the previous cache (or none); a resumed batch starts from the previous cache and computes only
the questions it lacks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbench.engine import Workbench
from workbench.engine.cache import ResultCache, cache_key, stored_state
from workbench.pages import build_page
from workbench.pages.choices import Catalog
from workbench.publish.batch import atomic
from workbench.publish.batch.plan import PageTask


@dataclass
class PrecomputeReport:
    """What the precompute did: shapes built, questions computed (and reused), time, rows."""

    shapes: int
    queries: int
    computed: int
    rows: int
    seconds: float
    query_seconds: float
    path: str

    def __str__(self) -> str:
        return (f"precompute: {self.shapes} page shape(s), {self.queries} question(s) "
                f"({self.computed} computed for all units, {self.queries - self.computed} "
                f"reused), {self.rows:,} rows, {self.seconds:.1f} s")


def open_cache(session: Workbench, path: Path) -> tuple[ResultCache, Path]:
    """Attach a writable copy of the batch's cache (or a new one, when there is none or it was
    built from other data: nothing in it could be kept) to ``session``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = atomic.temp_path(path)
    if path.is_file() and stored_state(path)[0] == cache_key(session):
        shutil.copy2(path, temp)
    cache = ResultCache.build(session, temp)
    session.result_cache = cache
    return cache, temp


def finish_cache(cache: ResultCache, temp: Path, path: Path) -> None:
    """Detach the built cache and put it in place."""
    cache.close()
    os.replace(temp, path)
    Path(f"{temp}.wal").unlink(missing_ok=True)


def shape_label(task: PageTask, catalog: Catalog) -> str:
    """A page shape as the cache records it: the viewing profile too, which changes what a
    page asks (a public cluster page compares clusters, an analyst's lists practices)."""
    return "/".join((catalog.profile.name, *task.shape))


def representatives(tasks: Iterable[PageTask]) -> list[PageTask]:
    """The first page of each shape, in plan order."""
    seen: dict[tuple[str, ...], PageTask] = {}
    for task in tasks:
        seen.setdefault(task.shape, task)
    return list(seen.values())


def precompute(session: Workbench, catalog: Catalog, cache: ResultCache,
               tasks: list[PageTask], path: Path) -> PrecomputeReport:
    """Build one page of each shape on ``session`` (whose cache is ``cache``, writable)."""
    started = time.perf_counter()
    shapes = representatives(tasks)
    for task in shapes:
        build_page(task.kind, session, catalog, **task.choices())
        cache.record_shape(shape_label(task, catalog))
    return PrecomputeReport(
        shapes=len(shapes), queries=len(cache.tables), computed=len(cache.computed),
        rows=sum(rows for _, rows, _ in cache.computed),
        seconds=time.perf_counter() - started,
        query_seconds=sum(seconds for _, _, seconds in cache.computed), path=str(path),
    )
