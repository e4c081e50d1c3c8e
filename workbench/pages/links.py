"""Drill-down links between pages, with the unit and every filter in the query string.

A link is relative (``cluster_insight.ipynb?topic=analgesics&unit=K025&period=2024``) so it works
wherever the dashboards are served (Voilà renders ``/voila/render/<notebook>``) and a reader can
share the exact view. The receiving page validates every field again
(:meth:`~workbench.pages.choices.Catalog.resolve_query`): a link is a suggestion, not a trust.
"""

from __future__ import annotations

from urllib.parse import urlencode

from workbench.pages.choices import PAGE_KINDS, URL_NAMES, Choices

SUFFIX = ".ipynb"


def url(kind: str, choices: Choices, **changes: str) -> str:
    """The URL of page ``kind`` with ``choices`` (changed by ``changes``) in its query string.

    >>> from workbench.pages.choices import Choices
    >>> c = Choices("overview", "analgesics", "DK", "2024", "opioids")
    >>> url("cluster_insight", c, unit="K025")
    'cluster_insight.ipynb?topic=analgesics&unit=K025&period=2024&group=opioids&measure=patients_per_1000&breakdown=consumption_group&language=da'
    """  # noqa: E501
    if kind not in PAGE_KINDS:
        raise ValueError(f"unknown page {kind!r}")
    fields = {URL_NAMES.get(name, name): value
              for name, value in choices.with_(kind=kind, **changes).as_query().items()}
    if kind == "overview":
        fields.pop("unit", None)
    return f"{kind}{SUFFIX}?{urlencode(fields)}"
