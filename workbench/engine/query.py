"""The question asked of the engine, checked once: measures, groups, units, periods, filters.

Every dimension belongs to one of three kinds, and the kind decides where the engine applies it:

* **redemption** dimensions (``drug``, ``product``, ``addictive``, ``depot``, ``pack_size``) are
  properties of what was dispensed: they split the numerator only; listed persons don't change.
* **person** dimensions (``sex``, ``age``, ``age_group``, age on the period's first day) split the
  numerator *and* the listed persons, so a rate by sex is patients of that sex per listed persons
  of that sex.
* **patient** dimensions (``consumption_group``, ``started``) are properties of a person's use of
  the group in the period, so they split the numerator only.

``group`` is the selection itself: each item of ``groups`` is a group id (``"opioids"``), an ATC
prefix (``"N02AA"``) or a 6-digit product id, and the engine answers per item.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ibis.expr.types as ir

from workbench.definitions import ATC_PREFIX, Definitions
from workbench.engine.periods import Period, parse_periods
from workbench.engine.units import Level, check_level

REDEMPTION_DIMS = ("drug", "product", "addictive", "depot", "pack_size")
PERSON_DIMS = ("sex", "age", "age_group")
PATIENT_DIMS = ("consumption_group", "started")
DIMENSIONS = ("group", *REDEMPTION_DIMS, *PERSON_DIMS, *PATIENT_DIMS)

UNDER_3_MONTHS = "under 3 months"
MONTHS_3_TO_12 = "3 months to 1 year"
OVER_1_YEAR = "over 1 year"
CONSUMPTION_GROUPS = (UNDER_3_MONTHS, MONTHS_3_TO_12, OVER_1_YEAR)
STARTED = "started"
CONTINUED = "continued"

MEASURES = (
    "patients",
    "share",
    "listed",
    "ddd",
    "patients_per_1000",
    "ddd_per_1000",
    "ddd_per_1000_per_day",
)

PRODUCT_ID = re.compile(r"^[0-9]{6}$")


def selection_kind(item: str, definitions: Definitions) -> str:
    """Whether a ``groups`` item is a ``"group"`` id, an ``"atc"`` prefix or a ``"product"`` id."""
    if item in definitions.groups:
        return "group"
    if ATC_PREFIX.match(item):
        return "atc"
    if PRODUCT_ID.match(item):
        return "product"
    raise ValueError(
        f"{item!r} is not a drug group ({sorted(definitions.groups)}), an ATC prefix "
        "(e.g. 'N02AA') or a 6-digit product id"
    )


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, str | bool | int | float):
        return (value,)
    return tuple(value)


def _check_filter_values(dim: str, values: tuple, definitions: Definitions) -> None:
    allowed: tuple | None = {
        "sex": ("F", "M"),
        "consumption_group": CONSUMPTION_GROUPS,
        "started": (STARTED, CONTINUED),
        "addictive": (True, False),
        "depot": (True, False),
        "age_group": tuple(b.id for b in definitions.age_bands),
    }.get(dim)
    if not values:
        raise ValueError(f"filter {dim!r} has no values")
    if allowed is not None and any(v not in allowed for v in values):
        raise ValueError(f"filter {dim!r}: {list(values)} has values outside {list(allowed)}")


@dataclass(frozen=True)
class Query:
    """A checked request; build it with :meth:`Query.build` (which says what is wrong)."""

    level: Level
    units: tuple[str, ...] | None
    periods: tuple[Period, ...]
    groups: tuple[str, ...] | None
    by: tuple[str, ...]
    filters: tuple[tuple[str, tuple], ...]
    measures: tuple[str, ...]
    non_gp: bool
    share_within: tuple[str, ...]

    @classmethod
    def build(
        cls,
        definitions: Definitions,
        *,
        groups: str | Iterable[str] | None,
        level: str,
        units: str | Iterable[str] | None,
        periods: Any,
        by: str | Iterable[str] = (),
        filters: Mapping[str, Any] | None = None,
        measures: str | Iterable[str] | None = None,
        non_gp: bool = False,
        share_within: str | Iterable[str] = (),
    ) -> Query:
        level = check_level(level)
        by_t = _as_tuple(by)
        filters = dict(filters or {})
        if "group" in filters:
            if groups is not None:
                raise ValueError("give the groups either as groups= or as filters['group']")
            groups = filters.pop("group")
        groups_t = None if groups is None else _as_tuple(groups)
        if groups_t is None and "group" in by_t:
            groups_t = tuple(definitions.groups)
        by_t = tuple(d for d in by_t if d != "group")
        for dim in (*by_t, *filters):
            if dim not in DIMENSIONS:
                raise ValueError(f"unknown dimension {dim!r}; use one of {list(DIMENSIONS)}")
        if len(set(by_t)) != len(by_t):
            raise ValueError(f"a breakdown is given twice: {list(by_t)}")
        if groups_t is not None:
            if not groups_t or len(set(groups_t)) != len(groups_t):
                raise ValueError(f"groups must be distinct and non-empty: {list(groups_t)}")
            for item in groups_t:
                selection_kind(item, definitions)
        filters_t = tuple((dim, _as_tuple(v)) for dim, v in filters.items())
        for dim, values in filters_t:
            _check_filter_values(dim, values, definitions)
        measures_t = MEASURES if measures is None else _as_tuple(measures)
        unknown = [m for m in measures_t if m not in MEASURES]
        if unknown or not measures_t:
            raise ValueError(f"unknown measure(s) {unknown}; use some of {list(MEASURES)}")
        if non_gp and level != "nation":
            raise ValueError("non_gp=True shows non-GP prescribers at level 'nation' only")
        share_t = _as_tuple(share_within)
        if any(d not in by_t for d in share_t):
            raise ValueError(f"share_within {list(share_t)} must be among the breakdowns {by_t}")
        return cls(
            level=level,
            units=None if units is None else _as_tuple(units),
            periods=tuple(parse_periods(periods)),
            groups=groups_t,
            by=by_t,
            filters=filters_t,
            measures=measures_t,
            non_gp=non_gp,
            share_within=share_t,
        )

    def dims(self, kind: tuple[str, ...]) -> tuple[str, ...]:
        """The breakdowns of one kind (e.g. ``PERSON_DIMS``), in the order asked."""
        return tuple(d for d in self.by if d in kind)

    def filters_of(self, kind: tuple[str, ...]) -> dict[str, tuple]:
        return {dim: values for dim, values in self.filters if dim in kind}

    def needs(self, kind: tuple[str, ...]) -> bool:
        """Whether any breakdown or filter is of this kind."""
        return bool(self.dims(kind) or self.filters_of(kind))


def apply_filters(table: ir.Table, filters: Mapping[str, tuple]) -> ir.Table:
    """Keep the rows whose value of each filtered dimension is one of the values given."""
    for dim, values in filters.items():
        table = table.filter(table[dim].isin(list(values)))
    return table
