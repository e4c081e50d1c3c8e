"""Dashboards in a real browser on national data, beside an empty notebook on the same Voilà.

``make bench`` starts Voilà the way ``workbench serve --profile analyst`` does (same launcher
and configuration, same kernel environment, preheated kernels) on a folder holding the five
page notebooks and one *empty* notebook (a dropdown that echoes its value: no data, no engine),
with the national register's answer store current (built first when it is not: ``store_build``
times that), and measures in headless Chromium:

* **page**: per page kind, from the navigation until the page is fully drawn (key figures shown,
  every section holding its figure, table or note), against the empty notebook's page;
* **update**: at least 50 random widget changes over the pages — periods of every kind, groups,
  drugs, measures, breakdowns, most of them not the landing choices — each from choosing the
  value until the page has been rebuilt (its address names the new value and no block is
  dimmed any more), against the empty notebook's echo.

Targets (issue 17): a page ≤ 2 × the empty notebook; the updates' 95th percentile ≤ 1 s and
none over 2 s. On a shared machine run it under ``flock /tmp/national.lock``.
"""

from __future__ import annotations

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

from workbench.answers import Progress, build_store
from workbench.engine import connect
from workbench.pages import SECTIONS, Catalog
from workbench.pages.choices import BREAKDOWN_CHOICES, MEASURE_CHOICES, UNIT_LEVEL
from workbench.paths import Dataset
from workbench.profiles import Profile
from workbench.publish.serve import child_environment, page_notebooks, voila_command

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REPEATS = 3
UPDATES = 60  # random widget changes (the issue asks for at least 50)
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
UPDATED = """([field, value]) => {
  const query = new URLSearchParams(window.location.search);
  return query.get(field) === value && document.querySelectorAll('.wb-updating').length === 0
    && document.querySelectorAll('.wb-kf .v').length > 0;
}"""
ECHOED = """value => document.querySelector('.wb-kf .v')?.innerText === value"""


class Sampled:
    """A server child whose memory a thread samples, in a folder of its own."""

    child: subprocess.Popen
    folder: Path
    log: Any
    _stop: threading.Event
    _sampler: threading.Thread

    def stop(self) -> None:
        """SIGTERM (Voilà shuts its kernels down), killed after a minute; then clean up."""
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.child.kill()
        self._stop.set()
        self._sampler.join()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class Server(Sampled):
    """Voilà as ``workbench serve`` runs it, on the page notebooks and the empty notebook, with
    the resident memory of its process tree (Voilà and every kernel) sampled."""

    def __init__(self, dataset: Dataset) -> None:
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
        env = child_environment(dataset, ANALYST, self.folder / "audit.log")
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



def open_page(browser: Any, url: str, ready: str, arg: object) -> tuple[Any, float]:
    """A new browser page on ``url``, with its seconds until ``ready``."""
    page = browser.new_page(viewport={"width": 1280, "height": 2400})
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
    page.wait_for_function(ready, arg=arg, timeout=TIMEOUT_MS, polling=20)
    return page, time.perf_counter() - started


def close(page: Any) -> None:
    page.goto("about:blank")  # leaving runs Voilà's unload handler: the kernel is shut down
    page.close()


def change(page: Any, field: str, value: str, label: str) -> float:
    """Choose the option ``label`` (whose value is ``value``) in the page's ``field``
    dropdown; seconds until the page is rebuilt."""
    started = time.perf_counter()
    page.locator(f".wb-filter-{field} select").select_option(label=label)
    page.wait_for_function(UPDATED, arg=[field, value], timeout=TIMEOUT_MS, polling=20)
    return time.perf_counter() - started


