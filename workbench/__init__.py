"""Prescribing-feedback workbench for Danish general practice.

The curated surface an analyst needs in JupyterLab::

    import workbench as wb
    session = wb.connect()                      # the embedded DuckDB of data/ (read-only)
    session.measures("opioids", "practice", "2024", by="sex").to_pandas()

Everything returned is a lazy Ibis table until it reaches the edge (a plot or an export).
"""

from workbench import analysis
from workbench.analysis import funnel, opportunities, standardised
from workbench.definitions import load_definitions
from workbench.engine import (
    Period,
    Workbench,
    connect,
    deciles,
    parse_period,
    parse_periods,
    percentile_ranks,
    period_series,
)
from workbench.glossary import glossary
from workbench.paths import Dataset

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "Period",
    "Workbench",
    "analysis",
    "connect",
    "deciles",
    "funnel",
    "glossary",
    "load_definitions",
    "opportunities",
    "parse_period",
    "parse_periods",
    "percentile_ranks",
    "period_series",
    "standardised",
]
