"""Drug groups, themes, flags and age bands, read from ``parameters/`` and checked on load.

Definitions are data so an epidemiologist can change a group without touching code; the price
is that a typo must never silently change a figure. So every file is validated with pydantic,
cross-checked (a theme names only known groups, no ATC code falls in two groups, every prefix
matches a code of the WHO index we ship), and any problem is reported with the file, the place
in it and how to fix it.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.paths import PARAMETERS_DIR, REFERENCE_DIR

ATC_PREFIX = re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")
GROUP_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class DefinitionsError(ValueError):
    """A parameters file is missing or wrong; the message says where and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    da: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def __call__(self, language: str = "da") -> str:
        return self.da if language == "da" else self.en


AtcPrefix = Annotated[str, Field(pattern=ATC_PREFIX.pattern)]


class AtcRule(_Strict):
    """A set of ATC codes given as include and exclude prefixes (exclude wins)."""

    atc_include: list[AtcPrefix] = Field(min_length=1)
    atc_exclude: list[AtcPrefix] = Field(default_factory=list)
    # Codes of earlier index versions (WHO moves substances): an older extract classifies the
    # same, and they are exempt from the check against the current index.
    atc_legacy: list[AtcPrefix] = Field(default_factory=list)

    def matches(self, atc_code: str) -> bool:
        included = any(atc_code.startswith(p) for p in (*self.atc_include, *self.atc_legacy))
        return included and not any(atc_code.startswith(p) for p in self.atc_exclude)


class DrugGroup(AtcRule):
    id: str = ""
    theme: str = ""
    label: Label
    rationale: str = Field(min_length=1)


class Theme(_Strict):
    id: str = ""
    label: Label
    groups: list[str] = Field(min_length=1)


class AddictiveFlag(AtcRule):
    label: Label
    rationale: str


class DepotFlag(_Strict):
    label: Label
    forms: list[str] = Field(min_length=1)
    rationale: str


class Flags(_Strict):
    addictive: AddictiveFlag
    depot: DepotFlag


class AgeBand(_Strict):
    id: str
    min: int = Field(ge=0)
    max: int | None = None

    def contains(self, age: int) -> bool:
        return age >= self.min and (self.max is None or age <= self.max)


