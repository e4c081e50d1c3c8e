"""Issue 5: batch rendering. Seconds per page of each kind against the Papermill floor, pages
per minute for a region, and the national batch's projected wall time, printed side by side.

* **Floor**: Papermill executing an empty notebook that has only a parameters cell, with the
  same kernel (``python3``), called from Python as the batch's workers call it: a fresh kernel
  per notebook (Papermill's default), and the same kernel reused (the batch's default). Most
  of the reused-kernel floor is a new client's 0.2 s wait for the kernel to be ready, which the
  batch's workers no longer pay (they keep the kernel's client too): that path is printed as
  well, so a page's seconds can be read against what is really left of the floor.
* **Seconds per page kind**: one worker renders the region's whole batch with warm kernels,
  as a batch does (every page, in the batch's order), and a slice of it again with
  ``--fresh-kernels``; the page's own seconds from the manifest (Papermill run + HTML + CSVs
  written), median per kind. A kernel's first page of a kind and theme also computes what
  every later one reuses (a level's published tables and deciles); the whole batch weighs
  that once per kernel and theme, as it is paid (a slice of two clusters would weigh it on
  every other cluster page). Those first pages' median is printed beside it. The
  fresh-kernel slice is the short one (every page pays everything).
* **Region**: the whole batch of the generated region (both themes, analyst profile so practice
  pages are included), default workers (the cores): pages per minute of the rendering phase.
* **Projection**: the national batch's page count from the region's pages per cluster and per
  practice, scaled to 118 clusters and 1,925 practices, at the region's rate; plus the national
  answer store's build as ``make bench`` → ``store_build`` measured it (pages only read it).

The region is the Makefile's demo register (``--area 1081 --years 2020:2025 --seed 2026``),
generated under ``data/bench-region-1081`` if missing (``$WORKBENCH_BENCH_REGION`` overrides);
``$WORKBENCH_BENCH_BATCH_LIMIT=N`` renders only N pages per theme of the region (a quick run).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORKBENCH = str(Path(sys.executable).parent / "workbench")
REGION = "1081"
NATION_CLUSTERS, NATION_PRACTICES = 118, 1925
KINDS = ("overview", "cluster_insight", "cluster_intervention", "practice_insight",
         "practice_intervention")
SLICE = 14  # pages per theme (fresh kernels): the overview, the first cluster, its practices


def region_data() -> Path:
    data = Path(os.environ.get("WORKBENCH_BENCH_REGION", ROOT / "data" / f"bench-region-{REGION}"))
    if not (data / "workbench.duckdb").exists():
        from run import run_measured

        sample = run_measured([WORKBENCH, "data", "generate", "--area", REGION, "--years",
                               "2020:2025", "--seed", "2026", "--data", str(data),
                               "--no-progress"])
        if sample.returncode != 0:
            raise RuntimeError(f"generate failed:\n{sample.stderr[-3000:]}")
    return data


def papermill_floor(runs: int = 5) -> dict:
    """Median seconds of Papermill on a notebook with only a parameters cell."""
    import nbformat
    import papermill
    from jupyter_client.manager import KernelManager

    from workbench.publish.batch.executors import ENGINE, _register_engine

    folder = Path(tempfile.mkdtemp(prefix="wb-floor-"))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cell = nbformat.v4.new_code_cell('theme = "psychotropics"\nunit = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    source = folder / "floor.ipynb"
    nbformat.write(nb, source)

    def once(**kwargs: object) -> float:
        started = time.perf_counter()
        papermill.execute_notebook(str(source), str(folder / "out.ipynb"),
                                   parameters={"theme": "analgesics", "unit": "K001"},
                                   kernel_name="python3", progress_bar=False,
                                   request_save_on_cell_execute=False, **kwargs)
        return time.perf_counter() - started

    fresh = [once() for _ in range(runs)]
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    try:
        once(km=km)  # the kernel's first notebook
        warm = [once(km=km) for _ in range(runs)]
        # the batch's own path: the kernel's client kept too (no 0.2 s readiness wait a notebook)
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        _register_engine()
        kept = [once(km=km, kc=kc, engine_name=ENGINE) for _ in range(runs)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    shutil.rmtree(folder, ignore_errors=True)
    return {"fresh_kernel": statistics.median(fresh), "same_kernel": statistics.median(warm),
            "same_kernel_and_client": statistics.median(kept), "runs": runs}


def render(data: Path, out: Path, *extra: str) -> tuple[dict, object]:
    from run import run_measured

    cmd = [WORKBENCH, "render", "--theme", "all", "--area", REGION, "--data", str(data),
           "--out", str(out), "--profile", "analyst", "--no-progress", *extra]
    sample = run_measured(cmd)
    if sample.returncode not in (0, 1):
        raise RuntimeError(f"render failed:\n{sample.stdout[-2000:]}\n{sample.stderr[-3000:]}")
    return json.loads((out / "manifest.json").read_text()), sample


def per_kind(manifest: dict) -> dict[str, dict]:
    """Median seconds per page kind, and of each worker's first page of a kind and theme."""
    found: dict[str, list[float]] = {}
    first: dict[tuple[str, str, str], float] = {}
    for entry in sorted(manifest["pages"], key=lambda e: e.get("started_at") or ""):
        if entry["status"] == "ok" and entry.get("seconds") is not None:
            found.setdefault(entry["page"], []).append(entry["seconds"])
            first.setdefault((entry["worker"], entry["theme"], entry["page"]), entry["seconds"])
    return {k: {"median": statistics.median(v), "pages": len(v),
                "first": statistics.median(s for (_, _, kind), s in first.items() if kind == k)}
            for k, v in found.items()}


