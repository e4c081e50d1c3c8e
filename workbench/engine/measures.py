"""The measures (*effektmål*), exactly to the contract, as one lazy Ibis expression.

The rules that shape the code:

* **patients** are distinct persons whose *net* DDD within the filters, unit, period, group and
  breakdown cell is > 0. So the engine first sums DDD per person at exactly the grain asked and
  only then counts; patients are never added up across periods, groups, units or cells (a person
  treated in two practices of a cluster is one patient of the cluster, and one whose return nets
  their DDD to zero is no patient at all).
* **rates are ratios of sums**: patients or DDD of the cell over the listed persons of the cell,
  where the listed persons are split only by person dimensions (sex, age) — a rate by product or
  by consumption group divides by all listed persons of the unit.
* **every unit appears**: the result starts from every unit of the level × period × group, so a
  practice with listed persons and no redemptions shows 0 patients, not a missing row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.facts import ALL_DRUGS, GP, redemption_facts, select_groups
from workbench.engine.listed import listed_persons
from workbench.engine.marts import Marts
from workbench.engine.months import (
    NET_DECIMALS,
    age_periods,
    consumption_window_ddd,
    first_use,
    month_index,
    period_key,
    period_months,
    person_months_of_practices,
)
from workbench.engine.patients import consumption_groups, label_consumption, label_started, starts
from workbench.engine.periods import periods_table
from workbench.engine.persons import (
    add_person_attributes,
    stored_person_attributes,
    with_age_group,
)
from workbench.engine.query import (
    PATIENT_DIMS,
    PERSON_DIMS,
    REDEMPTION_DIMS,
    UNDER_3_MONTHS,
    Query,
    apply_filters,
)
from workbench.engine.registers import Registers
from workbench.engine.units import NATION_ID, unit_ids, unit_map


def _in_units(selected: ir.Table, practices: ir.Table, query: Query) -> ir.Table:
    """The selected redemptions that count for a unit of the level, with its ``unit_id``.

    With ``non_gp`` (nation level only) the redemptions of no practice are kept too, at the
    nation, labelled by ``prescriber``.
    """
    units = None if query.units is None else list(query.units)
    attributed = selected.filter(selected.practice_id.notnull()).join(
        unit_map(practices, query.level, units), "practice_id"
    )
    if not query.non_gp or (units is not None and NATION_ID not in units):
        return attributed
    others = selected.filter(selected.practice_id.isnull()).mutate(unit_id=ibis.literal(NATION_ID))
    return ibis.union(attributed, others.select(*attributed.columns))


def _stored_days(marts: Marts | None, query: Query, definitions: Definitions) -> ir.Table | None:
    """The marts' redemption days of the query's groups, if they hold them (group ids only)."""
    if marts is None or query.groups is None:
        return None
    if any(item not in definitions.groups for item in query.groups):
        return None
    return marts.days.filter(marts.days.group.isin(list(query.groups)))


def _of_patients(table: ir.Table, rows: ir.Table, query: Query) -> ir.Table:
    """``table`` (per person and group) narrowed to the persons and groups of ``rows`` when the
    query asks for some units only: a practice's patients' history, not the nation's.

    Exact: consumption group and started/continued are judged per person and group on their
    whole history, which the narrowing keeps; they are only ever joined to ``rows``.
    """
    if query.units is None:
        return table
    who = rows.select("person_id", "group").distinct()
    return table.semi_join(who, ["person_id", "group"])


def _with_patient_dims(
    rows: ir.Table, selected: ir.Table, periods: ir.Table, query: Query, days: ir.Table | None
) -> ir.Table:
    """Add the consumption group and started/continued asked for, judged on ``selected``
    (every prescriber, no other filter)."""
    selected = _of_patients(selected, rows, query)
    if days is not None:
        days = _of_patients(days, rows, query)
    key = ["person_id", "group", "period"]
    wanted = {*query.dims(PATIENT_DIMS), *query.filters_of(PATIENT_DIMS)}
    if "consumption_group" in wanted:
        groups = consumption_groups(selected, periods)
        rows = rows.left_join(groups, key).drop(*(f"{k}_right" for k in key))
        # Someone whose only redemption is before the 365-day window (1 January of a leap
        # year) redeemed no DDD in it: under 3 months.
        rows = rows.mutate(consumption_group=rows.consumption_group.fill_null(UNDER_3_MONTHS))
    if "started" in wanted:
        judged = starts(selected, periods, days)
        rows = rows.left_join(judged, key).drop(*(f"{k}_right" for k in key))
    return rows


# Redemption dimensions the month mart keeps; the others (product, pack_size) need the
# redemption-grain facts.
MONTH_MART_DIMS = ("drug", "addictive", "depot")


def uses_month_mart(marts: Marts | None, query: Query, definitions: Definitions) -> bool:
    """Whether the month-grain marts can answer the numerator exactly: drug groups only (or
    all drugs), no drug/product/pack-size breakdown, and patient dimensions only for groups."""
    if marts is None or marts.month is None or marts.person_month is None:
        return False
    if query.groups is None:
        if query.needs(PATIENT_DIMS):
            return False
    elif any(item not in definitions.groups for item in query.groups):
        return False
    redemption_dims = {*query.dims(REDEMPTION_DIMS), *query.filters_of(REDEMPTION_DIMS)}
    return redemption_dims <= set(MONTH_MART_DIMS)


def _month_span(query: Query) -> tuple[int, int]:
    """The first and the end (exclusive) month index of the query's periods."""
    first = min(month_index(p.start) for p in query.periods)
    return first, max(month_index(p.end_exclusive) for p in query.periods)


