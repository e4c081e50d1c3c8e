"""Patient journeys: what became of the patients who started a drug group in a period.

Two person-level measures, both built on the engine's own rules (started = no redemption in the
group in the 365 days before, from :mod:`workbench.engine.patients`; consumption group = DDD in the
365 days ending on a period's last day):

**Journeys of new users** (:func:`journeys`). The cohort of a period is every person who *started*
the group in it (their first redemption in the period has no redemption of the group in the 365
days before). The *index day* is that first redemption's day. From the index day on (inclusive):

* **reached 90 / 365 DDD within 6 / 12 months**: the person's net DDD of the group from *any*
  prescriber in the first 183 (6 months) or 365 (12 months) days reaches 90 DDD (``>= 90``,
  where the 3-months-to-1-year consumption group starts) or exceeds 365 DDD (``> 365``, the
  over-1-year group): they crossed into long-term use within the window;
* **stopped within 12 months**: alive on the last day of the 12 months and no redemption of the
  group in its last 91 days (days 274–364 after the index day). The last three months, because
  packs rarely last longer than that; someone still treated refills within them;
* **died within 12 months**: a death date within the 365 days (a competing end, kept apart from
  stopping).

Only persons whose window ends within the data are counted for a window (``cohort`` is that
number, the denominator of ``share``): a start in December 2025 has no 12 months of follow-up yet.
The data end is the day after the last redemption in the register, unless given.

**Attribution**: a start counts for the practice of the GP who prescribed the starting redemption
(on the index day, the practice with the most DDD that day, ties to the lowest practice id); a
start by a non-GP prescriber counts for no practice, so for no unit (as every measure: the nation
is the sum of its practices). Each start belongs to one practice, so unit counts add up.

**Transitions** (:func:`transitions`): for the patients of a unit in a period *or* in the same
period a year before (net DDD > 0, attributed by prescriber as usual), their consumption group at
the end of each period (any prescriber), or ``none`` without a redemption in the 365-day window.
A patient of the period with no redemption in the window (a 1 January redemption in a leap year)
is *under 3 months*, as in the engine's consumption-group breakdown.

Every count is of persons (``persons``, ``cohort``), so the page layer can suppress them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.facts import redemption_facts, select_groups
from workbench.engine.marts import Marts
from workbench.engine.months import NET_DECIMALS
from workbench.engine.patients import consumption_groups, redemption_days
from workbench.engine.periods import Period, parse_period, periods_table
from workbench.engine.query import CONSUMPTION_GROUPS, UNDER_3_MONTHS
from workbench.engine.registers import Registers
from workbench.engine.units import unit_ids, unit_map

FOLLOW_UP_DAYS = {"6m": 183, "12m": 365}
STOP_WINDOW_DAYS = 91
LONG_TERM_DDD = (90, 365)  # reached: >= 90 DDD, > 365 DDD (the consumption groups' boundaries)
OUTCOMES = (
    "started",
    "reached_90_ddd_6m",
    "reached_365_ddd_6m",
    "reached_90_ddd_12m",
    "reached_365_ddd_12m",
    "stopped_12m",
    "died_12m",
)
NONE = "none"  # no redemption in the consumption-group window
TRANSITION_STATES = (*CONSUMPTION_GROUPS, NONE)


def facts_of(reg: Registers, definitions: Definitions, marts: Marts | None) -> ir.Table:
    """The redemption facts: the stored mart when there is one, else from the raw tables."""
    if marts is not None:
        return marts.facts
    return redemption_facts(reg.redemptions, reg.products, reg.practices, definitions)


def year_before(period: Period | str) -> Period:
    """The period of the same kind twelve months earlier (``2024Q2`` → ``2023Q2``).

    >>> year_before("R12-2024-06").label
    'R12-2023-06'
    >>> year_before("2024-02").label
    '2023-02'
    """
    period = parse_period(period)
    year = period.start.year - 1
    if period.kind == "year":
        return parse_period(str(year))
    if period.kind == "quarter":
        return parse_period(f"{year}Q{(period.start.month - 1) // 3 + 1}")
    if period.kind == "month":
        return parse_period(f"{year}-{period.start.month:02d}")
    last = period.last_day
    return parse_period(f"R12-{last.year - 1}-{last.month:02d}")


def start_days(selected: ir.Table, periods: ir.Table, days: ir.Table | None = None) -> ir.Table:
    """``(person_id, group, period, index_day)`` for everyone who *started* the group in the
    period: the day of their first redemption in it, which has none in the 365 days before.

    ``selected`` is :func:`~workbench.engine.facts.select_groups` output over every prescriber;
    ``days`` its :func:`~workbench.engine.patients.redemption_days` when already stored.
    """
    days = redemption_days(selected) if days is None else days
    in_period = days.join(
        periods, [days.day >= periods.period_start, days.day < periods.period_end]
    )
    first = in_period.group_by(["person_id", "group", "period"]).aggregate(
        index_day=in_period.day.min(), new_use=in_period.new_use.argmin(in_period.day)
    )
    return first.filter(first.new_use).drop("new_use")


def start_practices(selected: ir.Table, starts: ir.Table) -> ir.Table:
    """``starts`` with ``start_ddd`` (DDD dispensed on the index day, every prescriber) and
    ``practice_id``: the GP practice the start is attributed to (most DDD that day, ties to the
    lowest id; null when no GP practice prescribed that day)."""
    day = selected.filter(selected.packs > 0)
    on_day = starts.join(
        day,
        [
            starts.person_id == day.person_id,
            starts.group == day.group,
            starts.index_day == day.dispensed_on,
        ],
    )
    total = on_day.group_by(["person_id", "group", "period"]).aggregate(
        start_ddd=on_day.ddd.sum()
    )
    gp = on_day.filter(on_day.practice_id.notnull())
    by_practice = gp.group_by(["person_id", "group", "period", "practice_id"]).aggregate(
        ddd=gp.ddd.sum()
    )
    order = ibis.window(
        group_by=["person_id", "group", "period"],
        order_by=[ibis.desc(by_practice.ddd), by_practice.practice_id],
    )
    ranked = by_practice.mutate(rank=ibis.row_number().over(order))
    chosen = ranked.filter(ranked["rank"] == 0).select(
        "person_id", "group", "period", "practice_id"
    )
    key = ["person_id", "group", "period"]
    out = starts.join(total, key).left_join(chosen, key)
    return out.select("person_id", "group", "period", "index_day", "start_ddd", "practice_id")


def persons_of_units(
    selected: ir.Table, practices: ir.Table, level: str, units: Sequence[str],
    periods: Sequence[Period],
) -> ir.Table:
    """``(person_id)``: everyone with a redemption from one of the units' practices in the
    periods — the only persons whose start can count for the units. Narrowing to them (with
    their whole history) keeps a question about one practice from judging the nation."""
    first = min(p.start for p in periods)
    last = max(p.end_exclusive for p in periods)
    rows = selected.filter(
        selected.practice_id.notnull()
        & (selected.dispensed_on >= first)
        & (selected.dispensed_on < last)
    )
    rows = rows.join(unit_map(practices, level, list(units)), "practice_id")
    return rows.select("person_id").distinct()


def _data_end(reg: Registers, data_end: dt.date | None) -> ir.Value:
    """The first day after the data (follow-up must end before it)."""
    if data_end is not None:
        return ibis.literal(data_end)
    last = reg.redemptions.dispensed_on.max().as_scalar()
    return last + ibis.interval(days=1)


def journeys(
    reg: Registers,
    definitions: Definitions,
    groups: Sequence[str],
    level: str,
    periods: Sequence[Period],
    *,
    units: Sequence[str] | None = None,
    marts: Marts | None = None,
    data_end: dt.date | None = None,
) -> ir.Table:
    """``(level, unit_id, period, group, outcome, persons, cohort, share)``: the journeys of the
    period's new users (see the module doc), one row per outcome of :data:`OUTCOMES` for every
    unit, period and group (zeros included).

    ``cohort`` is the number of starters with the outcome's whole window inside the data (all
    starters for ``started``); ``share`` = persons / cohort.
    """
    facts = facts_of(reg, definitions, marts)
    selected = select_groups(facts, list(groups), definitions)
    stored = None
    if marts is not None and all(g in definitions.groups for g in groups):
        stored = marts.days.filter(marts.days.group.isin(list(groups)))
    if units is not None:
        who = persons_of_units(selected, reg.practices, level, units, periods)
        selected = selected.semi_join(who, "person_id")
        stored = None if stored is None else stored.semi_join(who, "person_id")
    ptable = periods_table(periods)
    starts = start_practices(selected, start_days(selected, ptable, stored))
    mapped = unit_map(reg.practices, level, None if units is None else list(units))
    cohort = starts.join(mapped, "practice_id")

    index = cohort.index_day.epoch_days()
    follow = selected.select("person_id", "group", "dispensed_on", "packs", "ddd")
    joined = cohort.join(
        follow,
        [
            cohort.person_id == follow.person_id,
            cohort.group == follow.group,
            follow.dispensed_on >= cohort.index_day,
            follow.dispensed_on < cohort.index_day + ibis.interval(days=FOLLOW_UP_DAYS["12m"]),
        ],
    )
    offset = joined.dispensed_on.epoch_days() - joined.index_day.epoch_days()
    stop_from = FOLLOW_UP_DAYS["12m"] - STOP_WINDOW_DAYS
    key = ["unit_id", "person_id", "group", "period"]
    per_person = joined.group_by(key).aggregate(
        ddd_6m=joined.ddd.sum(where=offset < FOLLOW_UP_DAYS["6m"]),
        ddd_12m=joined.ddd.sum(),
        late=(joined.packs > 0).any(where=offset >= stop_from),
    )
    person = reg.persons.select("person_id", "death_date")
    people = cohort.select(*key, index=index).join(per_person, key).left_join(person, "person_id")
    end = _data_end(reg, data_end).epoch_days()
    death = people.death_date.epoch_days() - people.index
    died = people.death_date.notnull() & (death < FOLLOW_UP_DAYS["12m"])
    followed_6m = people.index + FOLLOW_UP_DAYS["6m"] <= end
    followed_12m = people.index + FOLLOW_UP_DAYS["12m"] <= end
    ddd_6m = people.ddd_6m.fill_null(0).round(NET_DECIMALS)
    ddd_12m = people.ddd_12m.round(NET_DECIMALS)
    low, high = LONG_TERM_DDD
    counts = people.group_by(["unit_id", "group", "period"]).aggregate(
        started=people.count(),
        followed_6m=people.count(where=followed_6m),
        followed_12m=people.count(where=followed_12m),
        reached_90_ddd_6m=people.count(where=followed_6m & (ddd_6m >= low)),
        reached_365_ddd_6m=people.count(where=followed_6m & (ddd_6m > high)),
        reached_90_ddd_12m=people.count(where=followed_12m & (ddd_12m >= low)),
        reached_365_ddd_12m=people.count(where=followed_12m & (ddd_12m > high)),
        stopped_12m=people.count(where=followed_12m & ~died & ~people.late.fill_null(False)),
        died_12m=people.count(where=followed_12m & died),
    )
    frame = (
        unit_ids(reg.practices, level, None if units is None else list(units))
        .cross_join(ptable.select("period"))
        .cross_join(ibis.memtable({"group": list(groups)}, schema={"group": "string"}))
    )
    keys = ["unit_id", "period", "group"]
    wide = frame.left_join(counts, keys).drop(*(f"{k}_right" for k in keys))
    wide = wide.mutate(**{c: wide[c].fill_null(0) for c in counts.columns if c not in keys})
    long = outcomes_long(wide)
    return long.select(
        level=ibis.literal(level),
        unit_id=long.unit_id,
        period=long.period,
        group=long.group,
        outcome=long.outcome,
        persons=long.persons,
        cohort=long.cohort,
        share=ibis.ifelse(long.cohort > 0, long.persons / long.cohort, ibis.null("float64")),
    )


def outcomes_long(wide: ir.Table) -> ir.Table:
    """One row per outcome (``persons``) from the counts' columns, with its ``cohort``: every
    starter for ``started``, those followed the outcome's whole window for the others."""
    long = wide.pivot_longer(list(OUTCOMES), names_to="outcome", values_to="persons")
    cohort_size = ibis.cases(
        (long.outcome == "started", long.persons),
        (long.outcome.endswith("_6m"), long.followed_6m),
        else_=long.followed_12m,
    )
    return long.mutate(cohort=cohort_size)


