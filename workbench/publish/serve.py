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
websocket, would otherwise keep a kernel of hundreds of MiB), and at most ``Limits`` kernels
serving viewers, overall and per client (past them a polite 503).

The viewing profile (:mod:`workbench.profiles`) is fixed here, when the server starts: only the
profile's pages are copied into the folder Voilà serves, and every kernel inherits
``WORKBENCH_PROFILE`` with ``WORKBENCH_DATA`` (the dataset), ``WORKBENCH_PUBLISHING=1`` (every
figure suppressed, analyst mode refused) and ``WORKBENCH_AUDIT_LOG`` (one line per page view).
Nothing in a URL or a widget can change them.

Every figure a page shows is a slice of the dataset's answer store (:mod:`workbench.answers`):
every answer for every unit and every choice a page offers, computed once. Serve builds it
first when it is missing or stale (:func:`prepare`, with its phases shown), so a viewer's first
page and every filter change after it only read; nothing is computed while Voilà serves. The
store holds the engine's unsuppressed answers, like the register itself, so it lives in the
dataset folder, never in the folder Voilà renders from nor in a site; every figure a page shows
from it still goes through disclosure control and the profile's checks in the page.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from workbench.answers import Progress, StoreError, StoreReport, build_store
from workbench.audit import AUDIT_ENV
from workbench.disclosure import PUBLISHING_ENV
from workbench.paths import NOTEBOOKS_DIR, Dataset
from workbench.profiles import Profile, ProfileError, profile_environment
from workbench.publish.voila import DEFAULT_PER_CLIENT, DEFAULT_TOTAL

CONFIG_DIR = Path(__file__).with_name("voila")
DEFAULT_PORT = 8866
# What an older workbench kept beside a dataset: precomputed answers of a batch or a server,
# unsuppressed. The answer store replaced them; nothing reads them, so they go.
OLD_CACHES = ("batch-cache", "serve-cache")


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


@dataclass(frozen=True)
class Limits:
    """Kernels serving viewers at once: overall and per client (remote address). Past either,
    a view gets a polite 503 (:mod:`workbench.publish.voila.guards`). Each kernel holds a few
    hundred MiB (docs/figures.md), so ``total`` sets the server's memory ceiling."""

    total: int = DEFAULT_TOTAL
    per_client: int = DEFAULT_PER_CLIENT

    def __post_init__(self) -> None:
        if self.total < 1 or self.per_client < 1:
            raise ServeError(f"--max-kernels and --max-kernels-per-client must be at least 1 "
                             f"(got {self.total} and {self.per_client})")


def voila_command(port: int, notebooks: Path = NOTEBOOKS_DIR,
                  limits: Limits | None = None) -> list[str]:
    """The command line of the Voilà child process."""
    limits = limits or Limits()
    return [
        sys.executable, "-m", "workbench.publish.voila.server", str(notebooks),
        f"--port={port}",
        "--no-browser",
        f"--Voila.config_file_paths={CONFIG_DIR}",
        f"--WorkbenchVoila.max_kernels={limits.total}",
        f"--WorkbenchVoila.max_kernels_per_client={limits.per_client}",
    ]


def audit_log(dataset: Dataset) -> Path:
    """Where page views are audited unless ``--audit-log`` says otherwise."""
    return dataset.root / "audit.log"


def child_environment(dataset: Dataset, profile: Profile | None = None,
                      audit: Path | None = None) -> dict[str, str]:
    """The child's environment, inherited by every kernel: dataset, publishing mode, profile
    (``public`` unless told) and audit log."""
    env = dict(os.environ)
    env["WORKBENCH_DATA"] = str(dataset.root)
    env[PUBLISHING_ENV] = "1"
    env.update(profile_environment(profile or Profile("public")))
    env[AUDIT_ENV] = str(audit or audit_log(dataset))
    env.setdefault("MPLBACKEND", "Agg")
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


def prepare(dataset: Dataset, *, progress: bool = True) -> StoreReport:
    """Make sure the dataset's answer store is current before any page opens (built when
    missing or stale, its phases printed unless ``progress`` is off), and remove the caches an
    older workbench kept beside the data."""
    if not dataset.exists():
        raise ServeError(
            f"{dataset.database} does not exist: run `workbench data generate` or `make run`"
        )
    for name in OLD_CACHES:
        shutil.rmtree(dataset.root / name, ignore_errors=True)
    say = (lambda line: print(line, flush=True)) if progress else (lambda _: None)
    try:
        return build_store(dataset, progress=Progress(say=say))
    except StoreError as exc:
        raise ServeError(str(exc)) from None


def page_notebooks(target: Path, profile: Profile | None = None) -> Path:
    """Copy the page notebooks the profile serves (and nothing else: ``explore.ipynb`` is an
    analyst's notebook, not a page) into ``target``, the only folder Voilà may render from."""
    target.mkdir(parents=True, exist_ok=True)
    for kind in (profile or Profile("public")).pages:
        shutil.copy2(NOTEBOOKS_DIR / f"{kind}.ipynb", target / f"{kind}.ipynb")
    return target


def start(dataset: Dataset, port: int = DEFAULT_PORT, *, profile: Profile | None = None,
          audit: Path | None = None, quiet: bool = False,
          limits: Limits | None = None) -> subprocess.Popen:
    """Start Voilà as a child process and return it (the caller waits on it or stops it)."""
    output = subprocess.DEVNULL if quiet else None
    served = page_notebooks(Path(tempfile.mkdtemp(prefix="workbench-pages-")), profile)
    return subprocess.Popen(voila_command(port, served, limits),
                            env=child_environment(dataset, profile, audit),
                            stdout=output, stderr=output, cwd=served)


def urls(port: int, host: str = "127.0.0.1") -> list[str]:
    """Where to open the dashboards: the overview of each theme."""
    base = f"http://{host}:{port}/voila/render/overview.ipynb"
    return [f"{base}?topic=psychotropics", f"{base}?topic=analgesics"]


def run(dataset: Dataset, port: int = DEFAULT_PORT, *, profile: Profile | None = None,
        audit: Path | None = None, limits: Limits | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; both stop Voilà, which shuts its kernels down."""
    profile = profile or Profile("public")
    child = start(dataset, port, profile=profile, audit=audit, limits=limits)

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


def serve_site(site: Path, port: int) -> subprocess.Popen:
    """The report site ``workbench render`` wrote, beside the dashboards: static files only
    (nothing runs; the pages are already published), on 127.0.0.1, and of those only what a
    site publishes (:mod:`workbench.publish.site_server`: no ``.cache/``, no database, no
    listing). The caller stops it."""
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("site_server.py")), str(site), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

