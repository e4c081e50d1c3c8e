"""Sections built from the analysis (issue 7): what is worth a cluster's meeting.

* :func:`areas_section` — the potential intervention areas of a cluster or practice: every drug
  group of the theme and every risk of ``parameters/risks.yaml`` that concerns the theme, ranked
  by :func:`workbench.analysis.opportunities` (age/sex-standardised observed/expected with its
  exact interval, the place in the national funnel, the patients above the cluster median).
  The crude and expected rates stand beside the ratio, so the standardisation is visible.
* :func:`cluster_funnel_section` — a cluster's practices in the funnel of the nation's limits
  (standardised ratio against expected patients or DDD), the ones beyond 99.8 % ringed and
  named; :func:`practice_funnel_section` — one practice among all, others unnamed.
* :func:`decile_trend_section` — a practice's series against the national deciles of the
  practices, each quarter on its own (OpenPrescribing's chart).
* :func:`journeys_section` and :func:`risks_section` — tables: what became of new users, and
  the risky combinations, for the unit against its cluster and the nation.

Every table goes through :func:`workbench.pages.base.publish` before anything is drawn or
offered as CSV: person counts (patients, listed, persons) are counts; ratios, expected values,
limits, z-scores and flags are derived from them, so a point built on 1–4 persons is hidden and
never plotted. Flags are published as numbers (+1 above, −1 below, 0 inside) so suppression
hides them with their counts, and written in words only afterwards.

Who may see which practices is decided in two functions, :func:`practices_visible` and
:func:`practice_shown` (the viewing profile): a cluster page under the ``public`` profile shows
the cluster among the clusters instead of its practices; a practice's own page shows the other
practices' points only to a profile that may see them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from workbench.analysis import Peers
from workbench.analysis.opportunities import opportunity_rows, rank
from workbench.analysis.standardise import garwood, scaled_interval
from workbench.disclosure import Derived, Margin, TableSpec
from workbench.engine import parse_period
from workbench.engine.journeys import OUTCOMES, year_before
from workbench.engine.peers import DECILES
from workbench.pages import analysis_charts
from workbench.pages.base import (
    MIN_UNITS_FOR_DECILES,
    Context,
    Section,
    measure_spec,
    publish,
    safe_section,
)
from workbench.pages.links import url
from workbench.pages.style import CLUSTER, HIGHLIGHT, number

KEYS = ("role", "level", "unit_id", "period", "group")
FLAG_CODES = {"high": 1.0, "low": -1.0}
FLAG_COLUMNS = ("flag_95", "flag_998")
# The columns of a published funnel: counts, then what is derived from them.
FUNNEL_DERIVED = ("expected", "ratio", "ratio_lower", "ratio_upper", "z", "lower_95",
                  "upper_95", "lower_998", "upper_998", *FLAG_COLUMNS)
FOLLOW_UP = dt.timedelta(days=365)  # the journeys' longest window

# --- who may see what, and what is measured -------------------------------------------------


def practices_visible(ctx: Context) -> bool:
    """Whether the page may show practices at all (their points, rows or names).

    With :func:`practice_shown`, the one place the viewing profile (:mod:`workbench.profiles`)
    is asked: a ``public`` profile shows no practice, so its funnels are of clusters instead.
    """
    return ctx.profile.identifies_practices


def practice_shown(ctx: Context, practice: str) -> bool:
    """Whether one practice may be a point or a row of a funnel: the page's own practice, a
    practice the profile may name (its own cluster's, for a practice profile), or any practice
    for a profile that may see other practices' values unnamed (the analyst's)."""
    if not practices_visible(ctx):
        return False
    if ctx.profile.shows_other_practices_raw or practice == ctx.choices.unit:
        return True
    unit = ctx.catalog.practices.get(practice)
    return unit is not None and ctx.profile.allows_practice(practice, unit.cluster)


def basis(ctx: Context) -> str:
    """``patients`` or ``ddd``: what the page's measure counts, so a funnel follows the
    measure a reader chose (per 1,000, per day or not, the ratio is the same)."""
    return "ddd" if ctx.choices.measure.startswith("ddd") else "patients"


def theme_risks(ctx: Context) -> list[str]:
    """The risks that concern the page's theme: a class of the risk shares ATC codes with a
    group of the theme (opioids with analgesics, benzodiazepines with psychotropics, …)."""
    defs = ctx.catalog.definitions
    prefixes = [p for g in defs.groups_of(ctx.choices.theme) for p in defs.groups[g].atc_include]

    def overlaps(code: str) -> bool:
        return any(code.startswith(p) or p.startswith(code) for p in prefixes)

    return [rid for rid, risk in defs.risks.items()
            if any(overlaps(code) for cls in risk.classes
                   for code in defs.risk_classes[cls].atc_include)]


def item_label(ctx: Context, kind: str, item: str) -> str:
    """A drug group's label from the glossary, a risk's title from its definition."""
    if kind == "risk":
        return ctx.catalog.definitions.risks[item].title(ctx.choices.language)
    return ctx.group_label(item)


def _flag_codes(flags: pd.Series, defined: pd.Series) -> np.ndarray:
    """Funnel flags as numbers (+1 high, −1 low, 0 inside); null where there is no ratio (no
    expectation: nobody in the reference used it, so no limits either)."""
    codes = flags.map(FLAG_CODES).fillna(0.0).to_numpy(float)
    return np.where(defined.to_numpy(bool), codes, np.nan)


def _flag_words(codes: pd.Series) -> pd.Series:
    """Published flag codes back as ``high``/``low``/empty (empty: inside, undefined, hidden)."""
    values = codes.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return pd.Series(np.where(values > 0, "high", np.where(values < 0, "low", "")),
                     index=codes.index, dtype="object")


def _ratio_text(ctx: Context, value: object, lower: object, upper: object,
                expected: object = None) -> str:
    """O/E with its interval; "–" where nothing was expected (0/0 is no ratio), "x" where the
    ratio is hidden by disclosure control."""
    lang = ctx.choices.language
    if value is None or pd.isna(value):
        return "–" if expected is not None and pd.notna(expected) and expected == 0 else "x"
    if lower is None or pd.isna(lower) or upper is None or pd.isna(upper):
        return number(float(value), lang, 2)
    return (f"{number(float(value), lang, 2)} "
            f"({number(float(lower), lang, 2)}–{number(float(upper), lang, 2)})")


def _flag_text(ctx: Context, flag_95: str, flag_998: str) -> str:
    """The funnel verdict in words: beyond 99.8 %, beyond 95 %, or inside."""
    if flag_998:
        return ctx.t(f"flag_{flag_998}_998")
    if flag_95:
        return ctx.t(f"flag_{flag_95}_95")
    return ""


# --- potential intervention areas -----------------------------------------------------------


def areas_section(ctx: Context, groups: list[str]) -> Section:
    """Potential intervention areas: the theme's groups and risks ranked by how far the unit
    sits above expectation (age/sex-standardised for groups) and beyond the national funnel's
    limits, with the patients above the cluster median as the size of the opportunity."""
    title = ctx.t("ranking_title")

    def build() -> Section:
        c = ctx.choices
        risks = theme_risks(ctx)
        # every unit of the level (and, for a cluster, every practice) is judged once per
        # session and question; each page takes its own rows
        judged = level_peers(ctx, c.level, groups)
        practices = level_peers(ctx, "practice", groups) if c.level == "cluster" else None
        # the cluster's practices from the catalogue (the analysis would ask the register);
        # a practice of no known cluster is left to the analysis, which refuses it
        cluster = ctx.catalog.cluster_of(c.level, c.unit)
        mates = (sorted(p.id for p in ctx.catalog.practices_of(cluster))
                 if cluster in ctx.catalog.clusters else None)
        raw = opportunity_rows(ctx.session, c.unit, c.level, ctx.period, groups=groups,
                               risks=bool(risks), judged=judged, practices=practices,
                               cluster_members=mates)
        raw = raw[(raw["kind"] == "group") | raw["item"].isin(risks)].reset_index(drop=True)
        listed = raw["listed"].astype(float)
        reference = _reference_patients(ctx, groups, risks)
        defined = raw["ratio"].notna() & (raw["expected"] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = pd.DataFrame({
                "kind": raw["kind"], "item": raw["item"], "level": raw["level"],
                "unit_id": raw["unit_id"], "period": raw["period"],
                "direction": raw["direction"],
                "patients": raw["patients"].astype("int64"), "listed": listed,
                "reference_patients": [reference.get((k, i), 0) for k, i in
                                       zip(raw["kind"], raw["item"], strict=True)],
                "crude_per_1000": np.where(listed > 0, raw["observed"] / listed * 1000, np.nan),
                "expected_per_1000": np.where(listed > 0, raw["expected"] / listed * 1000,
                                              np.nan),
                "expected": raw["expected"].astype(float),
                "ratio": raw["ratio"].astype(float),
                "ratio_lower": raw["ratio_lower"].astype(float),
                "ratio_upper": raw["ratio_upper"].astype(float),
                "z": raw["z"].astype(float).where(defined),
                "flag_95": _flag_codes(raw["flag_95"], defined),
                "flag_998": _flag_codes(raw["flag_998"], defined),
                "excess": raw["excess"].astype(float),
            })
        # a group's row rests on the unit's figure of the group: hidden where the answer store
        # hides that figure in every view
        own = judged.groups[judged.groups["unit_id"] == c.unit]
        decided = dict(zip(own["group"], own["hidden"].astype(bool), strict=True))
        df["hidden"] = [k == "group" and decided.get(i, False)
                        for k, i in zip(df["kind"], df["item"], strict=True)]
        labels: tuple[str, ...] = ("level", "unit_id", "period", "direction")
        if c.level == "cluster" and practices_visible(ctx):
            df["flagged_practices"] = _flagged_practices(ctx, c.unit, df, judged, practices)
            labels = (*labels, "flagged_practices")
        counts = ("patients", "listed")
        # what is expected rests on the nation's patients too: a risk nearly nobody has would
        # give its national count away through the expected value and the ratio's interval
        against = (*counts, "reference_patients")
        spec = TableSpec(
            keys=("kind", "item"), counts=against, labels=labels, decided="hidden",
            decides=("patients",),
            derived=(*(Derived(d, on=counts) for d in ("crude_per_1000", "excess")),
                     *(Derived(d, on=against) for d in ("expected_per_1000", "expected",
                                                        "ratio", "ratio_lower", "ratio_upper",
                                                        "z", *FLAG_COLUMNS))))
        published = publish(df, spec)
        for column in FLAG_COLUMNS:
            published[column] = _flag_words(published[column])
        if "flagged_practices" in published.columns:  # nothing beside a hidden row
            published["flagged_practices"] = published["flagged_practices"].where(
                ~published["patients_suppressed"].astype(bool))
        # ranked again on what is published: a hidden row has no z and no flag, so its place
        # says nothing about the few persons behind it
        published = rank(published.assign(z=published["z"].astype("Float64").astype(float)))
        hidden = published["patients_suppressed"] | published["listed_suppressed"]
        published = published.iloc[np.argsort(hidden.to_numpy(), kind="stable")]
        published = published.reset_index(drop=True).assign(rank=range(1, len(published) + 1))
        labelled = published.assign(_label=[item_label(ctx, k, i) for k, i in
                                             zip(published["kind"], published["item"],
                                                 strict=True)])
        worse = np.where(published["direction"] == "low_is_good", "high", "low")
        tiers = [2 if f998 == bad else 1 if f95 == bad else 0 for f95, f998, bad in
                 zip(published["flag_95"], published["flag_998"], worse, strict=True)]
        figure = analysis_charts.ratios(
            labelled.assign(_tier=tiers, _marker=np.where(labelled["kind"] == "risk", "D", "o")),
            label="_label", value="ratio", lower="ratio_lower",
            upper="ratio_upper", tier="_tier", language=c.language,
            title=ctx.t("areas_chart_title", period=ctx.period),
            xlabel=ctx.label("measures", "oe"), reference_label=ctx.t("oe_reference"),
            tier_labels={2: ctx.t("flag_high_998"), 1: ctx.t("flag_high_95"),
                         0: ctx.t("flag_inside")}, marker="_marker",
        )
        view = _areas_view(ctx, labelled)
        links = [(ctx.group_label(g), url(c.kind.replace("insight", "intervention"), c,
                                          group=g, drug=""))
                 for g in published.loc[published["kind"] == "group", "item"]]
        sentence = ctx.t("areas_sentence", unit=ctx.unit_name(c.level, c.unit),
                         period=ctx.period, peers=ctx.t(f"peers_{c.level}"))
        return Section("ranking", title, sentence, published, figure, links=links,
                       ranking=view)

    return safe_section("ranking", title, build)


def _reference_patients(ctx: Context, groups: list[str],
                        risks: list[str]) -> dict[tuple[str, str], int]:
    """``(kind, item) -> the nation's patients`` of every group and risk of the areas table."""
    found = {}
    # asked as the published funnels ask (sorted, no filters): one answer serves both
    nation = _unit_rows(ctx, "measures", "nation", "DK", groups=sorted(groups),
                        periods=ctx.period, filters=None, measures=["patients"])
    found.update({("group", g): int(n) for g, n in zip(nation["group"], nation["patients"],
                                                       strict=True)})
    if risks:
        rows = _unit_rows(ctx, "risks", "nation", "DK", risks=risks, periods=ctx.period)
        found.update({("risk", r): int(n) for r, n in zip(rows["risk"], rows["patients"],
                                                          strict=True)})
    return found


