"""``workbench render`` end to end on the generated municipality (Samsø, region 1082: cluster
K025 with practices 172409 and 236372): every page rendered, failures contained, a killed batch
resumed, pages regenerated from the manifest, the Dask executor giving the same outputs."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import psutil
import pytest

from workbench.disclosure import DEFAULT_POLICY, scan_for_person_keys
from workbench.paths import NOTEBOOKS_DIR, Dataset
from workbench.publish.batch import BatchOptions, BatchResult, run_batch
from workbench.publish.batch.atomic import TEMP_MARK

pytestmark = pytest.mark.slow

WORKBENCH = str(Path(sys.executable).parent / "workbench")
CSV_LINK = re.compile(r'download="([^"]+\.csv)" href="data:text/csv;charset=utf-8;base64,([^"]*)"')
# analgesics: overview, cluster insight, 2 cluster areas (the file), 2 practice insights,
# 2 x 2 practice areas = 10; psychotropics (default: 1 area) 1 + 1 + 1 + 2 + 2 = 7.
EXPECTED_PAGES = 17


@pytest.fixture(scope="module")
def dataset(writable_pages_dataset: Dataset) -> Dataset:
    return writable_pages_dataset


@pytest.fixture(scope="module")
def interventions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("interventions")
    (folder / "1082.yaml").write_text(
        'region: "1082"\nclusters:\n  "K025":\n    analgesics: ["opioids", "gabapentinoids"]\n')
    return folder


def options(dataset: Dataset, interventions: Path, out: Path, **changes: object
            ) -> BatchOptions:
    settings = {"themes": ("analgesics", "psychotropics"), "area": "1082", "out": out,
                "data": dataset.root, "interventions": interventions, "workers": 2,
                "profile": "analyst", "progress": False, **changes}
    return BatchOptions(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(dataset: Dataset, interventions: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> BatchResult:
    out = tmp_path_factory.mktemp("site")
    return run_batch(options(dataset, interventions, out))


def fingerprint(dataset: Dataset) -> str:
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        return con.execute(
            "SELECT value FROM metadata WHERE key = 'data_fingerprint'").fetchone()[0]


def csvs_in_html(text: str) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for name, data in CSV_LINK.findall(text)}


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_every_page_of_the_municipality_is_rendered(site: BatchResult,
                                                    dataset: Dataset) -> None:
    assert site.ok, site.summary()
    assert len(site.plan.tasks) == EXPECTED_PAGES and site.rendered == EXPECTED_PAGES
    kinds = sorted({t.kind for t in site.plan.tasks})
    assert kinds == sorted(["overview", "cluster_insight", "cluster_intervention",
                            "practice_insight", "practice_intervention"])
    manifest = json.loads((site.out / "manifest.json").read_text())
    assert [e["id"] for e in manifest["pages"]] == [t.id for t in site.plan.tasks]
    index = (site.out / "index.html").read_text()
    for entry in manifest["pages"]:
        assert entry["status"] == "ok" and entry["seconds"] > 0
        assert entry["theme"] in ("analgesics", "psychotropics") and entry["unit"]
        assert entry["parameters"]["period"] == "2025"
        prov = entry["provenance"]
        assert prov["data_fingerprint"] == fingerprint(dataset)
        assert prov["code_version"]["workbench"] and prov["atc_ddd_index_version"]["data"]
        assert prov["disclosure"]["threshold"] == DEFAULT_POLICY.threshold
        html = (site.out / entry["files"]["html"]).read_text()
        assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>\n")
        assert "import workbench" not in html and "open_page(" not in html  # no code
        assert 1 <= html.count('class="wb-figure"') <= 4
        offered = csvs_in_html(html)
        written = {Path(p).name: (site.out / p).read_bytes() for p in entry["files"]["csv"]}
        assert written == offered and len(written) >= 2  # key figures + a table per section
        assert f'href="{entry["id"]}/page.html"' in index
    areas = manifest["batch"]["intervention_areas"]
    assert areas["analgesics/K025"]["groups"] == ["opioids", "gabapentinoids"]
    # Every page read the dataset's answer store, which stays beside the register.
    assert dataset.answers.is_file() and not list(site.out.rglob("*.duckdb"))
    assert areas["psychotropics/K025"]["source"].startswith("default")


def test_executed_notebooks_hold_only_published_outputs(site: BatchResult) -> None:
    for task in site.plan.tasks:
        folder = site.out.joinpath(*task.id.split("/"))
        nb = nbformat.read(folder / "page.ipynb", as_version=4)
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        assert outputs and all(o["output_type"] == "display_data" for o in outputs)
        assert all(set(o["data"]) == {"text/html", "text/plain"} for o in outputs)
        for path in folder.glob("*.csv"):
            table = pd.read_csv(path)
            scan_for_person_keys(table)
            for column in table.columns:
                if column in ("patients", "listed") or column.endswith("_patients"):
                    shown = table[column].dropna()
                    # a published count is 0 or at least the threshold; hidden cells are empty
                    assert ((shown == 0) | (shown >= DEFAULT_POLICY.threshold)).all(), path


def failing_notebooks(tmp_path: Path) -> Path:
    """The page notebooks, with practice insight made to fail for practice 236372."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for path in NOTEBOOKS_DIR.glob("*.ipynb"):
        shutil.copy2(path, folder / path.name)
    path = folder / "practice_insight.ipynb"
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
        'if unit == "236372":\n    raise RuntimeError("made to fail")'))
    nbformat.write(nb, path)
    return folder