def _practices_asked(marts: Marts, query: Query) -> list[str] | None:
    """The practice ids a practice or cluster question is about, when the marts have the
    by-practice copies to read them from (None: read the nation-wide marts)."""
    if query.units is None or marts.month_by_practice is None:
        return None
    if query.level == "practice":
        return sorted(query.units)
    if query.level == "cluster" and marts.cluster_practices is not None:
        return sorted({p for u in query.units for p in marts.cluster_practices.get(u, ())})
    return None


def _month_rows(reg: Registers, definitions: Definitions, query: Query, marts: Marts) -> ir.Table:
    """The month mart's rows of the query's groups, units, periods and filters, with the cell
    they fall in: the same columns the redemption rows have, summed per month."""
    assert marts.month is not None and marts.person_month is not None
    practice_ids = _practices_asked(marts, query)
    month = marts.month
    if practice_ids is not None:
        assert marts.month_by_practice is not None
        month = marts.month_by_practice
        month = month.filter(month.practice_id.isin(practice_ids))
    first, end = _month_span(query)
    # Literal bounds let the database skip row groups (the mart is sorted by group, month).
    month = month.filter((month.month >= first) & (month.month < end))
    if query.groups is None:
        selected = month.mutate(group=ibis.literal(ALL_DRUGS))
    else:
        month = month.filter(month.product_group.isin(list(query.groups)))
        selected = month.mutate(group=month.product_group)
    rows = _in_units(selected, reg.practices, query)
    rows = rows.join(period_months(query.periods), "month")
    rows = apply_filters(rows, query.filters_of(REDEMPTION_DIMS))
    if query.needs(PERSON_DIMS):
        rows = stored_person_attributes(rows, definitions)
        rows = apply_filters(rows, query.filters_of(PERSON_DIMS))
    if query.needs(PATIENT_DIMS):
        assert query.groups is not None
        if practice_ids is not None and marts.person_month_by_practice is not None:
            pgm = person_months_of_practices(
                marts.person_month_by_practice, practice_ids, list(query.groups)
            )
        else:
            pgm = marts.person_month.filter(marts.person_month.group.isin(list(query.groups)))
        pgm = _of_patients(pgm, rows, query)
        key = ["person_id", "group", "period"]
        wanted = {*query.dims(PATIENT_DIMS), *query.filters_of(PATIENT_DIMS)}
        if "consumption_group" in wanted:
            # The window starts up to 12 months before the first period.
            window = pgm.filter((pgm.month >= first - 12) & (pgm.month < end))
            groups = label_consumption(consumption_window_ddd(window, query.periods))
            rows = rows.left_join(groups, key).drop(*(f"{k}_right" for k in key))
            rows = rows.mutate(consumption_group=rows.consumption_group.fill_null(UNDER_3_MONTHS))
        if "started" in wanted:
            in_span = pgm.filter((pgm.month >= first) & (pgm.month < end))
            judged = label_started(first_use(in_span, query.periods))
            rows = rows.left_join(judged, key).drop(*(f"{k}_right" for k in key))
        rows = apply_filters(rows, query.filters_of(PATIENT_DIMS))
    return rows


def _cell_rows(
    reg: Registers,
    definitions: Definitions,
    query: Query,
    periods: ir.Table,
    marts: Marts | None,
) -> ir.Table:
    """Every redemption of the query's units, periods and filters with the cell it falls in
    (or, from the month mart, every person-month sum: the same answer once summed)."""
    if marts is not None and uses_month_mart(marts, query, definitions):
        return _month_rows(reg, definitions, query, marts)
    if marts is None:
        facts = redemption_facts(reg.redemptions, reg.products, reg.practices, definitions)
    else:
        facts = marts.facts
    selected = select_groups(facts, query.groups, definitions)
    rows = _in_units(selected, reg.practices, query)
    rows = rows.join(
        periods,
        [rows.dispensed_on >= periods.period_start, rows.dispensed_on < periods.period_end],
    )
    rows = apply_filters(rows, query.filters_of(REDEMPTION_DIMS))
    if query.needs(PERSON_DIMS):
        rows = add_person_attributes(rows, reg.persons, definitions)
        rows = apply_filters(rows, query.filters_of(PERSON_DIMS))
    if query.needs(PATIENT_DIMS):
        days = _stored_days(marts, query, definitions)
        rows = _with_patient_dims(rows, selected, periods, query, days)
        rows = apply_filters(rows, query.filters_of(PATIENT_DIMS))
    return rows


