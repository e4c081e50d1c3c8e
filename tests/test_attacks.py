"""Attacks on a running ``workbench serve``: what a viewer could try, and that it fails.

Two servers on a generated municipality with several clusters (Odense: 4 clusters, 67
practices): one under the ``public`` profile, one under ``practice`` for one practice. Each is
attacked the way a viewer can reach it — plain HTTP requests, the kernel websocket a page opens,
and a real browser — and what comes back is read by :mod:`workbench.publish.scan`:

* an ``execute_request`` sent over the kernel websocket runs nothing (the code would write a file:
  the same code run by Python does, through the websocket it does not);
* a practice page, and a practice id smuggled through the query string or a widget value, are
  refused under ``public``; outside its cluster under ``practice``;
* the Jupyter contents, kernels-listing, sessions and terminals endpoints are not reachable;
* every page view and refusal is audited, without a person key.
"""

from __future__ import annotations

import asyncio
import html
import http.client
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from page_checks import leave

from workbench import audit
from workbench.glossary import glossary
from workbench.profiles import Profile
from workbench.publish.scan import register_practices, scan

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 420_000  # a page builds in seconds; a loaded shared machine takes minutes
KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``workbench serve`` for one profile, as a child process."""

    def __init__(self, dataset, folder: Path, profile: str, practice: str = "",
                 extra: tuple[str, ...] = ()) -> None:
        self.port = _free_port()
        self.audit = folder / "audit.log"
        self.log = folder / "serve.log"
        cmd = [sys.executable, "-m", "workbench.publish.cli", "serve", "--port", str(self.port),
               "--data", str(dataset.root), "--profile", profile, "--audit-log", str(self.audit),
               "--site", str(folder / "no-site")]
        if practice:
            cmd += ["--practice", practice]
        cmd += list(extra)
        with self.log.open("w") as out:
            self.child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/", timeout=5).read()
                return
            except OSError:
                if self.child.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"workbench serve did not start: {self.log.read_text()[-3000:]}")
                time.sleep(1)

    def get(self, path: str, method: str = "GET") -> tuple[int, str]:
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         data=b"{}" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def stop(self) -> None:
        self.child.terminate()
        try:
            self.child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.kill()


@pytest.fixture(scope="module")
def practices(clusters_dataset):
    return register_practices(clusters_dataset.database)


@pytest.fixture(scope="module")
def public(clusters_dataset, tmp_path_factory):
    server = Server(clusters_dataset, tmp_path_factory.mktemp("public"), "public")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own(practices) -> tuple[str, str]:
    """A practice and its cluster (the practice profile's viewer), not the register's first."""
    practice = sorted(practices)[len(practices) // 2]
    return practice, practices[practice].cluster


@pytest.fixture(scope="module")
def practice_server(clusters_dataset, tmp_path_factory, own):
    server = Server(clusters_dataset, tmp_path_factory.mktemp("practice"), "practice", own[0])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def _open(browser, url: str, ready: str = ".wb-head"):
    page = browser.new_page(viewport={"width": 1280, "height": 3000})
    page.goto(url, timeout=TIMEOUT_MS)
    page.wait_for_selector(ready, timeout=TIMEOUT_MS)
    return page


def _scan_text(tmp_path: Path, text: str, profile: Profile, practices) -> list:
    folder = tmp_path / f"shown-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "page.html").write_text(text, encoding="utf-8")
    return scan(folder, profile, practices).findings


def _blocks(page) -> str:
    """The HTML of the page's blocks (header, key figures, sections) as the kernel drew them."""
    return "".join(page.locator(".wb-page").evaluate_all("els => els.map(e => e.outerHTML)"))


# --- the kernel websocket ----------------------------------------------------------------------


def _message(msg_type: str, content: dict, channel: str = "shell") -> str:
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "viewer", "session": uuid.uuid4().hex,
                   "msg_type": msg_type, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
    })


async def _talk(url: str, messages: list[str], seconds: float) -> list[dict]:
    """Send ``messages`` over a kernel websocket and collect what comes back for a while."""
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(url)
    for message in messages:
        await connection.write_message(message)
    received = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            reply = await asyncio.wait_for(connection.read_message(), timeout=0.5)
        except TimeoutError:
            continue
        if reply is None:
            break
        if isinstance(reply, str):
            received.append(json.loads(reply))
    connection.close()
    return received