def render_command(dataset: Dataset, interventions: Path, out: Path, *extra: str) -> list[str]:
    return [WORKBENCH, "render", "--theme", "analgesics", "--area", "1082", "--data",
            str(dataset.root), "--out", str(out), "--interventions", str(interventions),
            "--profile", "analyst", "--no-progress", *extra]


def test_a_failing_page_leaves_the_others_and_exits_nonzero(dataset: Dataset,
                                                            interventions: Path,
                                                            tmp_path: Path) -> None:
    notebooks = failing_notebooks(tmp_path)
    out = tmp_path / "site"
    command = render_command(dataset, interventions, out, "--pages", "overview", "--pages",
                             "practice_insight", "--notebooks", str(notebooks),
                             "--workers", "2")
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    assert ("FAILED analgesics/practice_insight/236372: RuntimeError: made to fail"
            in run.stdout)
    assert "2 rendered, 0 unchanged (skipped), 1 failed" in run.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    status = {e["id"]: e["status"] for e in manifest["pages"]}
    assert status == {"analgesics/overview/DK": "ok", "analgesics/practice_insight/172409": "ok",
                      "analgesics/practice_insight/236372": "failed"}
    failed = out / "analgesics/practice_insight/236372"
    assert not (failed / "page.html").exists()
    traceback = nbformat.read(failed / "failed.ipynb", as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in traceback.cells
               for o in c.get("outputs", []))
    assert (out / "analgesics/practice_insight/172409/page.html").is_file()
    assert "(fejlet)" in (out / "index.html").read_text()
    # a re-run retries the failed page only
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1
    assert "0 rendered, 2 unchanged (skipped), 1 failed" in again.stdout


def finished_pages(out: Path) -> dict[str, str]:
    found = {}
    for path in out.rglob("page.json"):
        entry = json.loads(path.read_text())
        if entry["status"] == "ok":
            found[entry["id"]] = entry["finished_at"]
    return found


