"""Dashboards in a real browser on national data, beside an empty notebook on the same Voilà.

``make bench`` starts Voilà the way ``workbench serve --profile analyst`` does (same launcher
and configuration, same kernel environment, preheated kernels) on a folder holding the five
page notebooks and one *empty* notebook (a dropdown that echoes its value: no data, no engine),
opens every page in headless Chromium and measures, per page:

* **render**: from the navigation until the page is fully drawn: key figures shown and every
  section holding its figure, its table (a section of risks is a table) or its note;
* **filter change**: from choosing another period in the page's dropdown until every key figure
  and every figure of the page has been replaced.

The empty notebook measures the same two things (page shown; dropdown echoed), so the difference
is what the pages themselves cost: the engine's queries, disclosure control and drawing.

As ``workbench serve`` does, the dashboards' shared questions are answered first into serve's
result cache (its background process, run to the end here and timed, with its peak memory),
and the kernels read it: pages open with the default choices from the cache, the filter change
to another period computes as without it. ``precompute=False`` measures the kernels alone.

National data needs the engine's marts (without them a page computes from 52 M raw rows for
minutes). They are never built into the national register itself: the benchmark uses
``.tmp/nation-marts/`` (a copy of the register with marts, shared with the engine's own work),
and makes that copy once when it is missing (~5 min). On a shared machine run it under
``flock /tmp/national.lock``.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import psutil

from workbench.engine import connect
from workbench.pages import SECTIONS, Catalog
from workbench.paths import PROJECT_ROOT, Dataset
from workbench.profiles import Profile
from workbench.publish.serve import (
    CACHE_READY,
    cache_build_command,
    child_environment,
    page_notebooks,
    voila_command,
)

MARTS_COPY = PROJECT_ROOT / ".tmp" / "nation-marts"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REPEATS = 3
TIMEOUT_MS = 600_000
EMPTY = "empty"
THEMES = ("psychotropics", "analgesics")
GIB = 2**30
ANALYST = Profile("analyst")  # every page, as the analyst's server shows them
MIN_FREE = 2 * GIB  # the benchmark stops Voilà rather than let the machine run out of memory

# The empty notebook: a dropdown and the value it echoes, marked up like a page's filter and key
# figure so the browser waits on it the same way.
EMPTY_CELL = '''\
import ipywidgets as w
from IPython.display import display

choice = w.Dropdown(options=["a", "b", "c"], value="a")
choice.add_class("wb-filter-period")
echo = w.HTML('<div class="wb-kf"><div class="v">a</div></div>')
choice.observe(lambda change: setattr(
    echo, "value", f'<div class="wb-kf"><div class="v">{change["new"]}</div></div>'),
    names="value")
display(choice, echo)
'''

PAGE_READY = """n => {
  const sections = Array.from(document.querySelectorAll('[data-section]'));
  return sections.length === n && document.querySelectorAll('.wb-kf .v').length > 0
    && sections.every(s => s.querySelector('.wb-figure img, .wb-note, .wb-table'));
}"""
EMPTY_READY = "() => document.querySelector('.wb-kf .v') !== null"
STATE = """() => [Array.from(document.querySelectorAll('.wb-kf .v')).map(e => e.innerText),
                Array.from(document.querySelectorAll('.wb-figure img')).map(e => e.src)]"""
CHANGED = """before => {
  const values = Array.from(document.querySelectorAll('.wb-kf .v')).map(e => e.innerText);
  const images = Array.from(document.querySelectorAll('.wb-figure img')).map(e => e.src);
  return values.join('|') !== before[0].join('|') && images.length === before[1].length
    && images.every((src, i) => src !== before[1][i]);
}"""


def marts_dataset(data: Path) -> tuple[Dataset, dict[str, Any]]:
    """The national register with current marts, and how it was obtained.

    ``data`` itself when its marts are current (never built there); else the copy in
    :data:`MARTS_COPY`, made from ``data`` when missing and (re)built in place when stale.
    """
    source = Dataset.at(data)
    if not source.exists():
        raise FileNotFoundError(f"{source.database}: generate the national register first")
    probe = connect(source.database)
    current = probe.marts is not None and probe.marts.cube is not None
    probe.con.disconnect()
    if current:
        return source, {"database": str(source.database), "marts_build_seconds": None}
    copy = Dataset.at(MARTS_COPY)
    info: dict[str, Any] = {"database": str(copy.database), "copied_from": str(source.database)}
    if not copy.exists():
        copy.root.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.database, copy.database)
    probe = connect(copy.database)
    current = probe.marts is not None and probe.marts.cube is not None
    probe.con.disconnect()
    info["marts_build_seconds"] = None
    if not current:
        started = time.perf_counter()
        connect(copy.database, read_only=False).con.disconnect()
        info["marts_build_seconds"] = round(time.perf_counter() - started, 1)
    return copy, info


class Server:
    """Voilà as ``workbench serve`` runs it, on the page notebooks and the empty notebook, with
    the resident memory of its process tree (Voilà and every kernel) sampled."""

    def __init__(self, dataset: Dataset, result_cache: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="workbench-bench-"))
        page_notebooks(self.folder, ANALYST)
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(EMPTY_CELL)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        nbformat.write(notebook, self.folder / f"{EMPTY}.ipynb")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = (self.folder / "voila.log").open("w")
        env = child_environment(dataset, ANALYST, self.folder / "audit.log", result_cache)
        self.child = subprocess.Popen(voila_command(self.port, self.folder), env=env,
                                      cwd=self.folder, stdout=self.log,
                                      stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}/voila/render"
        self.peak = 0
        self.kernels = 0
        self.starved = False
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self._wait_until_up()

    def _sample(self) -> None:
        parent = psutil.Process(self.child.pid)
        while not self._stop.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
                self.kernels = max(self.kernels, len(tree) - 1)
            except psutil.Error:
                pass
            if psutil.virtual_memory().available < MIN_FREE:  # a shared machine: stop first
                self.starved = True
                self.child.send_signal(signal.SIGTERM)
            self._stop.wait(0.25)

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5)
                return
            except OSError:
                if self.child.poll() is not None or time.monotonic() > deadline:
                    self.log.flush()
                    tail = (self.folder / "voila.log").read_text()[-3000:]
                    self.stop()
                    raise RuntimeError(f"voila did not start:\n{tail}") from None
                time.sleep(1)

    def log_tail(self, size: int = 4000) -> str:
        self.log.flush()
        return (self.folder / "voila.log").read_text(errors="replace")[-size:]

    def stop(self) -> None:
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # Voilà shuts its kernels down
            try:
                self.child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.child.kill()
        self._stop.set()
        self._sampler.join()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def visit(browser: Any, url: str, ready: str, arg: object, changes: list[str]) -> dict:
    """Open ``url``, time it until ``ready``; then choose each of ``changes`` in the period
    dropdown and time it until the key figures and every figure are replaced."""
    page = browser.new_page(viewport={"width": 1280, "height": 2400})
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_function(ready, arg=arg, timeout=TIMEOUT_MS, polling=50)
        sample = {"url": url, "render_s": round(time.perf_counter() - started, 3), "change_s": []}
        errors = page.locator(".wb-error-choice, .jp-OutputArea-output[data-mime-type*='stderr']")
        sample["errors"] = errors.count()
        for label in changes:
            before = page.evaluate(STATE)
            started = time.perf_counter()
            page.select_option(".wb-filter-period select", label=label)
            page.wait_for_function(CHANGED, arg=before, timeout=TIMEOUT_MS, polling=50)
            sample["change_s"].append(round(time.perf_counter() - started, 3))
        return sample
    finally:
        page.goto("about:blank")  # leaving runs Voilà's unload handler: the kernel is shut down
        page.close()


def build_serve_cache(dataset: Dataset) -> dict[str, Any]:
    """Serve's result cache, built (or found current) by serve's own background process;
    its seconds, peak resident memory and the line it prints."""
    started = time.perf_counter()
    builder = subprocess.Popen(cache_build_command(dataset, ANALYST),
                               env=child_environment(dataset, ANALYST), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peak = 0
    process = psutil.Process(builder.pid)
    while builder.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, process.memory_info().rss)
        time.sleep(0.25)
    output = (builder.stdout.read() if builder.stdout else "").strip()
    if builder.returncode != 0 or CACHE_READY not in output:
        raise RuntimeError(f"serve's result cache was not built:\n{output[-3000:]}")
    line = next(t for t in output.splitlines() if t.startswith(CACHE_READY))
    print(f"  {line}  (peak memory {peak / GIB:.2f} GiB)", flush=True)
    return {"result_cache": str(dataset.serve_cache), "cache_line": line,
            "cache_build_seconds": round(time.perf_counter() - started, 1),
            "cache_build_peak_rss_bytes": peak}


def bench_dashboards(data: Path, precompute: bool = True) -> dict:
    """Render and filter-change times of the five pages vs the empty notebook, national data."""
    from playwright.sync_api import sync_playwright

    dataset, origin = marts_dataset(data)
    session = connect(dataset.database)
    catalog = Catalog(session)
    periods = catalog.periods
    clusters, practices = list(catalog.clusters), list(catalog.practices)
    session.con.disconnect()
    rng = random.Random(2026)
    cache = build_serve_cache(dataset) if precompute else {"result_cache": None}
    server = Server(dataset, dataset.serve_cache if precompute else None)
    samples: list[dict] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for rep in range(REPEATS):
                theme = THEMES[rep % 2]
                units = {"cluster": rng.choice(clusters), "practice": rng.choice(practices)}
                sample = visit(browser, f"{server.base}/{EMPTY}.ipynb", EMPTY_READY, None,
                               ["b", "c"])
                samples.append({"page": EMPTY, "theme": "", "repeat": rep, **sample})
                for kind, sections in SECTIONS.items():
                    level = kind.split("_")[0]
                    query = f"topic={theme}&period={periods[0]}"
                    if level in units:
                        query += f"&unit={units[level]}"
                    try:
                        sample = visit(browser, f"{server.base}/{kind}.ipynb?{query}",
                                       PAGE_READY, len(sections), [periods[1], periods[0]])
                    except Exception as exc:  # say why: memory, or what Voilà logged
                        why = ("less than 2 GiB of memory left: Voilà was stopped"
                               if server.starved else server.log_tail())
                        raise RuntimeError(f"{kind} ({query}): {exc}\n{why}") from None
                    samples.append({"page": kind, "theme": theme, "repeat": rep, **sample})
                    print(f"  {kind:22s} {theme:14s} render {sample['render_s']:6.1f} s  "
                          f"filter {', '.join(f'{s:.1f}' for s in sample['change_s'])} s",
                          flush=True)
            browser.close()
    finally:
        server.stop()
    if server.starved:
        raise RuntimeError("stopped: less than 2 GiB of memory left on the machine")
    rows = []
    for page in (EMPTY, *SECTIONS):
        mine = [s for s in samples if s["page"] == page]
        renders = [s["render_s"] for s in mine]
        changes = [c for s in mine for c in s["change_s"]]
        rows.append({"page": page, "render_p50_s": statistics.median(renders),
                     "render_max_s": max(renders), "change_p50_s": statistics.median(changes),
                     "change_max_s": max(changes), "samples": len(renders),
                     "errors": sum(s["errors"] for s in mine)})
    result = {
        "benchmark": "dashboards",
        **origin,
        **cache,
        "practices": len(practices),
        "clusters": len(clusters),
        "repeats": REPEATS,
        "peak_rss_bytes": server.peak,
        "max_kernels": server.kernels,
        "table": rows,
        "samples": samples,
    }
    print(f"\n== dashboards in Chromium, national data ({len(practices)} practices), "
          f"{REPEATS} visits a page ==")
    print(f"{'page':24s} {'render p50':>11s} {'max':>7s} {'filter p50':>11s} {'max':>7s}")
    for row in rows:
        print(f"{row['page']:24s} {row['render_p50_s']:9.1f} s {row['render_max_s']:5.1f} s "
              f"{row['change_p50_s']:9.1f} s {row['change_max_s']:5.1f} s"
              + (f"  ({row['errors']} errors)" if row["errors"] else ""))
    print(f"peak memory of Voilà and its kernels: {server.peak / GIB:.2f} GiB "
          f"(at most {server.kernels} kernels at once)")
    return result
