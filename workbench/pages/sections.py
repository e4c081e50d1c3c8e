"""The sections pages are built from: each asks the engine, publishes, and draws the result.

Every function returns a :class:`Section` whose figure is drawn from its published table only.
The page modules (``overview``, ``cluster_insight`` …) choose which sections answer their
question; the choice of figures lives there, the mechanics here.
"""

from __future__ import annotations

import pandas as pd

from workbench.disclosure import Margin
from workbench.pages import charts
from workbench.pages.base import (
    Context,
    KeyFigure,
    Section,
    measure_spec,
    publish,
    safe_section,
)
from workbench.pages.links import url
from workbench.pages.style import NATION, PREVIOUS, unit_colour

KEYS = ("role", "level", "unit_id", "period", "group")
ROLE_ORDER = {"unit": 0, "cluster": 1, "nation": 2}


def _num(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)  # type: ignore[arg-type]


def key_table(ctx: Context, groups: list[str]) -> pd.DataFrame:
    """The published table behind the key figures: every context unit, group, this and the
    previous period."""
    periods = [p for p in (ctx.previous, ctx.period) if p]
    filters = ctx.filters if len(groups) == 1 else None
    df = ctx.context_table(groups, periods, filters=filters)
    ctx.raw_key = df
    ctx.key = publish(df, measure_spec(df, KEYS))
    return ctx.key


def key_figures(ctx: Context, table: pd.DataFrame, groups: list[str]) -> list[KeyFigure]:
    """Per group: the unit's value of the chosen measure, against its comparators, and the change
    since the previous period (all read from the published table)."""
    measure = ctx.choices.measure
    focus = ctx.context_units[0]
    # the first row of each group, period and role (looked up, not filtered, per figure)
    first: dict[tuple, object] = {}
    for key in zip(table["group"], table["period"], table["role"], table[measure], strict=True):
        first.setdefault(key[:3], key[3])
    figures = []
    for group in groups:
        own = (group, ctx.period, focus[0])
        value = _num(first[own]) if own in first else None
        comparisons = []
        for role, level, unit in ctx.context_units[1:]:
            other = (group, ctx.period, role)
            comparisons.append(
                (ctx.unit_name(level, unit), _num(first[other]) if other in first else None)
            )
        change = None
        if ctx.previous:
            before = (group, ctx.previous, focus[0])
            old = _num(first[before]) if before in first else None
            if value is not None and old:
                change = value / old - 1
        label = ctx.focus_label if len(groups) == 1 else ctx.group_label(group)
        figures.append(KeyFigure(group, label, value, measure, comparisons, change,
                                 ctx.previous or ""))
    return figures


def listed_figure(ctx: Context, table: pd.DataFrame) -> KeyFigure:
    """The unit's listed persons (the denominator every rate is per 1,000 of)."""
    focus = ctx.context_units[0][0]
    rows = table[(table["role"] == focus) & (table["period"] == ctx.period)]
    value = _num(rows["listed"].iloc[0]) if len(rows) else None
    return KeyFigure("listed", ctx.label("measures", "listed"), value, "listed")


def groups_section(ctx: Context, table: pd.DataFrame, groups: list[str]) -> Section:
    """Every group of the theme: the unit against its comparators (or this period against the
    previous one, for the nation)."""
    title = ctx.t("groups_title")

    def build() -> Section:
        measure = ctx.choices.measure
        if ctx.choices.level == "nation":
            shown = table
            series = shown["period"]
            colours = {ctx.period: NATION, ctx.previous or "": PREVIOUS}
            sentence = ctx.t("groups_nation_sentence", measure=ctx.measure_label,
                             period=ctx.period, previous=ctx.previous or "-")
        else:
            shown = table[table["period"] == ctx.period].sort_values(
                "role", key=lambda role: role.map(ROLE_ORDER), kind="stable")
            names = {role: ctx.unit_name(level, unit) for role, level, unit in ctx.context_units}
            series = shown["role"].map(names)
            colours = {names[r]: unit_colour(r) for r in names}
            sentence = ctx.t("groups_unit_sentence", measure=ctx.measure_label,
                             unit=names["unit"], period=ctx.period)
        plot = shown.assign(_group=shown["group"].map(ctx.group_label), _series=series)
        figure = charts.grouped_bars(
            plot, category="_group", value=measure, series="_series", colours=colours,
            language=ctx.choices.language,
            title=f"{ctx.measure_label}, {ctx.period}", ylabel=ctx.measure_label,
        )
        return Section("groups", title, sentence, shown.reset_index(drop=True), figure)

    return safe_section("groups", title, build)