def talk(url: str, messages: list[str], seconds: float) -> list[dict]:
    """:func:`_talk` from synchronous code, on a thread of its own (the browser's Playwright
    keeps an event loop running in this one)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _talk(url, messages, seconds)).result()


def _kernel_of(server: Server, path: str) -> str:
    status, body = server.get(path)
    assert status == 200, body[:500]
    match = KERNEL_ID.search(body)
    assert match, "no kernel id in the page"
    return match.group(1)


def test_execute_request_over_the_kernel_websocket_runs_nothing(public, tmp_path) -> None:
    marker = tmp_path / "executed.txt"
    code = f"open({str(marker)!r}, 'w').write('the viewer ran code')"
    subprocess.run([sys.executable, "-c", code], check=True)  # the code does write the file
    assert marker.read_text() == "the viewer ran code"
    marker.unlink()
    kernel = _kernel_of(public, "/voila/render/overview.ipynb?topic=analgesics")
    url = f"ws://127.0.0.1:{public.port}/api/kernels/{kernel}/channels"
    replies = talk(url, [
        _message("execute_request", {"code": code, "silent": False, "store_history": False,
                                     "user_expressions": {}, "allow_stdin": False}),
        _message("kernel_info_request", {}),  # allowed: proves the socket reaches the kernel
    ], seconds=8)
    kinds = {r["header"]["msg_type"] for r in replies}
    assert "kernel_info_reply" in kinds
    assert not kinds & {"execute_reply", "execute_input", "execute_result", "error"}
    time.sleep(2)
    assert not marker.exists()


def test_a_malformed_comm_message_gets_a_generic_line_not_a_traceback(public) -> None:
    """A comm_open the kernel can't handle made it send its traceback (with the server's paths)
    to the viewer; now every error and stderr line reaches the viewer as one generic line."""
    kernel = _kernel_of(public, "/voila/render/overview.ipynb?topic=psychotropics")
    url = f"ws://127.0.0.1:{public.port}/api/kernels/{kernel}/channels"
    replies = talk(url, [
        _message("comm_open", {"comm_id": "a", "target_name": "jupyter.widget",
                               "data": {"state": {"_model_name": "Nope"}}}),
        _message("comm_open", {"comm_id": "b", "target_name": "no such target", "data": {}}),
        _message("comm_msg", {"comm_id": "c", "data": {"method": "update"}}),
        _message("kernel_info_request", {}),
    ], seconds=8)
    kinds = {r["header"]["msg_type"] for r in replies}
    assert "kernel_info_reply" in kinds  # the socket did reach the kernel
    streams = [r["content"]["text"] for r in replies if r["header"]["msg_type"] == "stream"]
    assert streams, "the kernel reported nothing: the attack did not reach it"
    generic = glossary().label("ui", "kernel_error", "da") + "\n"
    assert set(streams) == {generic}
    text = json.dumps(replies)
    assert "Traceback" not in text and 'File \\"' not in text and "site-packages" not in text
    assert "error" not in kinds


# --- capacity ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crowded(clusters_dataset, tmp_path_factory):
    """A public server admitting at most 3 views at once, 2 per client."""
    server = Server(clusters_dataset, tmp_path_factory.mktemp("crowded"), "public",
                    extra=("--max-kernels", "3", "--max-kernels-per-client", "2"))
    yield server
    server.stop()


def _request(server: Server, path: str, client: str, method: str = "GET",
             headers: dict | None = None) -> http.client.HTTPResponse:
    """A request from the loopback address ``client`` (127.0.0.x: a client of its own)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300,
                                            source_address=(client, 0))
    connection.request(method, path, body=b"" if method == "POST" else None,
                       headers=headers or {})
    response = connection.getresponse()
    response.body = response.read().decode("utf-8", "replace")  # type: ignore[attr-defined]
    connection.close()
    return response


