"""Age/sex standardisation: is a unit high because of whom it lists, or how it prescribes?

A practice full of elderly patients will prescribe more opioids whatever its habits, so a crude
rate mixes population and practice. Two classical answers, both on the strata of age group
(``parameters/age_bands.yaml``, age on the period's first day) and sex:

**Indirect standardisation** (for any unit, however small). With the reference's rate ``r_k`` in
stratum ``k`` (default: the nation's patients or DDD per listed person) and the unit's listed
persons ``N_k`` (mean list size, as every denominator):

    expected E = Σ_k r_k · N_k,  observed O = Σ_k O_k,  ratio O/E (1 = as the reference).

Patients are distinct persons at the unit level; each person sits in exactly one stratum in a
period (age on the first day, sex), so the strata partition them and ``O`` is the unit's patients.

**Direct standardisation** (a rate comparable between units): the unit's stratum rates weighted
by the reference's listed population, ``DSR = Σ_k w_k · O_k / N_k × 1000`` with
``w_k = N_ref,k / N_ref``. Defined only when the unit lists persons in every stratum the
reference has (otherwise null: use the ratio for small units).

**Intervals** (``confidence``, default 95 %):

* patients: the exact Poisson (Garwood) interval for ``O`` — ``χ²(α/2; 2O)/2`` and
  ``χ²(1−α/2; 2O+2)/2`` — divided by ``E`` (``E`` is taken as known, as usual);
* DDD is not a count of independent events (one person's 365 DDD are one person's), so a Poisson
  interval on DDD would be far too narrow. DDD are a compound Poisson sum over persons with
  variance ``V = Σ_persons d_i²``; the interval is the Garwood interval of the *effective count*
  ``O²/V`` scaled back by ``V/O`` (a gamma interval, exact Garwood when every ``d_i`` is 1);
* DSR: Dobson et al. (1991): ``DSR + sqrt(var(DSR)/V) · (O_limit − O)`` with the limits of ``O``
  above and ``var(DSR) = Σ_k w_k² V_k / N_k²`` (``V_k = O_k`` for patients).

The stratum figures come from the engine (:meth:`Workbench.measures` by ``age_group`` and
``sex``), so every contract rule (attribution, net DDD > 0, mean list size) holds as for the
crude figures; persons missing from the persons register (no age or sex) can't be standardised
and are left out of both sides. The result is small (units × groups × periods), so the
intervals are computed there with scipy and the table is handed back as an Ibis memtable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats

from workbench.engine import Workbench
from workbench.engine.facts import select_groups
from workbench.engine.journeys import facts_of
from workbench.engine.periods import periods_table
from workbench.engine.persons import add_person_attributes
from workbench.engine.query import PATIENT_DIMS, PERSON_DIMS, REDEMPTION_DIMS, Query, apply_filters
from workbench.engine.units import NATION_ID, unit_map

STRATA = ("age_group", "sex")
MEASURES = ("patients", "ddd")
NATION = ("nation", NATION_ID)
KEY = ["unit_id", "period", "group"]


def garwood(observed: Any, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The exact Poisson interval for counts ``observed`` (real-valued counts allowed: the
    chi-squared quantiles are those of the gamma distribution).

    >>> lo, hi = garwood([0, 1, 5])
    >>> [round(float(v), 4) for v in lo], [round(float(v), 4) for v in hi]
    ([0.0, 0.0253, 1.6235], [3.6889, 5.5716, 11.6683])
    """
    o = np.asarray(observed, dtype=float)
    alpha = 1 - confidence
    with np.errstate(invalid="ignore"):
        lower = np.where(o > 0, stats.chi2.ppf(alpha / 2, 2 * np.maximum(o, 1e-300)) / 2, 0.0)
        upper = stats.chi2.ppf(1 - alpha / 2, 2 * o + 2) / 2
    return lower, upper