def trend_section(ctx: Context, groups: list[str], *, deciles: bool = False) -> Section:
    """The measure over quarters: the unit and its comparators, per group (small multiples),
    with the national practice deciles for one group when asked."""
    title = ctx.t("trend_title")

    def build() -> Section:
        measure = ctx.choices.measure
        filters = ctx.filters if len(groups) == 1 else None
        df = ctx.context_table(groups, ctx.quarters, filters=filters,
                               measures=("patients", "listed", measure))
        published = publish(df, measure_spec(df, KEYS))
        published = published.assign(_r=published["role"].map(ROLE_ORDER)).sort_values(
            ["group", "_r", "period"]).drop(columns="_r")
        names = {role: ctx.unit_name(level, unit) for role, level, unit in ctx.context_units}
        band = None
        if deciles:
            band = ctx.practice_band(ctx.quarters, group=ctx.choices.group)
        if ctx.choices.level == "nation":
            plot = published.assign(_series=published["group"].map(ctx.group_label), _facet="")
            facet, colours = None, {}
            sentence = ctx.t("trend_nation_sentence", measure=ctx.measure_label,
                             first=ctx.quarters[0], last=ctx.quarters[-1])
        else:
            plot = published.assign(_series=published["role"].map(names),
                                    _facet=published["group"].map(ctx.group_label))
            facet = "_facet" if len(groups) > 1 else None
            colours = {names[r]: unit_colour(r) for r in names}
            sentence = ctx.t("trend_unit_sentence", measure=ctx.measure_label,
                             unit=names["unit"], first=ctx.quarters[0], last=ctx.quarters[-1])
        if band is not None:
            sentence += " " + ctx.t("deciles_sentence")
        figure = charts.trend(
            plot, period="period", value=measure, series="_series", colours=colours,
            language=ctx.choices.language,
            title=f"{ctx.measure_label}, {ctx.quarters[0]}–{ctx.quarters[-1]}"
            + ("" if len(groups) > 1 else f" ({ctx.focus_label})"),
            ylabel=ctx.measure_label, xlabel=ctx.t("quarter"), facet=facet,
            band=band, band_label=ctx.t("deciles_band"),
        )
        table = published if band is None else published.merge(
            band.rename(columns={"low": "practice_decile_10", "median": "practice_decile_50",
                                 "high": "practice_decile_90"}),
            on="period", how="left",
        )
        return Section("trend", title, sentence, table.reset_index(drop=True), figure)

    return safe_section("trend", title, build)


def spread_section(ctx: Context, level: str, section_id: str, *, link_kind: str = "") -> Section:
    """Every unit of a level (regions, clusters) for the chosen group, against the nation."""
    title = ctx.t(f"{section_id}_title")

    def build() -> Section:
        measure = ctx.choices.measure
        df = ctx.level_table(level, [ctx.period], group=ctx.choices.group)
        published = publish(df, measure_spec(df, ("level", "unit_id", "period", "group")))
        nation = ctx.published_level("nation", [ctx.period], group=ctx.choices.group)
        plot = published.assign(
            _label=[ctx.unit_name(level, u) for u in published["unit_id"]],
            _role="peer",
        )
        figure = charts.ranked_bars(
            plot, label="_label", value=measure, role="_role",
            language=ctx.choices.language,
            title=f"{ctx.focus_label}: {ctx.measure_label}, {ctx.period}",
            xlabel=ctx.measure_label,
            references={ctx.label("levels", "nation"): _num(nation[measure].iloc[0])},
        )
        links = []
        if link_kind:
            links = [(ctx.unit_name(level, u), url(link_kind, ctx.choices, unit=u))
                     for u in published["unit_id"]]
        sentence = ctx.t("spread_sentence", level=ctx.label("levels", level).lower(),
                         measure=ctx.measure_label, group=ctx.focus_label, period=ctx.period)
        return Section(section_id, title, sentence, published.reset_index(drop=True), figure,
                       links=links)

    return safe_section(section_id, title, build)