def test_views_past_the_kernel_limits_get_a_polite_busy_page(crowded) -> None:
    page = "/voila/render/overview.ipynb?topic=analgesics"
    deadline = time.monotonic() + 300  # the pool of each page is filled when the server starts
    while "Kernel pool of overview.ipynb is filled" not in crowded.log.read_text():
        assert time.monotonic() < deadline, crowded.log.read_text()[-2000:]
        time.sleep(1)
    # a theme or template in the address no longer skips the preheated kernel for a cold start
    first = _request(crowded, page + "&theme=dark&template=classic", "127.0.0.1")
    assert first.status == 200
    kernel = KERNEL_ID.search(first.body).group(1)
    assert f"Using pre-heated kernel: {kernel}" in crowded.log.read_text()
    assert _request(crowded, page, "127.0.0.1").status == 200
    busy = _request(crowded, page, "127.0.0.1")  # a third view of the same client
    assert busy.status == 503
    assert glossary().label("ui", "busy_page", "da") in html.unescape(busy.body)
    assert busy.getheader("Retry-After") and busy.getheader("X-Content-Type-Options") == "nosniff"
    assert _request(crowded, page, "127.0.0.2").status == 200  # another client: the third view
    assert _request(crowded, page, "127.0.0.3").status == 503  # a fourth view: over the total
    refused = [line for line in audit.read(crowded.audit) if line["event"] == "refused"]
    assert len(refused) == 2 and all(line["reason"] == "server busy" for line in refused)
    # the viewer leaves (Voilà's unload beacon): its kernel ends and a view is admitted again
    token = re.search(r"_xsrf=([^;]+)", first.getheader("Set-Cookie")).group(1)
    left = _request(crowded, f"/voila/api/shutdown/{kernel}", "127.0.0.1", "POST",
                    {"Cookie": f"_xsrf={token}", "X-XSRFToken": token})
    assert left.status == 204
    assert _request(crowded, page, "127.0.0.3").status == 200


# --- HTTP endpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/contents", "/api/contents/overview.ipynb", "/api/kernels", "/api/sessions",
    "/api/terminals", "/terminals/1", "/api/kernelspecs", "/voila/api/contents",
    "/voila/api/contents/overview.ipynb", "/voila/tree", "/tree", "/lab", "/notebooks/",
    "/voila/files/overview.ipynb", "/files/overview.ipynb", "/voila/render/explore.ipynb",
])
def test_jupyter_apis_are_not_reachable(public, path) -> None:
    status, body = public.get(path)
    assert status in (403, 404, 405), f"{path} answered {status}: {body[:300]}"
    assert '"cells"' not in body and '"content"' not in body


def test_no_kernel_can_be_started_or_listed_by_post(public) -> None:
    for path in ("/api/kernels", "/api/sessions", "/api/terminals"):
        status, _ = public.get(path, method="POST")
        assert status in (403, 404, 405)


def test_practice_pages_are_refused_under_public(public, practices) -> None:
    practice = sorted(practices)[0]
    for kind in ("practice_insight", "practice_intervention"):
        status, body = public.get(f"/voila/render/{kind}.ipynb?topic=analgesics&unit={practice}")
        assert status == 403
        assert practice not in body and practices[practice].name not in body
        assert "kernelId" not in body  # no kernel was started for it
    refused = [line for line in audit.read(public.audit) if line["event"] == "refused"]
    assert {line["page"] for line in refused} >= {"practice_insight", "practice_intervention"}
    assert all(line["profile"] == "public" for line in refused)


def test_our_answers_carry_security_headers_and_logout_is_gone(public, practices) -> None:
    practice = sorted(practices)[0]
    for path in ("/", f"/voila/render/practice_insight.ipynb?unit={practice}"):
        request = urllib.request.Request(f"{public.base}{path}")
        try:
            headers = urllib.request.urlopen(request, timeout=60).headers
        except urllib.error.HTTPError as exc:
            headers = exc.headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
    status, body = public.get("/logout")
    assert status == 404, body[:300]


def test_the_index_offers_only_overviews(public) -> None:
    status, body = public.get("/")
    assert status == 200 and "overview.ipynb" in body and "practice" not in body


# --- in the browser ------------------------------------------------------------------------------


