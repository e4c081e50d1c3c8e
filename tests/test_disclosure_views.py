"""The two leaks of issue 18 across views, on a generated municipality (Odense: 4 clusters),
as a viewer reads the pages: with the answer store's decisions they are gone, and with tables
protected one at a time (the store's decisions switched off) they come back — so the checks can
fail.

* **a drug hidden in its group's drugs table, published when it is chosen**: the drugs a
  cluster's drugs table hides but their own pages publish are known to a viewer; what is left
  of the group's total must not pin the drugs still unknown;
* **a cluster given back by its region**: the public cluster page lists the region's clusters,
  and the region's own figure is published beside them (the overview's units); no region may
  publish its patients with exactly one of its clusters hidden, nor with hidden clusters adding
  up to fewer than the threshold;
* **a unit hidden by the store, shown in a funnel**: a cluster intervention page's funnel
  publishes each practice's (each cluster's, under the public profile) patients and ratio for
  the group; where the store hides that figure in every view, the funnel must hide it too.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

import workbench.pages as pages
from workbench.disclosure import DEFAULT_POLICY
from workbench.engine import connect
from workbench.pages import base
from workbench.profiles import Profile

pytestmark = pytest.mark.slow

THEMES = ("analgesics", "psychotropics")


@pytest.fixture(scope="module")
def session(clusters_dataset):
    return connect(clusters_dataset.database)


@pytest.fixture(scope="module")
def catalog(session):
    """The public profile's: a cluster page lists its region's clusters, not its practices."""
    return pages.Catalog(session, Profile("public"))


@pytest.fixture
def one_table_at_a_time(monkeypatch):
    """Today's method before the store decided: every table protected on its own."""
    apply = base.apply

    def alone(df, spec, *args, **kwargs):
        if spec.decided:
            df = df.drop(columns=spec.decided)
            spec = dataclasses.replace(spec, decided=None, decides=())
        return apply(df, spec, *args, **kwargs)

    monkeypatch.setattr(base, "apply", alone)


def _periods(catalog) -> list[str]:
    """The latest year and quarter on offer (the pages' landing periods and a shorter one)."""
    years = [p for p in catalog.periods if len(p) == 4]
    quarters = [p for p in catalog.periods if "Q" in p]
    return [years[-1], quarters[-1]]


def _drugs_recovered(session, catalog) -> list[tuple]:
    """(cluster, group, period, drug) where a cluster's drugs table and the pages of its
    hidden drugs pin a hidden drug: the drugs the table hides whose own page publishes them are
    known to the viewer, and the group's published total minus every known drug leaves one
    unknown drug — its DDD exactly (a group's DDD is its drugs'), its patients as a lower bound
    (a patient can take two drugs, so hidden drugs adding up to little prove nothing)."""
    found = []
    for theme in THEMES:
        for group in catalog.definitions.themes[theme].groups:
            for period in _periods(catalog):
                for cluster in catalog.clusters:
                    page = pages.build_page("cluster_intervention", session, catalog,
                                            theme=theme, unit=cluster, group=group,
                                            period=period)
                    table = page.section("drugs").table
                    if table is None:
                        continue
                    mine = table[table["role"] == "unit"]
                    total = mine.loc[mine["drug"] == "all", "ddd"]
                    drugs = mine[mine["drug"] != "all"]
                    hidden = list(drugs.loc[drugs["patients"].isna(), "drug"])
                    if not hidden or not len(total) or pd.isna(total.iloc[0]):
                        continue
                    unknown = []
                    for drug in hidden:
                        own = pages.build_page("cluster_intervention", session, catalog,
                                               theme=theme, unit=cluster, group=group,
                                               period=period, drug=drug)
                        key = own.key_table
                        row = key[(key["role"] == "unit") & (key["period"] == period)]
                        if not len(row) or pd.isna(row["patients"].iloc[0]):
                            unknown.append(drug)
                    if len(unknown) == 1:
                        found.append((cluster, group, period, unknown[0]))
    return found


