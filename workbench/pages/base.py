"""What every page is made of, and the one road from the engine to a published table.

A :class:`Page` is key figures plus at most four :class:`Section` s; a section holds a title, a
sentence saying what it shows, the *published* table (after disclosure control) and the figure
drawn from exactly that table, so the CSV a reader downloads is the data behind the figure.

:class:`Context` is what a page builder works with: the session, the catalogue of valid
choices, the validated choices, and helpers that ask the engine (one union query per table, run
once) and publish through :func:`workbench.disclosure.apply` with a :class:`TableSpec` built
from the columns actually present. Pages never compute a measure themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd
from matplotlib.figure import Figure

from workbench.disclosure import (
    Derived,
    DisclosureError,
    Margin,
    TableSpec,
    apply,
    require_safe,
    scan_for_person_keys,
)
from workbench.engine import Workbench
from workbench.glossary import glossary
from workbench.pages.choices import PARTITIONS, Catalog, Choices, previous_period, trend_periods

MAX_GRAPHS = 4
RATES = ("patients_per_1000", "ddd_per_1000", "ddd_per_1000_per_day")
MIN_UNITS_FOR_DECILES = 10  # fewer units and deciles would all but name them
@dataclass
class KeyFigure:
    """One headline number with the comparisons a reader needs to judge it."""

    key: str
    label: str
    value: float | None
    measure: str
    comparisons: list[tuple[str, float | None]] = field(default_factory=list)
    change: float | None = None  # relative change since the previous period
    previous: str = ""


@dataclass
class Section:
    """One question of the page: title, a sentence, the published table, its figure."""

    id: str
    title: str
    sentence: str
    table: pd.DataFrame | None = None
    figure: Figure | None = None
    note: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)
    ranking: pd.DataFrame | None = None  # a table shown as such (already published)

    def csv(self) -> str:
        """The published table behind the figure, as CSV (hidden values are empty cells)."""
        if self.table is None:
            return ""
        return self.table.to_csv(index=False)


@dataclass
class Page:
    """A built page: everything a renderer or a test needs, no kernel required."""

    kind: str
    choices: Choices
    title: str
    subtitle: str
    key_figures: list[KeyFigure]
    key_table: pd.DataFrame | None
    sections: list[Section]
    links: list[tuple[str, str]] = field(default_factory=list)
    notice: str = ""  # what the viewing profile shows (the analyst's "secure environment only")

    def __post_init__(self) -> None:
        graphs = sum(s.figure is not None for s in self.sections)
        if graphs > MAX_GRAPHS:
            raise ValueError(f"a page shows at most {MAX_GRAPHS} graphs, {self.kind} has {graphs}")

    def section(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(f"page {self.kind} has no section {section_id!r}")


def measure_spec(
    df: pd.DataFrame,
    keys: tuple[str, ...],
    *,
    margins: tuple[Margin, ...] = (),
    share_of: dict[str, str] | None = None,
) -> TableSpec:
    """The disclosure spec of an engine table: ``patients`` and ``listed`` are person counts,
    every rate is built on both, DDD and shares on the patients; ``hidden`` (the answer store's
    decision) is the rows no view may publish; other columns are labels."""
    counts = tuple(c for c in ("patients", "listed") if c in df.columns)
    derived = []
    if "share" in df.columns:
        derived.append(Derived("share", on=("patients",), share_of=share_of))
    if "ddd" in df.columns:
        derived.append(Derived("ddd", on=("patients",), additive=bool(margins)))
    for rate in (*RATES, "index", "percentile"):
        if rate in df.columns:
            derived.append(Derived(rate, on=counts))
    decided = "hidden" if "hidden" in df.columns else None
    declared = {*keys, *counts, *(d.column for d in derived), decided}
    labels = tuple(c for c in df.columns if c not in declared)
    return TableSpec(keys=keys, counts=counts, derived=tuple(derived), margins=margins,
                     labels=labels, decided=decided,
                     decides=("patients",) if decided and "patients" in counts else ())


def publish(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The table as it may leave the workbench: checked for person keys, suppressed."""
    require_safe()
    scan_for_person_keys(df)
    published = apply(df, spec)
    reasons = [c for c in published.columns if c.endswith("_suppression")]
    return published.drop(columns=reasons) if reasons else published


