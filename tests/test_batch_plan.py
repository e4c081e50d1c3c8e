"""Batch planning and the pieces of the report site, on hand-made inputs and the generated
municipality (Samsø: one cluster K025 with practices 172409 and 236372, region 1082)."""

from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from workbench.definitions import load_definitions
from workbench.engine import connect
from workbench.paths import Dataset
from workbench.profiles import Profile
from workbench.publish.batch import atomic
from workbench.publish.batch.executors import UnpublishedOutput, check_published_only
from workbench.publish.batch.plan import (
    INTERVENTIONS_DIR,
    PageTask,
    PlanError,
    load_interventions,
    make_plan,
    rank_areas,
)
from workbench.publish.batch.site import extract_csvs, rewrite_links, target_of

# --- intervention-area files ----------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_repository_files_load_for_every_region() -> None:
    definitions = load_definitions()
    for region in ("1081", "1082", "1083", "1084", "1085"):
        found = load_interventions(region, definitions)
        assert found.region == region and found.path is not None
        assert found.clusters  # each file shows how a cluster chooses


def test_unquoted_ids_are_refused_naming_file_and_field(tmp_path: Path) -> None:
    # YAML 1.1: 012345 is octal, the integer 5349; the region 1082 is an integer too.
    path = write(tmp_path, "1082.yaml",
                 "region: 1082\npractices:\n  012345:\n    analgesics: [nsaids]\n")
    with pytest.raises(PlanError) as caught:
        load_interventions("1082", load_definitions(), tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "region: Input should be a valid string" in message
    assert "practices.5349" in message and "quote every id" in message


@pytest.mark.parametrize(("text", "expected"), [
    ('region: "1082"\nclusters:\n  "K025":\n    analgesics: ["sedatives"]\n',
     "clusters.K025.analgesics: 'sedatives' is not a group of theme 'analgesics'"),
    ('region: "1082"\nclusters:\n  "K025":\n    painkillers: ["opioids"]\n',
     "clusters.K025: unknown theme 'painkillers'"),
    ('region: "1081"\n', "does not match the file name"),
    ('region: "1082"\ndefault_area: 2\n', "default_area: Extra inputs are not permitted"),
    ('region: "1082"\nclusters:\n  "K025":\n    analgesics: ["opioids", "opioids"]\n',
     "a group is named twice"),
])
def test_wrong_files_say_where(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, "1082.yaml", text)
    with pytest.raises(PlanError, match="1082.yaml") as caught:
        load_interventions("1082", load_definitions(), tmp_path)
    assert expected in str(caught.value)


def test_a_region_without_a_file_takes_the_defaults(tmp_path: Path) -> None:
    found = load_interventions("1083", load_definitions(), tmp_path)
    assert found.path is None and found.default_areas == 1 and not found.clusters


# --- the plan on the generated municipality -------------------------------------------------


@pytest.fixture(scope="module")
def dataset(writable_pages_dataset: Dataset) -> Dataset:
    return writable_pages_dataset


@pytest.fixture(scope="module")
def session(dataset: Dataset):
    s = connect(dataset.database)
    yield s
    s.con.disconnect()


def test_plan_for_a_region_in_site_order(session, dataset: Dataset, tmp_path: Path) -> None:
    write(tmp_path, "1082.yaml", 'region: "1082"\nclusters:\n  "K025":\n'
          '    analgesics: ["nsaids", "opioids"]\n  "K999":\n    analgesics: ["opioids"]\n'
          'practices:\n  "236372":\n    analgesics: ["paracetamol"]\n')
    plan = make_plan(session, themes=("analgesics",), area="1082", data=dataset.root,
                     interventions_dir=tmp_path)
    assert [t.id for t in plan.tasks] == [
        "analgesics/overview/DK",
        "analgesics/cluster_insight/K025",
        "analgesics/cluster_intervention/K025/nsaids",
        "analgesics/cluster_intervention/K025/opioids",
        "analgesics/practice_insight/172409",
        "analgesics/practice_intervention/172409/nsaids",
        "analgesics/practice_intervention/172409/opioids",
        "analgesics/practice_insight/236372",  # chose its own area
        "analgesics/practice_intervention/236372/paracetamol",
    ]
    assert plan.period == "2025"  # the newest complete year of 2020-2025
    assert any("K999" in note for note in plan.notes)  # named but not in this dataset
    first = plan.tasks[5]
    assert first.parameters == {
        "theme": "analgesics", "unit": "172409", "period": "2025", "group": "nsaids",
        "measure": "patients_per_1000", "breakdown": "consumption_group", "language": "da",
        "data": str(dataset.root),
    }
    assert first.region == "1082" and first.cluster == "K025"


def test_top_areas_by_index_in_whole_percent() -> None:
    # nation per 1,000: opioids 50, nsaids 100, paracetamol 200, gabapentinoids 10.
    # K1: opioids 60/50 = 120 %, nsaids 130/100 = 130 %, paracetamol 240/200 = 120 % (tie with
    #     opioids: theme order), gabapentinoids 30/10 = 300 % but 4 patients (unpublishable).
    # K2: opioids 50.2/50 = 100.4 % -> 100, nsaids 100.4/100 -> 100: a tie, theme order.
    groups = ["opioids", "paracetamol", "nsaids", "gabapentinoids"]
    nation = pd.DataFrame({"group": groups, "patients_per_1000": [50.0, 200.0, 100.0, 10.0]})
    local = pd.DataFrame({
        "unit_id": ["K1"] * 4 + ["K2"] * 2,
        "group": ["opioids", "paracetamol", "nsaids", "gabapentinoids", "nsaids", "opioids"],
        "patients": [60, 240, 130, 4, 100, 50],
        "patients_per_1000": [60.0, 240.0, 130.0, 30.0, 100.4, 50.2],
    })
    assert rank_areas(local, nation, groups, {"K1": 3, "K2": 1}) == {
        "K1": ("nsaids", "opioids", "paracetamol"), "K2": ("opioids",)}


def test_default_areas_follow_the_ranking(session, dataset: Dataset, tmp_path: Path) -> None:
    write(tmp_path, "1082.yaml", 'region: "1082"\ndefault_areas: 2\n')
    plan = make_plan(session, themes=("psychotropics",), area="1082", data=dataset.root,
                     pages=("cluster_intervention",), interventions_dir=tmp_path)
    groups = load_definitions().groups_of("psychotropics")
    local = session.measures(groups, "cluster", "2025").to_pandas()
    nation = session.measures(groups, "nation", "2025").to_pandas()
    expected = rank_areas(local, nation, groups, {"K025": 2})["K025"]
    assert [t.group for t in plan.tasks] == list(expected) and len(expected) == 2
    assert plan.areas[("psychotropics", "K025")] == (
        expected, "default: top 2 potential area(s) by patients_per_1000")


def test_units_limit_and_pages_narrow_the_plan(session, dataset: Dataset) -> None:
    plan = make_plan(session, themes=("analgesics", "psychotropics"), area="1082",
                     data=dataset.root, units=("236372",), pages=("overview", "practice_insight"))
    assert [t.id for t in plan.tasks] == [
        "analgesics/overview/DK", "analgesics/practice_insight/236372",
        "psychotropics/overview/DK", "psychotropics/practice_insight/236372"]
    limited = make_plan(session, themes=("analgesics", "psychotropics"), area="nation",
                        data=dataset.root, limit=3)
    assert [t.id for t in limited.tasks] == [  # the first 3 pages of each theme
        "analgesics/overview/DK", "analgesics/cluster_insight/K025",
        f"analgesics/cluster_intervention/K025/{limited.tasks[2].group}",
        "psychotropics/overview/DK", "psychotropics/cluster_insight/K025",
        f"psychotropics/cluster_intervention/K025/{limited.tasks[5].group}"]


def test_the_viewing_profile_decides_which_pages(session, dataset: Dataset) -> None:
    public = make_plan(session, themes=("analgesics",), area="1082", data=dataset.root,
                       profile=Profile("public"))
    assert [t.kind for t in public.tasks] == [
        "overview", "cluster_insight", "cluster_intervention"]  # no practice is identifiable
    assert any("profile public: no practice_insight, practice_intervention" in n
               for n in public.notes)
    own = make_plan(session, themes=("analgesics",), area="1082", data=dataset.root,
                    profile=Profile("practice", "236372"))
    assert {t.unit for t in own.tasks} == {"DK", "K025", "236372"}  # not practice 172409
    assert {t.kind for t in own.tasks if t.unit == "236372"} == {
        "practice_insight", "practice_intervention"}
    with pytest.raises(PlanError, match="999999 of the profile is not in the dataset"):
        make_plan(session, themes=("analgesics",), area="1082", data=dataset.root,
                  profile=Profile("practice", "999999"))


@pytest.mark.parametrize(("options", "expected"), [
    ({"area": "1084"}, "unknown area '1084'"),
    ({"area": "1082", "period": "2019"}, "period '2019' is not one the data covers"),
    ({"area": "1082", "units": ("K001",)}, "no cluster or practice of area"),
    ({"area": "1082", "pages": ("summary",)}, "unknown page(s) ['summary']"),
])
def test_plan_errors(session, dataset: Dataset, options: dict, expected: str) -> None:
    with pytest.raises(PlanError) as caught:
        make_plan(session, themes=("analgesics",), data=dataset.root,
                  interventions_dir=INTERVENTIONS_DIR, **options)
    assert expected in str(caught.value)


# --- files and the site ---------------------------------------------------------------------


def test_atomic_write_and_sweep(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    atomic.write_text(target, "old")
    with pytest.raises(RuntimeError), atomic.replacing(target) as temp:
        temp.write_text("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old"  # the old version survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
    stray = atomic.temp_path(tmp_path / "x" / "page.ipynb")
    stray.parent.mkdir()
    stray.write_text("left by a killed run")
    assert stray.suffix == ".ipynb"
    assert atomic.sweep(tmp_path) == 1 and not stray.exists() and target.exists()


def test_csvs_come_out_of_the_page_html_unchanged() -> None:
    table = pd.DataFrame({"group": ["opioids"], "patients": [12]}).to_csv(index=False)
    data = base64.b64encode(table.encode()).decode()
    link = (f'<a class="wb-csv" download="practice_insight_trend.csv" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">CSV</a>')
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("view.section('trend')")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": link,
                                                                 "text/plain": "<HTML>"})]
    nb.cells = [cell]
    assert extract_csvs(nb) == {"practice_insight_trend.csv": table.encode()}
    check_published_only(nb)  # display_data HTML only: fine
    cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text="P000000001 3"))
    with pytest.raises(UnpublishedOutput, match="cell 0 has a stream output"):
        check_published_only(nb)


def test_links_point_at_the_batch_pages_or_nowhere() -> None:
    here = PageTask("analgesics", "cluster_insight", "K025", "opioids", {})
    planned = {"analgesics/practice_insight/172409", "analgesics/overview/DK"}
    page = ('<a href="practice_insight.ipynb?topic=analgesics&amp;unit=172409&amp;period=2025"'
            '>p</a> <a href="overview.ipynb?theme=analgesics&amp;period=2025">o</a> '
            '<a href="cluster_intervention.ipynb?theme=analgesics&amp;unit=K025&amp;'
            'group=nsaids">c</a>')
    assert target_of("cluster_intervention", "theme=analgesics&amp;unit=K025&amp;group=nsaids"
                     ) == "analgesics/cluster_intervention/K025/nsaids"
    rewritten = rewrite_links(page, here, planned, "en")
    assert 'href="../../practice_insight/172409/page.html"' in rewritten
    assert 'href="../../overview/DK/page.html"' in rewritten
    assert 'class="wb-not-rendered" title="not in this batch">c</a>' in rewritten
    assert ".ipynb" not in rewritten
