"""The cluster and practice pages on a generated municipality with several clusters (Odense:
67 practices in 4 clusters), for every cluster and a practice of each — not only the first.

What is checked against the register itself (read with pandas, not through the engine): which
practices a cluster page shows, and the cluster's listed persons (the mean list size).
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from page_checks import page_layout_problems

import workbench.pages as pages
from workbench.disclosure import recoverable_cells
from workbench.engine import connect
from workbench.glossary import glossary
from workbench.pages import base, render
from workbench.pages.base import measure_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def register(clusters_dataset) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(clusters_dataset.database), read_only=True) as con:
        return {name: con.table(name).df() for name in ("practices", "clusters", "listings")}


@pytest.fixture(scope="module")
def session(clusters_dataset):
    return connect(clusters_dataset.database)


@pytest.fixture(scope="module")
def catalog(session):
    return pages.Catalog(session)


@pytest.fixture(scope="module")
def cluster_pages(session, catalog) -> dict[str, pages.Page]:
    return {cluster: pages.build_page("cluster_insight", session, catalog, theme="analgesics",
                                      unit=cluster)
            for cluster in catalog.clusters}


def label(section: str, key: str, language: str) -> str:
    return glossary().label(section, key, language)


def members(register: dict[str, pd.DataFrame], cluster: str) -> set[str]:
    practices = register["practices"]
    return set(practices.loc[practices["cluster_id"] == cluster, "practice_id"])


def test_the_dataset_has_several_clusters_of_several_practices(register, catalog) -> None:
    sizes = register["practices"].groupby("cluster_id").size()
    assert len(sizes) >= 3 and sizes.min() >= 5
    assert set(catalog.clusters) == set(register["clusters"]["cluster_id"])


def test_every_cluster_page_shows_its_own_practices(cluster_pages, register, catalog) -> None:
    for cluster, page in cluster_pages.items():
        assert catalog.clusters[cluster].name in page.subtitle
        table = page.section("practices").table
        assert set(table["unit_id"]) - {"cluster"} == members(register, cluster)
        linked = {u.split("unit=")[1].split("&")[0] for _, u in page.section("practices").links}
        assert linked == members(register, cluster)
        # 67 practices nationally: the band of national practice deciles is drawn
        assert {"practice_decile_10", "practice_decile_90"} <= set(table.columns)
        assert [s.note for s in page.sections if s.note] == []
        assert page_layout_problems(page) == []


def test_clusters_differ_and_rank_among_each_other(cluster_pages) -> None:
    listed = {c: p.key_figures[0].value for c, p in cluster_pages.items()}
    assert len(set(listed.values())) == len(listed)
    # each cluster's standardised ratio against the nation: with one cluster every one was 1
    ratios = pd.concat([p.section("ranking").table["ratio"].astype(float) for p in
                        cluster_pages.values()])
    assert ratios.round(6).nunique() > 1


def test_cluster_listed_persons_equal_the_register(cluster_pages, register) -> None:
    """Listed persons = person-days listed with the cluster's practices in 2025 / 365, worked
    out from the listings with pandas."""
    listings = register["listings"]
    start, end = pd.Timestamp("2025-01-01"), pd.Timestamp("2026-01-01")
    for cluster, page in cluster_pages.items():
        assert page.choices.period == "2025"
        own = listings[listings["practice_id"].isin(members(register, cluster))]
        first = pd.to_datetime(own["start_date"]).clip(lower=start)
        last = pd.to_datetime(own["end_date"]).fillna(end).clip(upper=end)
        days = (last - first).dt.days.clip(lower=0).sum()
        assert page.key_figures[0].value == pytest.approx(days / 365, rel=1e-9)


def test_practice_pages_compare_with_their_own_cluster(session, catalog, register,
                                                       cluster_pages) -> None:
    for cluster in catalog.clusters:
        practice = sorted(members(register, cluster))[-1]
        page = pages.build_page("practice_insight", session, catalog, theme="analgesics",
                                unit=practice)
        names = [name for name, _ in page.key_figures[1].comparisons]
        assert names == [catalog.clusters[cluster].name, label("levels", "nation", "da")]
        # the cluster value beside the practice is the cluster page's own value
        for figure in page.key_figures[1:]:
            own = next(f for f in cluster_pages[cluster].key_figures if f.key == figure.key)
            assert figure.comparisons[0][1] == pytest.approx(own.value)
        back = dict(page.links)[label("ui", "back_cluster", "da")]
        assert f"unit={cluster}" in back
        assert page_layout_problems(page) == []


def test_intervention_pages_for_another_cluster_and_practice(session, catalog,
                                                              register) -> None:
    cluster = list(catalog.clusters)[-1]
    area = pages.build_page("cluster_intervention", session, catalog, theme="analgesics",
                            unit=cluster, group="opioids", breakdown="sex")
    assert set(area.section("practices").table["unit_id"]) - {"cluster"} == members(register,
                                                                                     cluster)
    breakdown = area.section("breakdown").table
    keys = ("role", "level", "unit_id", "period", "group", "sex")
    values = breakdown.drop(columns=[c for c in breakdown if c.endswith("_suppressed")])
    spec = measure_spec(values, keys, margins=(base.breakdown_margin("sex"),),
                        share_of={"sex": "all"})
    assert recoverable_cells(breakdown, spec) == []
    practice = sorted(members(register, cluster))[0]
    one = pages.build_page("practice_intervention", session, catalog, theme="analgesics",
                           unit=practice, group="opioids")
    distribution = one.section("distribution").table
    assert "unit_id" not in distribution.columns  # other practices only as a distribution
    assert len(distribution) == len(register["practices"])
    html = render.page_html(one)
    others = set(register["practices"]["practice_id"]) - members(register, cluster)
    assert not [p for p in others if p in html]
    for page in (area, one):
        assert [s.note for s in page.sections if s.note] == []
        assert page_layout_problems(page) == []


def test_overview_names_regions_and_links_every_cluster(session, catalog) -> None:
    page = pages.build_page("overview", session, catalog, theme="analgesics")
    clusters = page.section("clusters")
    assert set(clusters.table["unit_id"]) == set(catalog.clusters)
    assert len(clusters.links) == len(catalog.clusters)
    regions = page.section("regions").figure.axes[0].get_yticklabels()
    assert [t.get_text() for t in regions] == ["Region Syddanmark"]  # Odense's, not "1083"
    assert page_layout_problems(page) == []