class GroupsFile(_Strict):
    atc_ddd_index: str
    reviewed: str
    themes: dict[str, Theme]
    groups: dict[str, DrugGroup]
    flags: Flags
    forms: list[str] = Field(min_length=1)

    @field_validator("themes", "groups")
    @classmethod
    def _ids_are_slugs(cls, value: dict) -> dict:
        for key in value:
            if not GROUP_ID.match(key):
                raise ValueError(f"id {key!r} must be lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> GroupsFile:
        for theme_id, theme in self.themes.items():
            unknown = [g for g in theme.groups if g not in self.groups]
            if unknown:
                raise ValueError(
                    f"theme {theme_id!r} names unknown group(s) {unknown}; "
                    f"define them under 'groups:' or remove them (known: {sorted(self.groups)})"
                )
        owners: dict[str, str] = {}
        for theme_id, theme in self.themes.items():
            for g in theme.groups:
                if g in owners:
                    raise ValueError(f"group {g!r} is in themes {owners[g]!r} and {theme_id!r}")
                owners[g] = theme_id
        orphans = sorted(set(self.groups) - set(owners))
        if orphans:
            raise ValueError(f"group(s) {orphans} belong to no theme; add them to a theme")
        bad_forms = [f for f in self.flags.depot.forms if f not in self.forms]
        if bad_forms:
            raise ValueError(f"flags.depot.forms has {bad_forms}, which are not in 'forms:'")
        return self


class AgeBandsFile(_Strict):
    age_bands: list[AgeBand] = Field(min_length=1)

    @model_validator(mode="after")
    def _contiguous(self) -> AgeBandsFile:
        expected = 0
        for i, band in enumerate(self.age_bands):
            if band.min != expected:
                raise ValueError(
                    f"age_bands[{i}] ({band.id!r}) starts at {band.min}, expected {expected}: "
                    "bands must start at 0 and follow on without gaps or overlaps"
                )
            if band.max is None:
                if i != len(self.age_bands) - 1:
                    raise ValueError(f"age_bands[{i}] ({band.id!r}) is open-ended but not last")
                return self
            if band.max < band.min:
                raise ValueError(f"age_bands[{i}] ({band.id!r}) has max < min")
            expected = band.max + 1
        raise ValueError("the last age band must be open-ended (max: null)")


class RiskClass(AtcRule):
    """A named set of ATC codes a risk refers to (``parameters/risks.yaml``)."""

    label: Label


class _RiskBase(_Strict):
    title: Label
    classes: list[str] = Field(min_length=1)
    direction: Literal["low_is_good", "high_is_good"]
    rationale: str = Field(min_length=1)
    source: str = Field(min_length=1)
    reviewed: dt.date
    id: str = ""


class ConcurrentUse(_RiskBase):
    """Use of two classes at once: overlapping periods of use for ``min_overlap_days``."""

    kind: Literal["concurrent_use"]
    min_overlap_days: int = Field(ge=1)


class MultipleSubstances(_RiskBase):
    """Two or more substances of one class at once for ``min_overlap_days`` in a row."""

    kind: Literal["multiple_substances"]
    min_overlap_days: int = Field(ge=1)


class AgeOnClass(_RiskBase):
    """Users of a class aged ``min_age`` or more on the period's first day."""

    kind: Literal["age_on_class"]
    min_age: int = Field(ge=0)


class LongTermUse(_RiskBase):
    """Continuous use (gaps of at most ``max_gap_days``) for more than ``min_days``."""

    kind: Literal["long_term_use"]
    min_days: int = Field(ge=1)
    max_gap_days: int = Field(ge=0)


class LargeStart(_RiskBase):
    """New users whose first day's supply is at least ``min_start_ddd`` DDD."""

    kind: Literal["large_start"]
    min_start_ddd: float = Field(gt=0)


Risk = Annotated[
    ConcurrentUse | MultipleSubstances | AgeOnClass | LongTermUse | LargeStart,
    Field(discriminator="kind"),
]


class RisksFile(_Strict):
    classes: dict[str, RiskClass] = Field(min_length=1)
    risks: dict[str, Risk] = Field(min_length=1)

    @field_validator("classes", "risks")
    @classmethod
    def _ids_are_slugs(cls, value: dict) -> dict:
        for key in value:
            if not GROUP_ID.match(key):
                raise ValueError(f"id {key!r} must be lower-case letters, digits and _")
        return value

    @model_validator(mode="after")
    def _cross_check(self) -> RisksFile:
        for rid, risk in self.risks.items():
            unknown = [c for c in risk.classes if c not in self.classes]
            if unknown:
                raise ValueError(
                    f"risk {rid!r} names unknown class(es) {unknown}; define them under "
                    f"'classes:' (known: {sorted(self.classes)})"
                )
            if risk.kind == "concurrent_use" and len(set(risk.classes)) != 2:
                raise ValueError(f"risk {rid!r} (concurrent_use) needs exactly two classes")
            if risk.kind == "multiple_substances" and len(risk.classes) != 1:
                raise ValueError(f"risk {rid!r} (multiple_substances) needs exactly one class")
        return self


class Definitions:
    """Everything ``parameters/`` defines, with the look-ups the rest of the package needs."""

    def __init__(
        self,
        groups_file: GroupsFile,
        age_bands_file: AgeBandsFile,
        source: Path,
        risks_file: RisksFile | None = None,
    ):
        self.source = source
        self.atc_ddd_index = groups_file.atc_ddd_index
        self.themes = {
            tid: t.model_copy(update={"id": tid}) for tid, t in groups_file.themes.items()
        }
        owner = {g: tid for tid, t in self.themes.items() for g in t.groups}
        self.groups = {
            gid: g.model_copy(update={"id": gid, "theme": owner[gid]})
            for gid, g in groups_file.groups.items()
        }
        self.addictive = groups_file.flags.addictive
        self.depot = groups_file.flags.depot
        self.forms = list(groups_file.forms)
        self.age_bands = list(age_bands_file.age_bands)
        # Risky combinations (parameters/risks.yaml): the classes they use and the risks by id.
        self.risk_classes = dict(risks_file.classes) if risks_file else {}
        self.risks = (
            {rid: r.model_copy(update={"id": rid}) for rid, r in risks_file.risks.items()}
            if risks_file
            else {}
        )

    def group_for_atc(self, atc_code: str) -> str | None:
        """The group an ATC code belongs to, or None if it is out of scope."""
        for gid, group in self.groups.items():
            if group.matches(atc_code):
                return gid
        return None

    def groups_of(self, theme: str) -> list[str]:
        if theme not in self.themes:
            raise KeyError(f"unknown theme {theme!r}; known: {sorted(self.themes)}")
        return list(self.themes[theme].groups)

    def is_addictive(self, atc_code: str) -> bool:
        return self.addictive.matches(atc_code)

    def is_depot(self, form: str) -> bool:
        return form in self.depot.forms

    def age_band(self, age: int) -> str:
        for band in self.age_bands:
            if band.contains(age):
                return band.id
        raise ValueError(f"age {age} is in no age band")


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> object:
    if not path.exists():
        raise DefinitionsError(f"{path}: file not found; the workbench needs it in parameters/")
    try:
        # libyaml's safe loader where PyYAML has it: the same documents, read ~5x faster
        # (every kernel reads the definitions before its first page)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise DefinitionsError(f"{path}: not valid YAML: {exc}") from exc


def _parse(model: type[BaseModel], path: Path) -> BaseModel:
    try:
        return model.model_validate(_read_yaml(path))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            hint = ""
            if err["type"] == "string_pattern_mismatch":
                hint = " (an ATC prefix looks like 'N', 'N02', 'N02A', 'N02AA' or 'N02AA01')"
            elif err["type"] == "extra_forbidden":
                hint = " (unknown key: check its spelling)"
            elif err["type"] == "missing":
                hint = " (required: add it)"
            lines.append(f"  {where}: {err['msg']}{hint}")
        raise DefinitionsError(f"{path}: invalid definitions:\n" + "\n".join(lines)) from None


def _check_against_atc_index(groups_file: GroupsFile, path: Path, atc_csv: Path) -> None:
    with atc_csv.open(encoding="utf-8") as fh:
        codes = {row["atc_code"] for row in csv.DictReader(fh)}
    rules: list[tuple[str, AtcRule]] = [(f"groups.{g}", r) for g, r in groups_file.groups.items()]
    rules.append(("flags.addictive", groups_file.flags.addictive))
    for where, rule in rules:
        for prefix in rule.atc_include:
            if not any(c.startswith(prefix) for c in codes):
                raise DefinitionsError(
                    f"{path}: {where}.atc_include has {prefix!r}, which matches no ATC code in "
                    f"{atc_csv.name}; check the code against the WHO ATC index"
                )
    seen: dict[str, str] = {}
    for gid, group in groups_file.groups.items():
        for code in codes:
            if group.matches(code):
                if code in seen:
                    raise DefinitionsError(
                        f"{path}: ATC code {code} is in groups {seen[code]!r} and {gid!r}; "
                        "a code may belong to one group only (use atc_exclude)"
                    )
                seen[code] = gid


@cache
def _load(parameters_dir: Path, reference_dir: Path) -> Definitions:
    groups_path = parameters_dir / "groups.yaml"
    groups_file = _parse(GroupsFile, groups_path)
    _check_against_atc_index(groups_file, groups_path, reference_dir / "atc_ddd.csv")
    age_bands_file = _parse(AgeBandsFile, parameters_dir / "age_bands.yaml")
    risks_path = parameters_dir / "risks.yaml"
    risks_file = _parse(RisksFile, risks_path)
    _check_risk_classes(risks_file, risks_path, reference_dir / "atc_ddd.csv")
    return Definitions(groups_file, age_bands_file, parameters_dir, risks_file)


def _check_risk_classes(risks_file: RisksFile, path: Path, atc_csv: Path) -> None:
    """Every include prefix of a risk class must match a code of the WHO index we ship."""
    with atc_csv.open(encoding="utf-8") as fh:
        codes = {row["atc_code"] for row in csv.DictReader(fh)}
    for cid, rule in risks_file.classes.items():
        for prefix in rule.atc_include:
            if not any(c.startswith(prefix) for c in codes):
                raise DefinitionsError(
                    f"{path}: classes.{cid}.atc_include has {prefix!r}, which matches no ATC "
                    f"code in {atc_csv.name}; check the code against the WHO ATC index"
                )


def load_definitions(
    parameters_dir: str | Path | None = None, reference_dir: str | Path | None = None
) -> Definitions:
    """Read and check ``groups.yaml``, ``age_bands.yaml`` and ``risks.yaml`` (cached per folder)."""
    return _load(
        Path(parameters_dir or PARAMETERS_DIR).resolve(),
        Path(reference_dir or REFERENCE_DIR).resolve(),
    )
