"""The dashboard cube: patients and DDD of the nation, each region and cluster, counted once.

A nation, region or cluster question over a run of R12 periods must otherwise find, from the
month marts, every person's net DDD in every 12-month window: ten million person-months
expanded twelvefold and summed, 3-10 s a national question. Yet such questions come from a
small space: eight groups, the recent periods, and breakdowns by person (sex, age group) and
patient (consumption group, started) dimensions, which put each patient in exactly *one* cell.
So patients can be counted once per finest cell and then summed to any coarser cell exactly: a
sum of distinct persons over disjoint sets is still a count of distinct persons.

The cube holds, per level × unit × group × period × ``person_known`` × sex × age group ×
consumption group × started: ``patients`` (net DDD > 0, rounded as the engine rounds) and ``ddd``
(the sum of the persons' nets), and ``persons`` (every person with a redemption in the cell,
patient or not: a cell the engine would show with 0 patients, e.g. a return only). Addictive and
depot are properties of what was dispensed, not of the person: a patient may redeem both kinds,
so they can't be cells. Instead each cell carries the same three figures for each value of each
flag (``patients_addictive``, ``ddd_not_addictive``, ``persons_depot``, ...), each judged on that
value's redemptions alone, as the engine judges a breakdown or filter by the flag. One flag per
question; two flags, an exact age, units of other levels, other periods or non-GP prescribers
are answered from the month marts as before.

Built from the month marts with the engine's own rules (:mod:`workbench.engine.months`):
consumption group on the 365-day window ending on the period's last day, started on the first
redemption day in the period, age on the period's first day. ``tests/test_engine_cube.py``
checks every answer it gives against the month marts' answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.months import (
    NET_DECIMALS,
    consumption_window_ddd,
    first_use,
    month_index,
    period_months,
)
from workbench.engine.patients import label_consumption, label_started
from workbench.engine.periods import Period, parse_period
from workbench.engine.persons import age_on, with_age_group
from workbench.engine.query import PATIENT_DIMS, PERSON_DIMS, UNDER_3_MONTHS, Query, apply_filters
from workbench.engine.units import unit_map

# The months the cube covers, back from the end of the data: every month, quarter, year and R12
# period that ends in them (a dashboard's periods; older ones read the month marts).
CUBE_MONTHS = 24
CUBE_LEVELS = ("nation", "region", "cluster")
CELL = ("person_known", "sex", "age_group", "consumption_group", "started")
FLAGS = ("addictive", "depot")
CUBE_DIMS = frozenset({"sex", "age_group", "consumption_group", "started", *FLAGS})
KEY = ["person_id", "group", "period"]


def cube_periods(end_month: int) -> tuple[Period, ...]:
    """Every month, quarter, year and R12 period ending in the :data:`CUBE_MONTHS` months before
    ``end_month`` (a month index, exclusive)."""
    found = []
    for last in range(end_month - CUBE_MONTHS, end_month):
        year, month = divmod(last, 12)
        month += 1
        found.append(f"{year}-{month:02d}")
        if month % 3 == 0:
            found.append(f"{year}Q{month // 3}")
        if month == 12:
            found.append(str(year))
        found.append(f"R12-{year}-{month:02d}")
    return tuple(parse_period(label) for label in found)


def _flag_columns(flag: str, value: bool) -> tuple[str, str, str]:
    suffix = flag if value else f"not_{flag}"
    return f"patients_{suffix}", f"ddd_{suffix}", f"persons_{suffix}"


def _window_ddd(pgm: ir.Table, periods: Sequence[Period]) -> ir.Table:
    """``(person_id, group, period, window_ddd)``: periods that end on the same day share their
    365-day window, so each window is summed once (for a month period ending there) and given
    to every period that ends with it."""
    ends = sorted({p.end_exclusive for p in periods})
    windows = [parse_period(f"{(e - dt.timedelta(days=1)):%Y-%m}") for e in ends]
    summed = consumption_window_ddd(pgm, windows).rename(window="period")
    owners = ibis.memtable(
        {
            "window": [parse_period(f"{p.last_day:%Y-%m}").label for p in periods],
            "period": [p.label for p in periods],
        },
        schema={"window": "string", "period": "string"},
    )
    joined = summed.join(owners, "window")
    return joined.select("person_id", "group", "period", "window_ddd")


def patient_dims(pgm: ir.Table, periods: Sequence[Period], group: str) -> ir.Table:
    """``(person_id, group, period, consumption_group, started)`` in ``group`` of everyone with
    a month in the periods' windows (over every prescriber, as the engine judges them)."""
    pgm = pgm.filter(pgm.group == group)
    first = min(month_index(p.lookback_start) for p in periods)
    start = min(month_index(p.start) for p in periods)
    end = max(month_index(p.end_exclusive) for p in periods)
    window = pgm.filter((pgm.month >= first) & (pgm.month < end))
    groups = label_consumption(_window_ddd(window, periods))
    in_span = pgm.filter((pgm.month >= start) & (pgm.month < end))
    judged = label_started(first_use(in_span, periods))
    return groups.outer_join(judged, KEY).select(
        *(ibis.coalesce(groups[k], judged[k]).name(k) for k in KEY),
        consumption_group=groups.consumption_group,
        started=judged.started,
    )


