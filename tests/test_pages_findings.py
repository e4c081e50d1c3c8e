"""The pages' sections built from the analysis (workbench.pages.findings): intervention areas,
funnels, deciles over time, journeys and risks.

* by hand: which risks concern a theme, which cohort a journeys table follows, flags that travel
  through disclosure control as numbers and a hidden point that is never drawn;
* on the generated municipality (Samsø, ``pages_dataset``): the pages build with the new
  sections, at most four graphs, every table published (no count of 1–4, no person key), and
  the ranking agrees with the analysis and with the engine's crude rates;
* on the generated municipality with several clusters (Odense, ``clusters_dataset``): the
  practices the analysis flags at 99.8 % (its own funnel of every practice, computed here as
  ``tests/bench/analysis_bench.py`` does) are the ones the cluster pages flag and name, among
  them planted outliers of the generator; and what each viewing profile sees.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from page_checks import page_layout_problems

import workbench.pages as pages
from workbench.analysis import funnel_table, opportunities, standardised
from workbench.disclosure import scan_for_person_keys
from workbench.engine import connect
from workbench.pages import analysis_charts, findings, render
from workbench.pages.base import Context, publish
from workbench.profiles import Profile

pytestmark = pytest.mark.slow
KINDS = ("cluster_insight", "cluster_intervention", "practice_insight", "practice_intervention")


def assert_published(table: pd.DataFrame) -> None:
    """No person key, no shown count of 1–4, and nothing derived from a hidden count."""
    scan_for_person_keys(table)
    flags = [c for c in table.columns if c.endswith("_suppressed")]
    assert flags, "a published table carries its suppression flags"
    for flag in flags:
        values = table[flag.removesuffix("_suppressed")].astype("Float64")
        shown = values.dropna()
        assert not ((shown > 0) & (shown < 5)).any(), flag
        assert values[table[flag].astype(bool)].isna().all(), flag


# --- by hand ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(pages_dataset):
    return connect(pages_dataset.database)


@pytest.fixture(scope="module")
def catalog(session):
    return pages.Catalog(session, profile=Profile("analyst"))


def context(session, catalog, kind: str, **choices: str) -> Context:
    return Context(session, catalog, catalog.resolve(kind, **choices))


def test_the_risks_of_a_theme(session, catalog) -> None:
    # risks.yaml: opioids (N02A) meet the analgesics' opioids; benzodiazepines and Z-drugs
    # (N05BA, N05CD, N05CF) the sedatives (N05B, N05C); antipsychotics (N05A) and stimulants
    # (N06BA) their own psychotropic groups. Each addictive-drug risk names opioids and
    # benzodiazepines, so it belongs to both themes.
    analgesics = findings.theme_risks(context(session, catalog, "cluster_insight",
                                              theme="analgesics"))
    assert analgesics == ["opioid_benzodiazepine", "long_term_addictive",
                          "large_start_addictive"]
    psychotropics = findings.theme_risks(context(session, catalog, "cluster_insight",
                                                 theme="psychotropics"))
    assert psychotropics == list(session.definitions.risks)


def test_journeys_follow_the_newest_cohort_with_12_months_of_data(session, catalog) -> None:
    # The register ends on 31 December 2025: starters of 2025 (or its second quarter) can't be
    # followed 12 months, those of the same period a year before can.
    assert catalog.data_range[1].isoformat() == "2025-12-31"
    for period, cohort in (("2025", "2024"), ("2024", "2024"), ("2025Q2", "2024Q2"),
                           ("2024Q4", "2024Q4")):
        ctx = context(session, catalog, "practice_intervention", period=period)
        assert findings.cohort_period(ctx) == cohort


def funnel_rows() -> pd.DataFrame:
    """Three practices of a cluster; the first has 3 patients, so everything about it hides."""
    rows = pd.DataFrame({
        "unit_id": ["000001", "000002", "000003"], "period": "2024", "group": "opioids",
        "patients": [3, 40, 90], "listed": [150.0, 900.0, 1500.0],
        "expected": [1.2, 36.0, 120.0], "ratio": [2.5, 1.11, 0.75],
        "ratio_lower": [0.5, 0.8, 0.6], "ratio_upper": [7.3, 1.5, 0.92], "z": [3.4, 0.6, -3.2],
        "lower_95": 0.7, "upper_95": 1.3, "lower_998": 0.5, "upper_998": 1.5,
    })
    flags = pd.Series(["high", None, "low"])
    defined = pd.Series([True, True, True])
    rows["flag_95"] = findings._flag_codes(flags, defined)
    rows["flag_998"] = findings._flag_codes(flags, defined)
    return rows


def test_flags_are_published_as_numbers_and_hidden_with_their_counts() -> None:
    assert findings._flag_codes(pd.Series(["high", None, "low", "high"]),
                                pd.Series([True, True, True, False])).tolist()[:3] == [1, 0, -1]
    df = funnel_rows()
    published = publish(df, findings._funnel_spec(df, ("unit_id",), "patients"))
    assert published["patients"].isna().tolist() == [True, False, False]
    assert published.loc[0, ["expected", "ratio", "z", "flag_998"]].isna().all()
    words = findings._flag_words(published["flag_998"])
    # 000001 is beyond the limit, but on 3 patients: no verdict is published about it
    assert words.tolist() == ["", "", "low"]
    # a drug only 3 persons in the nation take: every expected value would give them away
    rare = df.assign(reference_patients=3)
    published = publish(rare, findings._funnel_spec(rare, ("unit_id",), "patients"))
    assert published["patients"].notna().tolist() == [False, True, True]
    assert published[list(findings.FUNNEL_DERIVED)].isna().all().all()


def test_a_hidden_point_is_not_drawn_and_only_flagged_ones_are_named() -> None:
    df = funnel_rows()
    published = publish(df, findings._funnel_spec(df, ("unit_id",), "patients"))
    published["flag_998"] = findings._flag_words(published["flag_998"])
    plot = published.assign(_role="unit", _label=["First", "Second", "Third"])
    lines = pd.DataFrame({"exposure": [1.0, 50.0, 150.0], "target": 1.0, "lower_95": 0.7,
                          "upper_95": 1.3, "lower_998": 0.5, "upper_998": 1.5})
    fig = analysis_charts.funnel(
        plot, lines, x="expected", y="ratio", role="_role", flag="flag_998", label="_label",
        names={"unit": "practices"}, limit_labels=("target", "95", "99.8"), ring_label="ring",
        title="t", xlabel="x", ylabel="y")
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    assert len(points) == 2 and 2.5 not in points[:, 1]  # the hidden 2.5 is nowhere
    assert [t.get_text() for t in ax.texts] == ["Third"]  # the low one beyond 99.8 %


# --- the pages on a generated municipality ---------------------------------------------------


@pytest.fixture(scope="module")
def built(session, catalog) -> dict[str, pages.Page]:
    return {kind: pages.build_page(kind, session, catalog, theme="analgesics", group="opioids")
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_pages_show_the_findings_published(built, kind) -> None:
    page = built[kind]
    assert [s.id for s in page.sections] == list(pages.SECTIONS[kind])
    assert [(s.id, s.note) for s in page.sections if s.note] == []
    assert 1 <= sum(s.figure is not None for s in page.sections) <= pages.MAX_GRAPHS
    for section in page.sections:
        assert section.sentence and section.table is not None and len(section.table)
        assert_published(section.table)
        read = pd.read_csv(io.StringIO(section.csv()))
        assert list(read.columns) == list(section.table.columns)
    html = render.page_html(page)
    assert "person_id" not in html and "Traceback" not in html
    assert page_layout_problems(page) == []


def test_the_ranking_holds_groups_and_risks_and_agrees_with_the_analysis(built, session) -> None:
    page = built["practice_insight"]
    ranking = page.section("ranking")
    table = ranking.table
    groups = session.definitions.groups_of("analgesics")
    assert set(table.loc[table["kind"] == "group", "item"]) == set(groups)
    assert set(table.loc[table["kind"] == "risk", "item"]) == {
        "opioid_benzodiazepine", "long_term_addictive", "large_start_addictive"}
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert len(ranking.ranking) == len(table)  # the table shown is the one published
    unit = page.choices.unit
    want = opportunities(session, unit, "practice", page.choices.period,
                         groups=groups).to_pandas().set_index(["kind", "item"])
    got = table.set_index(["kind", "item"])
    for key, row in got.iterrows():
        if pd.isna(row["ratio"]):
            continue
        assert row["ratio"] == pytest.approx(want.loc[key, "ratio"], rel=1e-12)
        assert row["excess"] == pytest.approx(want.loc[key, "excess"], rel=1e-12)
    # the crude rate beside the standardised ratio is the engine's own crude measure
    crude = page.key_table[(page.key_table["role"] == "unit")
                           & (page.key_table["period"] == page.choices.period)]
    crude = crude.set_index("group")["patients_per_1000"].astype(float)
    for group in groups:
        assert got.loc[("group", group), "crude_per_1000"] == pytest.approx(crude[group],
                                                                             rel=1e-9)
    # ranked on what is published: worse beyond the limits first, then by z
    z = table["z"].astype("Float64")
    tier = [2 if a == "high" else 1 if b == "high" else 0
            for a, b in zip(table["flag_998"], table["flag_95"], strict=True)]
    order = sorted(range(len(table)), key=lambda i: (-tier[i], -(z[i] if pd.notna(z[i])
                                                                 else -np.inf)))
    assert order == list(range(len(table)))


def test_the_practice_funnel_names_no_other_practice(built, session) -> None:
    page = built["practice_intervention"]
    funnel = page.section("distribution").table
    assert "unit_id" not in funnel.columns
    assert (funnel["role"] == "unit").sum() == 1
    practices = set(session.registers.practices.practice_id.to_pandas())
    others = practices - {page.choices.unit}
    html = render.page_html(page)
    assert not [p for p in others if p in html]
    journeys = page.section("journeys").table
    assert set(journeys["role"]) == {"unit", "cluster", "nation"}
    assert journeys["period"].unique().tolist() == ["2024"]  # the 2025 page follows 2024
    engine = session.journeys("opioids", "practice", "2024",
                              units=[page.choices.unit]).to_pandas().set_index("outcome")
    mine = journeys[journeys["role"] == "unit"].set_index("outcome")
    assert set(mine.index) == set(engine.index)
    for outcome, row in mine.iterrows():  # the engine's counts, or hidden
        assert pd.isna(row["persons"]) or row["persons"] == engine.loc[outcome, "persons"]
        assert pd.isna(row["cohort"]) or row["cohort"] == engine.loc[outcome, "cohort"]


# --- several clusters: the flagged practices, and the profiles --------------------------------


@pytest.fixture(scope="module")
def odense(clusters_dataset):
    session = connect(clusters_dataset.database)
    return session, pages.Catalog(session, profile=Profile("analyst"))


@pytest.fixture(scope="module")
def analysis_flags(odense, clusters_dataset) -> pd.DataFrame:
    """The analysis' own verdicts: every practice's standardised ratio in the funnel of all
    practices (as ``tests/bench/analysis_bench.py`` computes them), beside the planted truth."""
    session, catalog = odense
    period = catalog.periods[0]
    table = standardised(session, list(session.definitions.groups), "practice",
                         period).to_pandas()
    flags = funnel_table(table, observed="observed", exposure="expected",
                         variance="variance").to_pandas()
    flags = flags[flags["flag_998"].notna()][["unit_id", "group", "flag_998"]]
    flags["cluster"] = [catalog.practices[u].cluster for u in flags["unit_id"]]
    truth = pd.read_csv(clusters_dataset.ground_truth_dir / "outliers.csv",
                        dtype={"unit_id": str})
    planted = truth[truth["level"] == "practice"][["unit_id", "group", "direction"]]
    return flags.merge(planted, on=["unit_id", "group"], how="left")


def test_cluster_pages_flag_the_practices_the_analysis_flags(odense, analysis_flags) -> None:
    session, catalog = odense
    assert len(analysis_flags) >= 5
    # planted outliers the funnel finds (Odense, seed 1: two paracetamol, one NSAID and one
    # antipsychotics practice): the test can tell a page that names nobody from a right one
    found = analysis_flags[analysis_flags["direction"] == analysis_flags["flag_998"]]
    assert len(found) >= 3
    theme_of = {g: t for t in session.definitions.themes
                for g in session.definitions.groups_of(t)}
    for (cluster, group), want in analysis_flags.groupby(["cluster", "group"]):
        ctx = context(session, catalog, "cluster_intervention", theme=theme_of[group],
                      unit=cluster, group=group)
        section = findings.cluster_funnel_section(ctx, cluster,
                                                 link_kind="practice_intervention")
        shown = section.table.set_index("unit_id")
        flagged = shown[shown["flag_998"] != ""]
        assert dict(flagged["flag_998"]) == dict(zip(want["unit_id"], want["flag_998"],
                                                      strict=True))
        names = {t.get_text() for t in section.figure.axes[0].texts}
        assert names == {analysis_charts.short_label(catalog.practices[u].name)
                         for u in want["unit_id"]}
        assert len(section.ranking) == len(want)  # and listed under the figure


def first_analgesic(session, analysis_flags: pd.DataFrame) -> tuple[str, str]:
    """A cluster and an analgesics group in which the analysis flags a practice."""
    analgesics = session.definitions.groups_of("analgesics")
    row = analysis_flags[analysis_flags["group"].isin(analgesics)].iloc[0]
    return row["cluster"], row["group"]


def test_the_cluster_insight_page_counts_its_flagged_practices(odense, analysis_flags) -> None:
    session, catalog = odense
    cluster, group = first_analgesic(session, analysis_flags)
    theme = "analgesics"
    page = pages.build_page("cluster_insight", session, catalog, theme=theme, unit=cluster)
    table = page.section("ranking").table.set_index(["kind", "item"])
    for g in session.definitions.groups_of(theme):
        high = analysis_flags[(analysis_flags["cluster"] == cluster)
                              & (analysis_flags["group"] == g)
                              & (analysis_flags["flag_998"] == "high")]
        assert table.loc[("group", g), "flagged_practices"] == len(high)
    area = pages.build_page("cluster_intervention", session, catalog, theme=theme,
                            unit=cluster, group=group)
    flagged = area.section("practices").table
    assert set(flagged.loc[flagged["flag_998"] != "", "unit_id"]) == set(
        analysis_flags.loc[(analysis_flags["cluster"] == cluster)
                           & (analysis_flags["group"] == group), "unit_id"])


def test_what_each_profile_sees(odense, analysis_flags) -> None:
    session, analyst = odense
    cluster, _ = first_analgesic(session, analysis_flags)
    practice = next(p.id for p in analyst.practices_of(cluster))
    mates = {p.id for p in analyst.practices_of(cluster)}
    # public: the cluster among its region's clusters, no practice anywhere on the page
    public = pages.Catalog(session, profile=Profile("public"))
    page = pages.build_page("cluster_intervention", session, public, theme="analgesics",
                            unit=cluster, group="opioids")
    section = page.section("practices")
    region = analyst.clusters[cluster].region
    assert set(section.table["unit_id"]) == {c.id for c in analyst.clusters_of_region(region)}
    assert (section.table["unit_id"] == cluster).sum() == 1
    html = render.page_html(page)
    assert not [p for p in analyst.practices if p in html]
    for shown in page.sections:
        text = shown.table.astype(str).to_csv()
        assert not [p for p in analyst.practices if p in text], shown.id
    insight = pages.build_page("cluster_insight", session, public, theme="analgesics",
                               unit=cluster)
    assert "flagged_practices" not in insight.section("ranking").table.columns
    # a practice: its own cluster's practices beside it, nobody else's point
    own = pages.Catalog(session, profile=Profile("practice", practice))
    mine = findings.practice_funnel_section(context(session, own, "practice_intervention",
                                                    theme="analgesics", unit=practice,
                                                    group="opioids"))
    assert sorted(mine.table["role"]) == sorted(["unit"] + ["cluster"] * (len(mates) - 1))
    # the analyst: every practice, unnamed but for the page's own
    every = findings.practice_funnel_section(context(session, analyst, "practice_intervention",
                                                     theme="analgesics", unit=practice,
                                                     group="opioids"))
    assert len(every.table) == len(analyst.practices)
    assert set(every.table["role"]) == {"unit", "cluster", "peer"}


def test_a_ratio_reads_hidden_undefined_or_with_its_interval() -> None:
    from types import SimpleNamespace

    ctx = SimpleNamespace(choices=SimpleNamespace(language="da"))
    assert findings._ratio_text(ctx, 1.04, 0.88, 1.21, 62.2) == "1,04 (0,88–1,21)"
    assert findings._ratio_text(ctx, np.nan, np.nan, np.nan, 15.0) == "x"  # hidden
    assert findings._ratio_text(ctx, np.nan, np.nan, np.nan, 0.0) == "–"  # 0/0: no ratio
