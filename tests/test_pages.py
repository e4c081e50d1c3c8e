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
from engine_fixtures import MORPHINE, OXYCODONE_DEPOT, ZOPICLONE, world
from page_checks import layout_problems, page_layout_problems

import workbench.pages as pages
from workbench.disclosure import recoverable_cells, scan_for_person_keys
from workbench.engine import connect
from workbench.pages import base, charts, choices, links, render, sections, style
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
    for module in (choices, links, render, style):
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
    # the change since the previous period, unless the store hides that period's figure
    key = page.key_table
    for f in measured:
        focus = "nation" if kind == "overview" else "unit"  # the page's own unit
        before = key[(key["group"] == f.key) & (key["period"] == f.previous)
                     & (key["role"] == focus)]
        assert f.previous and len(before) == 1
        assert (f.change is None) == bool(pd.isna(before[f.measure].iloc[0])), f.key
    assert any(f.change is not None for f in measured)
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
    assert one.key_figures[1].label.endswith(catalog.drug_name(drug, "da"))
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
    assert link.startswith("practice_intervention.ipynb?") and "topic=analgesics" in link
    query = link.split("?", 1)[1] + "&utm_source=mail"
    assert catalog.resolve_query("practice_intervention", query) == c
    # the theme travels as `topic` (Voilà keeps `theme` for itself); an old `theme=` link works
    assert "theme=" not in link
    old_link = query.replace("topic=", "theme=")
    assert catalog.resolve_query("practice_intervention", old_link) == c
    assert catalog.resolve_query("overview", "topic=analgesics&theme=psychotropics").theme == (
        "analgesics")
    with pytest.raises(pages.ChoiceError):
        catalog.resolve_query("practice_intervention", "unit=000000")
    with pytest.raises(pages.ChoiceError):
        catalog.resolve("no_such_page")


def test_drill_down_links_carry_unit_and_filters(built, catalog) -> None:
    overview = built[("overview", "analgesics")]
    clusters = overview.section("clusters").links
    assert clusters and all(u.startswith("cluster_insight.ipynb?") for _, u in clusters)
    assert all("topic=analgesics" in u for _, u in clusters)
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


def test_no_chart_text_is_cut_off_or_runs_into_another(session, catalog, built) -> None:
    """Every chart of every page, also with the longest labels the choices give: English, the
    longest measure name, one drug (the title then names group and drug)."""
    longest = [pages.build_page(kind, session, catalog, theme=theme, language=language,
                                measure="ddd_per_1000_per_day", group=group,
                                drug=max(catalog.drugs_of(group, language).items(),
                                         key=lambda item: len(item[1]))[0])
               for kind in pages.PAGE_KINDS
               for theme, group, language in (("psychotropics", "sedatives", "en"),
                                              ("analgesics", "opioids", "da"))]
    problems = [p for page in [*built.values(), *longest] for p in page_layout_problems(page)]
    assert problems == []


def test_a_ranking_of_the_nations_118_clusters_keeps_every_label_readable() -> None:
    """The national overview ranks every cluster: 118 bars, one label each, none on another."""
    df = pd.DataFrame({"name": [f"Klynge Rebild, Morsø og Læsø {i}" for i in range(118)],
                       "v": [float(i % 40) for i in range(118)], "role": "peer"})
    fig = charts.ranked_bars(df, label="name", value="v", role="role", title="t", xlabel="x",
                             references={"Hele landet": 20.0})
    assert layout_problems(fig) == []


