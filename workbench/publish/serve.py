"""``workbench serve``: the read-only dashboards, standalone Voilà on the page notebooks.

Standalone ``voila`` (never the Jupyter-server extension, through which an authenticated client
could execute code) runs as a child process with the committed configuration in
``workbench/publish/voila/voila.json``: sources stripped, no tracebacks for viewers, a clean
``lab`` template, one preheated kernel per page (a page opens in milliseconds instead of the
seconds a kernel needs to start and import the stack), idle kernels culled (a page load that
never opens its websocket would otherwise leak a kernel), and cell timeouts. Kernels inherit
``WORKBENCH_DATA`` (the dataset) and ``WORKBENCH_PUBLISHING=1``, so every figure they show is
suppressed and analyst mode is refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from workbench.disclosure import PUBLISHING_ENV
from workbench.paths import NOTEBOOKS_DIR, Dataset

CONFIG_DIR = Path(__file__).with_name("voila")
DEFAULT_PORT = 8866


class ServeError(RuntimeError):
    """The dashboards can't be served (no dataset, no voila); the message says what to do."""


def voila_command(port: int, notebooks: Path = NOTEBOOKS_DIR) -> list[str]:
    """The command line of the Voilà child process."""
    return [
        sys.executable, "-m", "voila", str(notebooks),
        f"--port={port}",
        "--no-browser",
        f"--Voila.config_file_paths={CONFIG_DIR}",
    ]


def child_environment(dataset: Dataset) -> dict[str, str]:
    """The child's environment: the dataset and publishing mode, inherited by every kernel."""
    env = dict(os.environ)
    env["WORKBENCH_DATA"] = str(dataset.root)
    env[PUBLISHING_ENV] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


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


def page_notebooks(target: Path) -> Path:
    """Copy the five page notebooks (and nothing else: ``explore.ipynb`` is an analyst's
    notebook, not a page) into ``target``, the only folder Voilà may render from."""
    from workbench.pages.choices import PAGE_KINDS

    target.mkdir(parents=True, exist_ok=True)
    for kind in PAGE_KINDS:
        shutil.copy2(NOTEBOOKS_DIR / f"{kind}.ipynb", target / f"{kind}.ipynb")
    return target


def start(dataset: Dataset, port: int = DEFAULT_PORT, *, quiet: bool = False) -> subprocess.Popen:
    """Start Voilà as a child process and return it (the caller waits on it or stops it)."""
    output = subprocess.DEVNULL if quiet else None
    served = page_notebooks(Path(tempfile.mkdtemp(prefix="workbench-pages-")))
    return subprocess.Popen(voila_command(port, served), env=child_environment(dataset),
                            stdout=output, stderr=output, cwd=served)


def urls(port: int, host: str = "127.0.0.1") -> list[str]:
    """Where to open the dashboards: the overview of each theme."""
    base = f"http://{host}:{port}/voila/render/overview.ipynb"
    return [f"{base}?theme=psychotropics", f"{base}?theme=analgesics"]


def run(dataset: Dataset, port: int = DEFAULT_PORT) -> int:
    """Serve until Ctrl-C or SIGTERM; both stop Voilà, which shuts its kernels down."""
    child = start(dataset, port)

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
