"""Potential intervention areas: which groups and risks are worth a cluster's meeting?

For one practice or cluster and one period, every drug group and every risk of
``parameters/risks.yaml`` is judged the same three ways, and ranked:

1. **how far above expectation**: ``ratio`` = observed / expected with its exact interval. For a
   drug group the expectation is age/sex-standardised on the nation
   (:func:`~workbench.analysis.standardise.standardised`); for a risk it is the national rate
   times the unit's listed persons (risks are not standardised: their populations are already
   narrow, e.g. users aged 65+);
2. **beyond the funnel limits**: the unit's place in the funnel of all units of its level in the
   nation (:func:`~workbench.analysis.funnel.funnel_table`, additive overdispersion by default):
   ``z``, ``flag_95`` and ``flag_998``;
3. **the size of the opportunity** (``excess``): the patients (or DDD) above the cluster median.
   For a practice, what it would have at its cluster's median practice, standardised:
   ``max(0, O − E × median(O/E))`` (crude for risks: ``max(0, patients − listed × median rate)``);
   for a cluster, the sum of that over its practices — what the cluster's meeting could address.

Ranking: worse beyond 99.8 % first, then worse beyond 95 %, then by z (the worse direction is
up for every drug group and for risks marked ``low_is_good``). A group ranked high is a
question for the meeting, not a verdict: more paracetamol can be good prescribing.

Steps 1 and 2 judge every unit of the level at once, whichever unit is asked about: :func:`peers`
computes that part alone, so a batch or a dashboard that asks about many units of a level passes
the same :class:`Peers` to :func:`opportunities` instead of recomputing it for each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from workbench.analysis.funnel import Method, funnel_table, members
from workbench.analysis.standardise import garwood, standardised
from workbench.engine import Workbench

COLUMNS = [
    "level", "unit_id", "period", "kind", "item", "measure", "standardised", "patients", "listed",
    "observed", "expected", "ratio", "ratio_lower", "ratio_upper", "z", "flag_95", "flag_998",
    "excess", "direction", "rank",
]


@dataclass(frozen=True)
class Peers:
    """Every unit of a level in one period, in its national funnel: the groups' standardised
    ratios (``groups``: :func:`~workbench.analysis.standardise.standardised` rows with the
    columns of :func:`~workbench.analysis.funnel.funnel_table`) and the risks' rates
    (``risks``: :meth:`Workbench.risks` rows with the same; empty without risks)."""

    level: str
    period: str
    measure: str
    method: str
    groups: pd.DataFrame
    risks: pd.DataFrame


def _chosen(session: Workbench, groups: str | Iterable[str] | None) -> list[str]:
    if groups is None:
        return list(session.definitions.groups)
    return [groups] if isinstance(groups, str) else list(groups)


def peers(
    session: Workbench,
    level: str,
    period: str,
    *,
    groups: str | Iterable[str] | None = None,
    risks: bool = True,
    measure: str = "patients",
    method: Method = "additive",
) -> Peers:
    """The unit-independent part of :func:`opportunities` for ``level`` and ``period``: every
    unit's standardised groups and (with ``risks``) risks, in their national funnels."""
    table = standardised(session, _chosen(session, groups), level, period,
                         measure=measure).to_pandas()
    fitted = funnel_table(table, observed="observed", exposure="expected",
                          variance="variance", method=method).to_pandas()
    risk_fit = pd.DataFrame(columns=["unit_id", "period", "risk", "patients", "listed"])
    if risks and session.definitions.risks:
        risk_table = session.risks(None, level, period).to_pandas()
        risk_fit = funnel_table(risk_table, observed="patients", exposure="listed", per=1000.0,
                                peers=("period", "risk"), method=method).to_pandas()
    return Peers(level, period, measure, method, fitted, risk_fit)


def _serves(judged: Peers, period: str, measure: str, method: str, groups: list[str],
            risks: bool) -> bool:
    """Whether ``judged`` answers this question (its level is checked by the caller)."""
    return ((judged.period, judged.measure, judged.method) == (period, measure, method)
            and set(groups) <= set(judged.groups["group"])
            and not (risks and judged.risks.empty))


def _cluster_of(session: Workbench, unit: str, level: str) -> str:
    if level == "cluster":
        return unit
    for lvl, uid in session.context_of(unit, level):
        if lvl == "cluster":
            return uid
    raise ValueError(f"practice {unit!r} belongs to no cluster")


