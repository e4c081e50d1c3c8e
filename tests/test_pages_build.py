"""What makes a page cheaper to build in a kernel that renders many: kept catalogues and
analysis answers, and precomputed judgements, each giving the same page as without them."""

from __future__ import annotations

import pytest

import workbench.pages as pages
from workbench.engine import connect
from workbench.profiles import PROFILE_ENV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(pages_dataset):
    return connect(pages_dataset.database)


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
