"""Viewing profiles on the pages: what each profile is shown, refused and audited.

The profile rules are checked by hand on :class:`Profile` itself; then every page each profile
may see is built on a generated municipality with several clusters (Odense: 4 clusters, 67
practices), written out as its HTML and CSVs, and read back by the output scanner
(:mod:`workbench.publish.scan`): under ``public`` no practice id or name anywhere, under
``practice`` none outside the practice's cluster, under every profile no small count, no person
key, nothing recoverable.
"""

from __future__ import annotations

import base64
import re
from types import SimpleNamespace

import pytest

import workbench.pages as pages
from workbench import audit
from workbench.engine import connect
from workbench.pages import render
from workbench.profiles import PROFILE_ENV, Profile, ProfileError, current_profile
from workbench.publish.scan import register_practices, scan

pytestmark = pytest.mark.slow


# --- the rules, by hand ----------------------------------------------------------------------


def test_profile_rules() -> None:
    public, analyst = Profile("public"), Profile("analyst")
    mine = Profile.parse("practice:000042").bind("K7")
    assert public.pages == ("overview", "cluster_insight", "cluster_intervention")
    assert analyst.pages == mine.pages and "practice_insight" in mine.pages
    assert not public.allows_page("practice_insight", "000042", "K7")
    assert public.allows_page("cluster_insight", "K1", "K1")
    assert mine.allows_page("practice_insight", "000042", "K7")
    assert not mine.allows_page("practice_insight", "000043", "K7")  # its neighbour's own page
    assert mine.allows_page("cluster_insight", "K7", "K7")
    assert not mine.allows_page("cluster_insight", "K8", "K8")
    assert mine.allows_page("overview", "DK")
    assert mine.allows_practice("000043", "K7") and not mine.allows_practice("000099", "K8")
    assert not public.allows_practice("000042", "K7") and analyst.allows_practice("1", "K8")
    assert not Profile("practice", "000042").allows_page("cluster_insight", "K7", "K7")  # unbound
    for bad in ("everyone", "practice", "practice:12", "public:000042"):
        with pytest.raises(ProfileError):
            Profile.parse(bad)


def test_the_profile_comes_from_the_environment_and_fails_closed(monkeypatch) -> None:
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv("WORKBENCH_PUBLISHING", raising=False)
    assert current_profile() == Profile("analyst")  # an analyst's own session
    monkeypatch.setenv("WORKBENCH_PUBLISHING", "1")
    assert current_profile() == Profile("public")  # publishing without a profile: the least
    monkeypatch.setenv(PROFILE_ENV, "practice:000042")
    assert current_profile() == Profile("practice", "000042")


# --- on generated data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(clusters_dataset):
    session = connect(clusters_dataset.database)
    yield session
    session.con.disconnect()  # one configuration per file and process: close for the next


@pytest.fixture(scope="module")
def practices(session):
    return register_practices(session)