def _excess(observed: np.ndarray, expected: np.ndarray, median_ratio: float) -> float:
    """Σ max(0, O − E × median ratio): what is above the median, 0 when nothing is."""
    if np.isnan(median_ratio):
        return float("nan")
    return float(np.maximum(observed - expected * median_ratio, 0.0).sum())


def _median_ratio(observed: np.ndarray, expected: np.ndarray) -> float:
    ok = expected > 0
    return float(np.median(observed[ok] / expected[ok])) if ok.any() else float("nan")


def _arrays(table: pd.DataFrame, key: str, observed: str,
            exposure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``unit_id``, ``key``, ``observed`` and ``exposure`` of the cluster's practices as NumPy
    arrays: each group or risk takes its rows by a mask, not by filtering the frame (a frame
    of thirty columns costs a millisecond a filter)."""
    return (table["unit_id"].to_numpy(object), table[key].to_numpy(object),
            table[observed].to_numpy(float, na_value=np.nan),
            table[exposure].to_numpy(float, na_value=np.nan))


def _group_rows(
    session: Workbench, unit: str, level: str, period: str, groups: list[str],
    measure: str, fitted: pd.DataFrame, cluster_members: list[str],
    practice_table: pd.DataFrame | None,
) -> pd.DataFrame:
    chosen = fitted["group"].isin(groups).to_numpy(bool)
    mine = fitted[chosen & (fitted["unit_id"] == unit).to_numpy(bool)]
    if level == "practice":
        practices = fitted[chosen & fitted["unit_id"].isin(cluster_members).to_numpy(bool)]
    elif practice_table is not None:
        practices = practice_table[practice_table["unit_id"].isin(cluster_members)]
    else:
        practices = standardised(session, groups, "practice", period, units=cluster_members,
                                 measure=measure).to_pandas()
    units, items, observed, expected = _arrays(practices, "group", "observed", "expected")
    rows = []
    for _, row in mine.iterrows():
        peers = items == row["group"]
        median = _median_ratio(observed[peers], expected[peers])
        own = peers & (units == unit) if level == "practice" else peers
        rows.append({
            "kind": "group", "item": row["group"], "measure": measure, "standardised": True,
            "patients": row["patients"], "listed": row["listed"], "observed": row["observed"],
            "expected": row["expected"], "ratio": row["oe"], "ratio_lower": row["oe_lower"],
            "ratio_upper": row["oe_upper"], "z": row["z"], "flag_95": row["flag_95"],
            "flag_998": row["flag_998"],
            "excess": _excess(observed[own], expected[own], median),
            "direction": "low_is_good",
        })
    return pd.DataFrame(rows)


def _risk_rows(
    session: Workbench, unit: str, level: str, period: str, fitted: pd.DataFrame,
    cluster_members: list[str], practice_table: pd.DataFrame | None,
) -> pd.DataFrame:
    mine = fitted[fitted["unit_id"] == unit]
    if level == "practice":
        practices = fitted[fitted["unit_id"].isin(cluster_members)]
    elif practice_table is not None:
        practices = practice_table[practice_table["unit_id"].isin(cluster_members)]
    else:
        practices = session.risks(None, "practice", period, units=cluster_members).to_pandas()
    units, items, patients, listed = _arrays(practices, "risk", "patients", "listed")
    rows = []
    for _, row in mine.iterrows():
        risk = session.definitions.risks[row["risk"]]
        expected = row["target"] / 1000 * row["listed"]
        lower, upper = garwood([row["patients"]])
        peers = items == row["risk"]
        rate = _median_ratio(patients[peers], listed[peers])
        own = peers & (units == unit) if level == "practice" else peers
        sign = 1 if risk.direction == "low_is_good" else -1
        excess = _excess(patients[own], listed[own], rate)
        rows.append({
            "kind": "risk", "item": row["risk"], "measure": "patients", "standardised": False,
            "patients": row["patients"], "listed": row["listed"],
            "observed": float(row["patients"]), "expected": expected,
            "ratio": row["patients"] / expected if expected > 0 else np.nan,
            "ratio_lower": lower[0] / expected if expected > 0 else np.nan,
            "ratio_upper": upper[0] / expected if expected > 0 else np.nan,
            "z": row["z"], "flag_95": row["flag_95"], "flag_998": row["flag_998"],
            "excess": excess if sign > 0 else np.nan,
            "direction": risk.direction,
        })
    return pd.DataFrame(rows)


def _worse(flag: Any, direction: str) -> bool:
    bad = "high" if direction == "low_is_good" else "low"
    return flag == bad


def rank(rows: pd.DataFrame) -> pd.DataFrame:
    """Order: worse beyond 99.8 %, worse beyond 95 %, then the z-score in the worse direction."""
    if rows.empty:
        return rows.assign(rank=pd.Series(dtype="int64"))
    sign = np.where(rows["direction"] == "low_is_good", 1.0, -1.0)
    tier = np.array([
        2 if _worse(a, d) else 1 if _worse(b, d) else 0
        for a, b, d in zip(rows["flag_998"], rows["flag_95"], rows["direction"], strict=True)
    ])
    concern = np.nan_to_num(rows["z"].to_numpy(float) * sign, nan=-np.inf)
    order = np.lexsort((rows["item"].to_numpy(str), -concern, -tier))
    ranked = rows.iloc[order].reset_index(drop=True)
    return ranked.assign(rank=np.arange(1, len(ranked) + 1))


def opportunities(
    session: Workbench,
    unit: str,
    level: str,
    period: str,
    *,
    groups: str | Iterable[str] | None = None,
    risks: bool = True,
    measure: str = "patients",
    method: Method = "additive",
    judged: Peers | None = None,
    practices: Peers | None = None,
    cluster_members: list[str] | None = None,
) -> ir.Table:
    """Groups (and risks) ranked as potential intervention areas for a practice or cluster in
    one period (see the module doc). ``groups``: ids (default every drug group; a theme's
    groups via ``session.definitions.groups_of(theme)``); ``measure``: ``patients`` or ``ddd``
    for the groups (risks count patients). ``judged``: the level's :func:`peers`, computed once
    for many units (with at least these groups, and risks when asked for); ``practices``: for a
    cluster, the practice level's, whose rows of the cluster's practices give the median.
    ``cluster_members``: the practices of the unit's cluster (sorted ids), when the caller knows
    them from the register already (they are looked up otherwise).

    Columns: ``level, unit_id, period, kind`` (``group``/``risk``), ``item, measure,
    standardised, patients, listed, observed, expected, ratio, ratio_lower, ratio_upper, z,
    flag_95, flag_998, excess, direction, rank``.

    >>> opportunities(session, "012345", "practice", "2024").to_pandas()  # doctest: +SKIP
    """
    return ibis.memtable(opportunity_rows(
        session, unit, level, period, groups=groups, risks=risks, measure=measure,
        method=method, judged=judged, practices=practices, cluster_members=cluster_members))


def opportunity_rows(
    session: Workbench,
    unit: str,
    level: str,
    period: str,
    *,
    groups: str | Iterable[str] | None = None,
    risks: bool = True,
    measure: str = "patients",
    method: Method = "additive",
    judged: Peers | None = None,
    practices: Peers | None = None,
    cluster_members: list[str] | None = None,
) -> pd.DataFrame:
    """:func:`opportunities` as the pandas frame it is computed as (a page that shows the
    rows at once saves the round trip through the database)."""
    if level not in ("practice", "cluster"):
        raise ValueError("intervention areas are for a practice or a cluster")
    chosen = _chosen(session, groups)
    wants_risks = risks and bool(session.definitions.risks)
    if practices is not None and (level != "cluster" or practices.level != "practice"
                                  or not _serves(practices, period, measure, method, chosen,
                                                 wants_risks)):
        raise ValueError("the practices' peers given were judged for another question")
    if judged is None:
        judged = peers(session, level, period, groups=chosen, risks=risks, measure=measure,
                       method=method)
    if judged.level != level or not _serves(judged, period, measure, method, chosen,
                                            wants_risks):
        raise ValueError("the peers given were judged for another question")
    if cluster_members is None:
        cluster = _cluster_of(session, unit, level)
        cluster_members = members(session, "practice", ("cluster", cluster))
    parts = [_group_rows(session, unit, level, period, chosen, measure, judged.groups,
                         cluster_members, None if practices is None else practices.groups)]
    if risks and session.definitions.risks:
        parts.append(_risk_rows(session, unit, level, period, judged.risks, cluster_members,
                                None if practices is None else practices.risks))
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise ValueError(f"{level} {unit!r} has no figures in {period}")
    rows = pd.concat(parts, ignore_index=True)
    rows = rank(rows.assign(level=level, unit_id=unit, period=period))
    rows["patients"] = rows["patients"].astype("int64")
    return rows[COLUMNS]