def bench_batch(nation_data: Path) -> dict:
    data = region_data()
    work = Path(tempfile.mkdtemp(prefix="wb-batch-bench-"))
    floor = papermill_floor()

    # seconds per page kind: one worker, warm kernels over the batch, then a slice with fresh
    # kernels (cache reused)
    limit = os.environ.get("WORKBENCH_BENCH_BATCH_LIMIT")
    warm, _ = render(data, work / "warm", *(("--limit", limit) if limit else ()), "--workers",
                     "1")
    fresh, _ = render(data, work / "fresh", "--limit", str(SLICE), "--workers", "1",
                      "--fresh-kernels")
    kinds = {}
    for kind in KINDS:
        w, f = per_kind(warm).get(kind), per_kind(fresh).get(kind)
        kinds[kind] = {
            "warm_seconds": w and round(w["median"], 2),
            "warm_first_seconds": w and round(w["first"], 2), "fresh_seconds": f and round(
                f["median"], 2), "pages": w and w["pages"],
            "warm_vs_floor": w and round(w["median"] / floor["fresh_kernel"], 2),
            "warm_vs_warm_floor": w and round(w["median"] / floor["same_kernel"], 2),
            "fresh_vs_floor": f and round(f["median"] / floor["fresh_kernel"], 2),
        }

    # the region: every page, default workers
    region_out = work / "region"
    manifest, sample = render(data, region_out, *(("--limit", limit) if limit else ()))
    run = manifest["batch"]["run"]
    pages = [e for e in manifest["pages"] if e["status"] == "ok"]
    answers = run.get("answers") or {}
    prepare = sample.seconds - _render_phase(manifest)
    render_seconds = _render_phase(manifest)
    per_minute = len(pages) / render_seconds * 60 if render_seconds else 0.0
    tasks = manifest["pages"]
    clusters = {e["unit"] for e in tasks if e["page"] == "cluster_insight"}
    practices = {e["unit"] for e in tasks if e["page"] == "practice_insight"}
    cluster_pages = sum(e["page"].startswith("cluster") for e in tasks)
    practice_pages = sum(e["page"].startswith("practice") for e in tasks)
    national_pages = round(2 + cluster_pages / max(len(clusters), 1) * NATION_CLUSTERS
                           + practice_pages / max(len(practices), 1) * NATION_PRACTICES)
    store_result = HERE / "results" / "store_build.json"
    national_store = (json.loads(store_result.read_text()).get("wall_seconds")
                      if store_result.is_file() else None)
    national_render = national_pages / per_minute * 60 if per_minute else None
    result = {
        "benchmark": "batch",
        "floor": floor,
        "kinds": kinds,
        "region": {
            "area": REGION, "pages": len(tasks), "ok": len(pages), "clusters": len(clusters),
            "practices": len(practices), "workers": run["workers"],
            "wall_seconds": round(sample.seconds, 1), "prepare_seconds": round(prepare, 1),
            "answers": answers, "render_seconds": round(render_seconds, 1),
            "pages_per_minute": round(per_minute, 1), "peak_rss_bytes": sample.peak_rss_bytes,
        },
        "national_projection": {
            "clusters": NATION_CLUSTERS, "practices": NATION_PRACTICES,
            "pages": national_pages, "store_build_seconds": national_store,
            "render_seconds": national_render and round(national_render),
            "wall_seconds": national_render and round(national_render + (national_store or 0)),
        },
        "targets": {"page_vs_floor": 2.0},
    }
    _print(result)
    shutil.rmtree(work, ignore_errors=True)
    return result


