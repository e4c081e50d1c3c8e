"""What became of every new user, followed once, and counted for every period and unit.

The engine's journeys (:func:`workbench.engine.journeys.journeys`) follow the starters of each
period for 6 and 12 months from their start. A start is a person's new-use day of a group (no
redemption in the 365 days before it), and what happens after it — DDD within 183 and 365 days,
a purchase in the last 91 days, death — depends on the start alone, not on the period it is
counted in; so is the practice it is attributed to (the GP practice with the most DDD that day,
ties to the lowest id). So each start is followed once, and then counted for every period whose
first redemption of the group it is: a new-use day is the first of any period of 365 days or
less that holds it (nothing in the 365 days before it), and of a longer period when the
previous redemption lies before the period's start. Each start belongs to one practice, so
every level's counts are its practices' sums.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.answers.codes import unit_codes
from workbench.engine.journeys import (
    FOLLOW_UP_DAYS,
    LONG_TERM_DDD,
    STOP_WINDOW_DAYS,
    outcomes_long,
)
from workbench.engine.months import NET_DECIMALS
from workbench.engine.periods import LOOKBACK_DAYS, Period

LEVELS = ("practice", "cluster", "municipality", "region", "nation")


def starts(coded: ir.Table) -> ir.Table:
    """``(pk, gid, day, previous)``: every new-use day of a group (packs > 0, nothing in the
    365 days before) with the redemption day before it (null: the first)."""
    days = coded.filter(coded.packs > 0).select("pk", "gid", "day").distinct()
    window = ibis.window(group_by=["pk", "gid"], order_by="day")
    days = days.mutate(previous=days.day.lag().over(window))
    new = days.previous.isnull() | (days.day.delta(days.previous, unit="day") > LOOKBACK_DAYS)
    return days.filter(new)


def followed(coded: ir.Table, begun: ir.Table, persons: ir.Table, data_end: dt.date
             ) -> ir.Table:
    """Per start: the practice it counts for (``px``, null: no GP practice that day) and its
    outcomes as 0/1 columns (``reached_90_ddd_6m`` …, ``followed_6m``, ``followed_12m``)."""
    given = coded.filter(coded.packs > 0)
    on_day = begun.join(given, [begun.pk == given.pk, begun.gid == given.gid,
                                begun.day == given.day])
    on_day = on_day.select(pk=begun.pk, gid=begun.gid, day=begun.day, px=given.px,
                           ddd=given.ddd)
    gp = on_day.filter(on_day.px.notnull())
    by_practice = gp.group_by("pk", "gid", "day", "px").aggregate(ddd=gp.ddd.sum())
    order = ibis.window(group_by=["pk", "gid", "day"],
                        order_by=[ibis.desc(by_practice.ddd), by_practice.px])
    ranked = by_practice.mutate(rank=ibis.row_number().over(order))
    chosen = ranked.filter(ranked["rank"] == 0).select("pk", "gid", "day", "px")
    year = FOLLOW_UP_DAYS["12m"]
    after = begun.join(coded, [begun.pk == coded.pk, begun.gid == coded.gid,
                               coded.day >= begun.day,
                               coded.day < begun.day + ibis.interval(days=year)])
    offset = after.day_right.delta(after.day, unit="day")
    key = ["pk", "gid", "day"]
    per_start = after.group_by(pk=after.pk, gid=after.gid, day=after.day).aggregate(
        ddd_6m=after.ddd.sum(where=offset < FOLLOW_UP_DAYS["6m"]),
        ddd_12m=after.ddd.sum(),
        late=(after.packs > 0).any(where=offset >= year - STOP_WINDOW_DAYS),
    )
    people = per_start.left_join(chosen, key).drop("pk_right", "gid_right", "day_right")
    people = people.left_join(persons, "pk").drop("pk_right")
    index = people.day.epoch_days()
    end = (data_end - dt.date(1970, 1, 1)).days
    died = people.death_date.notnull() & (
        (people.death_date.epoch_days() - index) < FOLLOW_UP_DAYS["12m"])
    six = index + FOLLOW_UP_DAYS["6m"] <= end
    twelve = index + FOLLOW_UP_DAYS["12m"] <= end
    ddd_6m = people.ddd_6m.fill_null(0).round(NET_DECIMALS)
    ddd_12m = people.ddd_12m.round(NET_DECIMALS)
    low, high = LONG_TERM_DDD

    def flag(condition: ir.BooleanValue) -> ir.IntegerValue:
        return condition.fill_null(False).cast("int64")

    return people.select(
        "pk", "gid", "day", "px",
        started=ibis.literal(1, "int64"),
        followed_6m=flag(six), followed_12m=flag(twelve),
        reached_90_ddd_6m=flag(six & (ddd_6m >= low)),
        reached_365_ddd_6m=flag(six & (ddd_6m > high)),
        reached_90_ddd_12m=flag(twelve & (ddd_12m >= low)),
        reached_365_ddd_12m=flag(twelve & (ddd_12m > high)),
        stopped_12m=flag(twelve & ~died & ~people.late.fill_null(False)),
        died_12m=flag(twelve & died),
    )


COUNTS = ("started", "followed_6m", "followed_12m", "reached_90_ddd_6m", "reached_365_ddd_6m",
          "reached_90_ddd_12m", "reached_365_ddd_12m", "stopped_12m", "died_12m")


def journey_table(coded: ir.Table, begun: ir.Table, outcomes: ir.Table, practices: ir.Table,
                  periods: Sequence[Period], groups: ir.Table) -> ir.Table:
    """``(level, unit_id, period, group, outcome, persons, cohort, share)`` for every unit of
    every level, cohort period and group (zeros included), as the engine's journeys."""
    epoch = dt.date(1970, 1, 1)
    bounds = ibis.memtable({
        "period": [p.label for p in periods],
        "p_start": [(p.start - epoch).days for p in periods],
        "p_end": [(p.end_exclusive - epoch).days for p in periods],
    }, schema={"period": "string", "p_start": "int64", "p_end": "int64"})
    day = begun.day.epoch_days()
    cohort = begun.join(bounds, [day >= bounds.p_start, day < bounds.p_end])
    cohort = cohort.filter(cohort.previous.isnull()
                           | (cohort.previous.epoch_days() < cohort.p_start))
    counted = cohort.select("pk", "gid", "day", "period").join(outcomes, ["pk", "gid", "day"])
    counted = counted.filter(counted.px.notnull())
    per_practice = counted.group_by("px", "gid", "period").aggregate(
        **{c: counted[c].sum() for c in COUNTS})
    parts = []
    for level in LEVELS:
        units = unit_codes(practices, level)
        mapped = per_practice.join(units, "px")
        summed = mapped.group_by("unit_id", "gid", "period").aggregate(
            **{c: mapped[c].sum() for c in COUNTS})
        frame = (units.select("unit_id").distinct()
                 .cross_join(bounds.select("period"))
                 .cross_join(groups.select("gid", group="product_group")))
        wide = frame.left_join(summed, ["unit_id", "gid", "period"]).drop(
            "unit_id_right", "gid_right", "period_right")
        wide = wide.mutate(**{c: wide[c].fill_null(0) for c in COUNTS})
        long = outcomes_long(wide)
        parts.append(long.select(
            level=ibis.literal(level), unit_id=long.unit_id, period=long.period,
            group=long.group, outcome=long.outcome, persons=long.persons,
            cohort=long.cohort,
            share=ibis.ifelse(long.cohort > 0, long.persons / long.cohort,
                              ibis.null("float64"))))
    return ibis.union(*parts)
