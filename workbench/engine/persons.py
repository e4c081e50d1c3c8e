"""Person attributes per period: sex, and age and age group on the period's first day.

The contract fixes age "on the period's first day" for patients and listed persons alike, so a
person born 1960-06-15 is 63 throughout 2024 even after their birthday, and the numerator and
the denominator of a rate by age group put them in the same band.
"""

from __future__ import annotations

import functools

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


# Ages above this share its band (the last band is open-ended); no register holds older persons.
MAX_AGE = 130


@functools.lru_cache(maxsize=16)
def _bands(bands: tuple[tuple[str, int, int | None], ...]) -> ir.Table:
    """``(band_age, age_group)`` for every age from 0 to :data:`MAX_AGE`."""
    ages = list(range(MAX_AGE + 1))
    labels = [
        next((b for b, low, high in bands if age >= low and (high is None or age <= high)), None)
        for age in ages
    ]
    return ibis.memtable(
        {"band_age": ages, "age_group": labels},
        schema=ibis.schema({"band_age": "int64", "age_group": "string"}),
    )


def with_age_group(table: ir.Table, definitions: Definitions) -> ir.Table:
    """Add ``age_group``, the id of the age band (``parameters/age_bands.yaml``) that the
    table's ``age`` falls in (null outside every band).

    A join with a small age → band table rather than a ``CASE`` over the age: the SQL compiler
    inlines the age expression into every branch of a ``CASE`` (and again for each value of a
    filter on the band), which made a region's age-group question seconds slower nationally;
    the join computes each row's age once.
    """
    key = tuple((b.id, b.min, b.max) for b in definitions.age_bands)
    bands = _bands(key)
    joined = table.left_join(bands, ibis.least(table.age, MAX_AGE) == bands.band_age)
    return joined.drop("band_age")


def add_person_attributes(table: ir.Table, persons: ir.Table, definitions: Definitions) -> ir.Table:
    """Add ``sex``, ``age`` and ``age_group`` to a table with ``person_id`` and ``period_start``.

    Persons missing from ``persons`` are dropped: a figure by sex or age can't place them.
    """
    person = persons.select("person_id", "sex", "birth_date")
    joined = table.join(person, "person_id")
    age = age_on(joined.birth_date, joined.period_start)
    with_age = joined.mutate(age=age).drop("birth_date")
    return with_age_group(with_age, definitions)


def stored_person_attributes(table: ir.Table, definitions: Definitions) -> ir.Table:
    """:func:`add_person_attributes` for a mart that carries ``sex``, ``birth_date`` and
    ``person_known`` on every row: the same columns and rows, without joining ``persons``."""
    known = table.filter(table.person_known)
    with_age = known.mutate(age=age_on(known.birth_date, known.period_start)).drop("birth_date")
    return with_age_group(with_age, definitions)
