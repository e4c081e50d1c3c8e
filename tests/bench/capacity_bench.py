"""Bursts of viewers against ``workbench serve``: memory and polite refusals (issue 18).

``workbench serve --profile public`` with its default kernel limits runs on the dataset; each
burst opens many page views at once, each from a loopback address of its own
(127.0.0.x: a client of its own to the server), some clients opening several. Every view that is
admitted holds a kernel until its viewer leaves, so after each burst the bench leaves every
admitted page the way a browser does (Voilà's unload beacon) before the next. Printed per burst:
views admitted, refused with 503 ("busy, try again"), other answers, seconds until the last
answer, the peak resident memory of Voilà and all its kernels, and the kernels at that peak —
against the ceiling the limits imply: Voilà + (limit + preheated pool) × the largest kernel seen.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from dashboard_bench import Sampled

from workbench.profiles import Profile
from workbench.publish.voila import DEFAULT_PER_CLIENT, DEFAULT_TOTAL

GIB = 2**30
PAGE = "/voila/render/overview.ipynb?topic={theme}"
THEMES = ("psychotropics", "analgesics")
BURSTS = [(8, 8), (24, 24), (48, 8), (64, 64)]  # (views, clients): all at once
POOL = len(Profile("public").pages)  # one preheated kernel per page the profile serves
KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
XSRF = re.compile(r"_xsrf=([^;]+)")


class Served(Sampled):
    """``workbench serve --profile public`` as a child, its process tree's memory sampled."""

    def __init__(self, data: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="workbench-capacity-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = (self.folder / "serve.log").open("w")
        self.child = subprocess.Popen(
            [sys.executable, "-m", "workbench.publish.cli", "serve", "--port", str(self.port),
             "--data", str(data), "--profile", "public", "--site", str(self.folder / "none"),
             "--audit-log", str(self.folder / "audit.log")],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.peak = self.kernels_at_peak = self.largest_kernel = 0
        self.voila = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        deadline = time.monotonic() + 3600  # serve builds the answer store first if it must
        while "Kernel pool of overview.ipynb is filled" not in self.text():
            if self.child.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"serve did not start:\n{self.text()[-3000:]}")
            time.sleep(1)

    def text(self) -> str:
        self.log.flush()
        return (self.folder / "serve.log").read_text(errors="replace")

    def _sample(self) -> None:
        parent = psutil.Process(self.child.pid)
        while not self._stop.is_set():
            try:
                tree = [parent, *parent.children(recursive=True)]
                sizes = {p.pid: p.memory_info().rss for p in tree}
                kernels = [p for p in tree if "ipykernel" in " ".join(p.cmdline())]
                voila = [p for p in tree if "workbench.publish.voila.server" in " ".join(
                    p.cmdline())]
                total = sum(sizes.values())
                if total > self.peak:
                    self.peak, self.kernels_at_peak = total, len(kernels)
                self.largest_kernel = max([self.largest_kernel,
                                           *(sizes[p.pid] for p in kernels)])
                self.voila = max([self.voila, *(sizes[p.pid] for p in voila)])
            except psutil.Error:
                pass
            self._stop.wait(0.2)

    def reset_peak(self) -> None:
        self.peak = self.kernels_at_peak = 0

    def request(self, path: str, client: str, method: str = "GET",
                headers: dict | None = None) -> tuple[int, str, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900,
                                                source_address=(client, 0))
        try:
            connection.request(method, path, body=b"" if method == "POST" else None,
                               headers=headers or {})
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
            return response.status, body, response.getheader("Set-Cookie") or ""
        finally:
            connection.close()



def burst(server: Served, views: int, clients: int) -> dict:
    """``views`` page views at once from ``clients`` addresses; then every admitted one left."""
    server.reset_peak()
    started = time.perf_counter()

    def view(i: int) -> tuple[int, str, str, str]:
        client = f"127.0.0.{2 + i % clients}"
        status, body, cookie = server.request(PAGE.format(theme=THEMES[i % 2]), client)
        return status, body, cookie, client

    with ThreadPoolExecutor(views) as pool:
        answers = list(pool.map(view, range(views)))
    seconds = time.perf_counter() - started
    peak, kernels = server.peak, server.kernels_at_peak
    for status, body, cookie, client in answers:  # the viewers leave
        kernel, token = KERNEL_ID.search(body), XSRF.search(cookie)
        if status == 200 and kernel and token:
            server.request(f"/voila/api/shutdown/{kernel.group(1)}", client, "POST",
                           {"Cookie": f"_xsrf={token.group(1)}", "X-XSRFToken": token.group(1)})
    statuses = [a[0] for a in answers]
    return {"views": views, "clients": clients, "admitted": statuses.count(200),
            "refused": statuses.count(503),
            "other": sorted({s for s in statuses if s not in (200, 503)}),
            "seconds": round(seconds, 1), "peak_rss_bytes": peak, "kernels_at_peak": kernels}


def bench_capacity(data: Path) -> dict:
    print(f"\n== capacity: bursts of viewers on `workbench serve --profile public` ({data}) ==")
    print(f"limits: {DEFAULT_TOTAL} kernels serving viewers, {DEFAULT_PER_CLIENT} per client; "
          f"{POOL} preheated")
    server = Served(data)
    try:
        bursts = [burst(server, views, clients) for views, clients in BURSTS]
        largest, voila = server.largest_kernel, server.voila
    finally:
        server.stop()
    # every admitted view's kernel, the preheated pool and the pool's refills as they start
    ceiling = voila + (DEFAULT_TOTAL + 2 * POOL) * largest
    print(f"{'views':>6s} {'clients':>8s} {'admitted':>9s} {'refused':>8s} {'other':>6s} "
          f"{'seconds':>8s} {'peak RSS':>9s} {'kernels':>8s}")
    for b in bursts:
        print(f"{b['views']:6d} {b['clients']:8d} {b['admitted']:9d} {b['refused']:8d} "
              f"{len(b['other']):6d} {b['seconds']:8.1f} {b['peak_rss_bytes'] / GIB:8.2f}G "
              f"{b['kernels_at_peak']:8d}")
    worst = max(b["peak_rss_bytes"] for b in bursts)
    print(f"largest kernel {largest / GIB:.2f} GiB, Voilà {voila / GIB:.2f} GiB; stated ceiling "
          f"Voilà + ({DEFAULT_TOTAL} + 2 × {POOL}) kernels = {ceiling / GIB:.2f} GiB; "
          f"worst burst {worst / GIB:.2f} GiB ({'under' if worst <= ceiling else 'OVER'})")
    return {"benchmark": "capacity", "dataset": data.name, "limits": {
        "total": DEFAULT_TOTAL, "per_client": DEFAULT_PER_CLIENT, "preheated": POOL},
        "bursts": bursts, "largest_kernel_bytes": largest, "voila_bytes": voila,
        "ceiling_bytes": ceiling, "under_ceiling": worst <= ceiling}
