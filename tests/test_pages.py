"""The pages without a kernel: what each page shows, validation of untrusted choices, links,
disclosure of every published table, and the notebooks' shape."""

from __future__ import annotations

import doctest
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

import workbench.pages as pages
from workbench.disclosure import recoverable_cells, scan_for_person_keys
from workbench.engine import connect
from workbench.pages import base, charts, choices, links, render, sections
from workbench.pages.base import measure_spec
from workbench.paths import NOTEBOOKS_DIR

pytestmark = pytest.mark.slow
THEMES = ("psychotropics", "analgesics")


@pytest.fixture(scope="module")
def session(pages_dataset):
    return connect(pages_dataset.database)


@pytest.fixture(scope="module")
def catalog(session):
    return pages.Catalog(session)


@pytest.fixture(scope="module")
def built(session, catalog) -> dict[tuple[str, str], pages.Page]:
    return {(kind, theme): pages.build_page(kind, session, catalog, theme=theme)
            for kind in pages.PAGE_KINDS for theme in THEMES}


def test_doctests_of_the_page_modules() -> None:
    for module in (choices, links, render):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
@pytest.mark.parametrize("theme", THEMES)
def test_every_page_builds_with_its_sections_and_key_figures(built, kind, theme) -> None:
    page = built[(kind, theme)]
    assert [s.id for s in page.sections] == list(pages.SECTIONS[kind])
    assert [s.note for s in page.sections if s.note] == []
    graphs = [s for s in page.sections if s.figure is not None]
    assert 1 <= len(graphs) <= pages.MAX_GRAPHS
    for section in page.sections:
        assert section.sentence and section.title
        assert section.table is not None and len(section.table)
        scan_for_person_keys(section.table)
        # the CSV is exactly the published table behind the figure, hidden values empty
        read = pd.read_csv(io.StringIO(section.csv()))
        assert list(read.columns) == list(section.table.columns)
        assert len(read) == len(section.table)
        for flag in [c for c in read.columns if c.endswith("_suppressed")]:
            count = flag.removesuffix("_suppressed")
            hidden = section.table[flag].astype(bool).to_numpy()
            assert read[count].isna().to_numpy().tolist() == hidden.tolist()
    groups = 1 if kind.endswith("intervention") else 4
    assert [f.key for f in page.key_figures][0] == "listed"
    assert len(page.key_figures) == 1 + groups
    measured = page.key_figures[1:]
    assert all(f.value is not None for f in measured)
    assert all(f.change is not None and f.previous for f in measured)
    if kind != "overview":
        assert all(len(f.comparisons) == (2 if kind.startswith("practice") else 1)
                   for f in measured)
    html = render.page_html(page)
    assert html.count('class="wb-figure"') == len(graphs)
    assert html.count('class="wb-kf"') == len(page.key_figures)
    assert "Traceback" not in html


def test_danish_by_default_english_on_request(session, catalog, built) -> None:
    da = built[("overview", "analgesics")]
    assert da.title == "Overblik" and "Smertestillende" in da.subtitle
    en = pages.build_page("overview", session, catalog, theme="analgesics", language="en")
    assert en.title == "Overview" and "Analgesics" in en.subtitle
    assert en.sections[0].sentence != da.sections[0].sentence


def test_another_unit_period_and_filters_change_the_figures(session, catalog, built) -> None:
    first, second = list(catalog.practices)[:2]
    page = built[("practice_insight", "psychotropics")]
    assert page.choices.unit == first
    other = pages.build_page("practice_insight", session, catalog, unit=second)
    assert other.choices.unit == second
    assert [f.value for f in other.key_figures] != [f.value for f in page.key_figures]
    older = pages.build_page("cluster_intervention", session, catalog, theme="analgesics",
                             period=catalog.periods[1], group="opioids",
                             measure="ddd_per_1000_per_day", breakdown="started")
    now = built[("cluster_intervention", "analgesics")]
    assert older.key_figures[1].value != now.key_figures[1].value
    assert set(older.section("breakdown").table["started"]) == {"started", "continued", "all"}
    drug = next(iter(catalog.drugs_of("opioids")))
    one = pages.build_page("practice_intervention", session, catalog, theme="analgesics",
                           group="opioids", drug=drug)
    assert one.key_figures[1].label.endswith(catalog.drug_name(drug))
    assert "product" in one.section("drugs").table.columns


