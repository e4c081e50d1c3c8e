"""The dashboards in a real browser: `workbench serve` (standalone Voilà) on generated data,
every page of both themes opened in headless Chromium, a filter changed, a drill-down followed.

Chromium is Debian's (`apt-get install chromium`; `.ci/run` installs it), driven by Playwright
with ``executable_path`` (no `playwright install`: no downloads at test time). Screenshots go to
``tests/_artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from page_checks import leave

import workbench.pages as pages
from workbench.engine import connect
from workbench.glossary import glossary
from workbench.pages.choices import MEASURE_CHOICES

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).parent / "_artifacts" / "screenshots"
THEMES = ("psychotropics", "analgesics")
PAGE_TIMEOUT_MS = 180_000

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(pages_dataset):
    """`workbench serve` as a child process; stopped (with its kernels) after the module."""
    port = _free_port()
    log = SCREENSHOTS.parent / "voila.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "workbench.publish.cli", "serve", "--port", str(port),
             "--data", str(pages_dataset.root), "--profile", "analyst",
             "--audit-log", str(log.parent / "audit.log"), "--site", str(log.parent / "none")],
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/", timeout=5).read()
            break
        except OSError:
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                pytest.fail(f"workbench serve did not start: {log.read_text()[-2000:]}")
            time.sleep(1)
    yield base
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def catalog(pages_dataset):
    return pages.Catalog(connect(pages_dataset.database))


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 3600})  # the whole page
    started = time.perf_counter()
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(".wb-kf", timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(".wb-figure img", timeout=PAGE_TIMEOUT_MS)
    return page, time.perf_counter() - started


def _assert_clean(page) -> None:
    errors = page.locator(".jp-OutputArea-output[data-mime-type*='stderr'], "
                          ".jp-RenderedText[data-mime-type*='error']")
    assert errors.count() == 0, errors.first.inner_text()
    body = page.inner_text("body")
    assert "Traceback" not in body and "kan ikke vises" not in body


def _key_values(page) -> list[str]:
    return page.locator(".wb-kf .v").all_inner_texts()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
def test_every_page_opens_in_chromium(server, browser, kind, theme) -> None:
    page, seconds = _open(browser, f"{server}/voila/render/{kind}.ipynb?topic={theme}")
    try:
        _assert_clean(page)
        figures = page.locator(".wb-figure").count()
        assert 1 <= figures <= pages.MAX_GRAPHS
        expected = 2 if kind.endswith("intervention") else 5
        assert page.locator(".wb-kf").count() == expected
        assert all(v.strip() for v in _key_values(page))
        assert page.locator(f"[data-kind='{kind}']").count() == 1
        # the analyst profile says on every page where it may be used
        assert "sikre miljø" in page.inner_text(".wb-profile")
        assert page.locator(".wb-filter-period select").count() == 1
        # sources are stripped: no code reaches the viewer
        assert "open_page(" not in page.content()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{kind}_{theme}.png"), full_page=True)
        print(f"{kind} {theme}: {seconds:.1f} s to key figures and graphs")
    finally:
        leave(page)


@pytest.mark.parametrize("theme", THEMES)
def test_a_filter_updates_the_figures_in_place(server, browser, catalog, theme) -> None:
    page, _ = _open(browser, f"{server}/voila/render/cluster_intervention.ipynb?topic={theme}")
    try:
        before = _key_values(page)
        image = page.locator(".wb-figure img").first.get_attribute("src")
        started = time.perf_counter()
        page.select_option(".wb-filter-period select", label=catalog.periods[1])
        page.wait_for_function(
            "before => Array.from(document.querySelectorAll('.wb-kf .v'))"
            ".map(e => e.innerText).join('|') !== before",
            arg="|".join(before), timeout=PAGE_TIMEOUT_MS,
        )
        page.wait_for_function(  # the sections follow the key figures, one by one
            "before => document.querySelector('.wb-figure img').src !== before",
            arg=image, timeout=PAGE_TIMEOUT_MS,
        )
        seconds = time.perf_counter() - started
        assert _key_values(page) != before
        assert catalog.periods[1] in page.inner_text("[data-kind]")
        _assert_clean(page)
        page.select_option(".wb-filter-breakdown select", label="Køn")
        page.wait_for_function(
            "() => document.querySelector(\"[data-section='breakdown'] h3\")"
            ".innerText.includes('Køn')", timeout=PAGE_TIMEOUT_MS,
        )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"filter_changed_{theme}.png"), full_page=True)
        print(f"filter change ({theme}): {seconds:.1f} s")
    finally:
        leave(page)


def _fields(address: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(address).query)


def test_the_address_bar_follows_the_filters(server, browser, catalog) -> None:
    """After a filter change the address is the share link's view: reloading it (or opening it
    in another tab, through Voilà's preheated kernel) shows the same choices."""
    start = f"{server}/voila/render/cluster_intervention.ipynb?topic=analgesics"
    page, _ = _open(browser, start)
    try:
        assert page.url == start  # the first address stays the viewer's own
        period = catalog.periods[1]
        page.select_option(".wb-filter-period select", label=period)
        page.wait_for_function("p => new URLSearchParams(location.search).get('period') === p",
                               arg=period, timeout=PAGE_TIMEOUT_MS)
        measure = MEASURE_CHOICES[1]
        label = glossary().label("measures", measure, "da")
        page.select_option(".wb-filter-measure select", label=label)
        page.wait_for_function("m => new URLSearchParams(location.search).get('measure') === m",
                               arg=measure, timeout=PAGE_TIMEOUT_MS)
        address = page.url
        fields = _fields(address)
        assert urlsplit(address).path == urlsplit(start).path
        assert fields["topic"] == ["analgesics"] and "theme" not in fields  # Voilà's own field
        assert fields["period"] == [period] and fields["measure"] == [measure]
        assert fields["unit"] == [next(iter(catalog.clusters))]
        share = page.locator(".wb-share a").get_attribute("href")
        assert urlsplit(share).query == urlsplit(address).query  # the same view as the link
        _assert_clean(page)
    finally:
        leave(page)
    again, _ = _open(browser, address)
    try:
        assert again.url == address
        def chosen(name: str) -> str:  # the widget writes a label's spaces as no-break spaces
            text = again.locator(f".wb-filter-{name} select option:checked").inner_text()
            return text.replace("\xa0", " ")

        assert chosen("period") == period and chosen("measure") == label
        assert period in again.inner_text("[data-kind='cluster_intervention']")
        _assert_clean(again)
    finally:
        leave(again)


