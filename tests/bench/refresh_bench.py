"""Issue 17: a month appended to the register refreshes the answer store in at most a fifth of a
full build. Like for like: both start from the same register. The dataset's register folder is
split into the register as it stood a month earlier and that last month's delivery (its
redemptions); the earlier register is loaded and its store built whole (timed), then the
delivery is appended as an operator does it, ``workbench data load --append`` (the load and the
store's refresh timed apart, from its output).
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

WORKBENCH = str(Path(sys.executable).parent / "workbench")
TARGET_RATIO = 0.2
DONE = re.compile(r"^answers: (?:built|refreshed from \S+) in (?P<seconds>[\d.]+) s")


def split_register(register: Path, work: Path) -> tuple[Path, Path]:
    """``work/earlier``: the register without its last month's redemptions; ``work/YYYY-MM``
    (named for the month, as deliveries are): those."""
    import duckdb

    redemptions = register / "redemptions"
    source = (f"'{redemptions}/*.parquet'" if redemptions.is_dir()
              else f"'{register}/redemptions.parquet'")
    with duckdb.connect() as con:
        last = con.execute(f"SELECT date_trunc('month', max(dispensed_on))::DATE "
                           f"FROM read_parquet({source})").fetchone()[0]
    base, delivery = work / "earlier", work / last.strftime("%Y-%m")
    base.mkdir(parents=True)
    delivery.mkdir(parents=True)
    for path in register.iterdir():
        if not path.name.startswith("redemptions"):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, base / path.name)
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet({source}) WHERE dispensed_on < ?) "
                    f"TO '{base}/redemptions.parquet'", [last])
        con.execute(f"COPY (SELECT * FROM read_parquet({source}) WHERE dispensed_on >= ?) "
                    f"TO '{delivery}/redemptions.parquet'", [last])
    return base, delivery


def _phases(output: str) -> dict[str, float]:
    from store_bench import PHASE

    return {found["name"]: float(found["seconds"]) for line in output.splitlines()
            if (found := PHASE.match(line))}


def _store_seconds(output: str) -> float:
    for line in output.splitlines():
        found = DONE.match(line)
        if found:
            return float(found["seconds"])
    raise RuntimeError(f"no store report in:\n{output[-3000:]}")


def bench_store_refresh(data: Path) -> dict:
    from run import gib, run_measured

    from workbench.paths import Dataset

    source = Dataset.at(data)
    if not source.register_dir.is_dir():
        raise FileNotFoundError(f"{source.register_dir}: generate the register first")
    with tempfile.TemporaryDirectory(dir=data.parent, prefix=".refresh-bench-") as tmp:
        work = Path(tmp)
        earlier, delivery = split_register(source.register_dir, work)
        month = delivery.name
        target = ["--data", str(work / "data")]
        loaded = run_measured([WORKBENCH, "data", "load", str(earlier), *target,
                               "--no-progress"])
        built = run_measured([WORKBENCH, "data", "build", *target])
        appended = run_measured([WORKBENCH, "data", "load", str(delivery), "--append", *target,
                                 "--no-progress"])
        for step, sample in (("load", loaded), ("build", built), ("append", appended)):
            if sample.returncode != 0:
                raise RuntimeError(f"{step} failed:\n{sample.stderr[-3000:]}"
                                   f"{sample.stdout[-3000:]}")
    full = _store_seconds(built.stdout)
    refresh = _store_seconds(appended.stdout)
    result = {
        "benchmark": "store_refresh", "data": str(data), "month": month,
        "load_seconds": round(loaded.seconds, 1), "build_seconds": full,
        "build_peak_rss_bytes": built.peak_rss_bytes,
        "append_seconds": round(appended.seconds, 1), "refresh_seconds": refresh,
        "append_peak_rss_bytes": appended.peak_rss_bytes,
        "ratio": round(refresh / full, 3), "target_ratio": TARGET_RATIO,
        "build_phases": _phases(built.stdout), "refresh_phases": _phases(appended.stdout),
    }
    print(f"\n== answer store: a month ({month}) appended to {data.name} ==")
    print(f"full build {full:7.1f} s (peak {gib(built.peak_rss_bytes)})   refresh {refresh:7.1f} s"
          f"   ratio {refresh / full:.2f} (target ≤ {TARGET_RATIO})")
    print(f"load of the earlier register {loaded.seconds:7.1f} s; the append's load again of the "
          f"whole register {appended.seconds - refresh:7.1f} s "
          f"(peak {gib(appended.peak_rss_bytes)})")
    print(f"{'phase':36s} {'build s':>9s} {'refresh s':>9s}")
    for name in {**result["build_phases"], **result["refresh_phases"]}:
        print(f"{name:36s} {result['build_phases'].get(name, 0):9.1f} "
              f"{result['refresh_phases'].get(name, 0):9.1f}")
    return result

