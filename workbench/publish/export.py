"""``workbench export``: one indicator table, per unit and period, as CSV, TSV or JSON.

The table is built by the engine (:meth:`Workbench.measures`) and leaves the workbench the way
every published table does (:func:`workbench.pages.base.publish`): checked for person keys and
put through disclosure control with the margins the exported table really has.

Which rows add up to which (the margins declared to secondary suppression):

* with ``--by`` the table holds an ``all`` row per unit, period and group for every breakdown
  (the full cube when several are given), and ``all`` is declared the total of the categories:
  exactly for partitions of the patients (sex, age group, consumption group, started), as an
  upper bound where a patient can fall in several categories (drug, product, ...). Listed
  persons split by person breakdowns (sex, age) and are the unit's total in every category of
  the others, so there they are declared overlapping too (the total equals each part). The
  ``all`` row is always exported: a unit's total is published on the pages anyway, and a
  breakdown published without its total would be protected against a margin it doesn't know.
* units are not a margin: the table holds the units of one level and no total over them (the
  patients of a cluster are not the sum over its practices, and no cluster row is exported);
* periods and groups are not margins either: a person is a patient in several months and in
  several groups, and no total over them is exported.

``--unsuppressed`` is analyst mode: values are shown, and a ``<count>_suppression`` column per
person count says which would be hidden and why. It is refused under publishing mode.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from workbench.disclosure import (
    PUBLISHING_ENV,
    DisclosureError,
    Margin,
    TableSpec,
    analyst_mode,
    apply,
    publishing_active,
    scan_for_person_keys,
)
from workbench.engine import Workbench, connect, parse_periods
from workbench.engine.query import (
    CONSUMPTION_GROUPS,
    CONTINUED,
    MEASURES,
    PERSON_DIMS,
    STARTED,
)
from workbench.engine.units import NATION_ID, check_level, unit_ids
from workbench.paths import Dataset

FORMATS = ("csv", "tsv", "json")
DEFAULT_MEASURES = ("patients", "listed", "ddd", "patients_per_1000", "ddd_per_1000")
COUNTS = ("patients", "listed")  # always computed: every other measure is protected by them
ALL = "all"

_CLOSED = {"consumption_group": CONSUMPTION_GROUPS, "started": (STARTED, CONTINUED),
           "sex": ("F", "M")}
_ORDER = {v: i for i, v in enumerate((*CONSUMPTION_GROUPS, STARTED, CONTINUED, "F", "M"))}


class ExportError(ValueError):
    """An export that can't be made as asked: one line the user can act on."""