def practices_section(ctx: Context, cluster: str, *, link_kind: str) -> Section:
    """The cluster's practices against each other, the cluster and the nation, with the band of
    national practice deciles. The cluster row is the declared total of its practices.

    A profile that may not identify practices (``public``) gets :func:`peers_section` in this
    place instead: the cluster among its region's clusters."""
    if not ctx.profile.identifies_practices:
        return peers_section(ctx, cluster, link_kind=link_kind.replace("practice", "cluster"))
    title = ctx.t("practices_title")

    def build() -> Section:
        measure = ctx.choices.measure
        members = [p.id for p in ctx.catalog.practices_of(cluster)]
        wanted = ("patients", "listed", "ddd", measure)
        df = ctx.level_table("practice", [ctx.period], group=ctx.choices.group, units=members,
                             measures=tuple(dict.fromkeys(wanted)))
        total = ctx.level_table("cluster", [ctx.period], group=ctx.choices.group, units=[cluster],
                                measures=tuple(dict.fromkeys(wanted)))
        df = pd.concat([df, total], ignore_index=True)
        df["unit_id"] = df["unit_id"].where(df["level"] == "practice", "cluster")
        df = df.drop(columns="level")
        margin = Margin("unit_id", "cluster", overlapping=("patients",))
        published = publish(df, measure_spec(df, ("unit_id", "period", "group"),
                                             margins=(margin,)))
        band = ctx.practice_band([ctx.period], group=ctx.choices.group)
        nation = ctx.published_level("nation", [ctx.period], group=ctx.choices.group)
        rows = published[published["unit_id"] != "cluster"]
        focus = ctx.choices.unit if ctx.choices.level == "practice" else ""
        plot = rows.assign(
            _label=[ctx.unit_name("practice", u) for u in rows["unit_id"]],
            _role=["unit" if u == focus else "peer" for u in rows["unit_id"]],
        )
        cluster_value = published.loc[published["unit_id"] == "cluster", measure]
        figure = charts.ranked_bars(
            plot, label="_label", value=measure, role="_role",
            language=ctx.choices.language,
            title=f"{ctx.focus_label}: {ctx.measure_label}, {ctx.period}",
            xlabel=ctx.measure_label,
            references={
                ctx.unit_name("cluster", cluster): _num(cluster_value.iloc[0]),
                ctx.label("levels", "nation"): _num(nation[measure].iloc[0]),
            },
            band=None if band is None else (float(band["low"].iloc[0]),
                                            float(band["high"].iloc[0])),
            band_label=ctx.t("deciles_band"),
        )
        links = [(ctx.unit_name("practice", u), url(link_kind, ctx.choices, unit=u))
                 for u in rows["unit_id"]]
        sentence = ctx.t("practices_sentence", cluster=ctx.unit_name("cluster", cluster),
                         measure=ctx.measure_label, group=ctx.focus_label, period=ctx.period)
        if band is not None:
            sentence += " " + ctx.t("deciles_sentence")
        table = published.copy()
        if band is not None:
            table = table.assign(practice_decile_10=band["low"].iloc[0],
                                 practice_decile_90=band["high"].iloc[0])
        return Section("practices", title, sentence, table.reset_index(drop=True), figure,
                       links=links)

    return safe_section("practices", title, build)


def peers_section(ctx: Context, cluster: str, *, link_kind: str) -> Section:
    """The cluster among the clusters of its region, with the region and the nation as lines:
    a comparison that names no practice."""
    title = ctx.t("peers_title")

    def build() -> Section:
        measure, group = ctx.choices.measure, ctx.choices.group
        region = ctx.catalog.clusters[cluster].region
        peers = [c.id for c in ctx.catalog.clusters_of_region(region)]
        spec_keys = ("level", "unit_id", "period", "group")
        df = ctx.level_table("cluster", [ctx.period], group=group, units=peers)
        published = publish(df, measure_spec(df, spec_keys))
        lines = {}
        for level, unit in (("region", region), ("nation", None)):
            table = ctx.level_table(level, [ctx.period], group=group,
                                    units=[unit] if unit else None)
            table = publish(table, measure_spec(table, spec_keys))
            name = ctx.unit_name(level, unit or "DK")
            lines[name] = _num(table[measure].iloc[0]) if len(table) else None
        plot = published.assign(
            _label=[ctx.unit_name("cluster", u) for u in published["unit_id"]],
            _role=["unit" if u == cluster else "peer" for u in published["unit_id"]],
        )
        figure = charts.ranked_bars(
            plot, label="_label", value=measure, role="_role",
            language=ctx.choices.language,
            title=f"{ctx.focus_label}: {ctx.measure_label}, {ctx.period}",
            xlabel=ctx.measure_label, references=lines,
        )
        links = [(ctx.unit_name("cluster", u), url(link_kind, ctx.choices, unit=u))
                 for u in published["unit_id"] if u != cluster]
        sentence = ctx.t("peers_sentence", region=ctx.unit_name("region", region),
                         measure=ctx.measure_label, group=ctx.focus_label, period=ctx.period)
        return Section("practices", title, sentence, published.reset_index(drop=True), figure,
                       links=links)

    return safe_section("practices", title, build)


