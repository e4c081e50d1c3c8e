"""Batch rendering: every page for every cluster and practice of a region or the nation.

``workbench render`` (and :func:`run_batch`) does, in order:

1. **plan** (:mod:`.plan`): the pages — the overview once per theme, insight and
   intervention-area pages per cluster and practice of the area, areas from
   ``parameters/interventions/`` or the clusters' top potential areas — every page's
   parameters validated before anything runs;
2. **skip** what is done: a page whose ``page.json`` records the same inputs (notebook,
   parameters, data fingerprint, definitions, disclosure settings) is not rendered again, so a
   killed batch resumes where it stopped;
3. **answers**: the dataset's answer store (:mod:`workbench.answers`), built first if it is
   missing or stale: every answer for every unit, in the dataset folder (unsuppressed, so as
   secret as the register: never inside the site);
4. **render** (:mod:`.executors`): Papermill runs the page notebooks on worker processes (or a
   Dask cluster); their kernels read their units' slices of the store; each page's notebook,
   HTML and CSVs are written atomically (:mod:`.atomic`);
5. **publish** (:mod:`.site`, :mod:`.manifest`): ``index.html`` and ``manifest.json``.

A failing page is recorded with its error and the batch goes on; :attr:`BatchResult.ok` is
false if any page failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from workbench.answers import StoreReport
from workbench.pages.choices import PAGE_KINDS
from workbench.paths import NOTEBOOKS_DIR, Dataset, shown
from workbench.profiles import Profile, ProfileError
from workbench.publish.batch import atomic
from workbench.publish.batch.executors import (
    Interrupted,
    Job,
    environment,
    run_dask,
    run_local,
    start_local,
    terminate_local,
)
from workbench.publish.batch.manifest import (
    MANIFEST,
    inputs_digest,
    now,
    pending_entry,
    provenance,
    regenerate_command,
    sha256_file,
    up_to_date,
    write_manifest,
)
from workbench.publish.batch.plan import (
    INTERVENTIONS_DIR,
    PageTask,
    Plan,
    PlanError,
    load_interventions,
    make_plan,
)
from workbench.publish.batch.site import index_html

MANIFEST_EVERY_SECONDS = 30.0  # and at the end; page.json files are the truth meanwhile


class BatchError(RuntimeError):
    """The batch can't start (no dataset, a bad option); the message says what to do."""


@dataclass
class BatchOptions:
    """What ``workbench render`` was asked (see its ``--help``)."""

    themes: tuple[str, ...]
    area: str
    out: Path
    data: Path | None = None
    period: str = ""
    pages: tuple[str, ...] = PAGE_KINDS
    units: tuple[str, ...] | None = None
    limit: int | None = None
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    executor: str = "local"
    scheduler: str | None = None
    language: str = "da"
    profile: str = "public"  # public, practice:ID or analyst (workbench.profiles)
    notebooks: Path = NOTEBOOKS_DIR
    interventions: Path = INTERVENTIONS_DIR
    fresh_kernels: bool = False
    force: bool = False
    progress: bool = True
    timeout: int | None = 1800


