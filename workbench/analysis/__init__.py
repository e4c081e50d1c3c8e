"""Comparisons and statistics on top of the engine: standardisation, funnels, deciles over
time, intervention areas.

Every function takes a :class:`~workbench.engine.Workbench` session and choices and returns an
Ibis table; the statistics that need scipy (exact intervals and limits) run on the small
per-unit tables and come back as memtables.

>>> import workbench as wb                                                   # doctest: +SKIP
>>> from workbench.analysis import standardised, funnel, opportunities       # doctest: +SKIP
>>> standardised(wb.connect(), "opioids", "practice", "2024").to_pandas()    # doctest: +SKIP
"""

from workbench.analysis.context import in_context
from workbench.analysis.funnel import contours, fit, funnel, funnel_table, limits, members
from workbench.analysis.opportunities import Peers, opportunities, peers
from workbench.analysis.standardise import (
    garwood,
    observed_expected,
    scaled_interval,
    standardised,
)
from workbench.analysis.trends import against_deciles

__all__ = [
    "Peers",
    "against_deciles",
    "contours",
    "fit",
    "funnel",
    "funnel_table",
    "garwood",
    "in_context",
    "limits",
    "members",
    "observed_expected",
    "opportunities",
    "peers",
    "scaled_interval",
    "standardised",
]
