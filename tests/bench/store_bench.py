"""Issue 17: the national answer store's build, every phase timed, in a child process whose
memory is sampled (the whole process tree), against the targets: 15 minutes and 8 GiB on this
2-core machine, generation not counted. Prints the rows of each kind of answer and the size on
disk. The build runs as an operator runs it: ``workbench data build --force``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

WORKBENCH = str(Path(sys.executable).parent / "workbench")
PHASE = re.compile(r"^answers: (?P<name>.+) done in (?P<seconds>[\d.]+) s \((?P<rows>[\d,]+) rows")
TARGETS = {"wall_seconds": 900, "peak_rss_bytes": 8 * 2**30}


def bench_store_build(data: Path) -> dict:
    from run import gib, run_measured

    from workbench.paths import Dataset

    dataset = Dataset.at(data)
    if not dataset.exists():
        raise FileNotFoundError(f"{dataset.database}: generate the national register first")
    cmd = [WORKBENCH, "data", "build", "--force", "--data", str(data)]
    sample = run_measured(cmd)
    if sample.returncode != 0:
        raise RuntimeError(f"store build failed:\n{sample.stderr[-3000:]}{sample.stdout[-3000:]}")
    phases = []
    for line in sample.stdout.splitlines():
        found = PHASE.match(line)
        if found:
            phases.append({"phase": found["name"], "seconds": float(found["seconds"]),
                           "rows": int(found["rows"].replace(",", ""))})
    import duckdb

    with duckdb.connect(str(dataset.answers), read_only=True) as con:
        tables = dict(con.execute(
            "SELECT table_name, estimated_size FROM duckdb_tables() ORDER BY table_name"
        ).fetchall())
    size = dataset.answers.stat().st_size
    result = {
        "benchmark": "store_build", "command": " ".join(cmd[1:]),
        "wall_seconds": round(sample.seconds, 1), "peak_rss_bytes": sample.peak_rss_bytes,
        "targets": TARGETS, "phases": phases, "tables": tables, "bytes": size,
    }
    print("\n== answer store: workbench data build --force (national register) ==")
    print(f"wall {sample.seconds:7.1f} s (target ≤ {TARGETS['wall_seconds']} s)   peak memory "
          f"{gib(sample.peak_rss_bytes)} (target ≤ 8 GiB)   on disk {size / 2**30:.2f} GiB")
    print(f"{'phase':36s} {'seconds':>9s} {'rows':>14s}")
    for phase in phases:
        print(f"{phase['phase']:36s} {phase['seconds']:9.1f} {phase['rows']:14,d}")
    print(f"{'table':36s} {'rows':>14s}")
    for name, rows in tables.items():
        print(f"{name:36s} {rows:14,d}")
    return result
