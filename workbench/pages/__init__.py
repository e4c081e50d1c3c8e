"""The five pages of each theme, as objects a notebook shows and a test inspects.

``open_page(kind, **parameters)`` is what a page notebook calls: it opens the dataset, validates
the choices (parameters, and in a dashboard the URL), builds the page and returns a view whose
``header()``, ``controls()``, ``key_figures()`` and ``section(id)`` show it. ``build_page`` builds
the same :class:`Page` without a kernel, for tests and batch renderers.

Layering: the engine computes every figure; :mod:`workbench.pages.base` publishes every table
through disclosure control; :mod:`~workbench.pages.charts` draws published tables in the house
style (:mod:`~workbench.pages.style`); the page modules choose the sections.
"""

from __future__ import annotations

from pathlib import Path

from workbench.engine import Workbench, connect
from workbench.glossary import LANGUAGES
from workbench.pages.base import MAX_GRAPHS, KeyFigure, Page, Section
from workbench.pages.choices import (
    PAGE_KINDS,
    Catalog,
    ChoiceError,
    Choices,
    NotAllowed,
    url_fields,
)
from workbench.pages.links import url
from workbench.pages.sources import forget_stores, store_for, store_of
from workbench.pages.view import PageView, RefusedView, audit_event, build, in_voila
from workbench.paths import Dataset
from workbench.profiles import Profile, current_profile

SECTIONS: dict[str, tuple[str, ...]] = {
    "overview": ("groups", "regions", "clusters", "trend"),
    "cluster_insight": ("groups", "ranking", "trend", "practices", "risks"),
    "cluster_intervention": ("practices", "trend", "breakdown", "drugs"),
    "practice_insight": ("groups", "ranking", "trend", "risks"),
    "practice_intervention": ("distribution", "trend", "breakdown", "drugs", "journeys"),
}


_sessions: dict[str, Workbench] = {}  # by database path: $WORKBENCH_DATA and data="..." meet


def session_for(data: str = "") -> Workbench:
    """One read-only session per dataset and process, for the catalogue's names and lists;
    every figure comes from the dataset's answer store (:func:`store_for`)."""
    database = Dataset.at(data or None).database
    if str(database) not in _sessions:
        _sessions[str(database)] = connect(database, use_marts=False)
    return _sessions[str(database)]


def forget_sessions() -> None:
    """Close every session and store of this process (tests that swap datasets under one
    path)."""
    for session in _sessions.values():
        session.con.disconnect()
    _sessions.clear()
    forget_stores()


CATALOGS = "page_catalogs"  # the session attribute that keeps them


def catalog_for(session: Workbench) -> Catalog:
    """The catalogue of valid choices for ``session`` under this process's viewing profile,
    built once: its lists (periods, clusters, practices, drug names) come from a register and a
    store that do not change under a session. Kept on the session itself (a catalogue refers to
    its session, so a table keyed by sessions would keep every session alive)."""
    profile = current_profile()
    kept: dict[Profile, Catalog] = session.__dict__.setdefault(CATALOGS, {})
    catalog = kept.get(profile)
    if catalog is None:
        catalog = Catalog(session, profile)
        catalog.periods, catalog.clusters, catalog.practices, catalog.profile  # noqa: B018
        kept[profile] = catalog  # only once warm: a profile the register refuses raises above
    return catalog


def build_page(kind: str, session: Workbench, catalog: Catalog | None = None,
               **choices: str) -> Page:
    """Validate ``choices`` and build page ``kind`` (no kernel, no widgets)."""
    catalog = catalog or Catalog(session)
    return build(session, catalog, catalog.resolve(kind, **choices))


def open_page(kind: str, *, data: str | Path = "", **parameters: str) -> PageView | RefusedView:
    """Open a page from a notebook: parameters first, then (in Voilà) the URL's query string.

    In a dashboard every view is audited, and a page or unit the viewing profile does not
    allow is refused: the view shows a refusal, nothing of the unit. In a batch run the
    refusal is an error (the page fails).
    """
    session = session_for(str(data))
    catalog = catalog_for(session)
    if not in_voila():
        return PageView(session, catalog, catalog.resolve(kind, **parameters))
    from voila.utils import get_query_string

    query = get_query_string() or ""
    asked = url_fields(query)
    try:
        choices, error = _choose(catalog, kind, query, parameters)
    except NotAllowed as exc:
        audit_event("refused", catalog, kind, asked.get("unit", ""), asked, reason=str(exc))
        language = asked.get("language", "")
        return RefusedView(kind, language if language in LANGUAGES else "da")
    view = PageView(session, catalog, choices, interactive=True, error=error)
    audit_event("view", catalog, kind, choices.unit, choices.as_query(),
                **({"asked": asked, "reason": error} if error else {}))
    return view


def _choose(catalog: Catalog, kind: str, query: str,
            parameters: dict[str, str]) -> tuple[Choices, str]:
    """The URL's choices; for a value the dataset does not know, the page's defaults and the
    error to show. A value the profile does not allow raises :class:`NotAllowed`."""
    try:
        return catalog.resolve_query(kind, query, **parameters), ""
    except NotAllowed:
        raise
    except ChoiceError as exc:
        # a unit the profile does not allow is refused whatever else the address gets wrong
        unit = url_fields(query).get("unit", "")
        if unit and not catalog.allows(kind, unit):
            raise NotAllowed(f"{kind} {unit} is not available to this profile") from exc
        return catalog.resolve(kind, **parameters), str(exc)


__all__ = [
    "MAX_GRAPHS",
    "PAGE_KINDS",
    "SECTIONS",
    "Catalog",
    "ChoiceError",
    "Choices",
    "NotAllowed",
    "KeyFigure",
    "Page",
    "PageView",
    "RefusedView",
    "Section",
    "build_page",
    "catalog_for",
    "forget_sessions",
    "open_page",
    "session_for",
    "store_for",
    "store_of",
    "url",
]