def transitions(
    reg: Registers,
    definitions: Definitions,
    groups: Sequence[str],
    level: str,
    periods: Sequence[Period],
    *,
    units: Sequence[str] | None = None,
    marts: Marts | None = None,
) -> ir.Table:
    """``(level, unit_id, period, previous, group, from_group, to_group, persons)``: the unit's
    patients of ``previous`` (the period a year before) or ``period`` by their consumption group
    at the end of each (see the module doc). Every combination of states is a row (zeros
    included) except ``none`` → ``none``, which holds nobody by construction.
    """
    pairs = [(year_before(p), p) for p in periods]
    every = list(dict.fromkeys([q for pair in pairs for q in pair]))
    ptable = periods_table(every)
    facts = facts_of(reg, definitions, marts)
    selected = select_groups(facts, list(groups), definitions)

    mapped = unit_map(reg.practices, level, None if units is None else list(units))
    rows = selected.filter(selected.practice_id.notnull()).join(mapped, "practice_id")
    rows = rows.join(
        ptable, [rows.dispensed_on >= ptable.period_start, rows.dispensed_on < ptable.period_end]
    )
    net = rows.group_by(["unit_id", "person_id", "group", "period"]).aggregate(net=rows.ddd.sum())
    patients = net.filter(net.net.round(NET_DECIMALS) > 0).drop("net")

    role = ibis.memtable(
        {
            "period": [q.label for prev, p in pairs for q in (prev, p)],
            "pair": [p.label for prev, p in pairs for _ in (prev, p)],
            "previous": [prev.label for prev, p in pairs for _ in (prev, p)],
            "is_later": [q is p for prev, p in pairs for q in (prev, p)],
        },
        schema={"period": "string", "pair": "string", "previous": "string", "is_later": "bool"},
    )
    tagged = patients.join(role, "period")
    population = tagged.group_by(["unit_id", "person_id", "group", "pair", "previous"]).aggregate(
        in_previous=(~tagged.is_later).any(), in_later=tagged.is_later.any()
    )
    groups_at = consumption_groups(selected.semi_join(population, ["person_id", "group"]), ptable)
    before = groups_at.rename(previous="period", from_group="consumption_group")
    after = groups_at.rename(pair="period", to_group="consumption_group")
    joined = population.left_join(before, ["person_id", "group", "previous"]).drop(
        "person_id_right", "group_right", "previous_right"
    )
    joined = joined.left_join(after, ["person_id", "group", "pair"]).drop(
        "person_id_right", "group_right", "pair_right"
    )

    def state(value: ir.StringValue, patient: ir.BooleanValue) -> ir.StringValue:
        return ibis.cases(
            (value.notnull(), value), (patient, ibis.literal(UNDER_3_MONTHS)), else_=NONE
        )

    labelled = joined.mutate(
        from_group=state(joined.from_group, joined.in_previous),
        to_group=state(joined.to_group, joined.in_later),
    )
    counts = labelled.group_by(
        ["unit_id", "pair", "group", "from_group", "to_group"]
    ).aggregate(persons=labelled.count())
    cells = [(a, b) for a in TRANSITION_STATES for b in TRANSITION_STATES if (a, b) != (NONE, NONE)]
    frame = (
        unit_ids(reg.practices, level, None if units is None else list(units))
        .cross_join(role.filter(role.is_later).select("pair", "previous"))
        .cross_join(ibis.memtable({"group": list(groups)}, schema={"group": "string"}))
        .cross_join(
            ibis.memtable(
                {"from_group": [a for a, _ in cells], "to_group": [b for _, b in cells]},
                schema={"from_group": "string", "to_group": "string"},
            )
        )
    )
    keys = ["unit_id", "pair", "group", "from_group", "to_group"]
    out = frame.left_join(counts, keys).drop(*(f"{k}_right" for k in keys))
    return out.select(
        level=ibis.literal(level),
        unit_id=out.unit_id,
        period=out.pair,
        previous=out.previous,
        group=out.group,
        from_group=out.from_group,
        to_group=out.to_group,
        persons=out.persons.fill_null(0),
    )
