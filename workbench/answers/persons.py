"""Who each patient is in a period: the person-level inputs of every answer, built once.

Every figure the store holds counts *persons*, and a person's answers depend on them alone: their
net DDD in a selection at a unit (a patient when it is above 0), and the cell they are in — sex,
age group on the period's first day, consumption group and started/continued. The last two are
judged on the whole group from every prescriber (:mod:`workbench.engine.patients`), so they are
worked out here once per person, group and period, for every period, and every selection of the
group reads them:

* **consumption group** of a period: the net DDD of the 365 days ending on its last day, which
  depends only on the month it ends with; so each person's window sums are made once per end
  month (:func:`window_sums`) and every period ending there reads them;
* **started**: the new-use flag of the first redemption day in the period. Each day is coded
  ``day × 2 + (0 if new use else 1)``, so the smallest code of a period's months names both its
  first day and that day's flag (:func:`first_days`).

Persons get a small integer key here (``pk``), which never leaves the build.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions
from workbench.engine.months import NET_DECIMALS, month_of
from workbench.engine.patients import redemption_days
from workbench.engine.persons import age_on, with_age_group
from workbench.engine.query import CONTINUED, MONTHS_3_TO_12, OVER_1_YEAR, STARTED, UNDER_3_MONTHS

CELL = ("sex", "age_group", "consumption_group", "started")
CONSUMPTION_GROUPS = (UNDER_3_MONTHS, MONTHS_3_TO_12, OVER_1_YEAR)


def person_keys(facts: ir.Table) -> ir.Table:
    """``(person_id, pk)``: an integer for every person with a redemption of a drug group."""
    people = facts.filter(facts.product_group.notnull()).select("person_id").distinct()
    return people.mutate(pk=ibis.row_number().over(order_by="person_id").cast("int32"))


def coded_facts(facts: ir.Table, keys: ir.Table, practices: ir.Table, groups: ir.Table,
                drugs: ir.Table) -> ir.Table:
    """The redemptions of the drug groups with codes: ``pk``, ``px`` (the attributed practice;
    null when no GP practice), ``gid``, ``did``, and the product's properties."""
    facts = facts.filter(facts.product_group.notnull())
    coded = practices.select("px", coded_id="practice_id")
    joined = (facts.join(keys, "person_id").join(groups, "product_group").join(drugs, "drug")
              .left_join(coded, facts.practice_id == coded.coded_id))
    return joined.select(
        "pk", "px", "gid", "did", "product", "depot", "addictive", "pack_size", "packs", "ddd",
        day=joined.dispensed_on, month=month_of(joined.dispensed_on).cast("int32"),
    )


def day_codes(coded: ir.Table) -> ir.Table:
    """``(pk, gid, month, code)``: every redemption day of a group (any prescriber, packs > 0)
    coded with its new-use flag (:func:`workbench.engine.patients.redemption_days`)."""
    days = redemption_days(
        coded.select(person_id=coded.pk, group=coded.gid, dispensed_on=coded.day,
                     packs=coded.packs)
    )
    number = days.day.delta(ibis.date(1970, 1, 1), unit="day").cast("int64")
    return days.select(
        pk=days.person_id, gid=days.group, month=month_of(days.day).cast("int32"),
        code=number * 2 + ibis.ifelse(days.new_use, 0, 1),
    )


def group_months(coded: ir.Table, days: ir.Table) -> ir.Table:
    """``(pk, gid, month, ddd, ddd_day1, code)``: per person, group and month over every
    prescriber: net DDD, net DDD on the 1st, and the smallest day code."""
    sums = coded.group_by("pk", "gid", "month").aggregate(
        ddd=coded.ddd.sum(), ddd_day1=coded.ddd.sum(where=coded.day.day() == 1)
    )
    firsts = days.group_by("pk", "gid", "month").aggregate(code=days.code.min())
    joined = sums.left_join(firsts, ["pk", "gid", "month"])
    return joined.select("pk", "gid", "month", "ddd",
                         ddd_day1=joined.ddd_day1.fill_null(0.0), code=joined.code)


