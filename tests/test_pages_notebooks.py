"""Every page notebook executes with Papermill: its default parameters (psychotropics),
parameters for another unit, period, language and the analgesics theme, and the unit of another
cluster on a generated municipality with several clusters (Odense, 4 clusters)."""

from __future__ import annotations

import json

import papermill
import pytest

import workbench.pages as pages
from workbench.engine import connect
from workbench.paths import NOTEBOOKS_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def other_choices(pages_dataset) -> dict[str, dict[str, str]]:
    """Parameters that differ from the defaults in every field a page takes."""
    catalog = pages.Catalog(connect(pages_dataset.database))
    practices = list(catalog.practices)
    cluster = list(catalog.clusters)[-1]
    common = {"theme": "analgesics", "period": catalog.periods[1], "language": "en",
              "measure": "ddd_per_1000_per_day"}
    area = {"group": "opioids", "breakdown": "started"}
    return {
        "overview": {**common, "group": "nsaids"},
        "cluster_insight": {**common, "unit": cluster},
        "cluster_intervention": {**common, **area, "unit": cluster},
        "practice_insight": {**common, "unit": practices[-1]},
        "practice_intervention": {**common, **area, "unit": practices[-1]},
    }


@pytest.fixture(scope="module")
def other_cluster(clusters_dataset) -> dict[str, dict[str, str]]:
    """The last cluster of the register, and a practice of it (the defaults are the first)."""
    catalog = pages.Catalog(connect(clusters_dataset.database))
    cluster = list(catalog.clusters)[-1]
    practice = catalog.practices_of(cluster)[-1].id
    assert cluster != catalog.default_unit("cluster")
    assert catalog.practices[catalog.default_unit("practice")].cluster != cluster
    area = {"group": "opioids", "breakdown": "age_group"}
    return {
        "overview": {"theme": "analgesics", "group": "gabapentinoids"},
        "cluster_insight": {"unit": cluster},
        "cluster_intervention": {**area, "theme": "analgesics", "unit": cluster},
        "practice_insight": {"unit": practice},
        "practice_intervention": {**area, "theme": "analgesics", "unit": practice},
    }


@pytest.mark.parametrize("variant", ["defaults", "other", "other_cluster"])
@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
def test_notebook_executes(kind, variant, request, tmp_path, monkeypatch) -> None:
    dataset = request.getfixturevalue(
        "clusters_dataset" if variant == "other_cluster" else "pages_dataset")
    monkeypatch.setenv("WORKBENCH_DATA", str(dataset.root))
    monkeypatch.setenv("WORKBENCH_PUBLISHING", "1")
    monkeypatch.setenv("WORKBENCH_PROFILE", "analyst")  # every page; profiles: test_pages_profiles
    monkeypatch.setenv("MPLBACKEND", "Agg")
    parameters = {} if variant == "defaults" else request.getfixturevalue(
        "other_cluster" if variant == "other_cluster" else "other_choices")[kind]
    output = tmp_path / f"{kind}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / f"{kind}.ipynb"), str(output), parameters=parameters,
        kernel_name="python3", cwd=str(NOTEBOOKS_DIR), progress_bar=False,
    )
    nb = json.loads(output.read_text(encoding="utf-8"))
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr" and "Traceback" in o["text"]]
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    figures = html.count('class="wb-figure"')
    assert 1 <= figures <= pages.MAX_GRAPHS
    assert html.count('class="wb-kf"') == (2 if kind.endswith("intervention") else 5)
    assert "kan ikke vises" not in html and "cannot be shown" not in html  # no failed section
    assert ("Key figures" if variant == "other" else "Nøgletal") in html
    unit = parameters.get("unit")
    if unit:
        catalog = pages.Catalog(connect(dataset.database))
        cluster = catalog.clusters.get(unit) or catalog.clusters[catalog.practices[unit].cluster]
        assert (unit in html) if unit in catalog.practices else (cluster.name in html)
        if variant == "other_cluster":  # no practice of another cluster is named on the page
            others = [p for p in catalog.practices.values() if p.cluster != cluster.id]
            assert not [p.id for p in others if f"({p.id})" in html]
