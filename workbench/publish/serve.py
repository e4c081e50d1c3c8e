"""``workbench serve``: the read-only dashboards, standalone Voilà on the page notebooks.

Standalone Voilà (never the Jupyter-server extension, through which an authenticated client
could execute code) runs as a child process, through the launcher
:mod:`workbench.publish.voila.server` (Voilà minus its directory tree, contents API and file
server; a 403 for a page the profile does not serve) with the committed configuration in
``workbench/publish/voila/voila.json``: sources stripped, no tracebacks for viewers, a clean
``lab`` template, one preheated kernel per page (a page opens without waiting for a kernel to
start and import the stack; no cell timeout, since Voilà would count the preheated kernel's wait
for its viewer against it), and idle kernels culled after two minutes without a
connected page (a tab closed without its unload beacon, or a page load that never opened its
websocket, would otherwise keep a kernel of hundreds of MiB).

The viewing profile (:mod:`workbench.profiles`) is fixed here, when the server starts: only the
profile's pages are copied into the folder Voilà serves, and every kernel inherits
``WORKBENCH_PROFILE`` with ``WORKBENCH_DATA`` (the dataset), ``WORKBENCH_PUBLISHING=1`` (every
figure suppressed, analyst mode refused) and ``WORKBENCH_AUDIT_LOG`` (one line per page view).
Nothing in a URL or a widget can change them.

The questions the dashboards share are answered once (:func:`build_cache`). On a national
register a cluster or practice insight page standardises every cluster or practice of the
country to place its unit in a funnel, and every page asks the national figures: a kernel that
computes them itself takes minutes. So, beside Voilà, serve builds a result cache as a batch's
precompute does (:mod:`workbench.publish.batch.precompute`): one page of each shape the profile
serves, for each theme, with the choices a viewer lands on (the newest period, the page's
default group, measure and breakdown), on a session whose writable cache stores every question
for *all* units. It runs in a background process (low priority, single-threaded DuckDB with a
memory cap, beside the kernels on a shared machine), so Voilà starts at once; the file is
written under a temporary name and renamed when complete, and a current file (same data,
definitions and engine code, holding those shapes) is reused as it is. Every kernel is started
with ``WORKBENCH_RESULT_CACHE`` naming the final path and watches for it
(:class:`workbench.engine.cache.WatchedCache`): until the file is there, and for any other
choice (another period, group, breakdown), pages compute as usual. A build that fails is
reported and the dashboards go on without it; ``--no-precompute`` turns it off.

Who may see what is unchanged by the cache. It holds the engine's unsuppressed answers, like
the register itself, so it lives in the dataset folder (:attr:`Dataset.serve_cache`), never in
the folder Voilà renders from nor in a site; it only replaces answers the engine would give a
kernel anyway, and every figure a page shows from them still goes through disclosure control
and the profile's checks in the page, as without the cache. A kernel reads its own unit's
slice and shows what its page shows, nothing more.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.audit import AUDIT_ENV
from workbench.disclosure import PUBLISHING_ENV
from workbench.engine.cache import RESULT_CACHE_ENV, RESULT_CACHE_WATCH_ENV
from workbench.paths import NOTEBOOKS_DIR, Dataset
from workbench.profiles import Profile, ProfileError, profile_environment

if TYPE_CHECKING:
    from workbench.pages.choices import Catalog
    from workbench.publish.batch.plan import PageTask

CONFIG_DIR = Path(__file__).with_name("voila")
DEFAULT_PORT = 8866
# The cache build runs beside Voilà's kernels (each capped at 3GB by the engine): a lower cap,
# spilling past it, keeps the machine's memory for the viewers.
CACHE_MEMORY_LIMIT = "2GB"
CACHE_READY = "result cache ready"  # the start of the line serve prints when kernels can use it


class ServeError(RuntimeError):
    """The dashboards can't be served (no dataset, no voila); the message says what to do."""


def parse_profile(name: str, practice: str | None) -> Profile:
    """``--profile`` and ``--practice`` as a :class:`Profile` (a :class:`ServeError` if bad);
    ``--profile practice:ID`` is the form ``workbench render`` takes, and works here too."""
    try:
        if ":" in name and not practice:
            return Profile.parse(name)
        return Profile(name.strip(), (practice or "").strip())
    except ProfileError as exc:
        raise ServeError(str(exc)) from None


def voila_command(port: int, notebooks: Path = NOTEBOOKS_DIR) -> list[str]:
    """The command line of the Voilà child process."""
    return [
        sys.executable, "-m", "workbench.publish.voila.server", str(notebooks),
        f"--port={port}",
        "--no-browser",
        f"--Voila.config_file_paths={CONFIG_DIR}",
    ]


def audit_log(dataset: Dataset) -> Path:
    """Where page views are audited unless ``--audit-log`` says otherwise."""
    return dataset.root / "audit.log"