def random_changes(catalog: Catalog, rng: random.Random, count: int) -> list[dict]:
    """``count`` widget changes spread over the page kinds, themes and widgets; each names
    the page it starts from (default choices) and the field and value it changes."""
    from workbench.engine import parse_period

    by_kind: dict[str, list[str]] = {}
    for period in catalog.periods:
        by_kind.setdefault(parse_period(period).kind, []).append(period)
    changes = []
    kinds = list(SECTIONS)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        theme = THEMES[(i // len(kinds)) % 2]
        groups = catalog.definitions.groups_of(theme)
        fields = ["period", "period", "group", "measure"]
        if kind.endswith("intervention"):
            fields += ["breakdown", "drug", "drug"]
        field = rng.choice(fields)
        if field == "period":
            kind_of_period = rng.choice(sorted(by_kind))
            value = rng.choice(by_kind[kind_of_period][1:] or by_kind[kind_of_period])
        elif field == "group":
            value = rng.choice(groups[1:])
        elif field == "measure":
            value = rng.choice(MEASURE_CHOICES[1:])
        elif field == "breakdown":
            value = rng.choice(BREAKDOWN_CHOICES[1:])
        else:
            value = rng.choice(list(catalog.drugs_of(groups[0])))
        changes.append({"kind": kind, "theme": theme, "field": field, "value": value,
                        "label": _label(catalog, field, value)})
    return changes


def _label(catalog: Catalog, field: str, value: str) -> str:
    """What a Danish page's dropdown shows for ``value`` (the option a viewer picks)."""
    from workbench.glossary import glossary

    words = glossary()
    if field == "period":
        return value
    if field == "group":
        return words.label("groups", value, "da")
    if field == "measure":
        return words.label("measures", value, "da")
    if field == "breakdown":
        return words.label("breakdowns", value, "da")
    return f"{catalog.drug_name(value, 'da')} ({value})"


def bench_dashboards(data: Path) -> dict:
    """Page and update times of the five pages vs the empty notebook, national data."""
    from playwright.sync_api import sync_playwright

    dataset = Dataset.at(data)
    if not dataset.exists():
        raise FileNotFoundError(f"{dataset.database}: generate the national register first")
    report = build_store(dataset, progress=Progress(say=lambda line: print(f"  {line}")))
    session = connect(dataset.database, use_marts=False)
    catalog = Catalog(session, ANALYST)
    clusters, practices = list(catalog.clusters), list(catalog.practices)
    rng = random.Random(2026)
    changes = random_changes(catalog, rng, UPDATES)
    session.con.disconnect()
    server = Server(dataset)
    pages_s: list[dict] = []
    updates: list[dict] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for rep in range(REPEATS):
                page, seconds = open_page(browser, f"{server.base}/{EMPTY}.ipynb", EMPTY_READY,
                                          None)
                started = time.perf_counter()
                page.locator(".wb-filter-period select").select_option("b")
                page.wait_for_function(ECHOED, arg="b", timeout=TIMEOUT_MS, polling=20)
                updates.append({"page": EMPTY, "field": "period", "value": "b",
                                "seconds": time.perf_counter() - started})
                close(page)
                pages_s.append({"page": EMPTY, "theme": "", "seconds": seconds})
                theme = THEMES[rep % 2]
                for kind, sections in SECTIONS.items():
                    unit = {"cluster": rng.choice(clusters), "practice": rng.choice(practices),
                            "nation": ""}[UNIT_LEVEL[kind]]
                    url = f"{server.base}/{kind}.ipynb?topic={theme}" + (
                        f"&unit={unit}" if unit else "")
                    page, seconds = open_page(browser, url, PAGE_READY, len(sections))
                    close(page)
                    pages_s.append({"page": kind, "theme": theme, "seconds": seconds})
                    print(f"  page {kind:22s} {theme:14s} {seconds:6.2f} s", flush=True)
            for i, step in enumerate(changes):
                kind, theme = step["kind"], step["theme"]
                unit = {"cluster": rng.choice(clusters), "practice": rng.choice(practices),
                        "nation": ""}[UNIT_LEVEL[kind]]
                url = f"{server.base}/{kind}.ipynb?topic={theme}" + (
                    f"&unit={unit}" if unit else "")
                page, _ = open_page(browser, url, PAGE_READY, len(SECTIONS[kind]))
                try:
                    seconds = change(page, step["field"], step["value"], step["label"])
                except Exception as exc:
                    why = ("less than 2 GiB of memory left: Voilà was stopped"
                           if server.starved else server.log_tail())
                    raise RuntimeError(f"{step}: {exc}\n{why}") from None
                close(page)
                updates.append({**step, "seconds": seconds})
                print(f"  update {i + 1:3d} {kind:22s} {step['field']:10s} "
                      f"{step['value']:14s} {seconds:6.2f} s", flush=True)
            browser.close()
    finally:
        server.stop()
    if server.starved:
        raise RuntimeError("stopped: less than 2 GiB of memory left on the machine")
    empty_page = statistics.median(s["seconds"] for s in pages_s if s["page"] == EMPTY)
    empty_update = statistics.median(u["seconds"] for u in updates if u["page"] == EMPTY)
    rows = []
    for kind in SECTIONS:
        mine = [s["seconds"] for s in pages_s if s["page"] == kind]
        rows.append({"page": kind, "page_p50_s": round(statistics.median(mine), 3),
                     "page_max_s": round(max(mine), 3),
                     "vs_empty": round(statistics.median(mine) / empty_page, 2)})
    timed = sorted(u["seconds"] for u in updates if u["page"] != EMPTY)
    p95 = timed[min(len(timed) - 1, int(round(0.95 * (len(timed) - 1))))]
    by_field: dict[str, list[float]] = {}
    for u in updates:
        if u["page"] != EMPTY:
            by_field.setdefault(u["field"], []).append(u["seconds"])
    result = {
        "benchmark": "dashboards", "store": report.summary(),
        "practices": len(practices), "clusters": len(clusters), "repeats": REPEATS,
        "empty_page_s": round(empty_page, 3), "empty_update_s": round(empty_update, 3),
        "pages": rows,
        "updates": {"count": len(timed), "p50_s": round(statistics.median(timed), 3),
                    "p95_s": round(p95, 3), "max_s": round(timed[-1], 3),
                    "over_1_s": sum(t > 1 for t in timed), "over_2_s": sum(t > 2 for t in timed),
                    "by_field": {f: round(statistics.median(v), 3) for f, v in by_field.items()}},
        "targets": {"page_vs_empty": 2.0, "update_p95_s": 1.0, "update_max_s": 2.0},
        "peak_rss_bytes": server.peak, "max_kernels": server.kernels,
        "samples": {"pages": pages_s, "updates": updates},
    }
    print(f"\n== dashboards in Chromium, national data ({len(practices)} practices), "
          f"{REPEATS} visits a page, {len(timed)} widget changes ==")
    print(f"empty notebook: page {empty_page:.2f} s, dropdown echoed {empty_update:.2f} s")
    print(f"{'page':24s} {'page p50':>9s} {'max':>7s} {'× empty':>8s}  (target ≤ 2)")
    for row in rows:
        print(f"{row['page']:24s} {row['page_p50_s']:7.2f} s {row['page_max_s']:5.2f} s "
              f"{row['vs_empty']:8.2f}")
    u = result["updates"]
    print(f"updates: p50 {u['p50_s']:.2f} s, p95 {u['p95_s']:.2f} s (target ≤ 1), max "
          f"{u['max_s']:.2f} s (target ≤ 2); {u['over_1_s']} over 1 s, {u['over_2_s']} over 2 s; "
          "median by widget: " + ", ".join(f"{f} {v:.2f} s" for f, v in u["by_field"].items()))
    print(f"peak memory of Voilà and its kernels: {server.peak / GIB:.2f} GiB "
          f"(at most {server.kernels} kernels at once)")
    return result
