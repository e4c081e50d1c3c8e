"""``make bench``: the speed and memory figures the issues set targets for.

Benchmarks are measured, printed and saved — never asserted in timed tests, which would be flaky
on a shared 2-core machine. Each benchmark runs the real command in a child process and samples
the resident memory of the whole process tree, so the figure is what an operator would see.

Usage: ``python tests/bench/run.py [NAME ...] [--data DIR]``; results go to
``tests/bench/results/<name>.json`` and a combined ``latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from analysis_bench import bench_analysis_standardised
from batch_bench import bench_batch
from capacity_bench import bench_capacity
from dashboard_bench import bench_dashboards
from engine_bench import bench_dashboard_latency, bench_engine_full_table
from refresh_bench import bench_store_refresh
from scan_bench import bench_output_scan
from store_bench import bench_store_build

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = HERE / "results"
WORKBENCH = str(Path(sys.executable).parent / "workbench")


@dataclass
class Sample:
    """Wall time and peak resident memory of a child process tree."""

    seconds: float
    peak_rss_bytes: int
    returncode: int
    stdout: str = ""
    stderr: str = ""
    timeline: list[tuple[float, int]] = field(default_factory=list)


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> Sample:
    """Run ``cmd`` and sample the tree's RSS every 0.1 s (children included)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    peak = 0
    timeline: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs)
            except psutil.Error:
                rss = 0
            peak = max(peak, rss)
            timeline.append((time.time(), rss))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    return Sample(time.perf_counter() - start, peak, proc.returncode, out, err, timeline)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def bench_generate_nation(data: Path) -> dict:
    """Issue 2: the national register 2020-2025, generated and loaded (≤ 10 min, ≤ 8 GiB)."""
    cmd = [
        WORKBENCH,
        "data",
        "generate",
        "--area",
        "nation",
        "--years",
        "2020:2025",
        "--seed",
        "2026",
        "--data",
        str(data),
        "--no-progress",
    ]
    sample = run_measured(cmd)
    if sample.returncode != 0:
        raise RuntimeError(f"generate failed:\n{sample.stderr[-3000:]}")
    report = json.loads((data / "reports" / "generation.json").read_text())

    def peak_in(window: list[float] | None) -> int | None:
        if not window:
            return None
        inside = [rss for t, rss in sample.timeline if window[0] <= t <= window[1]]
        return max(inside) if inside else None

    gen = report["phases"]["generate"]
    total_rows = sum(t["rows"] for t in report["tables"].values())
    tables = [
        {
            "table": "(generate: all tables)",
            "rows": total_rows,
            "seconds": round(gen["seconds"], 1),
            "rows_per_second": round(total_rows / gen["seconds"]),
            "peak_rss_bytes": peak_in(gen["window"]),
        }
    ]
    for table, info in report["tables"].items():
        seconds = info["seconds"]
        tables.append(
            {
                "table": f"load {table}",
                "rows": info["rows"],
                "seconds": seconds,
                "rows_per_second": round(info["rows"] / seconds) if seconds else None,
                "peak_rss_bytes": peak_in(info["window"]),
            }
        )
    phases = report["phases"]
    result = {
        "benchmark": "generate_nation",
        "command": " ".join(cmd[1:]),
        "wall_seconds": round(sample.seconds, 1),
        "peak_rss_bytes": sample.peak_rss_bytes,
        "targets": {"wall_seconds": 600, "peak_rss_bytes": 8 * 2**30},
        "tables": tables,
        "phases": phases,
    }
    print("\n== generate --area nation --years 2020:2025 ==")
    print(
        f"wall {sample.seconds:7.1f} s (target ≤ 600 s)   peak memory {gib(sample.peak_rss_bytes)}"
        " (target ≤ 8 GiB)"
    )
    print(f"{'phase / table':24s} {'rows':>14s} {'seconds':>9s} {'rows/s':>12s} {'peak RSS':>10s}")
    for t in tables:
        rss = gib(t["peak_rss_bytes"]) if t["peak_rss_bytes"] else "-"
        rps = f"{t['rows_per_second']:,}" if t["rows_per_second"] else "-"
        print(f"{t['table']:24s} {t['rows']:14,d} {t['seconds']:9.1f} {rps:>12s} {rss:>10s}")
    return result


BENCHMARKS: dict[str, Callable[[Path], dict]] = {
    "generate_nation": bench_generate_nation,
    "store_build": bench_store_build,
    "store_refresh": bench_store_refresh,
    "engine_full_table": bench_engine_full_table,
    "dashboard_latency": bench_dashboard_latency,
    "dashboards": bench_dashboards,
    "capacity": bench_capacity,
    "analysis_standardised": bench_analysis_standardised,
    "batch": bench_batch,
    "output_scan": bench_output_scan,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], default=[])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / "data" / "bench-nation",
        help="dataset folder for the national register (built if missing)",
    )
    args = parser.parse_args()
    names = args.names or list(BENCHMARKS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    combined = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine}
    for name in names:
        result = BENCHMARKS[name](args.data)
        result["machine"] = machine
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
        combined[name] = result
    (RESULTS / "latest.json").write_text(json.dumps(combined, indent=2))
    print(f"\nresults written to {RESULTS.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
