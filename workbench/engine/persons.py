"""Person attributes per period: sex, and age and age group on the period's first day.

The contract fixes age "on the period's first day" for patients and listed persons alike, so a
person born 1960-06-15 is 63 throughout 2024 even after their birthday, and the numerator and
the denominator of a rate by age group put them in the same band.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from workbench.definitions import Definitions


def age_on(birth_date: ir.DateValue, day: ir.DateValue) -> ir.IntegerValue:
    """Whole years from ``birth_date`` to ``day`` (not below 0: a baby born in the period is 0).

    Built from year/month/day parts, which every backend has. A person born on 29 February
    turns a year older on 1 March in a common year.

    >>> import datetime as dt, ibis
    >>> age_on(ibis.date(2000, 3, 1), ibis.date(2024, 2, 29)).execute()
    23
    >>> age_on(ibis.date(2000, 2, 29), ibis.date(2023, 3, 1)).execute()
    23
    """
    before_birthday = (birth_date.month() > day.month()) | (
        (birth_date.month() == day.month()) & (birth_date.day() > day.day())
    )
    age = day.year() - birth_date.year() - before_birthday.cast("int64")
    return ibis.greatest(age, 0)


def age_group(age: ir.IntegerValue, definitions: Definitions) -> ir.StringValue:
    """The id of the age band (``parameters/age_bands.yaml``) an age falls in."""
    return ibis.cases(
        *(
            (
                (age >= band.min) & (age <= band.max) if band.max is not None else age >= band.min,
                band.id,
            )
            for band in definitions.age_bands
        ),
        else_=ibis.null("string"),
    )


def add_person_attributes(table: ir.Table, persons: ir.Table, definitions: Definitions) -> ir.Table:
    """Add ``sex``, ``age`` and ``age_group`` to a table with ``person_id`` and ``period_start``.

    Persons missing from ``persons`` are dropped: a figure by sex or age can't place them.
    """
    person = persons.select("person_id", "sex", "birth_date")
    joined = table.join(person, "person_id")
    age = age_on(joined.birth_date, joined.period_start)
    with_age = joined.mutate(age=age).drop("birth_date")
    return with_age.mutate(age_group=age_group(with_age.age, definitions))


def stored_person_attributes(table: ir.Table, definitions: Definitions) -> ir.Table:
    """:func:`add_person_attributes` for a mart that carries ``sex``, ``birth_date`` and
    ``person_known`` on every row: the same columns and rows, without joining ``persons``."""
    known = table.filter(table.person_known)
    with_age = known.mutate(age=age_on(known.birth_date, known.period_start)).drop("birth_date")
    return with_age.mutate(age_group=age_group(with_age.age, definitions))
