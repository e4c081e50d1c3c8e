"""Which pages a batch renders, for which units, with which parameters.

For each theme: the national overview once; for every cluster of the area its insight page and
one intervention-area page per area the cluster has chosen; for every practice of the area its
insight page and one intervention-area page per area of its cluster (or of its own, when the
practice chose for itself).

The chosen areas are data: ``parameters/interventions/<region code>.yaml``, one file per region,
validated on load with pydantic (every id quoted: YAML 1.1 reads an unquoted ``012345`` as the
number 5349). A cluster the file doesn't name gets its top ``default_areas`` potential areas:
the groups of the theme where its patients per 1,000 listed stand highest against the nation
(the cluster insight page's ranking), counting only groups with enough patients to publish.

Every page's parameters are checked here with the pages' own validation
(:meth:`~workbench.pages.choices.Catalog.resolve`), so a wrong id or group stops the batch
before any notebook runs, with the file and field to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from workbench.definitions import Definitions
from workbench.disclosure import DEFAULT_POLICY
from workbench.engine import Workbench
from workbench.pages.choices import PAGE_KINDS, Catalog, ChoiceError
from workbench.paths import PARAMETERS_DIR, shown
from workbench.profiles import Profile

INTERVENTIONS_DIR = PARAMETERS_DIR / "interventions"
INTERVENTION_KINDS = ("cluster_intervention", "practice_intervention")
RANKING_MEASURE = "patients_per_1000"  # what "top potential area" ranks by, as the pages do
REGION_CODE = re.compile(r"^[0-9]{4}$")
PRACTICE_ID = re.compile(r"^[0-9]{6}$")
UNIT_ID = re.compile(r"^[A-Za-z0-9_\-.]{1,40}$")

Id = Annotated[StrictStr, Field(pattern=UNIT_ID.pattern)]
Areas = dict[StrictStr, list[StrictStr]]  # theme -> group ids


class PlanError(ValueError):
    """The batch can't be planned (unknown area or period, a wrong parameters file)."""


class InterventionsFile(BaseModel):
    """``parameters/interventions/<region>.yaml``: the areas the region's clusters chose."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Annotated[StrictStr, Field(pattern=REGION_CODE.pattern)]
    default_areas: int = Field(default=1, ge=0, le=8)
    clusters: dict[Id, Areas] = Field(default_factory=dict)
    practices: dict[Annotated[StrictStr, Field(pattern=PRACTICE_ID.pattern)], Areas] = Field(
        default_factory=dict)


@dataclass(frozen=True)
class Interventions:
    """The chosen areas of one region, checked against the definitions."""

    path: Path | None
    region: str
    default_areas: int = 1
    clusters: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    practices: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return shown(self.path) if self.path else "(no file: defaults)"


def load_interventions(region: str, definitions: Definitions,
                       directory: Path = INTERVENTIONS_DIR) -> Interventions:
    """The region's file, validated; a region without a file takes the defaults everywhere."""
    path = directory / f"{region}.yaml"
    if not path.exists():
        return Interventions(None, region)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlanError(f"{path}: not valid YAML: {exc}") from exc
    try:
        parsed = InterventionsFile.model_validate(raw)
    except ValidationError as exc:
        raise PlanError(f"{path}: invalid intervention areas:\n" + _explain(exc)) from None
    if parsed.region != region:
        raise PlanError(f"{path}: region: {parsed.region!r} does not match the file name "
                        f"({region}.yaml)")
    checked = {
        section: {
            unit: _check_areas(path, f"{section}.{unit}", areas, definitions)
            for unit, areas in getattr(parsed, section).items()
        }
        for section in ("clusters", "practices")
    }
    return Interventions(path, region, parsed.default_areas, checked["clusters"],
                         checked["practices"])


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        hint = ""
        if err["type"] in ("string_type", "dict_type") or "[key]" in where:
            hint = (" (quote every id: YAML reads an unquoted 012345 as the number 5349 "
                    "and no as false)")
        elif err["type"] == "string_pattern_mismatch":
            hint = " (a region code has 4 digits, a practice id 6)"
        elif err["type"] == "extra_forbidden":
            hint = " (unknown key: use region, default_areas, clusters, practices)"
        elif err["type"] == "missing":
            hint = " (required: add it)"
        lines.append(f"  {where}: {err['msg']}{hint}")
    return "\n".join(lines)