def breakdown_section(ctx: Context) -> Section:
    """The chosen breakdown (consumption group, started, sex, age, depot, …): shares of the
    group's patients for the unit and its comparators."""
    dim = ctx.choices.breakdown
    title = ctx.t("breakdown_title", breakdown=ctx.label("breakdowns", dim))
    return _breakdown(ctx, dim, "breakdown", title, top=12)


def drugs_section(ctx: Context) -> Section:
    """Which drugs make up the group for the unit and its comparators."""
    dim = "product" if ctx.choices.drug else "drug"
    title = ctx.t("drugs_title", breakdown=ctx.label("breakdowns", dim))
    return _breakdown(ctx, dim, "drugs", title, top=10)


def _breakdown(ctx: Context, dim: str, section_id: str, title: str, top: int) -> Section:
    def build() -> Section:
        view = ctx.choices.with_(breakdown=dim)
        local = Context(ctx.session, ctx.catalog, view)
        local.raw_key = ctx.raw_key
        df = local.breakdown_table(ctx.context_units)
        keys = ("role", "level", "unit_id", "period", "group", dim)
        spec = measure_spec(df, keys, margins=(ctx.breakdown_margin(dim),),
                            share_of={dim: "all"})
        published = publish(df, spec)
        focus = ctx.context_units[0][0]
        ranked = (published[(published["role"] == focus) & (published[dim] != "all")]
                  .sort_values("patients", ascending=False, na_position="last")[dim])
        if dim in ("consumption_group", "age_group", "pack_size", "sex", "started"):
            ranked = ranked.sort_values(key=_natural)
        keep = list(ranked.head(top)) + ["all"]
        shown = published[published[dim].isin(keep)].copy()
        shown["share"] = shown["share"].astype("Float64")
        names = {role: ctx.unit_name(level, unit) for role, level, unit in ctx.context_units}
        plot = shown[shown[dim] != "all"]
        order = {v: i for i, v in enumerate(keep)}
        labels = {v: ctx.value_label(dim, v) for v in plot[dim].unique()}
        if len(set(labels.values())) < len(labels):  # e.g. one product name, several packs
            labels = {v: f"{name} ({v})" for v, name in labels.items()}
        plot = plot.assign(_cat=plot[dim].map(labels),
                           _series=plot["role"].map(names),
                           _order=plot[dim].map(order),
                           _role=plot["role"].map(ROLE_ORDER),
                           share_pct=plot["share"] * 100).sort_values(["_order", "_role"])
        figure = charts.grouped_bars(
            plot, category="_cat", value="share_pct", series="_series",
            language=ctx.choices.language,
            colours={names[r]: unit_colour(r) for r in names},
            title=f"{ctx.focus_label}: {ctx.label('breakdowns', dim)}, {ctx.period}",
            ylabel=ctx.t("share_pct"),
        )
        sentence = ctx.t("breakdown_sentence", breakdown=ctx.label("breakdowns", dim).lower(),
                         group=ctx.focus_label, period=ctx.period)
        if len(ranked) > top:
            sentence += " " + ctx.t("top_sentence", n=top)
        # The CSV is the whole published table, not only the categories drawn: a table cut to
        # its largest rows beside its total would let a reader take the drawn rows from the
        # total and believe the rest were one hidden cell (and an audit would believe it too).
        full = published.assign(share=published["share"].astype("Float64"))
        return Section(section_id, title, sentence, full.reset_index(drop=True), figure)

    return safe_section(section_id, title, build)


def _natural(values: pd.Series) -> pd.Series:
    """Categories in their natural order (age bands and pack sizes by number)."""
    order = {"under 3 months": 0, "3 months to 1 year": 1, "over 1 year": 2,
             "started": 0, "continued": 1, "F": 0, "M": 1}

    def rank(v: str) -> float:
        if v in order:
            return order[v]
        digits = "".join(ch if ch.isdigit() else " " for ch in v).split()
        return float(digits[0]) if digits else 1e9

    return values.map(rank)
