"""Every page notebook executes with Papermill: its default parameters (psychotropics) and
parameters for another unit, period, language and the analgesics theme, on generated data."""

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


@pytest.mark.parametrize("variant", ["defaults", "other"])
@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
def test_notebook_executes(kind, variant, pages_dataset, other_choices, tmp_path,
                           monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_DATA", str(pages_dataset.root))
    monkeypatch.setenv("WORKBENCH_PUBLISHING", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    parameters = {} if variant == "defaults" else other_choices[kind]
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
    if variant == "other":
        assert "Key figures" in html
        unit = parameters.get("unit")
        if unit:
            assert unit in html or pages.Catalog(connect(pages_dataset.database)).clusters[
                unit].name in html
    else:
        assert "Nøgletal" in html