def split(values: str | Iterable[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` (repeated options) to ``["a", "b", "c"]``."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def export(
    groups: Sequence[str],
    period: str,
    *,
    level: str = "practice",
    measures: Sequence[str] = DEFAULT_MEASURES,
    by: Sequence[str] = (),
    units: Sequence[str] | None = None,
    unsuppressed: bool = False,
    fmt: str = "csv",
    data: str | Path | None = None,
) -> str:
    """The exported table as text; every expected failure is an :class:`ExportError`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {list(FORMATS)}")
    if unsuppressed and publishing_active():
        raise ExportError(
            f"--unsuppressed is analyst mode and is refused while publishing ({PUBLISHING_ENV} "
            "is set): exported figures are always suppressed here"
        )
    dataset = Dataset.at(data)
    if not dataset.database.exists():
        raise ExportError(
            f"{dataset.database} does not exist: run `workbench data generate` or `data load`"
        )
    try:
        session = connect(dataset.database)
        try:
            table = export_table(session, groups, period, level=level, measures=measures,
                                 by=by, units=units, unsuppressed=unsuppressed)
        finally:
            session.con.disconnect()
    except ExportError:
        raise
    except (ValueError, FileNotFoundError, DisclosureError) as exc:
        raise ExportError(str(exc)) from exc
    return render(table, fmt)


def export_table(
    session: Workbench,
    groups: Sequence[str],
    period: str,
    *,
    level: str = "practice",
    measures: Sequence[str] = DEFAULT_MEASURES,
    by: Sequence[str] = (),
    units: Sequence[str] | None = None,
    unsuppressed: bool = False,
) -> pd.DataFrame:
    """The table to export: ``unit_id``, ``period``, ``group`` (several groups only), the
    breakdowns, the measures; suppressed unless ``unsuppressed`` (analyst mode)."""
    groups, measures, by = split(groups), split(measures), split(by)
    if not groups:
        raise ExportError("give at least one --group")
    if len(set(groups)) != len(groups):
        raise ExportError(f"a group is given twice: {groups}")
    level = check_level(level)
    measures = _check_measures(measures, by)
    if len(set(by)) != len(by):
        raise ExportError(f"a breakdown is given twice: {by}")
    if "group" in by:
        raise ExportError("--by group: give several --group values instead")
    labels = _check_periods(session, period)
    unit_list = _check_units(session, level, split(units)) if units is not None else None

    df = _cube(session, groups, level, labels, unit_list, by, measures)
    keys = ("unit_id", "period", "group", *by)
    spec = _spec(df, keys, by)
    published = _publish(df, spec, unsuppressed)

    published = _sorted(published, labels, groups, by)
    columns = ["unit_id", "period", *(["group"] if len(groups) > 1 else []), *by, *measures]
    if unsuppressed:
        columns += [f"{c}_suppression" for c in COUNTS]
    out = published[columns].reset_index(drop=True)
    scan_for_person_keys(out)
    return out


def render(table: pd.DataFrame, fmt: str) -> str:
    """CSV or TSV (a hidden value is an empty cell) or JSON records (``null``)."""
    if fmt == "json":
        return table.to_json(orient="records", force_ascii=False) + "\n"
    return table.to_csv(index=False, sep="\t" if fmt == "tsv" else ",")


# --- checks ------------------------------------------------------------------------------------


def _check_measures(measures: list[str], by: list[str]) -> list[str]:
    if not measures:
        raise ExportError(f"give at least one measure: {list(MEASURES)}")
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ExportError(f"unknown measure(s) {unknown}; use some of {list(MEASURES)}")
    if len(set(measures)) != len(measures):
        raise ExportError(f"a measure is given twice: {measures}")
    if "share" in measures and not by:
        raise ExportError("the share is a share of the group's patients: it needs --by")
    return measures


def _check_periods(session: Workbench, text: str) -> list[str]:
    """Period labels from ``2024``, ``2024-01..2024-12`` or a comma list of either; every
    period must lie within the register's dispensing dates."""
    items = split(text)
    if not items:
        raise ExportError("give a --period, e.g. 2024, 2024Q1, 2024-03, R12-2024-06")
    periods = [p for item in items for p in parse_periods(item)]
    labels = [p.label for p in periods]
    if len(set(labels)) != len(labels):
        raise ExportError(f"period(s) given twice: {labels}")
    from workbench.answers.build import data_span

    first, last = data_span(session.registers)
    # Whole months: the first dispensing of a year is rarely on 1 January.
    begin, end = first.replace(day=1), (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    outside = [p.label for p in periods if p.start < begin or p.end_exclusive > end]
    if outside:
        raise ExportError(
            f"period(s) {outside} are not covered by the data ({first} to {last})"
        )
    return labels


def _check_units(session: Workbench, level: str, units: list[str]) -> list[str]:
    if not units:
        raise ExportError("--units is empty: give unit ids, comma-separated")
    if level == "nation":
        known = {NATION_ID}
    else:
        known = set(unit_ids(session.registers.practices, level).to_pandas()["unit_id"])
    unknown = [u for u in units if u not in known]
    if unknown:
        raise ExportError(f"no {level} {unknown} in the data")
    return list(dict.fromkeys(units))


# --- the table ---------------------------------------------------------------------------------


def _cube(
    session: Workbench,
    groups: list[str],
    level: str,
    periods: list[str],
    units: list[str] | None,
    by: list[str],
    measures: list[str],
) -> pd.DataFrame:
    """The measures by every subset of the breakdowns, the missing ones as ``all`` rows."""
    wanted = [m for m in MEASURES if m in {*measures, *COUNTS}]
    parts = []
    for size in range(len(by), -1, -1):
        for subset in itertools.combinations(by, size):
            table = session.measures(
                groups, level, periods, units=units, by=subset,
                measures=[m for m in wanted if m != "share" or subset],
            ).to_pandas()
            for dim in subset:
                # A unit with nobody listed comes as one empty row with no category.
                empty = table[dim].isna() & (table["patients"] == 0) & (table["listed"] == 0)
                table = table[~empty]
                table[dim] = table[dim].astype(object).where(table[dim].notna(), "unknown")
            for dim in by:
                table[dim] = table[dim].astype(str) if dim in subset else ALL
            if "share" in wanted and not subset:
                table["share"] = 1.0
            parts.append(table)
    df = pd.concat(parts, ignore_index=True)
    df = df.drop(columns=[c for c in ("level", "prescriber") if c in df.columns])
    if "group" not in df.columns:
        df["group"] = groups[0]
    if "share" in df.columns:
        df["share"] = df["share"].astype(float)
    return _complete(df, by) if by else df


def _complete(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per unit, period, group and category: the engine leaves out categories nobody
    fell in, which hold no patients and no DDD but still the listed persons of their person
    breakdowns (the same in every category of the other breakdowns)."""
    frames = []
    for _, rows in df.groupby("group", sort=False):
        values = [rows[["unit_id", "period", "group"]].drop_duplicates()]
        for dim in by:
            known = _CLOSED.get(dim, ())
            values.append(pd.DataFrame({dim: list(dict.fromkeys([*known, *rows[dim]]))}))
        index = values[0]
        for extra in values[1:]:
            index = index.merge(extra, how="cross")
        frames.append(index.merge(rows, how="left", on=list(index.columns)))
    full = pd.concat(frames, ignore_index=True)
    missing = full["patients"].isna()
    person = [d for d in by if d in PERSON_DIMS]
    full["listed"] = full.groupby(["unit_id", "period", "group", *person])["listed"].transform(
        "max").fillna(0.0)
    full["patients"] = full["patients"].fillna(0).astype("int64")
    for column in ("ddd", "share"):
        if column in full.columns:
            full.loc[missing, column] = 0.0
    for rate in ("patients_per_1000", "ddd_per_1000", "ddd_per_1000_per_day"):
        if rate in full.columns:
            full.loc[missing & (full["listed"] > 0), rate] = 0.0
    return full


def _spec(df: pd.DataFrame, keys: tuple[str, ...], by: list[str]) -> TableSpec:
    """The pages' spec of an engine table, with one ``all`` margin per breakdown."""
    from workbench.pages.base import breakdown_margin, measure_spec

    margins = tuple(_margin(breakdown_margin(dim), dim) for dim in by)
    share_of = {dim: ALL for dim in by} if by else None
    return measure_spec(df, keys, margins=margins, share_of=share_of)


def _margin(margin: Margin, dim: str) -> Margin:
    """Listed persons split only by person breakdowns; elsewhere each category holds them all."""
    if dim in PERSON_DIMS:
        return margin
    return dataclasses.replace(margin, overlapping=(*margin.overlapping, "listed"))


def _publish(df: pd.DataFrame, spec: TableSpec, unsuppressed: bool) -> pd.DataFrame:
    from workbench.pages.base import publish

    if not unsuppressed:
        return publish(df, spec)
    scan_for_person_keys(df)
    with analyst_mode():
        return apply(df, spec)


def _sorted(df: pd.DataFrame, periods: list[str], groups: list[str], by: list[str]
            ) -> pd.DataFrame:
    """Units, then periods and groups as asked, then categories in their natural order and
    ``all`` last."""
    order = {
        "period": {p: i for i, p in enumerate(periods)},
        "group": {g: i for i, g in enumerate(groups)},
    }

    def key(column: pd.Series) -> pd.Series:
        if column.name in order:
            return column.map(order[column.name])
        if column.name in by:
            ranked = sorted(column.unique(), key=_category_rank)
            return column.map({v: i for i, v in enumerate(ranked)})
        return column

    return df.sort_values(["unit_id", "period", "group", *by], key=key, kind="stable")


def _category_rank(value: str) -> tuple[int, float, str]:
    if value == ALL:
        return (2, 0.0, "")
    if value in _ORDER:
        return (0, float(_ORDER[value]), value)
    digits = "".join(ch if ch.isdigit() else " " for ch in value).split()
    return (1, float(digits[0]) if digits else float("inf"), value)