def child_environment(dataset: Dataset, profile: Profile | None = None,
                      audit: Path | None = None, result_cache: Path | None = None
                      ) -> dict[str, str]:
    """The child's environment, inherited by every kernel: dataset, publishing mode, profile
    (``public`` unless told), audit log and the result cache to watch for (none unless told:
    never one a caller's shell names)."""
    env = dict(os.environ)
    env["WORKBENCH_DATA"] = str(dataset.root)
    env[PUBLISHING_ENV] = "1"
    env.update(profile_environment(profile or Profile("public")))
    env[AUDIT_ENV] = str(audit or audit_log(dataset))
    env.setdefault("MPLBACKEND", "Agg")
    env.pop(RESULT_CACHE_ENV, None)
    env.pop(RESULT_CACHE_WATCH_ENV, None)
    if result_cache is not None:
        env[RESULT_CACHE_ENV] = str(result_cache)
        env[RESULT_CACHE_WATCH_ENV] = "1"
    return env


def check_profile(dataset: Dataset, profile: Profile) -> Profile:
    """A practice profile names a practice of the register (a typo would serve nothing)."""
    if profile.name != "practice":
        return profile
    import duckdb

    with duckdb.connect(str(dataset.database), read_only=True) as con:
        row = con.execute("select cluster_id from practices where practice_id = ?",
                          [profile.practice]).fetchone()
    if row is None:
        raise ServeError(f"practice {profile.practice} is not in {dataset.database}")
    return profile.bind(str(row[0]))


def prepare(dataset: Dataset) -> bool:
    """Make sure the engine's marts are current before kernels open the database read-only
    (a read-only session on stale marts computes from the raw tables: correct but slow).
    Returns whether marts are in use; a locked database is served as it is."""
    from workbench.engine import connect

    if not dataset.exists():
        raise ServeError(
            f"{dataset.database} does not exist: run `workbench data generate` or `make run`"
        )
    try:
        session = connect(dataset.database, read_only=False)
    except Exception:  # locked by another writer: serve read-only, without fresh marts
        return False
    try:
        return session.marts is not None
    finally:
        session.con.disconnect()


def page_notebooks(target: Path, profile: Profile | None = None) -> Path:
    """Copy the page notebooks the profile serves (and nothing else: ``explore.ipynb`` is an
    analyst's notebook, not a page) into ``target``, the only folder Voilà may render from."""
    target.mkdir(parents=True, exist_ok=True)
    for kind in (profile or Profile("public")).pages:
        shutil.copy2(NOTEBOOKS_DIR / f"{kind}.ipynb", target / f"{kind}.ipynb")
    return target


def start(dataset: Dataset, port: int = DEFAULT_PORT, *, profile: Profile | None = None,
          audit: Path | None = None, quiet: bool = False,
          result_cache: Path | None = None) -> subprocess.Popen:
    """Start Voilà as a child process and return it (the caller waits on it or stops it);
    its kernels use ``result_cache`` once it is there."""
    output = subprocess.DEVNULL if quiet else None
    served = page_notebooks(Path(tempfile.mkdtemp(prefix="workbench-pages-")), profile)
    return subprocess.Popen(voila_command(port, served),
                            env=child_environment(dataset, profile, audit, result_cache),
                            stdout=output, stderr=output, cwd=served)


# --- the dashboards' shared questions, answered once ----------------------------------------------


@dataclass
class CacheOutcome:
    """What :func:`build_cache` did: built (or found current) a cache of ``questions``."""

    path: Path
    built: bool
    shapes: int
    questions: int
    seconds: float

    def __str__(self) -> str:
        how = "built" if self.built else "current, reused"
        return (f"{CACHE_READY} ({how}) in {self.seconds:.1f} s: {self.questions} question(s) "
                f"of {self.shapes} page shape(s), {self.path}")


def serve_tasks(catalog: Catalog) -> list[PageTask]:
    """One page of each shape a viewer lands on: every page kind the catalogue's profile
    serves, for each theme, with the page's defaults (the newest period, the theme's first
    group, the first measure and breakdown) for a unit the profile allows (the register's
    first, or a practice profile's own). The unit is any: pages of one shape ask the same
    questions, and the cache stores their answers for every unit."""
    from workbench.publish.batch.plan import PageTask

    tasks = []
    for theme in catalog.definitions.themes:
        for kind in catalog.profile.pages:
            choices = catalog.resolve(kind, theme=theme)
            tasks.append(PageTask(theme, kind, choices.unit, choices.group, choices.as_query()))
    return tasks