def _check_areas(path: Path, where: str, areas: dict[str, list[str]],
                 definitions: Definitions) -> dict[str, tuple[str, ...]]:
    checked = {}
    for theme, groups in areas.items():
        if theme not in definitions.themes:
            raise PlanError(f"{path}: {where}: unknown theme {theme!r}; use one of "
                            f"{sorted(definitions.themes)}")
        allowed = definitions.groups_of(theme)
        for group in groups:
            if group not in allowed:
                raise PlanError(f"{path}: {where}.{theme}: {group!r} is not a group of theme "
                                f"{theme!r}; use some of {allowed}")
        if len(set(groups)) != len(groups):
            raise PlanError(f"{path}: {where}.{theme}: a group is named twice: {groups}")
        checked[theme] = tuple(groups)
    return checked


@dataclass(frozen=True)
class PageTask:
    """One page of the batch: what the notebook gets and where it sits in the site."""

    theme: str
    kind: str
    unit: str
    group: str  # the area of an intervention page; the page's default group otherwise
    parameters: dict[str, str]
    region: str = ""
    cluster: str = ""
    name: str = ""  # the unit's name, for the index

    @property
    def id(self) -> str:
        """``<theme>/<kind>/<unit>[/<group>]``: also the page's folder under the output."""
        parts = [self.theme, self.kind, self.unit]
        if self.kind in INTERVENTION_KINDS:
            parts.append(self.group)
        return "/".join(parts)

    @property
    def shape(self) -> tuple[str, ...]:
        """Everything but the unit: pages of one shape ask the engine the same questions."""
        p = self.parameters
        return (self.kind, self.theme, p.get("period", ""), p.get("group", ""),
                p.get("drug", ""), p.get("measure", ""), p.get("breakdown", ""))

    def choices(self) -> dict[str, str]:
        """The page's choices (its parameters without the dataset folder)."""
        return {k: v for k, v in self.parameters.items() if k != "data"}


@dataclass
class Plan:
    """The pages of a batch in site order, and how each cluster's areas were chosen."""

    tasks: list[PageTask]
    period: str
    area: str
    themes: tuple[str, ...]
    areas: dict[tuple[str, str], tuple[tuple[str, ...], str]]  # (theme, cluster) -> groups, why
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Practice:
    id: str
    name: str
    cluster: str
    region: str