def test_the_checker_sees_a_cut_off_title_and_crowded_ticks() -> None:
    """The layout check itself: a title wider than its figure, ticks on top of each other."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.set_title("a title far too long for a figure three inches wide, cut at both ends")
    ax.set_xticks([0, 0.01], ["first label", "second label"])
    found = layout_problems(fig)
    assert any(p.startswith("cut off") for p in found)
    assert any(p.startswith("overlap") for p in found)
    crowded = Figure(figsize=(4, 3))  # a legend laid over the panel, a title on the ticks
    ax = crowded.subplots()
    ax.plot([0, 1], [0, 1], label="a line")
    crowded.legend(loc="center")
    crowded.suptitle("title", y=0.5)
    found = layout_problems(crowded)
    assert "collision: legend 0 / panel 0 panel" in found
    assert "collision: legend 0 / title" in found
    fine = charts.grouped_bars(
        pd.DataFrame({"g": ["a", "b"], "v": [1.0, 2.0], "s": ["x", "x"]}), category="g",
        value="v", series="s", colours={}, title="a title far too long for a figure eight "
        "inches wide, which the house style wraps over two lines instead of cutting it off",
        ylabel="y")
    assert layout_problems(fine) == []


def test_kept_font_metrics_give_matplotlibs_own_bytes(built) -> None:
    """Every figure of every page drawn by the SVG canvas with kept text metrics
    (:mod:`workbench.pages.fonts`) gives exactly the bytes of matplotlib's own SVG canvas, and
    matplotlib's text layout does ask for the kept metrics (else the speed-up is lost)."""
    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.text import Text

    from workbench.pages import fonts

    fonts._line_metrics.clear()
    fonts._svg_sizes.clear()
    figures = [s.figure for page in built.values() for s in page.sections
               if s.figure is not None]
    assert len(figures) >= 20
    for figure in figures:
        render.svg(figure)  # laid out (by the kept Agg renderer) and drawn once
        ours, theirs = io.BytesIO(), io.BytesIO()
        with matplotlib.rc_context(render.SVG_RC):
            figure.savefig(ours, format="svg", metadata={"Date": None},
                           backend=render.SVG_BACKEND)
            figure.savefig(theirs, format="svg", metadata={"Date": None})
        assert ours.getvalue() == theirs.getvalue()
    assert fonts._line_metrics and fonts._svg_sizes
    # the layout's measurements too: a multi-line, rotated Danish label at two resolutions
    from matplotlib.figure import Figure

    for dpi in (72.0, 100.0):
        text = Text(0, 0, "Æbleskiver og\nøl (DDD/1000/døgn)", rotation=30, fontsize=9.5)
        text.set_figure(Figure(dpi=dpi))
        kept, own = (text._get_layout(r(1, 1, dpi))
                     for r in (fonts.MeasuringRendererAgg, RendererAgg))
        assert kept[0].bounds == own[0].bounds and kept[1:] == own[1:]


def test_danish_pages_write_decimal_commas_csv_keeps_points(built, session, catalog) -> None:
    page = built[("cluster_insight", "psychotropics")]
    ranking = page.section("ranking")
    html = render.section(ranking, page)
    cells = re.findall(r"<td>([^<]*)</td>", html)
    width = len(ranking.ranking.columns)  # area, crude, expected, O/E (interval), ...
    values = ranking.table["crude_per_1000"].astype(float)
    # e.g. 45.83 -> "45,8": the shown value is the published one, written the Danish way
    assert [render.number(v, "da", 1) for v in values] == cells[1::width]
    # O/E (95 % interval), "x" hidden, "–" nothing expected (no ratio)
    ratios = r"\d+,\d\d \(\d+,\d\d–\d+,\d\d\)|\d+,\d\d|x|–"
    assert all(re.fullmatch(ratios, c) for c in cells[3::width])
    assert not [c for c in cells if re.fullmatch(r"\d+\.\d", c)]
    csv = pd.read_csv(io.StringIO(ranking.csv()))
    assert csv["crude_per_1000"].dtype.kind == "f"  # machine-readable, decimal points
    english = pages.build_page("cluster_insight", session, catalog, language="en")
    cells = re.findall(r"<td>([^<]*)</td>", render.section(english.section("ranking"), english))
    assert any(re.fullmatch(r"\d+\.\d", c) for c in cells[1::width])
    # chart ticks follow the page language too
    df = pd.DataFrame({"g": ["a", "b"], "v": [0.25, 0.5], "s": ["x", "x"]})
    ticks = {lang: [t.get_text() for t in charts.grouped_bars(
        df, category="g", value="v", series="s", colours={}, title="t", ylabel="y",
        language=lang).axes[0].get_yticklabels()] for lang in ("da", "en")}
    assert "0,5" in ticks["da"] and "0.5" in ticks["en"]
    assert not [t for t in ticks["da"] if "." in t]


