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

from functools import cache
from pathlib import Path

from workbench.engine import Workbench, connect
from workbench.pages.base import MAX_GRAPHS, KeyFigure, Page, Section
from workbench.pages.choices import PAGE_KINDS, Catalog, ChoiceError, Choices
from workbench.pages.links import url
from workbench.pages.view import PageView, build, in_voila
from workbench.paths import Dataset

SECTIONS: dict[str, tuple[str, ...]] = {
    "overview": ("groups", "regions", "clusters", "trend"),
    "cluster_insight": ("groups", "ranking", "trend", "practices"),
    "cluster_intervention": ("practices", "trend", "breakdown", "drugs"),
    "practice_insight": ("groups", "ranking", "trend"),
    "practice_intervention": ("distribution", "trend", "breakdown", "drugs"),
}


@cache
def session_for(data: str = "") -> Workbench:
    """One read-only session per dataset and process (a dashboard kernel rebuilds pages on it)."""
    return connect(Dataset.at(data or None).database)


def build_page(kind: str, session: Workbench, catalog: Catalog | None = None,
               **choices: str) -> Page:
    """Validate ``choices`` and build page ``kind`` (no kernel, no widgets)."""
    catalog = catalog or Catalog(session)
    return build(session, catalog, catalog.resolve(kind, **choices))


def open_page(kind: str, *, data: str | Path = "", **parameters: str) -> PageView:
    """Open a page from a notebook: parameters first, then (in Voilà) the URL's query string."""
    session = session_for(str(data))
    catalog = Catalog(session)
    catalog.periods, catalog.clusters, catalog.practices  # noqa: B018  (warm before waiting)
    interactive = in_voila()
    error = ""
    if interactive:
        from voila.utils import get_query_string

        query = get_query_string() or ""
        try:
            choices = catalog.resolve_query(kind, query, **parameters)
        except ChoiceError as exc:
            error = str(exc)
            choices = catalog.resolve(kind, **parameters)
    else:
        choices = catalog.resolve(kind, **parameters)
    return PageView(session, catalog, choices, interactive=interactive, error=error)


__all__ = [
    "MAX_GRAPHS",
    "PAGE_KINDS",
    "SECTIONS",
    "Catalog",
    "ChoiceError",
    "Choices",
    "KeyFigure",
    "Page",
    "PageView",
    "Section",
    "build_page",
    "open_page",
    "session_for",
    "url",
]