def _render_phase(manifest: dict) -> float:
    """From the first page's start to the last page's end (the store's build is before)."""
    import datetime as dt

    starts = [e["started_at"] for e in manifest["pages"] if e.get("started_at")]
    ends = [e["finished_at"] for e in manifest["pages"] if e.get("finished_at")]
    if not starts or not ends:
        return 0.0
    first, last = dt.datetime.fromisoformat(min(starts)), dt.datetime.fromisoformat(max(ends))
    return max((last - first).total_seconds(), 1.0)


def _print(r: dict) -> None:
    floor = r["floor"]
    print("\n== render: seconds per page (1 worker) against the Papermill floor ==")
    print(f"floor: empty notebook with a parameters cell, python3 kernel: "
          f"{floor['fresh_kernel']:.2f} s fresh kernel, {floor['same_kernel']:.2f} s same kernel"
          " (target: a page ≤ 2 × the floor)")
    if floor.get("same_kernel_and_client") is not None:
        print(f"       the batch's own path (same kernel, its client kept as well): "
              f"{floor['same_kernel_and_client']:.2f} s")
    print(f"{'page kind':24s} {'warm kernel':>12s} {'× fresh':>8s} {'× warm':>7s} "
          f"{'1st of kind':>12s} {'fresh kernel':>13s} {'× fresh':>8s} {'pages':>6s}")
    for kind, k in r["kinds"].items():
        def cell(v: float | None, width: int, unit: str = "") -> str:
            return f"{'-' if v is None else f'{v:.2f}{unit}':>{width}s}"

        print(f"{kind:24s} {cell(k['warm_seconds'], 12, ' s')} {cell(k['warm_vs_floor'], 8)} "
              f"{cell(k.get('warm_vs_warm_floor'), 7)} "
              f"{cell(k.get('warm_first_seconds'), 12, ' s')} {cell(k['fresh_seconds'], 13, ' s')} "
              f"{cell(k['fresh_vs_floor'], 8)} "
              f"{k['pages'] or 0:6d}")
    print("(warm kernel: one worker over the whole batch; 1st of kind: a kernel's first page "
          "of a kind and theme, which computes the level's tables the later ones reuse)")
    g = r["region"]
    built = g["answers"] or {}
    print(f"\n== render --area {g['area']} --theme all (analyst profile), {g['workers']} "
          "workers ==")
    print(f"{g['pages']} pages ({g['ok']} ok) for {g['clusters']} clusters and "
          f"{g['practices']} practices: wall {g['wall_seconds']:.0f} s = prepare "
          f"{g['prepare_seconds']:.0f} s (answer store "
          f"{'built in ' + str(built.get('seconds')) + ' s' if built.get('built') else 'current'})"
          f" + render "
          f"{g['render_seconds']:.0f} s → {g['pages_per_minute']:.1f} pages/minute; "
          f"peak RSS summed over the process tree {g['peak_rss_bytes'] / 2**30:.2f} GiB "
          "(counts pages the kernels share, e.g. the mapped database, once per process)")
    n = r["national_projection"]
    if n["wall_seconds"]:
        print(f"national batch ({n['clusters']} clusters, {n['practices']} practices): "
              f"~{n['pages']:,} pages → render ~{n['render_seconds'] / 3600:.1f} h + answer "
              f"store {(n['store_build_seconds'] or 0) / 60:.0f} min (store_build's) "
              f"= ~{n['wall_seconds'] / 3600:.1f} h on this machine; "
              "a Dask cluster divides the render part by its cores / this machine's")