def make_plan(
    session: Workbench,
    *,
    themes: tuple[str, ...],
    area: str,
    data: Path,
    period: str = "",
    pages: tuple[str, ...] = PAGE_KINDS,
    units: tuple[str, ...] | None = None,
    limit: int | None = None,
    language: str = "da",
    interventions_dir: Path = INTERVENTIONS_DIR,
    catalog: Catalog | None = None,
    profile: Profile | None = None,
) -> Plan:
    """The batch's pages in site order (theme, then region, cluster, its practices).

    ``units``: only these clusters (with their practices) and practices; the overview is
    rendered whatever ``units`` says (it is the site's root) unless ``pages`` leaves it out.
    ``limit``: the first N pages of each theme in that order (the overview, the first
    cluster and its practices, …): a slice that shows every kind of page quickly.
    ``profile``: only the pages the viewing profile may see (:mod:`workbench.profiles`; public
    has no practice pages, a practice its own and its cluster's); default: the analyst's.
    """
    catalog = catalog or Catalog(session)
    definitions = session.definitions
    unknown = [k for k in pages if k not in PAGE_KINDS]
    if unknown:
        raise PlanError(f"unknown page(s) {unknown}; use some of {list(PAGE_KINDS)}")
    for theme in themes:
        if theme not in definitions.themes:
            raise PlanError(f"unknown theme {theme!r}; use one of {sorted(definitions.themes)}")
    period = period or (catalog.periods[0] if catalog.periods else "")
    if period not in catalog.periods:
        raise PlanError(f"period {period!r} is not one the data covers: {catalog.periods}")
    practices = _practices(session, catalog)
    regions = sorted({p.region for p in practices})
    if area != "nation" and area not in regions:
        raise PlanError(f"unknown area {area!r}: use 'nation' or a region code of the data "
                        f"({', '.join(regions)})")
    chosen_regions = regions if area == "nation" else [area]
    in_area = [p for p in practices if p.region in chosen_regions]
    cluster_region = {p.cluster: p.region for p in sorted(in_area, key=lambda p: p.id)
                      if p.cluster}
    files = {r: load_interventions(r, definitions, interventions_dir) for r in chosen_regions}
    notes = _unknown_ids(files, cluster_region, {p.id for p in practices})
    if units is not None:
        wanted = set(units)
        missing = wanted - set(cluster_region) - {p.id for p in in_area} - {"DK"}
        if missing:
            raise PlanError(f"unit(s) {sorted(missing)} are no cluster or practice of area "
                            f"{area!r}")
    areas = _cluster_areas(session, themes, period, sorted(cluster_region), cluster_region,
                           files)
    profile = _bound(profile or Profile("analyst"), practices)
    shown = tuple(k for k in pages if k in profile.pages)
    if shown != pages:
        notes.append(f"profile {profile.spec()}: no {', '.join(sorted(set(pages) - set(shown)))}"
                     " pages")
    tasks: list[PageTask] = []
    for theme in themes:
        found = [t for t in _theme_tasks(theme, shown, in_area, cluster_region, areas, files,
                                         units)
                 if profile.allows_page(t.kind, t.unit, t.cluster)]
        tasks += found if limit is None else found[:max(limit, 0)]
    common = {"period": period, "language": language}
    resolved = [_resolve(catalog, t, common, data) for t in tasks]
    return Plan(resolved, period, area, themes, areas, notes)


def _bound(profile: Profile, practices: list[_Practice]) -> Profile:
    """A practice profile with its practice's cluster (it may see that cluster's pages)."""
    if profile.name != "practice":
        return profile
    own = [p for p in practices if p.id == profile.practice]
    if not own:
        raise PlanError(f"practice {profile.practice} of the profile is not in the dataset")
    return profile.bind(own[0].cluster)


def _practices(session: Workbench, catalog: Catalog) -> list[_Practice]:
    table = session.registers.practices.select(
        "practice_id", "practice_name", "cluster_id", "region_code").execute()
    return [
        _Practice(str(r.practice_id), str(r.practice_name),
                  "" if r.cluster_id is None or r.cluster_id != r.cluster_id else str(r.cluster_id),
                  str(r.region_code))
        for r in table.sort_values("practice_id").itertuples()
    ]


def _unknown_ids(files: dict[str, Interventions], cluster_region: dict[str, str],
                 practice_ids: set[str]) -> list[str]:
    """Ids a file names that this dataset lacks (a municipality's extract holds only part of a
    region): reported, not an error."""
    notes = []
    for region, found in files.items():
        clusters = sorted(c for c in found.clusters if cluster_region.get(c) != region)
        practices = sorted(p for p in found.practices if p not in practice_ids)
        if clusters or practices:
            notes.append(f"{found.source}: not in this dataset (ignored): "
                         + ", ".join(clusters + practices))
    return notes


def _cluster_areas(
    session: Workbench,
    themes: tuple[str, ...],
    period: str,
    clusters: list[str],
    cluster_region: dict[str, str],
    files: dict[str, Interventions],
) -> dict[tuple[str, str], tuple[tuple[str, ...], str]]:
    """Each cluster's areas per theme: the file's choice, else its top potential areas."""
    areas: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}
    for theme in themes:
        undecided = [c for c in clusters if theme not in
                     files[cluster_region[c]].clusters.get(c, {})]
        top = default_areas(session, theme, period, undecided,
                            {c: files[cluster_region[c]].default_areas for c in undecided})
        for cluster in clusters:
            found = files[cluster_region[cluster]]
            chosen = found.clusters.get(cluster, {})
            if theme in chosen:
                areas[(theme, cluster)] = (chosen[theme], found.source)
            else:
                why = f"default: top {found.default_areas} potential area(s) by {RANKING_MEASURE}"
                areas[(theme, cluster)] = (top.get(cluster, ()), why)
    return areas