def build_cache(dataset: Dataset, profile: Profile, path: Path | None = None, *,
                memory_limit: str = CACHE_MEMORY_LIMIT) -> CacheOutcome:
    """Build (or find current) the result cache of the pages ``profile`` is served.

    One build at a time per file (a lock beside it: two serves of one dataset wait for each
    other, and the second finds the first's work); a current file holding every shape is
    reused at once; otherwise the shapes are built starting from the current file's answers,
    into a temporary file renamed over the old one when complete (a kernel that attached the
    old one keeps reading it: same answers).
    """
    from workbench.engine import connect
    from workbench.engine.cache import cache_key, stored_state
    from workbench.pages.choices import Catalog
    from workbench.publish.batch import atomic
    from workbench.publish.batch.precompute import (
        finish_cache,
        open_cache,
        precompute,
        representatives,
        shape_label,
    )

    started = time.perf_counter()
    path = path or dataset.serve_cache
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        atomic.sweep(path.parent)  # what a killed build left behind
        session = connect(dataset.database, memory_limit=memory_limit)
        try:
            if session.result_cache is not None:
                session.result_cache.close()
            catalog = Catalog(session, profile)
            tasks = representatives(serve_tasks(catalog))
            wanted = {shape_label(task, catalog) for task in tasks}
            key, held, questions = stored_state(path)
            if key == cache_key(session) and wanted <= held:
                return CacheOutcome(path, False, len(tasks), questions,
                                    time.perf_counter() - started)
            cache, temp = open_cache(session, path)
            try:
                report = precompute(session, catalog, cache, tasks, path)
            except BaseException:
                cache.close()
                temp.unlink(missing_ok=True)
                raise
            finish_cache(cache, temp, path)
        finally:
            session.con.disconnect()
    return CacheOutcome(path, True, report.shapes, report.queries,
                        time.perf_counter() - started)


def cache_build_command(dataset: Dataset, profile: Profile, path: Path | None = None
                        ) -> list[str]:
    """The command line of serve's background cache build (``python -m
    workbench.publish.serve``), which prints the line starting :data:`CACHE_READY` when done,
    or why it failed."""
    return [sys.executable, "-m", "workbench.publish.serve", str(dataset.root), profile.spec(),
            str(path or dataset.serve_cache)]


def start_cache_build(dataset: Dataset, profile: Profile, path: Path | None = None, *,
                      quiet: bool = False) -> subprocess.Popen:
    """:func:`build_cache` in a background process (:func:`cache_build_command`), in the
    environment the kernels get (publishing, the profile) without any result cache."""
    output = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(cache_build_command(dataset, profile, path),
                            env=child_environment(dataset, profile), stdout=output,
                            stderr=output)


def _cache_build_main(argv: list[str]) -> int:
    """The background process: low priority (the viewers' kernels come first); a failure is
    one line on stderr and exit status 1 — the dashboards go on computing every page."""
    data, spec, path = argv
    os.nice(10)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        outcome = build_cache(Dataset.at(data), Profile.parse(spec), Path(path))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: serve says it stops
        return 130
    except Exception as exc:  # noqa: BLE001  (reported; serving goes on without the cache)
        print(f"result cache not built ({type(exc).__name__}: {exc}); the dashboards compute "
              "every page themselves", file=sys.stderr, flush=True)
        return 1
    print(outcome, flush=True)
    return 0


def urls(port: int, host: str = "127.0.0.1") -> list[str]:
    """Where to open the dashboards: the overview of each theme."""
    base = f"http://{host}:{port}/voila/render/overview.ipynb"
    return [f"{base}?topic=psychotropics", f"{base}?topic=analgesics"]


def run(dataset: Dataset, port: int = DEFAULT_PORT, *, profile: Profile | None = None,
        audit: Path | None = None, precompute: bool = True) -> int:
    """Serve until Ctrl-C or SIGTERM; both stop Voilà, which shuts its kernels down, and a
    cache build still running. ``precompute``: build the result cache in the background."""
    profile = profile or Profile("public")
    cache = dataset.serve_cache if precompute else None
    child = start(dataset, port, profile=profile, audit=audit, result_cache=cache)
    builder = start_cache_build(dataset, profile, cache) if cache is not None else None

    def stop(signum: int, frame: object) -> None:
        child.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        return child.wait(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if builder is not None and builder.poll() is None:
            builder.terminate()
            try:
                builder.wait(timeout=10)
            except subprocess.TimeoutExpired:  # inside a long query: its temp file is swept
                builder.kill()                 # by the next build


def serve_site(site: Path, port: int) -> subprocess.Popen:
    """The report site ``workbench render`` wrote, beside the dashboards: static files only
    (nothing runs; the pages are already published), on 127.0.0.1, and of those only what a
    site publishes (:mod:`workbench.publish.site_server`: no ``.cache/``, no database, no
    listing). The caller stops it."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("site_server.py")), str(site), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    sys.exit(_cache_build_main(sys.argv[1:]))