class Context:
    """A page builder's view of the answer store, the valid choices and the labels."""

    def __init__(self, session: Workbench, catalog: Catalog, choices: Choices) -> None:
        self.session = session
        self.catalog = catalog
        self.store = catalog.store
        self.choices = choices
        self.glossary = glossary()
        self.profile = catalog.profile
        self.raw_key: pd.DataFrame | None = None  # the key figures' table before publishing
        self.key: pd.DataFrame | None = None  # and published

    # --- labels ---------------------------------------------------------------------------------
    def t(self, key: str, **values: object) -> str:
        """A user-facing text of the glossary's ``ui`` section, in the page's language."""
        text = self.glossary.label("ui", key, self.choices.language)
        return text.format(**values) if values else text

    def label(self, section: str, key: str) -> str:
        return self.glossary.label(section, key, self.choices.language)

    @property
    def measure_label(self) -> str:
        return self.label("measures", self.choices.measure)

    def group_label(self, group: str) -> str:
        return self.label("groups", group)

    @property
    def focus_label(self) -> str:
        """The selection the page is about: the group, or the drug when one is chosen."""
        c = self.choices
        if c.drug:
            return f"{self.group_label(c.group)}: {self.catalog.drug_name(c.drug, c.language)}"
        return self.group_label(c.group)

    def unit_name(self, level: str, unit: str) -> str:
        if level == "nation":
            return self.label("levels", "nation")
        if level == "cluster" and unit in self.catalog.clusters:
            return self.catalog.clusters[unit].name
        if level == "practice" and unit in self.catalog.practices:
            return f"{self.catalog.practices[unit].name} ({unit})"
        return self.catalog.area_name(level, unit, self.choices.language)

    def value_label(self, dimension: str, value: object) -> str:
        """A breakdown category in words (sex, consumption group, flags, drugs, products)."""
        text = str(value)
        if text == "all":
            return self.t("all")
        if dimension == "drug":
            return self.catalog.drug_name(text, self.choices.language)
        if dimension == "product":
            return self.catalog.product_names.get(text, text)
        if dimension in ("depot", "addictive"):
            return self.t("yes" if text == "True" else "no")
        key = text.replace(" ", "_").replace("3_months_to_1_year", "3_to_12_months")
        try:
            return self.glossary.label("values", key, self.choices.language)
        except KeyError:
            return text

    # --- units and periods --------------------------------------------------------------------
    @cached_property
    def context_units(self) -> list[tuple[str, str, str]]:
        """``(role, level, unit_id)``: the page's unit, its cluster (for a practice), the nation."""
        c = self.choices
        if c.level == "nation":
            return [("nation", "nation", "DK")]
        units = [("unit", c.level, c.unit)]
        if c.level == "practice":
            units.append(("cluster", "cluster", self.catalog.practices[c.unit].cluster))
        return [*units, ("nation", "nation", "DK")]

    def role_name(self, role: str, level: str, unit: str) -> str:
        return self.unit_name(level, unit)

    @property
    def period(self) -> str:
        return self.choices.period

    @cached_property
    def previous(self) -> str | None:
        """The previous period, when the data covers it."""
        label = previous_period(self.choices.period)
        first, _ = self.catalog.data_range
        from workbench.engine import parse_period

        return label if parse_period(label).start >= first else None

    @cached_property
    def quarters(self) -> list[str]:
        return trend_periods(self.choices.period, self.catalog.data_range[0])

    @property
    def filters(self) -> dict[str, str]:
        return {"drug": self.choices.drug} if self.choices.drug else {}

    # --- the answer store ------------------------------------------------------------------
    def context_table(
        self,
        groups: list[str],
        periods: list[str],
        *,
        filters: dict[str, str] | None = None,
        by: tuple[str, ...] = (),
        measures: tuple[str, ...] | None = None,
        units: list[tuple[str, str, str]] | None = None,
    ) -> pd.DataFrame:
        """Measures for the page's unit and its comparators, with a ``role``: one read of the
        store."""
        chosen = units or self.context_units
        df = self.store.measures_of(
            groups, [(role, level, None if level == "nation" else [unit])
                     for role, level, unit in chosen],
            periods, by=by[0] if by else None, filters=filters or None,
            measures=list(measures) if measures else None)
        df = df[["role", *(c for c in df.columns if c != "role")]]
        return df.drop(columns=[c for c in ("share",) if c in df.columns and not by])

    def level_table(
        self,
        level: str,
        periods: list[str],
        *,
        group: str,
        units: list[str] | None = None,
        measures: tuple[str, ...] | None = None,
    ) -> pd.DataFrame:
        """Measures of every unit of a level (or of ``units``) for the page's selection."""
        return self.store.measures(
            group, level, periods, units=units, filters=self.filters or None,
            measures=list(measures) if measures else ["patients", "listed",
                                                        self.choices.measure])

    def published_level(self, level: str, periods: list[str], *, group: str,
                        measures: tuple[str, ...] | None = None) -> pd.DataFrame:
        """:meth:`level_table` of every unit of ``level``, published."""
        df = self.level_table(level, periods, group=group, measures=measures)
        return publish(df, measure_spec(df, ("level", "unit_id", "period", "group")))

    def practice_band(self, periods: list[str], *, group: str,
                      measure: str | None = None) -> pd.DataFrame | None:
        """``period, low, median, high``: the 10th, 50th and 90th percentiles of the nation's
        published practice values per period (the store's deciles); ``None`` when some period
        has fewer than :data:`MIN_UNITS_FOR_DECILES` practices with a published value."""
        band = self.store.deciles(group, periods, measure or self.choices.measure,
                                  drug=self.choices.drug or None)
        if band.empty or len(band) < len(periods) or band["units"].min() < MIN_UNITS_FOR_DECILES:
            return None
        return band.rename(columns={"decile_10": "low", "decile_50": "median",
                                    "decile_90": "high"})[["period", "low", "median", "high"]]

    def breakdown_table(self, units: list[tuple[str, str, str]]) -> pd.DataFrame:
        """Patients, shares and DDD by the chosen breakdown, with an ``all`` row per unit so a
        share's denominator and the margin are part of the published table."""
        dim = self.choices.breakdown
        keep = ("patients", "share", "ddd")
        parts = self.context_table([self.choices.group], [self.period], filters=self.filters,
                                   by=(dim,), measures=keep, units=units)
        raw = self.raw_key
        if raw is not None and set(raw["group"]) == {self.choices.group}:
            totals = raw[raw["period"] == self.period].drop(columns=["listed"], errors="ignore")
        else:
            totals = self.context_table([self.choices.group], [self.period],
                                        filters=self.filters, measures=("patients", "ddd"),
                                        units=units)
        # a selection without patients comes back as one row with no category: not a category
        parts = parts[parts[dim].notna()]
        parts = parts.assign(**{dim: parts[dim].astype(str)})
        totals = totals.assign(**{dim: "all", "share": 1.0})
        df = pd.concat([parts, totals[parts.columns]], ignore_index=True)
        return df.assign(share=df["share"].astype(float))

    def breakdown_margin(self, dim: str) -> Margin:
        return breakdown_margin(dim)


def breakdown_margin(dim: str) -> Margin:
    """``all`` is the total of a breakdown's categories; patients may overlap unless the
    breakdown puts each patient in exactly one category."""
    overlapping = () if dim in PARTITIONS else ("patients",)
    return Margin(dim, "all", overlapping=overlapping)


def safe_section(section_id: str, title: str, build: object) -> Section:
    """Build a section; a table that can't be published safely becomes a note, never a leak."""
    try:
        return build()  # type: ignore[operator]
    except (DisclosureError, ValueError) as exc:
        return Section(section_id, title, "", note=f"{type(exc).__name__}: {exc}")
