"""Issue 6, at full size: the generated region's whole batch under each viewing profile, every
file it wrote read by the output scanner (``workbench scan``).

CI renders a slice (``tests/test_output_scan.py``); here ``workbench render --area 1081 --theme
all`` runs once per profile — ``public``, ``practice:ID`` (the region's first practice) and
``analyst`` — into a fresh folder, and ``workbench scan`` reads the folder. Printed per profile:
pages, files and tables read, what was found by kind, and the seconds of each step.

The region is the batch benchmark's (``data/bench-region-1081``, generated when missing;
``$WORKBENCH_BENCH_REGION`` overrides). ``$WORKBENCH_BENCH_SCAN_PROFILES=public,practice`` runs
only some profiles (the analyst's batch is the region's every page).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from batch_bench import REGION, region_data

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def bench_output_scan(nation_data: Path) -> dict:
    """Render the region under each profile and scan every file (national data is not used)."""
    from workbench.profiles import Profile
    from workbench.publish.scan import register_practices, scan

    data = region_data()
    practices = register_practices(data / "workbench.duckdb")
    first = sorted(practices)[0]
    chosen = os.environ.get("WORKBENCH_BENCH_SCAN_PROFILES", "public,practice,analyst")
    profiles = [Profile("practice", first) if n == "practice" else Profile(n)
                for n in chosen.split(",") if n]
    rows = []
    for profile in profiles:
        out = Path(tempfile.mkdtemp(prefix=f"scan-{profile.name}-"))
        try:
            started = time.perf_counter()
            from run import run_measured

            sample = run_measured([WORKBENCH, "render", "--theme", "all", "--area", REGION,
                                   "--data", str(data), "--out", str(out), "--profile",
                                   profile.spec(), "--no-progress"])
            rendered = time.perf_counter() - started
            if sample.returncode not in (0, 1):
                raise RuntimeError(f"render failed:\n{sample.stderr[-3000:]}")
            started = time.perf_counter()
            report = scan(out, profile, practices)
            scanned = time.perf_counter() - started
            pages = sum(1 for _ in out.rglob("page.html"))
            rows.append({"profile": profile.spec(), "pages": pages,
                         "files": sum(report.files.values()), "tables": report.tables,
                         "findings": report.by_kind(), "render_seconds": round(rendered, 1),
                         "scan_seconds": round(scanned, 1), "render_exit": sample.returncode,
                         "examples": [f"{f.kind}: {f.file} {f.detail}"
                                      for f in report.findings[:10]]})
        finally:
            shutil.rmtree(out, ignore_errors=True)
    print(f"\n== output scan: render --area {REGION} --theme all under each profile ==")
    print(f"{'profile':18s} {'pages':>6s} {'files':>6s} {'tables':>7s} {'render s':>9s} "
          f"{'scan s':>7s}  findings")
    for r in rows:
        print(f"{r['profile']:18s} {r['pages']:6d} {r['files']:6d} {r['tables']:7d} "
              f"{r['render_seconds']:9.1f} {r['scan_seconds']:7.1f}  {r['findings'] or 'none'}")
        for example in r["examples"][:3]:
            print(f"    {example}")
    return {"benchmark": "output_scan", "region": REGION, "data": str(data), "profiles": rows}
