"""The indicator engine: measures to the contract in DOMAIN.md, as lazy Ibis tables.

>>> from workbench.engine import connect, parse_period      # doctest: +SKIP
>>> wb = connect()                                          # doctest: +SKIP
>>> wb.measures("opioids", "practice", "2024", by="sex")   # doctest: +SKIP
"""

from workbench.engine.api import Workbench, connect
from workbench.engine.marts import build_marts
from workbench.engine.peers import deciles, percentile_ranks
from workbench.engine.periods import Period, parse_period, parse_periods, period_series

__all__ = [
    "Period",
    "Workbench",
    "build_marts",
    "connect",
    "deciles",
    "parse_period",
    "parse_periods",
    "percentile_ranks",
    "period_series",
]