@pytest.fixture(scope="module")
def viewer(practices) -> Profile:
    """A practice of the register that is not the first (so defaults can't pass by chance)."""
    return Profile("practice", sorted(practices)[len(practices) // 2])


def _write(page: pages.Page, folder) -> None:
    """The page as a batch would publish it: its HTML, and each embedded CSV as a file."""
    folder.mkdir(parents=True, exist_ok=True)
    html = render.page_html(page)
    (folder / "page.html").write_text(html, encoding="utf-8")
    for i, data in enumerate(re.findall(r"data:text/csv;charset=utf-8;base64,([^\"]+)", html)):
        (folder / f"table{i}.csv").write_bytes(base64.b64decode(data))


@pytest.mark.parametrize(("name", "theme"), [("public", "analgesics"),
                                           ("practice", "psychotropics"),
                                           ("analyst", "analgesics")])
def test_every_page_a_profile_sees_passes_the_scan(name, theme, session, practices, viewer,
                                                  tmp_path) -> None:
    profile = viewer if name == "practice" else Profile(name)
    catalog = pages.Catalog(session, profile)
    for kind in profile.pages:
        page = pages.build_page(kind, session, catalog, theme=theme)
        assert [s.note for s in page.sections if s.note] == []
        _write(page, tmp_path / kind)
    report = scan(tmp_path, profile, practices)
    assert report.ok, report.summary()
    assert report.files[".html"] == len(profile.pages)
    assert report.tables >= 2 * report.files[".csv"] >= 6 * len(profile.pages)


def test_the_scan_finds_a_practice_on_a_public_page(session, practices, tmp_path) -> None:
    """The scanner is not blind: the analyst's cluster page names practices, and under the
    public profile's rules that is reported."""
    page = pages.build_page("cluster_insight", session, pages.Catalog(session, Profile("analyst")))
    _write(page, tmp_path)
    report = scan(tmp_path, Profile("public"), practices)
    found = report.by_kind()
    assert found.get("practice", 0) >= len(page.section("practices").links)


def test_public_cluster_pages_compare_clusters_not_practices(session, practices) -> None:
    catalog = pages.Catalog(session, Profile("public"))
    cluster = list(catalog.clusters)[-1]
    page = pages.build_page("cluster_intervention", session, catalog, theme="analgesics",
                            unit=cluster)
    peers = page.section("practices")
    region = catalog.clusters[cluster].region
    assert set(peers.table["unit_id"]) == {c.id for c in catalog.clusters_of_region(region)}
    assert all("cluster_intervention.ipynb" in u for _, u in peers.links)
    assert not [u for _, u in page.links if "practice" in u]
    assert page.notice == ""


def test_practice_profile_sees_its_cluster_and_is_refused_elsewhere(session, practices,
                                                                   viewer) -> None:
    catalog = pages.Catalog(session, viewer)
    own = practices[viewer.practice].cluster
    assert catalog.default_unit("practice") == viewer.practice
    assert catalog.default_unit("cluster") == own
    page = pages.build_page("cluster_insight", session, catalog)
    members = {p for p, v in practices.items() if v.cluster == own}
    assert set(page.section("practices").table["unit_id"]) - {"cluster"} == members
    assert [u for _, u in page.section("practices").links] == [
        u for _, u in page.section("practices").links if f"unit={viewer.practice}" in u]
    assert viewer.practice in page.notice
    other = next(p for p, v in practices.items() if v.cluster != own)
    neighbour = next(p for p in members if p != viewer.practice)
    for kind, unit in (("practice_insight", other), ("practice_insight", neighbour),
                       ("practice_intervention", other),
                       ("cluster_insight", practices[other].cluster)):
        with pytest.raises(pages.NotAllowed):
            pages.build_page(kind, session, catalog, unit=unit)
    mine = pages.build_page("practice_intervention", session, catalog, theme="analgesics")
    assert mine.choices.unit == viewer.practice and viewer.practice in mine.notice


def test_public_refuses_practice_pages_and_smuggled_units(session, practices) -> None:
    catalog = pages.Catalog(session, Profile("public"))
    practice = sorted(practices)[0]
    for kind in ("practice_insight", "practice_intervention"):
        with pytest.raises(pages.NotAllowed):
            catalog.resolve(kind, unit=practice)
        with pytest.raises(pages.NotAllowed):
            catalog.resolve_query(kind, f"unit={practice}")
    for query in (f"unit={practice}", f"topic=analgesics&group={practice}",
                  f"unit=K001&drug={practice}"):
        with pytest.raises(pages.ChoiceError):
            catalog.resolve_query("cluster_insight", query)


def test_a_forbidden_unit_is_refused_whatever_else_the_address_gets_wrong(
        session, practices, viewer) -> None:
    """A practice viewer asking for another practice with a misspelt field is refused (and
    audited as a refusal), not shown its own page with a note."""
    catalog = pages.Catalog(session, viewer)
    own = practices[viewer.practice].cluster
    other = next(p for p, v in practices.items() if v.cluster != own)
    for query in (f"unit={other}&group=nonsense", f"unit={other}&period=1999",
                  f"unit={practices[other].cluster}&measure=person_id"):
        kind = "practice_insight" if query.startswith(f"unit={other}") else "cluster_insight"
        with pytest.raises(pages.NotAllowed):
            pages._choose(catalog, kind, query, {})
    # a bad field alone still opens the viewer's own page, with the error to show
    choices, error = pages._choose(catalog, "practice_insight", "group=nonsense", {})
    assert choices.unit == viewer.practice and "nonsense" in error


def test_analyst_pages_say_where_they_may_be_used(session) -> None:
    catalog = pages.Catalog(session, Profile("analyst"))
    for kind in pages.PAGE_KINDS:
        page = pages.build_page(kind, session, catalog)
        assert "sikre miljø" in page.notice
        assert 'class="wb-profile"' in render.header(page)


def test_a_forged_widget_value_is_refused_and_audited(session, practices, tmp_path,
                                                      monkeypatch) -> None:
    """What a viewer's kernel does with widget values that no dropdown offers (a practice id
    as the group, a period the data lacks): nothing but a note, and an audit line."""
    log = tmp_path / "audit.log"
    monkeypatch.setenv(audit.AUDIT_ENV, str(log))
    catalog = pages.Catalog(session, Profile("public"))
    choices = catalog.resolve("cluster_insight", theme="analgesics")
    view = pages.PageView(session, catalog, choices, interactive=True)
    before = render.page_html(view.page)
    practice = sorted(practices)[0]
    for forged in ({"group": practice}, {"period": "1999"}, {"measure": "person_id"}):
        view._inputs = {name: SimpleNamespace(value=value) for name, value in
                        {**choices.as_query(), **forged}.items() if name != "unit"}
        view._changed({"owner": None})
        assert view.error and render.page_html(view.page) == before
    lines = audit.read(log)
    assert [line["event"] for line in lines] == ["refused"] * 3
    assert all(line["profile"] == "public" and line["page"] == "cluster_insight"
               for line in lines)
    view._inputs = {name: SimpleNamespace(value=value) for name, value in
                    {**choices.as_query(), "period": catalog.periods[1]}.items()
                    if name != "unit"}
    view._changed({"owner": None})
    assert view.choices.period == catalog.periods[1] and not view.error
    assert audit.read(log)[-1]["event"] == "filter"
    assert audit.read(log)[-1]["parameters"]["period"] == catalog.periods[1]