def cube_cells(
    month: ir.Table,
    patient: ir.Table,
    practices: ir.Table,
    definitions: Definitions,
    periods: Sequence[Period],
    group: str,
    level: str,
) -> ir.Table:
    """The cube's rows of one group and level, from ``engine_month`` and the group's
    :func:`patient_dims` (built a group and level at a time: a nation's person × period rows
    of every group at once need tens of GiB)."""
    start = min(month_index(p.start) for p in periods)
    end = max(month_index(p.end_exclusive) for p in periods)
    rows = month.filter(
        month.practice_id.notnull()
        & (month.product_group == group)
        & (month.month >= start)
        & (month.month < end)
    )
    rows = rows.join(unit_map(practices, level), "practice_id")
    person = ["person_id", "unit_id", "person_known", "sex", "birth_date"]
    # Month sums per person and unit first (drug, prescriber and practice collapse), then
    # each month's sums go to every period it is in.
    sums = {"net": rows.ddd.sum()}
    for flag in FLAGS:
        for value in (True, False):
            _, ddd, persons = _flag_columns(flag, value)
            chosen = rows[flag] == value
            sums[ddd] = rows.ddd.sum(where=chosen)
            sums[persons] = rows.count(where=chosen)
    monthly = rows.group_by(*person, "month").aggregate(**sums)
    expanded = monthly.join(period_months(periods), "month")
    per_person = expanded.group_by(*person, "period", "period_start").aggregate(
        **{name: expanded[name].sum() for name in sums}
    )
    per_person = per_person.mutate(group=ibis.literal(group))
    per_person = per_person.left_join(patient, KEY).drop(*(f"{k}_right" for k in KEY))
    per_person = per_person.mutate(
        # As the engine: no DDD in the window (only a redemption before it) is under 3 months.
        consumption_group=per_person.consumption_group.fill_null(UNDER_3_MONTHS),
        age=age_on(per_person.birth_date, per_person.period_start),
    )
    per_person = with_age_group(per_person, definitions)
    return _cells(per_person).mutate(level=ibis.literal(level))


def listed_age_groups(listed_age: ir.Table, practices: ir.Table, definitions: Definitions,
                      level: str) -> ir.Table:
    """``engine_listed_age`` summed to the units of ``level`` and the age bands:
    ``(level, unit_id, months, period_month, sex, age_group, person_days)``. A nation, region or
    cluster question by age group then reads a few hundred rows a period instead of every practice's
    ages (0.35-0.5 s nationally)."""
    rows = listed_age.join(unit_map(practices, level), "practice_id")
    rows = with_age_group(rows, definitions)
    summed = rows.group_by("unit_id", "months", "period_month", "sex", "age_group").aggregate(
        person_days=rows.person_days.sum()
    )
    return summed.mutate(level=ibis.literal(level))


def _cells(per_person: ir.Table) -> ir.Table:
    """Per-person nets summed to the cube's cells, for every person and each flag value."""

    def patients(net: ir.FloatingValue) -> ir.IntegerValue:
        return per_person.count(where=net.round(NET_DECIMALS) > 0)

    figures = {
        "patients": patients(per_person.net),
        "ddd": per_person.net.sum(),
        "persons": per_person.count(),
    }
    for flag in FLAGS:
        for value in (True, False):
            p, d, n = _flag_columns(flag, value)
            figures[p] = patients(per_person[d])
            figures[d] = per_person[d].sum().fill_null(0.0)
            figures[n] = per_person.count(where=per_person[n] > 0)
    return per_person.group_by("unit_id", "group", "period", *CELL).aggregate(**figures)


def cube_answers(query: Query, labels: frozenset[str], definitions: Definitions) -> bool:
    """Whether the cube holds the numerator of ``query`` exactly (see the module docstring)."""
    if query.level not in CUBE_LEVELS or query.non_gp or query.groups is None:
        return False
    if any(item not in definitions.groups for item in query.groups):
        return False
    if any(p.label not in labels for p in query.periods):
        return False
    filters = dict(query.filters)
    asked = {*query.by, *filters}
    if not asked <= CUBE_DIMS:
        return False
    flags = asked & set(FLAGS)
    if len(flags) > 1:
        return False
    return not any(len(filters.get(f, ())) > 1 for f in flags)


def cube_numerator(cube: ir.Table, query: Query, grain: Sequence[str]) -> ir.Table:
    """``grain`` + ``patients``, ``ddd``: what the engine counts from person nets, summed from the
    cube's cells. A row appears only where a person has a redemption in it, as in the engine."""
    labels = [p.label for p in query.periods]
    rows = cube.filter(
        (cube.level == query.level)
        & cube.period.isin(labels)
        & cube.group.isin(list(query.groups or ()))
    )
    if query.units is not None:
        rows = rows.filter(rows.unit_id.isin(list(query.units)))
    if query.needs(PERSON_DIMS):
        # A figure by sex or age can only place persons the persons register knows.
        rows = rows.filter(rows.person_known)
    rows = apply_filters(rows, {**query.filters_of(PERSON_DIMS), **query.filters_of(PATIENT_DIMS)})
    # The flag's figures when the grain or a filter has it; a coarser grain of a question by a
    # flag (a share's denominator) counts each patient once, over both values.
    filters = dict(query.filters)
    flag = next((f for f in FLAGS if f in grain or f in filters), None)
    if flag is None:
        variants = [(None, ("patients", "ddd", "persons"))]
    else:
        values = filters.get(flag, (True, False))
        variants = [(value, _flag_columns(flag, value)) for value in values]
    parts = []
    for value, (p, d, n) in variants:
        part = rows.filter(rows[n] > 0)
        if flag is not None and flag in grain:
            part = part.mutate(**{flag: ibis.literal(value)})
        parts.append(part.select(*grain, patients=part[p], ddd=part[d]))
    chosen = ibis.union(*parts) if len(parts) > 1 else parts[0]
    return chosen.group_by(list(grain)).aggregate(
        patients=chosen.patients.sum().cast("int64"), ddd=chosen.ddd.sum()
    )