def scaled_interval(
    observed: Any, variance: Any, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """The interval of a compound Poisson total ``observed`` with estimated ``variance``: the
    Garwood interval of the effective count ``O²/V``, times ``V/O``. Equal to :func:`garwood`
    when ``variance == observed`` (plain counts); null when ``O <= 0`` or ``V <= 0`` (no scale).

    >>> lo, hi = scaled_interval([10.0], [10.0])
    >>> [round(float(v), 4) for v in (*lo, *hi)]
    [4.7954, 18.3904]
    """
    o = np.asarray(observed, dtype=float)
    v = np.asarray(variance, dtype=float)
    ok = (o > 0) & (v > 0)
    safe_o, safe_v = np.where(ok, o, 1.0), np.where(ok, v, 1.0)
    scale = safe_v / safe_o
    lower, upper = garwood(safe_o / scale, confidence)
    return np.where(ok, lower * scale, np.nan), np.where(ok, upper * scale, np.nan)


def stratum_table(
    session: Workbench,
    groups: str | Iterable[str],
    level: str,
    periods: Any,
    *,
    units: str | Iterable[str] | None = None,
    filters: Mapping[str, Any] | None = None,
) -> ir.Table:
    """``(unit_id, period, group, age_group, sex, patients, ddd, listed)`` from the engine."""
    table = session.measures(
        groups, level, periods, units=units, by=list(STRATA), filters=filters,
        measures=["patients", "ddd", "listed"],
    )
    return table.select(*KEY, *STRATA, "patients", "ddd", "listed")


def ddd_moments(
    session: Workbench,
    groups: str | Iterable[str],
    level: str,
    periods: Any,
    *,
    units: str | Iterable[str] | None = None,
    filters: Mapping[str, Any] | None = None,
    by: Iterable[str] = STRATA,
) -> ir.Table:
    """``(unit_id, period, group, *by, ddd_variance)``: Σ over the unit's persons of their net
    DDD squared — the variance of a DDD total read as a compound Poisson sum over persons.

    Net DDD per person at exactly the grain of the figure, as the engine sums it; only filters
    on what was dispensed or on the person are possible (not on consumption group or started).
    """
    query = Query.build(
        session.definitions, groups=groups, level=level, units=units, periods=periods,
        filters=filters,
    )
    if query.needs(PATIENT_DIMS):
        raise ValueError("DDD intervals can't be filtered on consumption group or started")
    by = list(by)
    facts = facts_of(session.registers, session.definitions, session.marts)
    selected = select_groups(facts, query.groups, session.definitions)
    wanted = None if query.units is None else list(query.units)
    rows = selected.filter(selected.practice_id.notnull()).join(
        unit_map(session.registers.practices, query.level, wanted), "practice_id"
    )
    ptable = periods_table(query.periods)
    rows = rows.join(
        ptable, [rows.dispensed_on >= ptable.period_start, rows.dispensed_on < ptable.period_end]
    )
    rows = apply_filters(rows, query.filters_of(REDEMPTION_DIMS))
    if by or query.needs(PERSON_DIMS):
        rows = add_person_attributes(rows, session.registers.persons, session.definitions)
        rows = apply_filters(rows, query.filters_of(PERSON_DIMS))
    per_person = rows.group_by([*KEY, *by, "person_id"]).aggregate(net=rows.ddd.sum())
    return per_person.group_by([*KEY, *by]).aggregate(
        ddd_variance=(per_person.net * per_person.net).sum()
    )


def _reference(
    session: Workbench,
    groups: Any,
    periods: Any,
    reference: tuple[str, str],
    filters: Mapping[str, Any] | None,
    measure: str,
) -> ir.Table:
    """The reference's stratum rates and standard-population weights."""
    ref_level, ref_unit = reference
    ref = stratum_table(session, groups, ref_level, periods, units=[ref_unit], filters=filters)
    total = ref.group_by(["period", "group"]).aggregate(ref_total=ref.listed.sum())
    ref = ref.join(total, ["period", "group"])
    return ref.select(
        "period",
        "group",
        *STRATA,
        ref_rate=ibis.ifelse(ref.listed > 0, ref[measure] / ref.listed, 0.0),
        weight=ibis.ifelse(ref.ref_total > 0, ref.listed / ref.ref_total, 0.0),
    )


def observed_expected(
    session: Workbench,
    groups: str | Iterable[str],
    level: str = "practice",
    periods: Any = None,
    *,
    units: str | Iterable[str] | None = None,
    measure: str = "patients",
    filters: Mapping[str, Any] | None = None,
    reference: tuple[str, str] = NATION,
) -> ir.Table:
    """The lazy part of :func:`standardised`: per unit, period and group the observed and
    expected values, the DSR and its variance, before the intervals (which need scipy).

    Columns: ``unit_id, period, group, patients, listed, observed, expected, variance, dsr,
    dsr_variance, complete`` (``complete``: the unit lists persons in every reference stratum).
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, not {measure!r}")
    if periods is None:
        raise ValueError("say which period(s): periods='2024', ...")
    unit = stratum_table(session, groups, level, periods, units=units, filters=filters)
    if measure == "ddd":
        moments = ddd_moments(session, groups, level, periods, units=units, filters=filters)
        unit = unit.left_join(moments, [*KEY, *STRATA]).drop(
            *(f"{k}_right" for k in (*KEY, *STRATA))
        )
        unit = unit.mutate(v=unit.ddd_variance.fill_null(0.0))
    else:
        unit = unit.mutate(v=unit.patients.cast("float64"))
    ref = _reference(session, groups, periods, reference, filters, measure)
    keys = ["period", "group", *STRATA]
    joined = unit.left_join(ref, keys).drop(*(f"{k}_right" for k in keys))
    rate = joined.ref_rate.fill_null(0.0)
    weight = joined.weight.fill_null(0.0)
    populated = joined.listed > 0
    obs = joined[measure].cast("float64")
    joined = joined.mutate(
        obs=obs,
        exp=rate * joined.listed,
        dsr_k=ibis.ifelse(populated, weight * obs / joined.listed, 0.0),
        dsr_var_k=ibis.ifelse(
            populated, weight * weight * joined.v / (joined.listed * joined.listed), 0.0
        ),
        covered=populated & (weight > 0),
    )
    summed = joined.group_by(KEY).aggregate(
        patients=joined.patients.sum(),
        listed=joined.listed.sum(),
        observed=joined.obs.sum(),
        expected=joined.exp.sum(),
        variance=joined.v.sum(),
        dsr=joined.dsr_k.sum(),
        dsr_variance=joined.dsr_var_k.sum(),
        covered=joined.covered.sum(),
    )
    weighted = ref.filter(ref.weight > 0)
    strata = weighted.group_by(["period", "group"]).aggregate(strata=weighted.count())
    out = summed.left_join(strata, ["period", "group"]).drop("period_right", "group_right")
    return out.mutate(complete=out.covered == out.strata.fill_null(0)).drop("covered", "strata")


def standardised(
    session: Workbench,
    groups: str | Iterable[str],
    level: str = "practice",
    periods: Any = None,
    *,
    units: str | Iterable[str] | None = None,
    measure: str = "patients",
    filters: Mapping[str, Any] | None = None,
    reference: tuple[str, str] = NATION,
    confidence: float = 0.95,
) -> ir.Table:
    """Crude and age/sex-standardised figures per unit, period and group (see the module doc).

    ``measure``: ``"patients"`` or ``"ddd"``; ``reference``: ``(level, unit_id)`` whose stratum
    rates and population are the standard (default the nation).

    Columns: ``level, unit_id, period, group, measure, patients, listed`` (person counts, for
    disclosure control), ``observed, expected, variance`` (of the observed total), the crude and
    expected rates ``crude_per_1000, expected_per_1000``, the ratio ``oe, oe_lower, oe_upper``,
    and ``dsr_per_1000, dsr_lower, dsr_upper``.

    >>> standardised(session, "opioids", "practice", "2024").to_pandas()  # doctest: +SKIP
    """
    lazy = observed_expected(
        session, groups, level, periods, units=units, measure=measure, filters=filters,
        reference=reference,
    )
    df = lazy.to_pandas()
    return ibis.memtable(_intervals(df, level, measure, confidence))


def _intervals(df: pd.DataFrame, level: str, measure: str, confidence: float) -> pd.DataFrame:
    """Add rates, the ratio with its interval and the DSR with Dobson's interval."""
    o = df["observed"].to_numpy(float)
    e = df["expected"].to_numpy(float)
    v = df["variance"].to_numpy(float)
    n = df["listed"].to_numpy(float)
    if measure == "patients":
        lo, hi = garwood(o, confidence)
    else:
        lo, hi = scaled_interval(o, v, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        has_e, has_n = e > 0, n > 0
        oe = np.where(has_e, o / e, np.nan)
        oe_lower = np.where(has_e, lo / e, np.nan)
        oe_upper = np.where(has_e, hi / e, np.nan)
        dsr = df["dsr"].to_numpy(float)
        spread = np.sqrt(df["dsr_variance"].to_numpy(float) / v)
        complete = df["complete"].to_numpy(bool)
        usable = complete & (o > 0) & (v > 0)
        out = pd.DataFrame(
            {
                "level": level,
                "unit_id": df["unit_id"],
                "period": df["period"],
                "group": df["group"],
                "measure": measure,
                "patients": df["patients"].astype("int64"),
                "listed": n,
                "observed": o,
                "expected": e,
                "variance": v,
                "crude_per_1000": np.where(has_n, o / n * 1000, np.nan),
                "expected_per_1000": np.where(has_n, e / n * 1000, np.nan),
                "oe": oe,
                "oe_lower": oe_lower,
                "oe_upper": oe_upper,
                "dsr_per_1000": np.where(complete, dsr * 1000, np.nan),
                "dsr_lower": np.where(usable, (dsr + spread * (lo - o)) * 1000, np.nan),
                "dsr_upper": np.where(usable, (dsr + spread * (hi - o)) * 1000, np.nan),
            }
        )
    return out.sort_values(KEY, ignore_index=True)