def _areas_view(ctx: Context, published: pd.DataFrame) -> pd.DataFrame:
    lang = ctx.choices.language
    view = pd.DataFrame({
        ctx.t("area"): published["_label"],
        ctx.label("measures", "crude_per_1000"): published["crude_per_1000"].astype("Float64"),
        ctx.label("measures", "expected_per_1000"):
            published["expected_per_1000"].astype("Float64"),
        ctx.t("oe_with_interval"): [
            _ratio_text(ctx, v, a, b, e) for v, a, b, e in
            zip(published["ratio"], published["ratio_lower"], published["ratio_upper"],
                published["expected_per_1000"], strict=True)],
        ctx.t("funnel_column"): [_flag_text(ctx, a, b) for a, b in
                                 zip(published["flag_95"], published["flag_998"], strict=True)],
        ctx.label("measures", "excess"): [number(v if pd.notna(v) else None, lang, 1)
                                          for v in published["excess"]],
    })
    if "flagged_practices" in published.columns:
        view[ctx.t("flagged_practices")] = [
            "" if k == "risk" or pd.isna(n) else str(int(n))
            for k, n in zip(published["kind"], published["flagged_practices"], strict=True)]
    return view


def _flagged_practices(ctx: Context, cluster: str, df: pd.DataFrame, judged: Peers,
                       practices: Peers) -> list[float]:
    """Per row of the areas table: how many of the cluster's practices the cluster page's funnel
    shows beyond its upper 99.8 % limit (the same published funnel, so the number matches what
    the cluster intervention page names; risks: not counted). The funnel of the practices is
    the practice level's judgement (``practices``), the cluster's total row its own
    (``judged``)."""
    groups = list(df.loc[df["kind"] == "group", "item"])
    judged_practices = practices.groups  # the cluster's rows only: intervals are row by row
    mates = judged_practices["unit_id"].isin([p.id for p in ctx.catalog.practices_of(cluster)])
    national = _with_intervals(judged_practices[mates].rename(columns={"expected": "exposure"}),
                               "patients")
    own = judged.groups[judged.groups["unit_id"] == cluster]
    # every group's funnel published at once: its margin holds group by group, so each group's
    # rows are suppressed exactly as on the group's own page
    shown = cluster_points(ctx, national[national["group"].isin(groups)],
                           own[own["group"].isin(groups)], cluster, "patients", None,
                           keys=("group", "unit_id"))
    found = (shown["flag_998"] == "high").groupby(shown["group"]).sum()
    return [float(found.get(i, 0)) if k == "group" else np.nan
            for k, i in zip(df["kind"], df["item"], strict=True)]


