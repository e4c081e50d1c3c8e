"""The generator's assumptions (``parameters/generator.yaml``), validated with pydantic on load.

The generator makes many assumptions about Denmark (mortality, practice sizes, prescribing levels,
treatment patterns). Keeping them as reviewed data rather than constants in code lets an
epidemiologist see and change them; validating them on load means a typo fails loudly with the
place in the file instead of silently changing every figure downstream.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.paths import PARAMETERS_DIR

PATTERNS = ("short", "intermittent", "chronic")
PRESCRIBER_CATEGORIES = ("gp_listed", "other_practice", "specialist", "hospital", "other")
REGIONS = ("1081", "1082", "1083", "1084", "1085")

Pattern = Literal["short", "intermittent", "chronic"]
PrescriberCategory = Literal["gp_listed", "other_practice", "specialist", "hospital", "other"]
Sex = Literal["F", "M"]
AgeCurve = list[tuple[float, float]]


class GeneratorParametersError(ValueError):
    """``generator.yaml`` is missing or wrong; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _sums_to_one(weights: dict, what: str) -> None:
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{what} must sum to 1 (they sum to {total:.6f})")


def _ascending_ages(curve: AgeCurve, what: str) -> None:
    ages = [a for a, _ in curve]
    if not ages or ages != sorted(ages) or len(set(ages)) != len(ages):
        raise ValueError(f"{what}: anchor ages must be strictly increasing")
    if any(v < 0 for _, v in curve):
        raise ValueError(f"{what}: values must be >= 0")


class Mortality(_Strict):
    infant_q0: float = Field(gt=0, lt=1)
    makeham: float = Field(ge=0, lt=1)
    b: float = Field(gt=0)
    c: float = Field(gt=0, lt=1)


class UrbanTilt(_Strict):
    strength: float = Field(ge=0, le=1)
    young_ages: tuple[int, int]
    old_ages: tuple[int, int]


class Population(_Strict):
    growth_clip: tuple[float, float]
    urban_tilt: UrbanTilt
    mortality: dict[Sex, Mortality]
    births_per_woman_15_49: float = Field(gt=0, lt=0.5)
    male_share_at_birth: float = Field(gt=0.3, lt=0.7)
    emigration_by_age: AgeCurve
    internal_move_by_age: AgeCurve
    within_region_share: float = Field(ge=0, le=1)
    practice_switch: float = Field(ge=0, lt=0.5)
    unlisted_share: float = Field(ge=0, lt=0.2)
    listing_delay_mean_days: float = Field(ge=0)
    initial_listing_mean_years: float = Field(gt=0)

    @model_validator(mode="after")
    def _curves(self) -> Population:
        _ascending_ages(self.emigration_by_age, "population.emigration_by_age")
        _ascending_ages(self.internal_move_by_age, "population.internal_move_by_age")
        if set(self.mortality) != {"F", "M"}:
            raise ValueError("population.mortality needs exactly 'F' and 'M'")
        return self


class Practices(_Strict):
    list_per_gp: dict[str, int]
    solo_list_factor: float = Field(gt=0.5, lt=2)
    n_gps: dict[str, float]
    capacity_jitter: tuple[float, float]
    streets: list[str] = Field(min_length=5)

    @model_validator(mode="after")
    def _check(self) -> Practices:
        if set(self.list_per_gp) != set(REGIONS):
            raise ValueError(f"practices.list_per_gp needs the regions {list(REGIONS)}")
        if not all(k.isdigit() and int(k) >= 1 for k in self.n_gps):
            raise ValueError("practices.n_gps keys are numbers of GPs as quoted integers")
        _sums_to_one(self.n_gps, "practices.n_gps")
        return self


class Clusters(_Strict):
    target_listed: int = Field(gt=1000)
    split_above: int = Field(gt=1000)
    join_below: int = Field(ge=0)
    compass: list[str] = Field(min_length=2)


class PracticeOutliers(_Strict):
    share: float = Field(ge=0, lt=0.2)
    high_share: float = Field(ge=0, le=1)
    high_range: tuple[float, float]
    low_value: float = Field(gt=0, lt=1)


class ClusterOutliers(_Strict):
    per_group: int = Field(ge=0)
    high_range: tuple[float, float]
    low_value: float = Field(gt=0, lt=1)


class Propensity(_Strict):
    practice_sigma: float = Field(ge=0, lt=1)
    cluster_sigma: float = Field(ge=0, lt=1)
    practice_outliers: PracticeOutliers
    cluster_outliers: ClusterOutliers


class Returns(_Strict):
    share: float = Field(ge=0, lt=0.1)
    partial_share: float = Field(ge=0, le=1)
    max_days_after: int = Field(ge=1)


class LogNormal(_Strict):
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)


class ShortPattern(_Strict):
    second_redemption_share: float = Field(ge=0, le=1)
    second_after_days: tuple[int, int]
    course_ddd: LogNormal


class IntermittentPattern(_Strict):
    span_min_days: int = Field(ge=0)
    span_mean_extra_days: float = Field(gt=0)
    dose: LogNormal
    supply_days: LogNormal
    gap: LogNormal


class ChronicPattern(_Strict):
    span_min_days: int = Field(ge=0)
    dose: LogNormal
    supply_days: LogNormal
    gap: LogNormal


class Patterns(_Strict):
    short: ShortPattern
    intermittent: IntermittentPattern
    chronic: ChronicPattern