@dataclass
class BatchResult:
    """The outcome: every page's entry, what ran, what was skipped, what failed."""

    plan: Plan
    entries: dict[str, dict]
    rendered: int
    skipped: int
    seconds: float
    prepare_seconds: float
    answers: StoreReport | None
    out: Path

    @property
    def failed(self) -> list[dict]:
        return [e for e in self.entries.values() if e.get("status") == "failed"]

    @property
    def pending(self) -> list[dict]:
        return [e for e in self.entries.values() if e.get("status") == "pending"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending

    def summary(self) -> str:
        lines = [f"render: {len(self.plan.tasks)} page(s) in {self.seconds:.1f} s: "
                 f"{self.rendered - len(self.failed)} rendered, {self.skipped} unchanged "
                 f"(skipped), {len(self.failed)} failed"
                 + (f", {len(self.pending)} not run" if self.pending else "")]
        if self.answers is not None:
            lines.append(f"  {self.answers}")
        lines += [f"  note: {note}" for note in self.plan.notes]
        for entry in self.failed:
            lines.append(f"  FAILED {entry['id']}: {entry.get('error', '?')}")
        lines.append(f"  site: {self.out / 'index.html'}   manifest: {self.out / MANIFEST}")
        return "\n".join(lines)


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` in the main thread, so the batch stops its
    workers and writes what it finished before it exits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_batch(options: BatchOptions) -> BatchResult:
    """Plan, skip what is done, build the answers if needed, render, and write the site and
    the manifest."""
    from workbench.engine import connect
    from workbench.pages.choices import Catalog
    from workbench.publish.serve import ServeError, prepare

    started = time.perf_counter()
    dataset = Dataset.at(options.data)
    if options.executor not in ("local", "dask"):
        raise BatchError(f"unknown executor {options.executor!r}; use local or dask")
    if options.executor == "dask" and not options.scheduler:
        raise BatchError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    notebooks = options.notebooks.resolve()
    missing = [k for k in options.pages if not (notebooks / f"{k}.ipynb").is_file()]
    if missing:
        raise BatchError(f"no notebook for page(s) {missing} in {notebooks}")
    try:
        profile = Profile.parse(options.profile)
    except ProfileError as exc:
        raise BatchError(str(exc)) from None
    try:
        answers = prepare(dataset, progress=options.progress)
    except ServeError as exc:
        raise BatchError(str(exc)) from None
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    atomic.sweep(out)
    # Sites rendered before the answer store held their precomputed results in .cache/.
    shutil.rmtree(out / ".cache", ignore_errors=True)

    with _stop_on_sigterm():
        session = connect(dataset.database, use_marts=False)
        catalog = Catalog(session)
        pool = None
        try:
            plan = make_plan(
                session, catalog=catalog, themes=options.themes, area=options.area,
                data=dataset.root, period=options.period, pages=options.pages,
                units=options.units, limit=options.limit, language=options.language,
                interventions_dir=options.interventions, profile=profile,
            )
            prov = provenance(session, dataset.root, profile)
            shas = {k: sha256_file(notebooks / f"{k}.ipynb") for k in options.pages}
            digests = {t.id: inputs_digest(t, shas[t.kind], prov) for t in plan.tasks}
            entries: dict[str, dict] = {}
            todo: list[PageTask] = []
            for task in plan.tasks:
                done = None if options.force else up_to_date(out, task, digests[task.id])
                if done is not None:
                    entries[task.id] = done
                else:
                    entries[task.id] = pending_entry(task, digests[task.id])
                    todo.append(task)
            env = environment(dataset.root, profile)
            planned = frozenset(t.id for t in plan.tasks)
            if options.executor == "local" and todo:
                pool = start_local(min(options.workers, len(todo)), planned,
                                   None if options.fresh_kernels else (env, str(notebooks)))
        except BaseException:
            if pool is not None:
                terminate_local(pool)
            raise
        finally:
            session.con.disconnect()
        prepare_seconds = time.perf_counter() - started

        jobs = [
            Job(task=t, notebook=str(notebooks / f"{t.kind}.ipynb"), out=str(out), env=env,
                digest=digests[t.id], provenance=prov,
                regenerate=regenerate_command(t, plan, notebooks, options.interventions,
                                              profile),
                language=options.language, fresh_kernel=options.fresh_kernels,
                timeout=options.timeout)
            for t in todo
        ]
        run = {"started_at": now(), "executor": options.executor, "workers": options.workers,
               "fresh_kernels": options.fresh_kernels, "skipped": len(plan.tasks) - len(todo),
               "answers": None if answers is None else {**answers.summary(),
                                                        "path": shown(answers.path)}}
        region_names = _region_names()
        last_write = time.monotonic()

        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan.tasks), initial=len(plan.tasks) - len(todo), unit="page",
                   desc="render", disable=not options.progress, dynamic_ncols=True)

        def finished(job: Job, entry: dict) -> None:
            nonlocal last_write
            entries[job.task.id] = entry
            bar.update(1)
            if entry.get("status") == "failed":
                bar.write(f"FAILED {job.task.id}: {entry.get('error', '')[:300]}")
            if time.monotonic() - last_write >= MANIFEST_EVERY_SECONDS:
                write_manifest(out, plan, entries, prov, run)
                last_write = time.monotonic()

        try:
            if options.executor == "dask":
                run_dask(jobs, planned, options.scheduler or "", finished)
            else:
                run_local(jobs, planned, options.workers, finished, pool)
        finally:
            bar.close()
            run["finished_at"] = now()
            run["seconds"] = round(time.perf_counter() - started, 3)
            write_manifest(out, plan, entries, prov, run)
            atomic.write_text(out / "index.html",
                              index_html(plan, entries, prov, options.language, region_names))
    return BatchResult(plan, entries, rendered=len(todo), skipped=len(plan.tasks) - len(todo),
                       seconds=time.perf_counter() - started, prepare_seconds=prepare_seconds,
                       answers=answers, out=out)


def _region_names() -> dict[str, str]:
    from workbench.data.reference import regions

    table = regions()
    return dict(zip(table["region_code"].astype(str), table["region_name"], strict=True))


__all__ = [
    "BatchError",
    "BatchOptions",
    "BatchResult",
    "Interrupted",
    "PlanError",
    "load_interventions",
    "make_plan",
    "run_batch",
]