def window_sums(months: ir.Table, lookback: ir.Table) -> ir.Table:
    """``(pk, gid, e, window_ddd)``: the DDD of the 365 days ending with month ``e``."""
    rows = months.join(lookback, "month")
    taken = rows.ddd - ibis.ifelse(rows.minus_day1, rows.ddd_day1, 0.0)
    return rows.group_by("pk", "gid", "e").aggregate(window_ddd=taken.sum())


def first_days(months: ir.Table, period_months: ir.Table) -> ir.Table:
    """``(pk, gid, pid, code)``: every period with a redemption of the person's, and its first
    redemption day (null when every one was a return: no day to judge started on)."""
    used = months.join(period_months, "month")
    return used.group_by("pk", "gid", "pid").aggregate(code=used.code.min())


def person_periods(firsts: ir.Table, windows: ir.Table, persons: ir.Table,
                   periods: ir.Table, definitions: Definitions) -> ir.Table:
    """``(pk, gid, pid, sex, age_group, consumption_group, started)`` for everyone with a
    redemption day in the period. Sex and age group are null for a person the persons register
    doesn't know (a figure by sex or age can't place them); no DDD in the window (a redemption
    only before it) is under 3 months, as the engine says."""
    ends = periods.select("pid", "period_start", e=(periods.end - 1).cast("int32"))
    rows = firsts.join(ends, "pid").left_join(windows, ["pk", "gid", "e"])
    rows = rows.left_join(persons, "pk")
    rows = rows.select("pk", "gid", "pid", "code", "window_ddd", "sex", "birth_date",
                       "period_start")
    ddd = rows.window_ddd.fill_null(0.0).round(NET_DECIMALS)
    rows = rows.select(
        "pk", "gid", "pid", "sex",
        age=age_on(rows.birth_date, rows.period_start),
        consumption_group=ibis.cases((ddd < 90, UNDER_3_MONTHS), (ddd <= 365, MONTHS_3_TO_12),
                                     else_=OVER_1_YEAR),
        started=ibis.cases((rows.code.isnull(), ibis.null("string")),
                           (rows.code % 2 == 0, STARTED), else_=CONTINUED),
    )
    return with_age_group(rows, definitions).drop("age")


def cell_codes(sexes: Sequence[str | None], definitions: Definitions) -> ir.Table:
    """``(cell, sex, age_group, consumption_group, started)``: every cell a person can be in
    (``sexes``: those of the persons register), numbered. The nets, sums and levels of every
    person carry the number, not four texts: a national build groups and writes hundreds of
    millions of them; the answers get the texts back at the end (:func:`decoded`)."""
    ages = [band.id for band in definitions.age_bands]
    combos = list(itertools.product(
        dict.fromkeys([*sexes, None]), dict.fromkeys([*ages, None]), CONSUMPTION_GROUPS,
        (STARTED, CONTINUED, None)))
    columns = {name: [combo[i] for combo in combos] for i, name in enumerate(CELL)}
    return ibis.memtable({"cell": list(range(len(combos))), **columns}, schema=ibis.schema(
        {"cell": "int32", **{name: "string" for name in CELL}}))


def coded_cells(person_periods: ir.Table, codes: ir.Table) -> ir.Table:
    """``(pk, gid, pid, cell)``: :func:`person_periods` with each cell's number
    (:func:`cell_codes`; a missing sex or age group is a cell of its own)."""
    joined = person_periods.join(codes, [person_periods[c].identical_to(codes[c]) for c in CELL])
    return joined.select("pk", "gid", "pid", "cell")


def decoded(table: ir.Table, codes: ir.Table) -> ir.Table:
    """``table`` with its ``cell`` number given back as the four texts, in its place."""
    joined = table.join(codes, "cell")
    columns = [name for c in table.columns for name in (CELL if c == "cell" else (c,))]
    return joined.select(*columns)