def test_no_hidden_drug_comes_back_from_its_groups_table_and_the_drugs_pages(
        session, catalog) -> None:
    assert _drugs_recovered(session, catalog) == []


def test_tables_protected_one_at_a_time_give_a_hidden_drug_back(session, catalog,
                                                               one_table_at_a_time) -> None:
    assert _drugs_recovered(session, catalog)


def _regions_giving_back_a_cluster(session, catalog) -> list[tuple]:
    """(group, drug, period) where the region's published patients (the line of the public
    cluster page's peers) and its published clusters (the bars) pin the hidden clusters: one
    hidden, or hidden ones adding up to under the threshold."""
    found = []
    threshold = DEFAULT_POLICY.threshold
    cluster = next(iter(catalog.clusters))
    region = catalog.clusters[cluster].region
    keys = ("level", "unit_id", "period", "group")
    for theme in THEMES:
        for group in catalog.definitions.themes[theme].groups:
            for drug in [None, *catalog.drugs_of(group)]:
                for period in _periods(catalog):
                    choices = {"drug": drug} if drug else {}
                    page = pages.build_page("cluster_insight", session, catalog, theme=theme,
                                            unit=cluster, group=group, period=period,
                                            **choices)
                    peers = page.section("practices").table
                    line = catalog.store.measures(group, "region", period, units=[region],
                                                  filters=choices or None)
                    line = base.publish(line, base.measure_spec(line, keys))
                    if peers is None or pd.isna(line["patients"].iloc[0]):
                        continue
                    hidden = peers["patients"].isna()
                    rest = line["patients"].iloc[0] - peers.loc[~hidden, "patients"].sum()
                    if hidden.sum() == 1 or (hidden.sum() > 1 and rest < threshold):
                        found.append((group, drug, period))
    return found


def test_no_region_gives_back_a_hidden_cluster(session, catalog) -> None:
    assert _regions_giving_back_a_cluster(session, catalog) == []


def test_tables_protected_one_at_a_time_give_a_cluster_back(session, catalog,
                                                            one_table_at_a_time) -> None:
    assert _regions_giving_back_a_cluster(session, catalog)


@pytest.fixture(scope="module")
def analyst(session):
    """The analyst's catalogue: a cluster's intervention page shows its practices' funnel."""
    return pages.Catalog(session, Profile("analyst"))


def _funnel_points_the_store_hides(session, catalog) -> list[tuple]:
    """(cluster, group, unit) where a cluster intervention page's funnel publishes the
    patients of a unit (a practice; a cluster under the public profile) whose figure for the
    group and period the answer store hides in every view: the funnel would give back what
    the store hid as a complement."""
    found = []
    store = catalog.store
    period = _periods(catalog)[0]
    for group in catalog.definitions.themes["psychotropics"].groups:
        hidden = set(store.sql("SELECT unit_id FROM hidden WHERE sel = ? AND period = ? AND "
                               "dim = 'total'", [group, period])["unit_id"])
        for cluster in catalog.clusters:
            page = pages.build_page("cluster_intervention", session, catalog,
                                    theme="psychotropics", unit=cluster, group=group,
                                    period=period)
            table = page.section("practices").table
            if table is None:
                continue
            shown = table.loc[table["patients"].notna() & (table["unit_id"] != "cluster"),
                              "unit_id"]
            found += [(cluster, group, u) for u in shown if u in hidden]
    return found


@pytest.mark.parametrize("profile", ["public", "analyst"])
def test_a_funnel_shows_no_unit_whose_figure_the_store_hides(session, catalog, analyst,
                                                             profile) -> None:
    assert _funnel_points_the_store_hides(
        session, catalog if profile == "public" else analyst) == []


def test_a_funnel_protected_on_its_own_shows_what_the_store_hides(session, analyst,
                                                                  one_table_at_a_time) -> None:
    assert _funnel_points_the_store_hides(session, analyst)