def test_published_tables_with_margins_do_not_leak(built) -> None:
    page = built[("cluster_intervention", "analgesics")]
    breakdown = page.section("breakdown").table
    dim = page.choices.breakdown
    keys = ("role", "level", "unit_id", "period", "group", dim)
    values = breakdown.drop(columns=[c for c in breakdown if c.endswith("_suppressed")])
    spec = measure_spec(values, keys, margins=(base.breakdown_margin(dim),),
                        share_of={dim: "all"})
    assert recoverable_cells(breakdown, spec) == []
    practices = page.section("practices").table
    assert "cluster" in set(practices["unit_id"])


@pytest.mark.parametrize(
    "raw",
    [
        {"theme": "oncology"},
        {"group": "opioids"},  # not a psychotropics group
        {"unit": "999999"},
        {"period": "2031"},
        {"period": "2024'; drop table persons; --"},
        {"measure": "__class__"},
        {"breakdown": "person_id"},
        {"drug": "N02AA01"},  # a drug of another group
        {"language": "sv"},
        {"unit": "<script>alert(1)</script>"},
    ],
)
def test_untrusted_choices_are_refused(catalog, raw) -> None:
    with pytest.raises(pages.ChoiceError):
        catalog.resolve("practice_intervention", **raw)


def test_url_query_round_trip_and_unknown_fields(catalog) -> None:
    c = catalog.resolve("practice_intervention", theme="analgesics", group="nsaids",
                        period=catalog.periods[2], measure="ddd_per_1000", breakdown="sex")
    link = links.url("practice_intervention", c)
    assert link.startswith("practice_intervention.ipynb?") and "theme=analgesics" in link
    query = link.split("?", 1)[1] + "&utm_source=mail"
    assert catalog.resolve_query("practice_intervention", query) == c
    with pytest.raises(pages.ChoiceError):
        catalog.resolve_query("practice_intervention", "unit=000000")
    with pytest.raises(pages.ChoiceError):
        catalog.resolve("no_such_page")


def test_drill_down_links_carry_unit_and_filters(built, catalog) -> None:
    overview = built[("overview", "analgesics")]
    clusters = overview.section("clusters").links
    assert clusters and all(u.startswith("cluster_insight.ipynb?") for _, u in clusters)
    assert all("theme=analgesics" in u for _, u in clusters)
    insight = built[("cluster_insight", "analgesics")]
    practice_links = [u for _, u in insight.section("practices").links]
    assert any(f"unit={p}" in u for p in catalog.practices for u in practice_links)
    assert any("overview.ipynb" in u for _, u in insight.links)
    area = built[("practice_intervention", "analgesics")]
    assert any(u.startswith("practice_insight.ipynb?") for _, u in area.links)
    ranking = insight.section("ranking")
    assert all(u.startswith("cluster_intervention.ipynb?") for _, u in ranking.links)


def test_charts_draw_hidden_values_as_gaps() -> None:
    df = pd.DataFrame({"g": ["a", "b"], "v": pd.array([1.0, None], dtype="Float64"),
                       "s": ["x", "x"], "role": ["unit", "peer"]})
    fig = charts.grouped_bars(df, category="g", value="v", series="s", colours={},
                              title="t", ylabel="y")
    assert any(t.get_text() == "x" for t in fig.axes[0].texts)
    fig = charts.ranked_bars(df, label="g", value="v", role="role", title="t", xlabel="x",
                             references={"n": 1.0})
    assert len(fig.axes[0].patches) == 2


def test_sections_module_documents_every_section() -> None:
    for name in ("groups_section", "ranking_section", "trend_section", "spread_section",
                 "practices_section", "distribution_section", "breakdown_section",
                 "drugs_section"):
        assert getattr(sections, name).__doc__


# --- the notebooks -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
def test_notebooks_are_thin_paired_and_without_outputs(kind) -> None:
    import jupytext

    source = NOTEBOOKS_DIR / f"{kind}.py"
    ipynb = NOTEBOOKS_DIR / f"{kind}.ipynb"
    nb = json.loads(ipynb.read_text(encoding="utf-8"))
    assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb["cells"] if c["cell_type"] == "code")
    paired = jupytext.read(source)
    code = [c.source for c in paired.cells if c.cell_type == "code"]
    assert code == ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"], (
        f"{ipynb.name} is out of sync: run `jupytext --sync notebooks/{kind}.py`")
    tagged = [c for c in paired.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in tagged[0].source.splitlines():
        assert re.match(r'^\w+: str = "[^"]*"  # .+$', line), line
    text = Path(source).read_text(encoding="utf-8")
    assert text.count("import workbench") == 1
    assert len(code) <= 8 and all(len(c.splitlines()) <= 8 for c in code[1:])
    for section in pages.SECTIONS[kind]:
        assert f'view.section("{section}")' in text