class Target(_Strict):
    """The published (or assumed) annual prevalence a component is scaled to."""

    row_id: str | None
    year: int
    per_1000: float | None = None
    persons: int | None = None
    ages: tuple[int, int | None]
    sex: Literal["all", "F", "M"]
    note: str

    @model_validator(mode="after")
    def _one_value(self) -> Target:
        if (self.per_1000 is None) == (self.persons is None):
            raise ValueError("give exactly one of per_1000 and persons")
        return self


class Component(_Strict):
    """A part of a drug group with its own users: level, age/sex shape, trend, patterns, drugs."""

    target: Target
    age_shape: dict[Sex, AgeCurve]
    trend: dict[int, float]
    mix: dict[Pattern, float]
    chronic_span_mean_years: float = Field(gt=0)
    chronic_dose: float = Field(gt=0)
    frailty_shape: float = Field(gt=0)
    substances: dict[str, float] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Component:
        for sex in ("F", "M"):
            if sex not in self.age_shape:
                raise ValueError(f"age_shape needs '{sex}'")
            _ascending_ages(self.age_shape[sex], f"age_shape.{sex}")
        if not self.trend or any(v <= 0 for v in self.trend.values()):
            raise ValueError("trend needs at least one year, all values > 0")
        _sums_to_one(self.mix, "mix")
        if any(w < 0 for w in self.substances.values()) or sum(self.substances.values()) <= 0:
            raise ValueError("substances: weights must be >= 0 with a positive sum")
        return self


class Group(_Strict):
    prescribers: dict[PrescriberCategory, float]
    components: dict[str, Component] = Field(min_length=1)

    @field_validator("prescribers")
    @classmethod
    def _mix(cls, value: dict) -> dict:
        _sums_to_one(value, "prescribers")
        return value


class FormSpec(_Strict):
    strengths: list[float] = Field(min_length=1)
    packs: list[int] = Field(min_length=1)
    weight: float = Field(ge=0)
    unit: str | None = None
    unit_days: float | None = None


class SubstanceSpec(_Strict):
    forms: dict[str, FormSpec] = Field(min_length=1)


class CatalogueDefaults(_Strict):
    packs: dict[str, list[int]]
    units: dict[str, str]
    strength_fractions: list[float] = Field(min_length=1)
    nice_strengths: list[float] = Field(min_length=5)
    unit_days: dict[str, float]
    makers_common: tuple[int, int]
    makers_rare: tuple[int, int]


class Catalogue(_Strict):
    makers: list[str] = Field(min_length=4)
    route_forms: dict[str, str]
    form_routes: dict[str, str]
    defaults: CatalogueDefaults
    danish_names: dict[str, str]
    substances: dict[str, SubstanceSpec]
    dose_factors: dict[str, float]


class CalibrationCheck(_Strict):
    """One published figure and how to compute the same figure from the generated register."""

    id: str
    row_id: str
    group: str
    measure: Literal["per_1000", "ratio_f_m", "share", "growth"]
    atc: list[str] = Field(min_length=1)
    exclude: list[str] = Field(default_factory=list)
    atc_subset: list[str] = Field(default_factory=list)
    year: int
    base_year: int | None = None
    ages: tuple[int, int | None]
    sex: Literal["all", "F", "M"] = "all"
    min_ddd: float | None = None
    published: str
    expected: float = Field(gt=0)
    derivation: str | None = None


class GeneratorParameters(_Strict):
    version: str
    population: Population
    practices: Practices
    clusters: Clusters
    propensity: Propensity
    returns: Returns
    burn_in_years: dict[Pattern, int]
    patterns: Patterns
    depot_preference: dict[Pattern, float]
    groups: dict[str, Group]
    catalogue: Catalogue
    calibration_checks: list[CalibrationCheck]

    @model_validator(mode="after")
    def _cross_check(self) -> GeneratorParameters:
        components = [c for g in self.groups.values() for c in g.components]
        if len(components) != len(set(components)):
            raise ValueError("component ids must be unique across groups")
        for check in self.calibration_checks:
            if check.group not in self.groups:
                raise ValueError(
                    f"calibration check {check.id!r} names unknown group {check.group!r}"
                )
        if set(self.burn_in_years) != set(PATTERNS) or not all(
            1 <= v <= 40 for v in self.burn_in_years.values()
        ):
            raise ValueError(f"burn_in_years needs 1-40 years for each of {list(PATTERNS)}")
        unknown = set(self.catalogue.form_routes.values()) - set(self.catalogue.route_forms)
        if unknown:
            raise ValueError(
                f"catalogue.form_routes uses routes {sorted(unknown)} not in route_forms"
            )
        return self

    def component_of(self, component_id: str) -> Component:
        for group in self.groups.values():
            if component_id in group.components:
                return group.components[component_id]
        raise KeyError(component_id)


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return f"{path}: invalid generator parameters:\n" + "\n".join(lines)


@cache
def _load(path: Path) -> GeneratorParameters:
    if not path.exists():
        raise GeneratorParametersError(f"{path}: file not found (restore it from git)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise GeneratorParametersError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return GeneratorParameters.model_validate(raw)
    except ValidationError as exc:
        raise GeneratorParametersError(_format_errors(path, exc)) from None


def load_parameters(path: str | Path | None = None) -> GeneratorParameters:
    """Read and validate ``generator.yaml`` (cached per path)."""
    return _load(Path(path or PARAMETERS_DIR / "generator.yaml").resolve())
