"""One unit beside its cluster, region and nation, for any per-unit table of the engine.

:meth:`Workbench.compare` does this for the measures; journeys, transitions and risks are read
the same way ("per unit, compared with the cluster and the nation"), so this is the one helper
for all of them.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.types as ir

from workbench.engine import Workbench

CONTEXT_METHODS = ("measures", "journeys", "transitions", "risks")


def in_context(session: Workbench, method: str, unit: str, level: str, **kwargs: Any) -> ir.Table:
    """``session.<method>(level=…, units=[…], **kwargs)`` for the unit, its cluster (for a
    practice), its region and the nation, stacked (the ``level`` column tells them apart).

    >>> in_context(session, "journeys", "012345", "practice", groups="opioids",
    ...            periods="2023")  # doctest: +SKIP
    """
    if method not in CONTEXT_METHODS:
        raise ValueError(f"method must be one of {CONTEXT_METHODS}, not {method!r}")
    ask = getattr(session, method)
    parts = [ask(level=lvl, units=[uid], **kwargs) for lvl, uid in session.context_of(unit, level)]
    return ibis.union(*parts)