def default_areas(session: Workbench, theme: str, period: str, clusters: list[str],
                  how_many: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """Each cluster's top potential areas (see :func:`rank_areas`); one query for all."""
    if not clusters:
        return {}
    groups = session.definitions.groups_of(theme)
    wanted = ["patients", "listed", RANKING_MEASURE]
    local = session.measures(groups, "cluster", period, measures=wanted).to_pandas()
    nation = session.measures(groups, "nation", period, measures=wanted).to_pandas()
    return rank_areas(local[local["unit_id"].isin(clusters)], nation, groups, how_many)


def rank_areas(local: pd.DataFrame, nation: pd.DataFrame, groups: list[str],
               how_many: dict[str, int]) -> dict[str, tuple[str, ...]]:
    """Per unit, its groups ranked by index (its measure over the nation's, in whole percent
    as the ranking section shows it), ties in the theme's order; only groups with at least the
    disclosure threshold of patients (a group the page can't show is no area to choose)."""
    national = dict(zip(nation["group"], nation[RANKING_MEASURE], strict=True))
    local = local[local["patients"] >= DEFAULT_POLICY.threshold].copy()
    local["index"] = [round(v / national[g] * 100) if national.get(g) else -1
                      for g, v in zip(local["group"], local[RANKING_MEASURE], strict=True)]
    local["order"] = local["group"].map({g: i for i, g in enumerate(groups)})
    local = local.sort_values(["unit_id", "index", "order"], ascending=[True, False, True])
    return {
        unit: tuple(rows["group"].head(how_many.get(unit, 1)))
        for unit, rows in local.groupby("unit_id", sort=True)
    }


def _theme_tasks(
    theme: str,
    pages: tuple[str, ...],
    practices: list[_Practice],
    cluster_region: dict[str, str],
    areas: dict[tuple[str, str], tuple[tuple[str, ...], str]],
    files: dict[str, Interventions],
    units: tuple[str, ...] | None,
) -> list[PageTask]:
    wanted = None if units is None else set(units)
    tasks: list[PageTask] = []

    def add(kind: str, unit: str, group: str = "", **where: str) -> None:
        if kind in pages:
            tasks.append(PageTask(theme, kind, unit, group, {"group": group} if group else {},
                                  **where))

    add("overview", "DK", name="DK")
    by_cluster: dict[str, list[_Practice]] = {}
    for p in practices:
        by_cluster.setdefault(p.cluster, []).append(p)
    order = sorted(by_cluster, key=lambda c: (cluster_region.get(c, "~"), c == "", c))
    for cluster in order:
        members = by_cluster[cluster]
        cluster_wanted = wanted is None or cluster in wanted
        chosen = areas.get((theme, cluster), ((), ""))[0] if cluster else ()
        region = cluster_region.get(cluster, members[0].region)
        if cluster and cluster_wanted:
            add("cluster_insight", cluster, region=region, cluster=cluster)
            for group in chosen:
                add("cluster_intervention", cluster, group, region=region, cluster=cluster)
        for p in members:
            if not (cluster_wanted or p.id in wanted):  # type: ignore[operator]
                continue
            own = files[p.region].practices.get(p.id, {})
            practice_areas = own.get(theme, chosen)
            add("practice_insight", p.id, region=p.region, cluster=cluster, name=p.name)
            for group in practice_areas:
                add("practice_intervention", p.id, group, region=p.region, cluster=cluster,
                    name=p.name)
    return tasks


def _resolve(catalog: Catalog, task: PageTask, common: dict[str, str], data: Path) -> PageTask:
    """The task with every choice filled in and checked, as the notebook will get them."""
    raw = {"theme": task.theme, "unit": task.unit, **common, **task.parameters}
    try:
        choices = catalog.resolve(task.kind, **raw)
    except ChoiceError as exc:
        raise PlanError(f"page {task.id}: {exc}") from None
    parameters = {**choices.as_query(), "data": str(data)}
    name = task.name
    if task.kind.startswith("cluster") and task.unit in catalog.clusters:
        name = catalog.clusters[task.unit].name
    return PageTask(task.theme, task.kind, task.unit, choices.group, parameters, task.region,
                    task.cluster, name)