def test_drug_names_in_the_page_language() -> None:
    """Danish names come from the register's generic product names (``Substans "Firma"``);
    English names from the WHO reference; a code with only brand names keeps the WHO name."""
    import ibis

    reg = world()
    names = {MORPHINE: 'Morfin "Teva"', OXYCODONE_DEPOT: "Oxycontin", ZOPICLONE: 'Zopiclon "Krka"'}
    for row in reg.rows["products"]:
        row["product_name"] = names.get(row["product_id"], row["product_name"])
    reg.product("100003", "N02AA01", "tablet", 50, 25.0)
    reg.rows["products"][-1]["product_name"] = 'Morfin "Accord"'
    reg.product("300002", "N05CF01", "tablet", 30, 30.0)  # a brand beside the generic
    reg.rows["products"][-1]["product_name"] = "Imovane"
    con = reg.backend()
    con.create_table("reference_atc_ddd", ibis.memtable(pd.DataFrame({
        "atc_code": ["N02AA01", "N02AA05", "N05CF01", "M01AE01"],
        "substance_name": ["morphine", "oxycodone", "zopiclone", "ibuprofen"]})))
    catalog = pages.Catalog(connect(con))
    for language, expected in (("da", ["Morfin", "Oxycodone"]), ("en", ["Morphine", "Oxycodone"])):
        assert [catalog.drug_name(c, language) for c in ("N02AA01", "N02AA05")] == expected
    assert catalog.drug_name("N05CF01", "da") == "Zopiclon"
    assert catalog.drug_name("M01AE01", "da") == "Ibuprofen"  # "Product 200001": no generic


def test_a_page_offers_the_drugs_someone_redeemed(catalog) -> None:
    """The drug list of a group is the store's: drugs with a redemption, not every ATC code of
    the catalogue (which holds barbiturates nobody is prescribed)."""
    held = catalog.store.drugs_of("sedatives")
    assert list(catalog.drugs_of("sedatives")) == held
    redeemed = catalog.session.con.sql(
        "SELECT DISTINCT p.atc_code FROM redemptions r JOIN products p USING (product_id) "
        "WHERE p.atc_code LIKE 'N05B%' OR p.atc_code LIKE 'N05C%'").to_pandas()["atc_code"]
    assert held == sorted(redeemed)
    every = catalog.session.registers.products.filter(
        catalog.session.registers.products.atc_code.re_search("^N05[BC]")).select(
        "atc_code").distinct().count().execute()
    assert len(held) < every


def test_generated_register_gives_danish_drug_names(catalog) -> None:
    """The generator names products ``Oxycodon "Teva"`` (parameters/generator.yaml and its
    spelling rules), so a Danish page says Oxycodon where an English one says Oxycodone."""
    assert catalog.drug_name("N02AA05", "da") == "Oxycodon"
    assert catalog.drug_name("N02AA05", "en") == "Oxycodone"
    assert catalog.drug_name("N02AA55", "da") == "Oxycodon/naloxon"


def test_the_page_title_is_shown_once(built) -> None:
    for (kind, _), page in built.items():
        html = render.page_html(page)
        assert html.count("<h1") == 1 and f">{page.title}</h1>" in html
        nb = json.loads((NOTEBOOKS_DIR / f"{kind}.ipynb").read_text(encoding="utf-8"))
        assert [c for c in nb["cells"] if c["cell_type"] == "markdown"] == [], (
            "the header is the page's title; a markdown title would repeat it")


def test_sections_module_documents_every_section() -> None:
    for name in ("groups_section", "trend_section", "spread_section",
                 "practices_section", "peers_section", "breakdown_section",
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