def assert_no_corrupt_file(out: Path) -> None:
    """Every file a reader could open is complete (temporary files are a run's own)."""
    for path in out.rglob("*"):
        if not path.is_file() or TEMP_MARK in path.name:
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(path, as_version=4))
        elif path.suffix == ".html":
            assert path.read_text().endswith("</html>\n"), path
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0, path


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_batch_resumes(how: signal.Signals, dataset: Dataset, interventions: Path,
                                tmp_path: Path) -> None:
    out = tmp_path / "site"
    batch = subprocess.Popen(render_command(dataset, interventions, out, "--workers", "1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tree: set[psutil.Process] = set()
    deadline = time.monotonic() + 300
    while len(finished_pages(out)) < 2:
        assert batch.poll() is None, batch.communicate()
        assert time.monotonic() < deadline, "no page finished in time"
        tree |= set(psutil.Process(batch.pid).children(recursive=True))
        time.sleep(0.2)
    tree |= set(psutil.Process(batch.pid).children(recursive=True))  # workers and kernels
    batch.send_signal(how)
    code = batch.wait(timeout=60)
    assert code == (143 if how == signal.SIGTERM else -signal.SIGKILL)
    gone, alive = psutil.wait_procs(list(tree), timeout=30)
    assert not alive, f"left running: {[p.cmdline()[:3] for p in alive]}"
    done = finished_pages(out)
    assert 2 <= len(done) < 10
    assert_no_corrupt_file(out)

    result = run_batch(BatchOptions(themes=("analgesics",), area="1082", out=out,
                                    data=dataset.root, interventions=interventions, workers=2,
                                    profile="analyst", progress=False))
    assert result.ok, result.summary()
    assert result.skipped == len(done) and result.rendered == 10 - len(done)
    assert {k: v for k, v in finished_pages(out).items() if k in done} == done  # not redone
    assert len(finished_pages(out)) == 10
    assert not [p for p in out.rglob(f"*{TEMP_MARK}*")]
    assert_no_corrupt_file(out)


def test_the_manifest_regenerates_pages_byte_for_byte(site: BatchResult, dataset: Dataset,
                                                      interventions: Path,
                                                      tmp_path: Path) -> None:
    manifest = json.loads((site.out / "manifest.json").read_text())
    chosen = [e for e in manifest["pages"] if e["id"] in (
        "analgesics/practice_intervention/236372/gabapentinoids",
        "psychotropics/cluster_insight/K025")]
    assert len(chosen) == 2
    for entry in chosen:
        assert entry["provenance"]["data_fingerprint"] == fingerprint(dataset)
        words = shlex.split(entry["regenerate"])
        assert words[:2] == ["workbench", "render"]
        # the manifest names the dataset relative to the project, or by its folder's name when
        # it lives elsewhere (as here): the operator points --data at where it is
        assert words[words.index("--data") + 1] == dataset.root.name
        words[words.index("--data") + 1] = str(dataset.root)
        assert words[words.index("--interventions") + 1] == interventions.name
        words[words.index("--interventions") + 1] = str(interventions)
        out = tmp_path / entry["id"].replace("/", "_")
        words[words.index("--out") + 1] = str(out)
        run = subprocess.run([WORKBENCH, *words[1:], "--no-progress"], capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        again = json.loads((out / "manifest.json").read_text())
        (twin,) = [e for e in again["pages"] if e["id"] == entry["id"]]
        assert twin["inputs_digest"] == entry["inputs_digest"]
        assert twin["files"]["csv"] == entry["files"]["csv"]
        for path in entry["files"]["csv"]:
            assert (out / path).read_bytes() == (site.out / path).read_bytes(), path


def test_no_published_file_names_the_machines_folders(site: BatchResult, dataset: Dataset,
                                                     interventions: Path) -> None:
    """Manifest, page entries and page notebooks name the dataset, the notebooks and the
    interventions relative to the project (or by their folder's name): a site travels, the
    machine's folders don't go with it."""
    from workbench.paths import PROJECT_ROOT

    places = [str(dataset.root), str(interventions), str(PROJECT_ROOT), str(site.out)]
    files = [p for p in site.out.rglob("*") if p.suffix in (".json", ".ipynb", ".html", ".csv")]
    assert len(files) > 3 * EXPECTED_PAGES
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not [place for place in places if place in text], path
    manifest = json.loads((site.out / "manifest.json").read_text())
    assert manifest["batch"]["provenance"]["dataset"] == dataset.root.name
    entry = manifest["pages"][0]
    assert entry["parameters"]["data"] == dataset.root.name
    assert entry["notebook"] == f"notebooks/{entry['page']}.ipynb"
    notebook = json.loads((site.out / entry["files"]["notebook"]).read_text())
    assert notebook["metadata"]["papermill"]["input_path"] == entry["notebook"]
    assert notebook["metadata"]["papermill"]["output_path"] == "page.ipynb"
    injected = [c for c in notebook["cells"] if c.get("id") == "injected-parameters"]
    assert f'data = "{dataset.root.name}"' in "".join(injected[0]["source"])


def test_dask_gives_the_same_outputs_as_local(site: BatchResult, dataset: Dataset,
                                              interventions: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    out = tmp_path / "dask-site"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        result = run_batch(options(dataset, interventions, out, executor="dask",
                                   scheduler=cluster.scheduler_address))
    assert result.ok, result.summary()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["batch"]["run"]["executor"] == "dask"
    workers = {e["worker"] for e in manifest["pages"]}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)
    local, remote = all_files(site.out), all_files(out)
    compared = [name for name in local if name.endswith((".csv", ".html"))
                and name != "index.html"]
    assert len(compared) > 2 * EXPECTED_PAGES
    for name in compared:
        assert remote[name] == local[name], name


def test_serve_also_serves_the_site(site: BatchResult) -> None:
    import socket
    import urllib.request

    from workbench.publish.serve import serve_site

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve_site(site.out, port)
    page = site.plan.tasks[-1].id
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html") as reply:
                    index = reply.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the site server did not answer"
                time.sleep(0.2)
        assert f'href="{page}/page.html"' in index
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{page}/page.html") as reply:
            assert reply.read() == (site.out / page / "page.html").read_bytes()
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize(("extra", "expected"), [
    (("--area", "1084"), "unknown area '1084'"),
    (("--profile", "practice:12"), "the practice profile needs --practice ID"),
    (("--executor", "dask"), "--executor dask needs --scheduler"),
])
def test_bad_options_stop_before_anything_runs(dataset: Dataset, tmp_path: Path,
                                               extra: tuple[str, ...], expected: str) -> None:
    command = [WORKBENCH, "render", "--data", str(dataset.root), "--out", str(tmp_path / "s"),
               "--area", "1082", "--no-progress", *extra]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and expected in run.stderr, run.stderr
    assert not (tmp_path / "s" / "manifest.json").exists()