def test_a_practice_id_smuggled_through_the_url_is_refused(public, browser, practices,
                                                          tmp_path) -> None:
    practice = sorted(practices)[0]
    cluster = practices[practice].cluster
    for path in (f"cluster_insight.ipynb?topic=analgesics&unit={practice}",
                 f"overview.ipynb?topic=analgesics&unit={practice}",
                 f"cluster_intervention.ipynb?topic=analgesics&unit={cluster}&group={practice}",
                 f"cluster_insight.ipynb?unit={cluster}&theme=x{practice}"):  # an old link
        page = _open(browser, f"{public.base}/voila/render/{path}")
        try:
            page.wait_for_selector(".wb-kf", timeout=TIMEOUT_MS)
            assert page.locator(".wb-error-choice").count() == 1, path
            assert _scan_text(tmp_path, page.content(), Profile("public"), practices) == []
        finally:
            leave(page)


def test_public_cluster_pages_name_no_practice(public, browser, practices, tmp_path) -> None:
    cluster = practices[sorted(practices)[-1]].cluster
    for kind in ("cluster_insight", "cluster_intervention"):
        page = _open(browser, f"{public.base}/voila/render/{kind}.ipynb?topic=analgesics"
                              f"&unit={cluster}", ".wb-figure img")
        try:
            page.wait_for_selector(".wb-kf", timeout=TIMEOUT_MS)
            assert page.locator(".wb-error-choice").count() == 0
            assert page.locator(".wb-figure").count() >= 1
            assert "practice_insight" not in page.content()
            assert _scan_text(tmp_path, page.content(), Profile("public"), practices) == []
        finally:
            leave(page)


def test_a_forged_widget_value_changes_nothing(public, browser, practices, tmp_path) -> None:
    """The page's kernel is sent widget updates over a second websocket: a valid one (the period
    dropdown's index) changes the page in the browser, so the channel works; forged ones (an
    index out of range, options holding a practice id, a value no dropdown syncs) are rejected
    by the kernel. (A widget's own label can be set this way, but only on the forger's own
    page, and it is not data: each page view has its own kernel.)"""
    cluster = practices[sorted(practices)[-1]].cluster
    url = f"{public.base}/voila/render/cluster_intervention.ipynb?topic=analgesics&unit={cluster}"
    page = _open(browser, url, ".wb-figure img")
    try:
        kernel = KERNEL_ID.search(page.content()).group(1)
        socket_url = f"ws://127.0.0.1:{public.port}/api/kernels/{kernel}/channels"
        replies = talk(socket_url, [_message("comm_info_request", {})], seconds=3)
        comms = next(r for r in replies if r["header"]["msg_type"] == "comm_info_reply")
        states = talk(socket_url, [
            _message("comm_msg", {"comm_id": cid, "data": {"method": "request_state"}})
            for cid in comms["content"]["comms"]], seconds=5)
        dropdowns = {r["content"]["comm_id"]: r["content"]["data"]["state"] for r in states
                     if r["header"]["msg_type"] == "comm_msg" and r["content"]["data"].get(
                         "state", {}).get("_model_name") == "DropdownModel"}
        assert len(dropdowns) >= 3  # period, group, measure (and drug, breakdown)
        ids = sorted(dropdowns)
        # the control first: a valid update through this channel moves the period
        period_id = next(cid for cid, state in dropdowns.items()
                         if "wb-filter-period" in state.get("_dom_classes", []))
        period = page.locator(".wb-filter-period select option").all_inner_texts()[1]
        talk(socket_url, [
            _message("comm_msg", {"comm_id": period_id, "data": {
                "method": "update", "state": {"index": 1}, "buffer_paths": []}})], seconds=3)
        page.wait_for_function(
            "p => document.querySelector('[data-kind]').innerText.includes(p)",
            arg=period, timeout=TIMEOUT_MS)
        practice = sorted(practices)[0]
        forged = [{"index": 10_000}, {"_options_labels": [practice]}, {"value": practice}]
        before = page.inner_text("[data-kind]")
        talk(socket_url, [
            _message("comm_msg", {"comm_id": cid, "data": {"method": "update", "state": state,
                                                           "buffer_paths": []}})
            for cid in ids for state in forged], seconds=5)
        page.wait_for_timeout(5000)
        assert page.inner_text("[data-kind]") == before
        # (a forged label is echoed into the forger's own dropdown: their text, not data; the
        # page's blocks, which the kernel draws, hold no practice)
        assert _scan_text(tmp_path, _blocks(page), Profile("public"), practices) == []
    finally:
        leave(page)