# --- funnels ---------------------------------------------------------------------------------


def level_peers(ctx: Context, level: str, groups: list[str]) -> Peers:
    """The judgement of every unit of ``level`` in the page's period: the groups'
    standardised ratios and the risks' rates, each in its national funnel, as the store holds
    them (:func:`workbench.analysis.peers` computes the same on demand)."""
    store = ctx.store
    judged = store.standardised(groups, level, ctx.period)
    risks = store.risks(level, ctx.period)
    return Peers(level, ctx.period, "patients", "additive", judged, risks)


def practice_funnel(
    ctx: Context, groups: list[str], measure: str, filters: dict[str, str] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every practice's standardised ratio in the national funnel, per group, and the funnel's
    limit lines; not published (callers publish what they show). The limits are the analysis'
    own (additive overdispersion): the same practices are flagged here as by the analysis."""
    drug = (filters or {}).get("drug")
    tables, lines = [], []
    for group in groups:
        table, line = ctx.store.funnel(group, "practice", ctx.period, basis=measure, drug=drug)
        tables.append(table)
        lines.append(line)
    table = pd.concat(tables, ignore_index=True)
    return _with_intervals(table, measure), pd.concat(lines, ignore_index=True)


def group_funnel(ctx: Context, measure: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`practice_funnel` of the page's group (and drug)."""
    return practice_funnel(ctx, [ctx.choices.group], measure, ctx.filters)


def _cluster_standardised(ctx: Context, cluster: str, groups: list[str], measure: str,
                          filters: dict[str, str] | None) -> pd.DataFrame:
    """The cluster's own standardised figures (the total row of its practices' funnel)."""
    return ctx.store.standardised(groups, "cluster", ctx.period, basis=measure,
                                  drug=(filters or {}).get("drug"), units=[cluster])


def _with_intervals(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The ratio's 95 % interval for every unit, by the analysis' exact method (Garwood for
    patients, the compound-Poisson interval for DDD), and the columns renamed for readers."""
    o = table["observed"].to_numpy(float)
    e = table["exposure"].to_numpy(float)
    lower, upper = (garwood(o) if measure == "patients"
                    else scaled_interval(o, table["variance"].to_numpy(float)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = table.assign(ratio_lower=np.where(e > 0, lower / e, np.nan),
                           ratio_upper=np.where(e > 0, upper / e, np.nan))
    defined = out["value"].notna() & (out["exposure"] > 0)
    for column in FLAG_COLUMNS:
        out[column] = _flag_codes(out[column], defined)
    return out.rename(columns={"exposure": "expected", "value": "ratio"})


def _funnel_spec(df: pd.DataFrame, keys: tuple[str, ...], measure: str,
                 margins: tuple[Margin, ...] = ()) -> TableSpec:
    """Patients and listed persons are counts, and so are the nation's patients the expected
    values rest on (a rare drug's national count would show through them); the ratio, its
    interval, the limits at the unit's size, z and the flags are derived from all three."""
    counts = tuple(c for c in ("patients", "listed", "reference_patients") if c in df.columns)
    derived = [Derived(c, on=counts) for c in FUNNEL_DERIVED]
    if measure == "ddd":  # DDD add up over the practices of a cluster exactly
        derived.append(Derived("observed", on=("patients",), additive=bool(margins)))
    # a unit whose figure the answer store hides in every view (:mod:`workbench.answers.
    # protected`) has its ratio hidden too: it rests on the same patients
    decided = "hidden" if "hidden" in df.columns else None
    declared = {*keys, *counts, *(d.column for d in derived), decided}
    labels = tuple(c for c in df.columns if c not in declared)
    return TableSpec(keys=keys, counts=counts, derived=tuple(derived), margins=margins,
                     labels=labels, decided=decided,
                     decides=("patients",) if decided else ())


def _funnel_columns(df: pd.DataFrame, measure: str) -> pd.DataFrame:
    """What a published funnel holds: no variance or fit constants (those are in the sentence),
    the observed DDD only where they differ from the patients."""
    keep = ["level", "unit_id", "period", "group", "patients", "listed",
            *(["observed"] if measure == "ddd" else []), *FUNNEL_DERIVED, "hidden"]
    return df[[c for c in keep if c in df.columns]]


def _publish_funnel(ctx: Context, df: pd.DataFrame, keys: tuple[str, ...], measure: str,
                    filters: dict[str, str] | None,
                    margins: tuple[Margin, ...] = ()) -> pd.DataFrame:
    """A funnel's rows as they may be shown: the nation's patients of each row's group beside
    them, published, the flags in words."""
    groups = sorted(set(df["group"]))
    nation = _unit_rows(ctx, "measures", "nation", "DK", groups=groups, periods=ctx.period,
                        filters=filters or None, measures=["patients"])
    reference = dict(zip(nation["group"], nation["patients"].astype("int64"), strict=True))
    df = df.assign(reference_patients=[reference.get(g, 0) for g in df["group"]],
                   **{c: df[c].astype(float) for c in FUNNEL_DERIVED})
    published = publish(df, _funnel_spec(df, keys, measure, margins=margins))
    for column in FLAG_COLUMNS:
        published[column] = _flag_words(published[column])
    return published


def cluster_points(ctx: Context, national: pd.DataFrame, own: pd.DataFrame, cluster: str,
                   measure: str, filters: dict[str, str] | None,
                   keys: tuple[str, ...] = ("unit_id",)) -> pd.DataFrame:
    """The cluster's practices of one group's national funnel (``national``), with the cluster
    itself (``own``: its :func:`~workbench.analysis.standardised` row) as a declared total row
    (``unit_id`` ``cluster``), published; flags in words. With ``keys`` ``("group",
    "unit_id")``, several groups' funnels at once, each with its own total row."""
    members = [p.id for p in ctx.catalog.practices_of(cluster) if practice_shown(ctx, p.id)]
    rows = _funnel_columns(national[national["unit_id"].isin(members)], measure)
    total = pd.DataFrame({
        "level": "cluster", "unit_id": "cluster", "period": ctx.period, "group": own["group"],
        "patients": own["patients"].astype("int64"), "listed": own["listed"].astype(float),
        "observed": own["observed"].astype(float), "expected": own["expected"].astype(float),
        "ratio": own["oe"].astype(float), "ratio_lower": own["oe_lower"].astype(float),
        "ratio_upper": own["oe_upper"].astype(float), "hidden": own["hidden"].astype(bool),
    })
    df = pd.concat([rows, total[[c for c in total.columns if c in rows.columns]]],
                   ignore_index=True).drop(columns="level")
    # the nation's patients stand on every row: the same persons, overlapping entirely
    margin = Margin("unit_id", "cluster", overlapping=("patients", "reference_patients"))
    return _publish_funnel(ctx, df, keys, measure, filters, margins=(margin,))


def _lines(lines: pd.DataFrame, group: str) -> pd.DataFrame:
    return lines[lines["group"] == group]


def _funnel_labels(ctx: Context, measure: str) -> dict[str, str]:
    what = ctx.label("measures", "ddd") if measure == "ddd" else ctx.t("patients_word")
    return {"x": ctx.t("funnel_xlabel", what=what), "y": ctx.label("measures", "oe")}


def _lower_first(text: str) -> str:
    """An axis label inside a sentence: ``Forventede DDD (…)`` -> ``forventede DDD (…)``."""
    return text[:1].lower() + text[1:]


def _limit_labels(ctx: Context) -> tuple[str, str, str]:
    return (ctx.label("measures", "funnel_target"), ctx.label("measures", "limit_95"),
            ctx.label("measures", "limit_998"))


def _hidden_sentence(ctx: Context, points: pd.DataFrame) -> str:
    hidden = int(points["ratio"].isna().sum())
    return " " + ctx.t("funnel_hidden", n=hidden) if hidden else ""


def cluster_funnel_section(ctx: Context, cluster: str, *, link_kind: str) -> Section:
    """The cluster's practices in a funnel plot against the national limits (95 % and 99.8 %):
    standardised ratio against expected, the cluster's own ratio as a line, practices beyond
    99.8 % ringed and named. The table is the practices plus the cluster as a declared total.
    Under a profile that shows no practices, the cluster in the funnel of the clusters."""
    if not practices_visible(ctx):
        return clusters_funnel_section(ctx, cluster, "practices")
    title = ctx.t("funnel_cluster_title")

    def build() -> Section:
        c = ctx.choices
        measure = basis(ctx)
        national, lines = group_funnel(ctx, measure)
        groups = [c.group] if c.drug else ctx.catalog.definitions.groups_of(c.theme)
        own = _cluster_standardised(ctx, cluster, groups, measure, ctx.filters)
        own = own[own["group"] == c.group]
        published = cluster_points(ctx, national, own, cluster, measure, ctx.filters)
        practices = published[published["unit_id"] != "cluster"]
        names = {p.id: p.name for p in ctx.catalog.practices_of(cluster)}
        plot = practices.assign(_role="unit",
                                _label=practices["unit_id"].map(names).fillna(""))
        cluster_ratio = published.loc[published["unit_id"] == "cluster", "ratio"]
        labels = _funnel_labels(ctx, measure)
        figure = analysis_charts.funnel(
            plot, _lines(lines, c.group), x="expected", y="ratio", role="_role",
            flag="flag_998", label="_label", ring_label=ctx.t("flag_outside_998"),
            names={"unit": ctx.t("funnel_cluster_points")}, limit_labels=_limit_labels(ctx),
            references={ctx.unit_name("cluster", cluster): _num(cluster_ratio)},
            title=f"{ctx.focus_label}: {ctx.t('funnel_chart_title', period=ctx.period)}",
            xlabel=labels["x"], ylabel=labels["y"], language=c.language,
        )
        flagged = practices[practices["flag_998"] != ""]
        view = _points_view(ctx, flagged, names, measure) if len(flagged) else None
        links = [(ctx.unit_name("practice", u), url(link_kind, c, unit=u))
                 for u in practices["unit_id"]]
        sentence = ctx.t("funnel_cluster_sentence", cluster=ctx.unit_name("cluster", cluster),
                         group=ctx.focus_label, period=ctx.period,
                         what=_lower_first(labels["x"]), n=len(flagged))
        sentence += _hidden_sentence(ctx, practices)
        return Section("practices", title, sentence, published.reset_index(drop=True), figure,
                       links=links, ranking=view)

    return safe_section("practices", title, build)


def _points_view(ctx: Context, points: pd.DataFrame, names: dict[str, str],
                 measure: str) -> pd.DataFrame:
    """The named points of a funnel as a small table: crude and expected rates (of patients or
    DDD, per 1,000 listed in the period) beside the ratio, and the verdict."""
    listed = points["listed"].astype("Float64")
    observed = points["observed"] if "observed" in points.columns else points["patients"]
    unit = f" ({ctx.label('measures', 'ddd')})" if measure == "ddd" else ""
    return pd.DataFrame({
        ctx.label("levels", "practice"): [f"{names.get(u, u)} ({u})" for u in points["unit_id"]],
        ctx.label("measures", "crude_per_1000") + unit:
            (observed.astype("Float64") / listed * 1000).round(1),
        ctx.label("measures", "expected_per_1000") + unit:
            (points["expected"].astype("Float64") / listed * 1000).round(1),
        ctx.t("oe_with_interval"): [_ratio_text(ctx, v, a, b, e) for v, a, b, e in
                                    zip(points["ratio"], points["ratio_lower"],
                                        points["ratio_upper"], points["expected"],
                                        strict=True)],
        ctx.t("funnel_column"): [_flag_text(ctx, a, b) for a, b in
                                 zip(points["flag_95"], points["flag_998"], strict=True)],
    })


def practice_funnel_section(ctx: Context) -> Section:
    """The practice in the national funnel (highlighted), with its cluster's practices and, for
    a profile that may see them, the nation's other practices as unnamed points; the limits are
    the nation's whatever is shown. The standardised ratio stands beside the crude and expected
    rates in a small table. The CSV holds no practice id: only the roles."""
    c = ctx.choices
    if not practices_visible(ctx):
        return clusters_funnel_section(ctx, ctx.catalog.practices[c.unit].cluster,
                                       "distribution")
    title = ctx.t("funnel_practice_title")

    def build() -> Section:
        measure = basis(ctx)
        national, lines = group_funnel(ctx, measure)

        points = national[[practice_shown(ctx, u) for u in national["unit_id"]]]
        published = _publish_funnel(ctx, _funnel_columns(points, measure),
                                    ("level", "unit_id", "period", "group"), measure,
                                    ctx.filters)
        cluster = ctx.catalog.practices[c.unit].cluster
        mates = {p.id: p.name for p in ctx.catalog.practices_of(cluster)}
        roles = np.where(published["unit_id"] == c.unit, "unit",
                         np.where(published["unit_id"].isin(list(mates)), "cluster", "peer"))
        name = ctx.unit_name("practice", c.unit)
        # the practice and its cluster's are named when beyond the limits, others never
        plot = published.assign(_role=roles, _label=[
            "" if r == "peer" else mates.get(u, "")
            for u, r in zip(published["unit_id"], roles, strict=True)])
        labels = _funnel_labels(ctx, measure)
        figure = analysis_charts.funnel(
            plot, _lines(lines, c.group), x="expected", y="ratio", role="_role",
            flag="flag_998", label="_label", ring_label=ctx.t("flag_outside_998"),
            names={"unit": name, "cluster": ctx.t("funnel_cluster_mates"),
                   "peer": ctx.t("funnel_other_practices")},
            limit_labels=_limit_labels(ctx),
            title=f"{ctx.focus_label}: {ctx.t('funnel_chart_title', period=ctx.period)}",
            xlabel=labels["x"], ylabel=labels["y"], language=c.language,
        )
        own = published["unit_id"] == c.unit
        view = _points_view(ctx, published[own], {c.unit: ctx.catalog.practices[c.unit].name},
                            measure)
        sentence = ctx.t("funnel_practice_sentence", unit=name, group=ctx.focus_label,
                         period=ctx.period, what=_lower_first(labels["x"]))
        if not (roles == "peer").any():
            sentence += " " + ctx.t("funnel_cluster_only")
        # The CSV holds the other practices without their ids: a practice sees its own figures
        # and its cluster's, never another practice by name.
        table = (published.assign(role=roles).drop(columns=["unit_id"])
                 .sort_values("expected", na_position="last"))
        return Section("distribution", title, sentence, table.reset_index(drop=True), figure,
                       ranking=view)

    return safe_section("distribution", title, build)


def clusters_funnel_section(ctx: Context, cluster: str, section_id: str, *,
                            link_kind: str = "cluster_intervention") -> Section:
    """The cluster among its region's clusters in a funnel plot against the limits the
    nation's clusters set (clusters are not practices: a view that may name no practice can
    show this)."""
    title = ctx.t("funnel_clusters_title")

    def build() -> Section:
        c = ctx.choices
        measure = basis(ctx)
        table, lines = ctx.store.funnel(c.group, "cluster", ctx.period, basis=measure,
                                        drug=c.drug or None)
        region = ctx.catalog.clusters[cluster].region
        mine = {u.id for u in ctx.catalog.clusters_of_region(region)}
        df = _funnel_columns(_with_intervals(table, measure), measure)
        published = _publish_funnel(ctx, df[df["unit_id"].isin(mine)],
                                    ("level", "unit_id", "period", "group"), measure,
                                    ctx.filters)
        own = published["unit_id"] == cluster
        plot = published.assign(
            _role=np.where(own, "unit", "peer"),
            _label=[ctx.unit_name("cluster", u) for u in published["unit_id"]])
        labels = _funnel_labels(ctx, measure)
        figure = analysis_charts.funnel(
            plot, _lines(lines, c.group), x="expected", y="ratio", role="_role",
            flag="flag_998", label="_label", ring_label=ctx.t("flag_outside_998"),
            names={"unit": ctx.unit_name("cluster", cluster),
                   "peer": ctx.t("funnel_other_clusters")},
            limit_labels=_limit_labels(ctx),
            title=f"{ctx.focus_label}: {ctx.t('funnel_chart_title', period=ctx.period)}",
            xlabel=labels["x"], ylabel=labels["y"], language=c.language,
        )
        sentence = ctx.t("funnel_clusters_sentence", cluster=ctx.unit_name("cluster", cluster),
                         region=ctx.unit_name("region", region), group=ctx.focus_label,
                         period=ctx.period, what=_lower_first(labels["x"]))
        links = [(ctx.unit_name("cluster", u), url(link_kind, c, unit=u))
                 for u in published["unit_id"]]
        return Section(section_id, title, sentence, published.reset_index(drop=True), figure,
                       links=links)

    return safe_section(section_id, title, build)


# --- over time --------------------------------------------------------------------------------


def decile_trend_section(ctx: Context) -> Section:
    """The unit's series (and its cluster's) per quarter against the deciles of the nation's
    practices, each quarter on its own; ``position`` says how many deciles the unit is above.
    The deciles are of *published* practice values (a hidden value is no point of a decile)."""
    title = ctx.t("trend_title")

    def build() -> Section:
        c = ctx.choices
        measure = "patients_per_1000" if c.measure == "patients" else c.measure
        wanted = ("patients", "listed", measure)
        units = [u for u in ctx.context_units if u[0] != "nation"]
        df = ctx.context_table([c.group], ctx.quarters, filters=ctx.filters, measures=wanted,
                               units=units)
        published = publish(df, measure_spec(df, KEYS))
        band = _deciles(ctx, c.group, ctx.quarters, measure)
        names = {role: ctx.unit_name(level, unit) for role, level, unit in units}
        table = published.assign(_r=published["role"].map({"unit": 0, "cluster": 1}))
        table = table.sort_values(["_r", "period"]).drop(columns="_r")
        if band is not None:  # named as every page names national aggregates beside a row
            table = table.merge(band.rename(columns={f"decile_{d}": f"practice_decile_{d}"
                                                     for d in DECILES}), on="period", how="left")
            above = sum((table[measure].astype("Float64") > table[f"practice_decile_{d}"])
                        .astype("Int64") for d in DECILES)
            table["position"] = above.where(table["role"] == "unit")
        plot = table.assign(_name=table["role"].map(names))
        colours = {names["unit"]: HIGHLIGHT, **({names["cluster"]: CLUSTER}
                                                 if "cluster" in names else {})}
        label = ctx.label("measures", measure)
        figure = analysis_charts.decile_trend(
            plot, band, period="period", value=measure, name="_name", colours=colours,
            title=f"{ctx.focus_label}: {label}, {ctx.quarters[0]}–{ctx.quarters[-1]}",
            ylabel=label, xlabel=ctx.t("quarter"), decile_label=ctx.t("deciles_lines"),
            median_label=ctx.t("deciles_median"), language=c.language,
        )
        sentence = ctx.t("decile_trend_sentence", measure=label, unit=names["unit"],
                         first=ctx.quarters[0], last=ctx.quarters[-1])
        if band is None:
            sentence += " " + ctx.t("deciles_too_few", n=MIN_UNITS_FOR_DECILES)
        return Section("trend", title, sentence, table.reset_index(drop=True), figure)

    return safe_section("trend", title, build)


def _deciles(ctx: Context, group: str, periods: list[str], measure: str
             ) -> pd.DataFrame | None:
    """``period, decile_10 … decile_90`` of the practices' published values (the store's);
    ``None`` when some period has fewer than :data:`MIN_UNITS_FOR_DECILES` values."""
    band = ctx.store.deciles(group, periods, measure, drug=ctx.choices.drug or None)
    if band.empty or len(band) < len(periods) or band["units"].min() < MIN_UNITS_FOR_DECILES:
        return None
    return band[["period", *(f"decile_{d}" for d in DECILES)]]


# --- journeys and risks (tables) ------------------------------------------------------------


def cohort_period(ctx: Context) -> str:
    """The newest period of the page's kind, at or before its period, whose new users can be
    followed for 12 months within the data (the page's own period is often too recent)."""
    period = parse_period(ctx.period)
    first, last = ctx.catalog.data_range
    candidate = period
    while candidate.end_exclusive - dt.timedelta(days=1) + FOLLOW_UP > last:
        earlier = year_before(candidate)
        if earlier.start - FOLLOW_UP < first:
            return candidate.label
        candidate = earlier
    return candidate.label


def _unit_rows(ctx: Context, method: str, level: str, unit: str,
               **kwargs: object) -> pd.DataFrame:
    """The store's ``measures``, ``journeys`` or ``risks`` for one unit (every unit of the
    nation for ``nation``)."""
    units = None if level == "nation" else [unit]
    store = ctx.store
    if method == "measures":
        return store.measures(kwargs["groups"], level, kwargs["periods"], units=units,
                              filters=kwargs.get("filters"), measures=kwargs.get("measures"))
    if method == "journeys":
        return store.journeys(kwargs["groups"], level, kwargs["periods"], units=units)
    if method == "risks":
        return store.risks(level, kwargs["periods"], units=units, risks=kwargs.get("risks"))
    raise ValueError(f"no {method!r} in the store")


def _context_rows(ctx: Context, method: str, **kwargs: object) -> pd.DataFrame:
    """:func:`_unit_rows` for the page's unit, its cluster and the nation, with a ``role``."""
    parts = [_unit_rows(ctx, method, level, unit, **kwargs).assign(role=role)
             for role, level, unit in ctx.context_units]
    return pd.concat(parts, ignore_index=True)


def journeys_section(ctx: Context) -> Section:
    """What became of the unit's new users of the group: reached 90 or 365 DDD within 6 and 12
    months, stopped, died; shares of the new users followed, against the cluster and nation."""
    title = ctx.t("journeys_title")

    def build() -> Section:
        c = ctx.choices
        cohort = cohort_period(ctx)
        df = _context_rows(ctx, "journeys", groups=c.group, periods=cohort)
        df = df[["role", "level", "unit_id", "period", "group", "outcome", "persons", "cohort",
                 "share"]]
        spec = TableSpec(keys=("role", "level", "unit_id", "period", "group", "outcome"),
                         counts=("persons", "cohort"),
                         derived=(Derived("share", on=("persons", "cohort")),))
        published = publish(df, spec)
        lang = c.language
        order = {o: i for i, o in enumerate(OUTCOMES)}
        names = {role: ctx.unit_name(level, unit) for role, level, unit in ctx.context_units}
        view = {ctx.t("outcome"): [ctx.label("measures", o) for o in OUTCOMES]}
        first = _first_rows(published, ("role", "outcome"),
                            ("persons", "share", "persons_suppressed"))
        for role, _, _ in ctx.context_units:
            cells = []
            for outcome in sorted(order, key=order.get):
                row = first[(role, outcome)]
                if outcome == "started":
                    cells.append(number(_num(row["persons"]), lang, 0))
                else:
                    share = _num(row["share"])
                    cells.append("x" if row["persons_suppressed"] else
                                 "–" if share is None else f"{number(share * 100, lang, 1)} %")
            view[names[role]] = cells
        sentence = ctx.t("journeys_sentence", group=ctx.focus_label, cohort=cohort,
                         unit=names["unit"])
        if c.drug:
            sentence += " " + ctx.t("journeys_whole_group")
        return Section("journeys", title, sentence, published, ranking=pd.DataFrame(view))

    return safe_section("journeys", title, build)


def risks_section(ctx: Context) -> Section:
    """The theme's risky combinations for the unit, its cluster and the nation: patients per
    1,000 listed and as a share of the users of the drugs concerned."""
    title = ctx.t("risks_title")

    def build() -> Section:
        c = ctx.choices
        risks = theme_risks(ctx)
        judged = level_peers(ctx, c.level, ctx.catalog.definitions.groups_of(c.theme)).risks
        own = judged[(judged["unit_id"] == c.unit) & judged["risk"].isin(risks)]
        others = [_unit_rows(ctx, "risks", level, unit, risks=risks,
                             periods=ctx.period).assign(role=role)
                  for role, level, unit in ctx.context_units if role != "unit"]
        df = pd.concat([own.assign(role="unit"), *others], ignore_index=True)
        df = df[["role", "level", "unit_id", "period", "risk", "patients", "population",
                 "listed", "patients_per_1000", "share"]]
        spec = TableSpec(keys=("role", "level", "unit_id", "period", "risk"),
                         counts=("patients", "population", "listed"),
                         derived=(Derived("patients_per_1000", on=("patients", "listed")),
                                  Derived("share", on=("patients", "population"))))
        published = publish(df, spec)
        lang = c.language
        names = {role: ctx.unit_name(level, unit) for role, level, unit in ctx.context_units}
        first = _first_rows(published, ("risk", "role"),
                            ("patients_per_1000", "share", "patients_suppressed"))
        rows = []
        for risk in risks:
            for what, column in (("per_1000_short", "patients_per_1000"),
                                 ("share_of_users", "share")):
                row = {ctx.t("risk"): item_label(ctx, "risk", risk), ctx.t("what"): ctx.t(what)}
                for role, _, _ in ctx.context_units:
                    hit = first.get((risk, role))
                    value = _num(hit[column]) if hit else None
                    if column == "share":
                        row[names[role]] = ("x" if value is None and hit
                                            and hit["patients_suppressed"]
                                            else "–" if value is None
                                            else f"{number(value * 100, lang, 1)} %")
                    else:
                        row[names[role]] = number(value, lang, 1)
                rows.append(row)
        sentence = ctx.t("risks_sentence", unit=names["unit"], period=ctx.period)
        return Section("risks", title, sentence, published, ranking=pd.DataFrame(rows))

    return safe_section("risks", title, build)


def _first_rows(table: pd.DataFrame, keys: tuple[str, ...],
                columns: tuple[str, ...]) -> dict[tuple, dict[str, object]]:
    """``columns`` of the first row of each combination of ``keys``: a table of a page is looked
    up cell by cell, and a dictionary costs less than a filter per cell."""
    found: dict[tuple, dict[str, object]] = {}
    values = zip(*(table[c] for c in (*keys, *columns)), strict=True)
    for row in values:
        found.setdefault(row[:len(keys)], dict(zip(columns, row[len(keys):], strict=True)))
    return found


def _num(values: object) -> float | None:
    """The first value of a published column (or a scalar) as a float; ``None`` if hidden."""
    if isinstance(values, pd.Series):
        values = values.iloc[0] if len(values) else None
    return None if values is None or pd.isna(values) else float(values)  # type: ignore[arg-type]