def _numerator(
    reg: Registers,
    definitions: Definitions,
    query: Query,
    periods: ir.Table,
    marts: Marts | None,
) -> Numerator:
    """Patients and DDD per cell of a grain, counted from the cell rows."""
    rows = _cell_rows(reg, definitions, query, periods, marts)
    return lambda grain: _patients_and_ddd(rows, grain)


def _patients_and_ddd(rows: ir.Table, grain: Sequence[str]) -> ir.Table:
    """Net DDD per person at ``grain``, then patients (net > 0) and DDD per cell."""
    per_person = rows.group_by(["person_id", *grain]).aggregate(net=rows.ddd.sum())
    # Rounded, so a return that cancels a purchase nets to exactly 0 whatever the summing order.
    return per_person.group_by(list(grain)).aggregate(
        patients=per_person.count(where=per_person.net.round(NET_DECIMALS) > 0),
        ddd=per_person.net.sum(),
    )


def _outer_join(left: ir.Table, right: ir.Table, keys: Sequence[str]) -> ir.Table:
    """A full outer join that keeps one column per key (the value from either side)."""
    joined = left.outer_join(right, list(keys))
    return joined.mutate(**{k: ibis.coalesce(joined[k], joined[f"{k}_right"]) for k in keys}).drop(
        *(f"{k}_right" for k in keys)
    )


@functools.lru_cache(maxsize=256)
def _names_table(names: tuple[str, ...]) -> ir.Table:
    """The asked selections' names as a one-column table (cached, like the periods)."""
    return ibis.memtable({"group": list(names)}, schema={"group": "string"})


def _frame(reg: Registers, query: Query, periods: ir.Table, listed: ir.Table) -> ir.Table:
    """Every unit × period × group (× person cell with listed persons): the rows that must be
    there even without a single redemption."""
    units = None if query.units is None else list(query.units)
    names = list(query.groups) if query.groups is not None else [ALL_DRUGS]
    frame = (
        unit_ids(reg.practices, query.level, units)
        .cross_join(periods.select("period"))
        .cross_join(_names_table(tuple(names)))
    )
    if query.non_gp:
        frame = frame.mutate(prescriber=ibis.literal(GP))
    person_dims = query.dims(PERSON_DIMS)
    if person_dims:
        cells = listed.select("unit_id", "period", *person_dims)
        frame = frame.left_join(cells, ["unit_id", "period"]).drop("unit_id_right", "period_right")
    return frame


Numerator = Callable[[Sequence[str]], ir.Table]


def _add_share(
    table: ir.Table, numerator: Numerator, query: Query, grain: Sequence[str]
) -> ir.Table:
    """share = patients of the cell / patients of the group (in the same unit, period, filters,
    and the ``share_within`` breakdowns), each counted at its own grain."""
    coarse = [k for k in grain if k not in query.by or k in query.share_within]
    totals = numerator(coarse).select(*coarse, group_patients="patients")
    joined = table.left_join(totals, coarse).drop(*(f"{k}_right" for k in coarse))
    share = ibis.ifelse(
        joined.group_patients > 0, joined.patients / joined.group_patients, ibis.null("float64")
    )
    return joined.mutate(share=share).drop("group_patients")


def _listed(
    reg: Registers,
    definitions: Definitions,
    query: Query,
    periods: ir.Table,
    marts: Marts | None,
) -> ir.Table:
    """Listed persons per unit, period and person cell: from the listed month mart when it
    covers the periods and no age is asked (age is on the period's first day, which month sums
    can't tell), from the listed-age mart (per period) when an age is asked, else from the raw
    listings."""
    units = None if query.units is None else list(query.units)
    person_dims = query.dims(PERSON_DIMS)
    person_filters = query.filters_of(PERSON_DIMS)
    ages = {"age", "age_group"} & {*person_dims, *person_filters}
    if marts is not None and ages and marts.lists_ages(query.periods):
        return _listed_by_age(reg, definitions, query, periods, marts)
    if marts is None or ages or not marts.lists_months(*_month_span(query)):
        return listed_persons(
            reg.listings,
            reg.practices,
            reg.persons,
            periods,
            definitions,
            level=query.level,
            units=units,
            by=person_dims,
            filters=person_filters,
        )
    assert marts.listed is not None
    first, end = _month_span(query)
    stored = marts.listed.filter((marts.listed.month >= first) & (marts.listed.month < end))
    if person_dims or person_filters:
        # A figure by sex can only place persons the persons register knows.
        stored = apply_filters(stored.filter(stored.known), person_filters)
    days = stored.join(unit_map(reg.practices, query.level, units), "practice_id")
    days = days.join(period_months(query.periods).select("period", "month"), "month")
    days = days.join(periods.select("period", "period_days"), "period")
    summed = days.group_by(["unit_id", "period", "period_days", *person_dims]).aggregate(
        person_days=days.person_days.sum()
    )
    return summed.select(
        "unit_id", "period", *person_dims, listed=summed.person_days / summed.period_days
    )