# --- the practice profile ------------------------------------------------------------------------


def test_practice_profile_sees_its_own_pages_and_cluster_only(practice_server, browser, own,
                                                             practices, tmp_path) -> None:
    practice, cluster = own
    viewer = Profile("practice", practice)
    page = _open(browser, f"{practice_server.base}/voila/render/practice_insight.ipynb"
                          f"?topic=analgesics&unit={practice}", ".wb-figure img")
    try:
        assert page.locator(".wb-error-choice").count() == 0
        assert practice in page.inner_text("[data-kind]")
        assert _scan_text(tmp_path, page.content(), viewer, practices) == []
    finally:
        leave(page)
    page = _open(browser, f"{practice_server.base}/voila/render/cluster_insight.ipynb"
                          f"?topic=analgesics&unit={cluster}", ".wb-figure img")
    try:
        assert page.locator(".wb-error-choice").count() == 0
        assert _scan_text(tmp_path, page.content(), viewer, practices) == []
    finally:
        leave(page)
    other_practice = next(p for p, v in practices.items() if v.cluster != cluster)
    other_cluster = practices[other_practice].cluster
    for path in (f"practice_insight.ipynb?topic=analgesics&unit={other_practice}",
                 f"cluster_insight.ipynb?topic=analgesics&unit={other_cluster}",
                 f"practice_intervention.ipynb?topic=analgesics&unit={other_practice}"):
        page = _open(browser, f"{practice_server.base}/voila/render/{path}", ".wb-refused")
        try:
            assert page.locator(".wb-kf").count() == 0 and page.locator(".wb-figure").count() == 0
            assert _scan_text(tmp_path, page.content(), viewer, practices) == []
        finally:
            leave(page)
    lines = audit.read(practice_server.audit)
    assert any(line["event"] == "view" and line["unit"] == practice for line in lines)
    assert any(line["event"] == "refused" and line["unit"] == other_practice for line in lines)
    assert all(line["profile"] == f"practice:{practice}" for line in lines)


def test_page_views_are_audited_without_person_keys(public) -> None:
    lines = audit.read(public.audit)
    assert any(line["event"] == "view" for line in lines)
    for line in lines:
        assert {"time", "event", "profile", "page", "unit", "parameters"} <= set(line)
    text = public.audit.read_text()
    assert not re.search(r"P\d{9}|\d{6}-\d{4}", text)


def test_the_report_site_server_serves_only_what_a_site_publishes(tmp_path) -> None:
    """Beside the dashboards, ``workbench serve`` serves the rendered site: its pages, tables,
    notebooks and manifest, never the batch's result cache or any other file, nor a listing."""
    from workbench.publish.serve import serve_site

    site = tmp_path / "site"
    files = {"index.html": "<p>site</p>", "a/K1/page.html": "<p>page</p>",
             "a/K1/table.csv": "unit_id,patients\nK1,10\n", "manifest.json": "{}",
             ".cache/results.duckdb": "unsuppressed", "a/K1/page.ipynb.tmp-1": "partial",
             "a/K1/data.duckdb": "anything"}
    for name, body in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(body)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "register.csv").write_text("person_id\nP123456789\n")
    (site / "a" / "linked").symlink_to(outside)
    (site / "a" / "K1" / "link.csv").symlink_to(outside / "register.csv")
    port = _free_port()
    server = serve_site(site, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the site server did not start"
                time.sleep(0.3)

        def status(path: str) -> int:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).status
            except urllib.error.HTTPError as exc:
                return exc.code

        for path in ("/", "/a/K1/page.html", "/a/K1/table.csv", "/manifest.json"):
            assert status(path) == 200, path
        for path in ("/.cache/results.duckdb", "/%2ecache/results.duckdb", "/a/K1/data.duckdb",
                     "/a/K1/page.ipynb.tmp-1", "/a/", "/a/K1/../../.cache/results.duckdb",
                     "/a/linked/register.csv", "/a/K1/link.csv", "/a/linked/"):
            assert status(path) == 404, path
        for path in ("/a/K1/page.html", "/a/linked/register.csv"):
            try:
                headers = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                                 timeout=10).headers
            except urllib.error.HTTPError as exc:
                headers = exc.headers
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
    finally:
        server.terminate()
        server.wait(timeout=10)