# Installed before a filter changes: what the page showed (a figure, the key figures, the
# label) when every block had been marked as updating, and whether the filters were disabled.
WATCH_UPDATING = """() => {
  window.wbUpdating = null;
  window.wbDisabled = false;
  new MutationObserver(() => {
    if (document.querySelector('[class*=wb-filter-] select:disabled')) window.wbDisabled = true;
    const blocks = [...document.querySelectorAll('.widget-html')]
      .filter(e => e.querySelector('.wb-page'));
    const dimmed = blocks.filter(e => e.classList.contains('wb-updating'));
    if (window.wbUpdating || !blocks.length || dimmed.length < blocks.length) return;
    window.wbUpdating = {
      blocks: blocks.length,
      figure: document.querySelector('.wb-figure img').src,
      keys: [...document.querySelectorAll('.wb-kf .v')].map(e => e.innerText).join('|'),
      label: getComputedStyle(dimmed[0], '::after').content,
      clicks: getComputedStyle(dimmed[0].querySelector('.widget-html-content')).pointerEvents,
    };
  }).observe(document.body, {attributes: true, subtree: true,
                              attributeFilter: ['class', 'disabled']});
}"""


def test_the_page_shows_it_is_updating_while_it_rebuilds(server, browser, catalog) -> None:
    page, _ = _open(browser, f"{server}/voila/render/cluster_intervention.ipynb?topic=analgesics")
    try:
        assert page.locator(".wb-updating").count() == 0
        figure = page.locator(".wb-figure img").first.get_attribute("src")
        keys = "|".join(_key_values(page))
        page.evaluate(WATCH_UPDATING)
        page.select_option(".wb-filter-period select", label=catalog.periods[1])
        page.wait_for_function("() => window.wbUpdating !== null", timeout=PAGE_TIMEOUT_MS)
        seen = page.evaluate("window.wbUpdating")
        # every block dimmed, while it still showed the old figures
        assert seen["blocks"] == 6  # header, key figures, four sections
        assert seen["figure"] == figure and seen["keys"] == keys
        assert "Opdaterer" in seen["label"] and seen["clicks"] == "none"
        page.wait_for_function(
            "before => document.querySelector('.wb-figure img').src !== before",
            arg=figure, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function("() => !document.querySelector('.wb-updating')",
                               timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(  # the filters were disabled meanwhile, and are enabled again
            "() => [...document.querySelectorAll('[class*=wb-filter-] select')]"
            ".every(s => !s.disabled)", timeout=PAGE_TIMEOUT_MS)
        assert page.evaluate("window.wbDisabled")
        assert "|".join(_key_values(page)) != keys
        assert catalog.periods[1] in page.inner_text("[data-kind]")
        _assert_clean(page)
    finally:
        leave(page)


def test_drill_down_from_overview_to_cluster_to_practice(server, browser, catalog) -> None:
    page, _ = _open(browser, f"{server}/voila/render/overview.ipynb?topic=analgesics")
    try:
        section = page.locator("[data-section='clusters']")
        section.locator("summary").click()
        section.locator("a").first.click()
        page.wait_for_url("**/cluster_insight.ipynb?*", timeout=PAGE_TIMEOUT_MS)
        assert "topic=analgesics" in page.url and "unit=" in page.url
        page.wait_for_selector(".wb-kf", timeout=PAGE_TIMEOUT_MS)
        cluster = next(iter(catalog.clusters.values()))
        assert cluster.name in page.inner_text("[data-kind='cluster_insight']")
        _assert_clean(page)
        section = page.locator("[data-section='practices']")
        section.locator("summary").click()
        section.locator("a").first.click()
        page.wait_for_url("**/practice_insight.ipynb?*", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(".wb-kf", timeout=PAGE_TIMEOUT_MS)
        assert page.locator("[data-kind='practice_insight']").count() == 1
        _assert_clean(page)
        page.screenshot(path=str(SCREENSHOTS / "drill_down_practice.png"), full_page=True)
    finally:
        leave(page)


def test_only_the_page_notebooks_are_served(server) -> None:
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{server}/voila/render/explore.ipynb", timeout=30)


def test_a_forged_url_is_refused_not_executed(server, browser) -> None:
    page, _ = _open(browser, f"{server}/voila/render/practice_insight.ipynb"
                             "?topic=analgesics&unit=%3Cscript%3Ealert(1)%3C/script%3E")
    try:
        assert page.locator(".wb-error-choice").count() == 1
        assert page.locator("script:has-text('alert(1)')").count() == 0
    finally:
        leave(page)


def test_a_preheated_kernel_waits_for_its_viewer_however_long() -> None:
    """A preheated kernel runs the page's first cell up to ``get_query_string()`` and waits there
    for a viewer. Voilà counts that wait against the executor's cell timeout: with the 180 s we
    had, every page whose first viewer came more than 3 minutes after the server started (or
    after the previous viewer) never rendered (reproduced on Samsø: a page requested 200 s after
    start hung; without the timeout it rendered in 11 s). So no cell timeout while preheating;
    a page's kernel still ends when its viewer leaves (Voilà's unload) or idles (culling)."""
    from workbench.publish.serve import CONFIG_DIR

    config = json.loads((CONFIG_DIR / "voila.json").read_text())
    assert config["VoilaConfiguration"]["preheat_kernel"] is True
    assert config["VoilaExecutor"].get("timeout") is None
    assert config["MappingKernelManager"]["cull_idle_timeout"] > 0