def _listed_by_age(
    reg: Registers, definitions: Definitions, query: Query, periods: ir.Table, marts: Marts
) -> ir.Table:
    """Listed persons by person cell with an age asked, from ``engine_listed_age``: each period
    is one stored row set (age on its first day), so nothing is re-aggregated across months."""
    assert marts.listed_age is not None
    units = None if query.units is None else list(query.units)
    person_dims = query.dims(PERSON_DIMS)
    keys = [period_key(p) for p in query.periods]
    wanted = age_periods(tuple(query.periods))
    stored = marts.listed_age
    assert stored is not None
    # Literal bounds let the database skip row groups (the mart is sorted by length, month).
    stored = stored.filter(
        stored.months.isin(sorted({k[1] for k in keys}))
        & (stored.period_month >= min(k[0] for k in keys))
        & (stored.period_month <= max(k[0] for k in keys))
    )
    practice_ids = _practices_asked(marts, query)
    if practice_ids is not None:
        # Literal ids let the database skip to the practices' rows within each period.
        stored = stored.filter(stored.practice_id.isin(practice_ids))
    days = stored.join(wanted, ["period_month", "months"])
    days = days.join(unit_map(reg.practices, query.level, units), "practice_id")
    days = with_age_group(days, definitions)
    days = apply_filters(days, query.filters_of(PERSON_DIMS))
    days = days.join(periods.select("period", "period_days"), "period")
    summed = days.group_by(["unit_id", "period", "period_days", *person_dims]).aggregate(
        person_days=days.person_days.sum()
    )
    return summed.select(
        "unit_id", "period", *person_dims, listed=summed.person_days / summed.period_days
    )


def _ratio(numerator: ir.NumericValue, listed: ir.NumericValue) -> ir.FloatingValue:
    return ibis.ifelse(listed > 0, numerator / listed * 1000, ibis.null("float64"))


def compute_measures(
    reg: Registers, definitions: Definitions, query: Query, marts: Marts | None = None
) -> ir.Table:
    """The lazy measures table of a checked :class:`Query`, from ``marts`` when given (the same
    answer, faster) or else from the raw register tables.

    Columns: ``level``, ``unit_id``, ``period``, ``group`` (unless no groups were asked),
    ``prescriber`` (with ``non_gp``), the breakdowns in the order asked, then the measures.
    """
    periods = periods_table(query.periods)
    person_dims = query.dims(PERSON_DIMS)
    extra = ["prescriber"] if query.non_gp else []
    grain = ["unit_id", "period", "group", *extra, *query.by]
    numerator = _numerator(reg, definitions, query, periods, marts)
    listed = _listed(reg, definitions, query, periods, marts)
    frame = _frame(reg, query, periods, listed)
    table = _outer_join(
        frame, numerator(grain), ["unit_id", "period", "group", *extra, *person_dims]
    )
    listed_keys = ["unit_id", "period", *person_dims]
    table = table.left_join(listed, listed_keys).drop(*(f"{k}_right" for k in listed_keys))
    table = table.join(periods.select("period", "period_days"), "period")
    table = table.mutate(
        patients=table.patients.fill_null(0),
        ddd=table.ddd.fill_null(0.0),
        listed=table.listed.fill_null(0.0),
    )
    if "share" in query.measures:
        table = _add_share(table, numerator, query, grain)
    table = table.mutate(
        patients_per_1000=_ratio(table.patients, table.listed),
        ddd_per_1000=_ratio(table.ddd, table.listed),
        ddd_per_1000_per_day=_ratio(table.ddd, table.listed) / table.period_days,
    )
    group = [] if query.groups is None else ["group"]
    return table.select(
        level=ibis.literal(query.level),
        unit_id=table.unit_id,
        period=table.period,
        **{c: table[c] for c in (*group, *extra, *query.by)},
        **{m: table[m] for m in query.measures},
    )
