"""Pages read, never compute: kept catalogues, and every widget option a slice of the answer
store (the on-demand engine refused while they build)."""

from __future__ import annotations

import pytest

import workbench.pages as pages
from workbench.engine import connect, parse_period
from workbench.pages.choices import BREAKDOWN_CHOICES, MEASURE_CHOICES
from workbench.profiles import PROFILE_ENV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(pages_dataset):
    session = connect(pages_dataset.database)
    yield session
    session.con.disconnect()  # other modules open the file with their own settings


def test_a_kept_catalogue_does_not_keep_its_session_alive(session) -> None:
    import gc
    import weakref

    other = connect(session.con)
    pages.catalog_for(other)
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None


def test_a_session_keeps_one_catalogue_per_viewing_profile(session, monkeypatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "analyst")
    first = pages.catalog_for(session)
    assert pages.catalog_for(session) is first
    fresh = pages.Catalog(session)
    assert (first.periods, first.clusters, first.practices) == (
        fresh.periods, fresh.clusters, fresh.practices)
    monkeypatch.setenv(PROFILE_ENV, "public")
    public = pages.catalog_for(session)
    assert public is not first and public.profile.name == "public"


def test_another_session_gets_its_own_catalogue(session) -> None:
    other = connect(session.con)
    assert pages.catalog_for(other) is not pages.catalog_for(session)
    assert pages.catalog_for(other).session is other


# --- every figure a slice of the answer store -----------------------------------------------


@pytest.fixture()
def no_engine(monkeypatch):
    """The on-demand engine and analysis made to fail: a page that computes a figure (instead
    of reading the store) fails its test. Counts the calls it refused."""
    calls: list[str] = []

    def refuse(name: str):
        def refused(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"a page called the on-demand {name}")
        return refused

    import sys

    import workbench.analysis
    import workbench.engine.api as api

    # by sys.modules: workbench.analysis re-exports functions named like its modules
    funnel_module = sys.modules["workbench.analysis.funnel"]
    opportunities_module = sys.modules["workbench.analysis.opportunities"]
    standardise_module = sys.modules["workbench.analysis.standardise"]

    monkeypatch.setattr(api, "compute_measures", refuse("compute_measures"))
    for module, name in ((api.Workbench, "risks"), (api.Workbench, "journeys"),
                         (api.Workbench, "transitions"), (funnel_module, "funnel"),
                         (standardise_module, "standardised"), (opportunities_module, "peers"),
                         (workbench.analysis, "funnel"), (workbench.analysis, "standardised"),
                         (workbench.analysis, "peers")):
        monkeypatch.setattr(module, name, refuse(name))
    return calls


def widget_options(catalog: pages.Catalog, kind: str) -> list[dict[str, str]]:
    """Each widget of a page kind moved through its options, one widget at a time: every
    group, measure and breakdown; every drug of the first group; the first and last period
    of each kind and a few between."""
    theme = "analgesics"
    groups = catalog.definitions.groups_of(theme)
    by_kind: dict[str, list[str]] = {}
    for period in catalog.periods:
        by_kind.setdefault(parse_period(period).kind, []).append(period)
    periods = sorted({p for found in by_kind.values() for p in (found[0], found[-1],
                                                               found[len(found) // 2])})
    options = [{"period": p} for p in periods]
    options += [{"group": g} for g in groups]
    options += [{"measure": m} for m in MEASURE_CHOICES]
    if kind in ("cluster_intervention", "practice_intervention"):
        options += [{"breakdown": b} for b in BREAKDOWN_CHOICES]
        options += [{"drug": d} for d in catalog.drugs_of(groups[0])]
        options += [{"drug": d, "breakdown": "product", "period": periods[0]}
                    for d in list(catalog.drugs_of(groups[0]))[:2]]
    return [{"theme": theme, **o} for o in options]


@pytest.mark.parametrize("kind", pages.PAGE_KINDS)
def test_every_widget_option_is_answered_from_the_store(session, no_engine, kind) -> None:
    from workbench.profiles import Profile

    catalog = pages.Catalog(session, Profile("analyst"))
    store = catalog.store
    before = store.reads
    built = 0
    for choices in widget_options(catalog, kind):
        page = pages.build_page(kind, session, catalog, **choices)
        notes = [f"{s.id}: {s.note}" for s in page.sections if s.note]
        assert not notes, (choices, notes)
        built += 1
    assert no_engine == [] and built >= 20
    # every figure came from the store, a few slices a section
    assert 0 < (store.reads - before) / built <= 12 * (len(page.sections) + 1)


def test_every_offered_choice_is_held_by_the_store(session) -> None:
    catalog = pages.Catalog(session)
    store = catalog.store
    held = set(store.periods["period"])
    assert set(catalog.periods) <= held
    for table in ("cells", "standardised", "funnels", "deciles"):
        found = set(store.sql(f"SELECT DISTINCT period FROM {table}")["period"])
        assert set(catalog.periods) <= found, table
    assert set(catalog.periods) <= store.offered_risk_periods
    for theme in catalog.definitions.themes:
        for group in catalog.definitions.groups_of(theme):
            assert catalog.drugs_of(group), group
            for drug in catalog.drugs_of(group):
                assert store.selections[drug].group == group
