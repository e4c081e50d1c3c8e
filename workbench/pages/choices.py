"""What a page is asked for, and the check that every asked value is one the dataset knows.

A page's choices (theme, unit, period, drug group, drug, measure, breakdown, language) reach it
from three places: Papermill parameters, the URL of a dashboard, and widgets a viewer moves. The
last two are untrusted input (anyone can edit a URL or send a widget state to a kernel), so every
value is checked against closed lists built from the definitions and the dataset itself: a known
theme, a group of that theme, a period the data covers, a cluster or practice id of the register,
a drug (ATC code) of the group. Nothing else ever reaches a query or a page.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from urllib.parse import parse_qs

from workbench.answers import AnswerStore
from workbench.answers.periods import offered
from workbench.engine import Workbench, parse_period, period_series
from workbench.glossary import LANGUAGES
from workbench.pages.sources import store_of
from workbench.profiles import Profile, current_profile

PAGE_KINDS = (
    "overview",
    "cluster_insight",
    "cluster_intervention",
    "practice_insight",
    "practice_intervention",
)
UNIT_LEVEL = {
    "overview": "nation",
    "cluster_insight": "cluster",
    "cluster_intervention": "cluster",
    "practice_insight": "practice",
    "practice_intervention": "practice",
}
MEASURE_CHOICES = ("patients_per_1000", "ddd_per_1000_per_day", "ddd_per_1000", "patients")
BREAKDOWN_CHOICES = (
    "consumption_group",
    "started",
    "sex",
    "age_group",
    "depot",
    "addictive",
    "pack_size",
    "product",
)
# Breakdowns whose categories split each patient into exactly one part (the others can share a
# patient between parts: a patient may redeem two drugs, a depot and a plain product).
PARTITIONS = frozenset({"consumption_group", "started", "sex", "age_group"})
FIELDS = ("theme", "unit", "period", "group", "drug", "measure", "breakdown", "language")
# A page's URL names the theme ``topic``: Voilà reads a ``theme`` query field as its own (light
# or dark) and then will not hand the request a preheated kernel, which costs seconds a page.
URL_NAMES = {"theme": "topic"}
_SAFE = re.compile(r"^[A-Za-z0-9_\-.]{0,40}$")


class ChoiceError(ValueError):
    """A page was asked for a value the dataset or the definitions do not know."""


class NotAllowed(ChoiceError):
    """A page or unit the viewing profile does not allow (refused, never shown instead)."""


@dataclass(frozen=True)
class Choices:
    """The validated choices of one page; build it with :meth:`Catalog.resolve`."""

    kind: str
    theme: str
    unit: str
    period: str
    group: str
    drug: str = ""
    measure: str = "patients_per_1000"
    breakdown: str = "consumption_group"
    language: str = "da"

    @property
    def level(self) -> str:
        return UNIT_LEVEL[self.kind]

    def with_(self, **changes: str) -> Choices:
        return replace(self, **changes)

    def as_query(self) -> dict[str, str]:
        """The choices as URL query fields (the page kind is the path, not a field)."""
        fields = asdict(self)
        fields.pop("kind")
        return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True)
class Unit:
    """A cluster or practice as the register names it (``region`` of a cluster)."""

    id: str
    name: str
    cluster: str = ""
    region: str = ""


class Catalog:
    """The closed lists every choice is checked against: themes and groups from the definitions;
    periods, clusters, practices and drugs from the dataset; and what the viewing profile
    allows (:mod:`workbench.profiles`; the process's own profile unless one is given)."""

    def __init__(self, session: Workbench, profile: Profile | None = None,
                 store: AnswerStore | None = None) -> None:
        self.session = session
        self.definitions = session.definitions
        self._profile = profile
        if store is not None:
            self.store = store

    @cached_property
    def store(self) -> AnswerStore:
        """The answer store every page and every list of choices reads (the dataset's)."""
        return store_of(self.session)

    @cached_property
    def profile(self) -> Profile:
        """The viewing profile, a practice profile bound to its practice's cluster."""
        profile = self._profile or current_profile()
        if profile.name == "practice":
            own = self.practices.get(profile.practice)
            if own is None:
                raise NotAllowed(f"practice {profile.practice} of the profile is not in the "
                                 "register")
            profile = profile.bind(own.cluster)
        return profile

    @cached_property
    def data_range(self) -> tuple[dt.date, dt.date]:
        """First and last dispensing date of the register (as the store was built from)."""
        return self.store.span

    @cached_property
    def periods(self) -> list[str]:
        """Periods a page may show, as the store holds them: every year, R12 period, quarter
        and month starting a year or more after the data's first day (the consumption group
        and started/continued look back 365 days), newest first within each kind."""
        held = [parse_period(p) for p in self.store.periods["period"]]
        return [p.label for p in offered(held, self.data_range[0])]

    @cached_property
    def clusters(self) -> dict[str, Unit]:
        table = self.session.registers.clusters.select(
            "cluster_id", "cluster_name", "region_code").execute()
        return {
            str(r.cluster_id): Unit(str(r.cluster_id), str(r.cluster_name),
                                    region=str(r.region_code))
            for r in table.sort_values("cluster_id").itertuples()
        }

    @cached_property
    def practices(self) -> dict[str, Unit]:
        table = self.session.registers.practices.select(
            "practice_id", "practice_name", "cluster_id"
        ).execute()
        return {
            str(r.practice_id): Unit(str(r.practice_id), str(r.practice_name), str(r.cluster_id))
            for r in table.sort_values("practice_id").itertuples()
        }

    def practices_of(self, cluster: str) -> list[Unit]:
        return [p for p in self.practices.values() if p.cluster == cluster]

    def clusters_of_region(self, region: str) -> list[Unit]:
        return [c for c in self.clusters.values() if c.region == region]

    def cluster_of(self, level: str, unit: str) -> str:
        """The cluster a cluster or practice unit belongs to ('' for other levels)."""
        if level == "cluster":
            return unit
        if level == "practice" and unit in self.practices:
            return self.practices[unit].cluster
        return ""

    def allows(self, kind: str, unit: str) -> bool:
        """Whether the viewing profile may see page ``kind`` for ``unit``."""
        return self.profile.allows_page(kind, unit, self.cluster_of(UNIT_LEVEL[kind], unit))

    @cached_property
    def _atc(self) -> dict[str, str]:
        """ATC code -> WHO substance name (English), for the codes of the register's products."""
        products = self.session.registers.products.select("atc_code").distinct()
        try:
            ref = self.session.con.table("reference_atc_ddd")
            named = products.join(
                ref.select("atc_code", "substance_name").distinct(), "atc_code", how="left"
            ).execute()
        except Exception:  # a loaded extract without the reference copy: codes as names
            named = products.execute().assign(substance_name=None)
        named = named.drop_duplicates("atc_code").sort_values("atc_code")
        return {
            str(r.atc_code): _capital(r.substance_name) if isinstance(r.substance_name, str)
            else str(r.atc_code)
            for r in named.itertuples()
        }

    @cached_property
    def _atc_da(self) -> dict[str, str]:
        """ATC code -> Danish substance name, where the register's products give one.

        The WHO reference has English names only, and no Danish ATC name list is available
        offline; but Danish generic products are named ``Substans "Firma"`` (``Tramadol
        "Actavis"``), so the register's own product names carry the Danish substance name.
        The most common such stem of a code's products is its name; a code whose products are
        all brand names keeps the WHO name.
        """
        products = self.session.registers.products.select("atc_code", "product_name").execute()
        stems = products.assign(stem=products["product_name"].astype(str).str.extract(
            r'^\s*([^"]+?)\s+"[^"]+"\s*$', expand=False)).dropna(subset=["stem"])
        counts = stems.groupby(["atc_code", "stem"]).size().reset_index(name="n")
        best = counts.sort_values(["atc_code", "n", "stem"], ascending=[True, False, True])
        danish = dict(best.drop_duplicates("atc_code")[["atc_code", "stem"]].itertuples(
            index=False, name=None))
        return {code: _capital(danish.get(code, name)) for code, name in self._atc.items()}

    def _names(self, language: str) -> dict[str, str]:
        return self._atc_da if language == "da" else self._atc

    def drugs_of(self, group: str, language: str = "en") -> dict[str, str]:
        """The drugs (ATC code -> substance name in ``language``) of a group that someone
        redeemed: the ones the store holds answers for."""
        names = self._names(language)
        return {code: names.get(code, code) for code in self.store.drugs_of(group)}

    def drug_name(self, code: str, language: str = "en") -> str:
        return self._names(language).get(code, code)

    @cached_property
    def _areas(self) -> dict[tuple[str, str], dict[str, str]]:
        """(level, language) -> unit id -> name, for regions and municipalities (the reference
        tables the loader copies into every database; ids when they are missing)."""
        names: dict[tuple[str, str], dict[str, str]] = {}
        con = self.session.con
        try:
            regions = con.table("reference_regions").execute()
            names["region", "da"] = dict(zip(regions.region_code.astype(str),
                                             regions.region_name.astype(str), strict=True))
            names["region", "en"] = dict(zip(regions.region_code.astype(str),
                                             regions.region_name_en.astype(str), strict=True))
            towns = con.table("reference_municipalities").execute()
            local = dict(zip(towns.municipality_code.astype(str),
                             towns.municipality_name.astype(str), strict=True))
            names["municipality", "da"] = names["municipality", "en"] = local
        except Exception:  # an extract loaded without the reference copies
            pass
        return names

    def area_name(self, level: str, unit: str, language: str) -> str:
        """The name of a region or municipality (its code when the reference lacks it)."""
        return self._areas.get((level, language), {}).get(unit, unit)

    @cached_property
    def product_names(self) -> dict[str, str]:
        products = self.session.registers.products.select("product_id", "product_name").execute()
        return dict(zip(products.product_id.astype(str), products.product_name.astype(str),
                        strict=True))

    def default_unit(self, level: str) -> str:
        """The unit a page shows when none is asked for: the first of the register, or the
        practice profile's own practice and cluster."""
        if self.profile.name == "practice" and level in ("cluster", "practice"):
            return self.profile.practice if level == "practice" else self.profile.own_cluster
        if level == "cluster":
            return next(iter(self.clusters), "")
        if level == "practice":
            return next(iter(self.practices), "")
        return "DK"

    def resolve(self, kind: str, **raw: object) -> Choices:
        """Check raw choices (parameters, URL fields or widget values) and fill in defaults.

        Empty values take the default (the first unit of the level, the newest period, the
        theme's first group). Anything unknown raises :class:`ChoiceError`; a page or unit the
        viewing profile does not allow raises :class:`NotAllowed`.
        """
        if kind not in PAGE_KINDS:
            raise ChoiceError(f"unknown page {kind!r}; use one of {list(PAGE_KINDS)}")
        if kind not in self.profile.pages:
            raise NotAllowed(f"page {kind} is not available to the {self.profile.name} profile")
        unknown = sorted(set(raw) - set(FIELDS))
        if unknown:
            raise ChoiceError(f"unknown choice(s) {unknown}; a page takes {list(FIELDS)}")
        value = {name: _clean(name, raw.get(name)) for name in FIELDS}
        theme = value["theme"] or "psychotropics"
        if theme not in self.definitions.themes:
            known_themes = sorted(self.definitions.themes)
            raise ChoiceError(f"unknown theme {theme!r}; use one of {known_themes}")
        groups = self.definitions.groups_of(theme)
        group = value["group"] or groups[0]
        if group not in groups:
            raise ChoiceError(f"group {group!r} is not in theme {theme!r}; use one of {groups}")
        level = UNIT_LEVEL[kind]
        unit = value["unit"] or self.default_unit(level)
        known = {"nation": {"DK": None}, "cluster": self.clusters, "practice": self.practices}
        if unit not in known[level]:
            raise ChoiceError(f"unknown {level} {unit!r}")
        if not self.allows(kind, unit):
            raise NotAllowed(f"{level} {unit} is not available to the {self.profile.name} "
                             "profile")
        period = value["period"] or (self.periods[0] if self.periods else "")
        if period not in self.periods:
            raise ChoiceError(f"period {period!r} is not one the data covers: {self.periods}")
        drug = value["drug"]
        if drug and drug not in self.drugs_of(group):
            raise ChoiceError(f"drug {drug!r} is not a drug of group {group!r}")
        measure = value["measure"] or MEASURE_CHOICES[0]
        if measure not in MEASURE_CHOICES:
            raise ChoiceError(f"unknown measure {measure!r}; use one of {list(MEASURE_CHOICES)}")
        breakdown = value["breakdown"] or BREAKDOWN_CHOICES[0]
        if breakdown not in BREAKDOWN_CHOICES:
            raise ChoiceError(
                f"unknown breakdown {breakdown!r}; use one of {list(BREAKDOWN_CHOICES)}"
            )
        language = value["language"] or "da"
        if language not in LANGUAGES:
            raise ChoiceError(f"unknown language {language!r}; use one of {list(LANGUAGES)}")
        return Choices(kind, theme, unit, period, group, drug, measure, breakdown, language)

    def resolve_query(self, kind: str, query: str, **defaults: object) -> Choices:
        """Choices from a URL query string over ``defaults`` (the notebook's parameters).

        Unknown fields are ignored (a shared link may carry tracking fields); known fields are
        validated like any other choice.
        """
        return self.resolve(kind, **{**defaults, **url_fields(query)})


def url_fields(query: str) -> dict[str, str]:
    """The choices a URL query string holds, by parameter name (``topic`` -> ``theme``; an older
    link's ``theme`` is still understood). Values are not checked here: :meth:`Catalog.resolve`
    does that.

    >>> sorted(url_fields("topic=analgesics&unit=K025&utm_source=mail").items())
    [('theme', 'analgesics'), ('unit', 'K025')]
    """
    raw = {k: v[-1] for k, v in parse_qs(query or "", keep_blank_values=False).items()}
    by_url = {url: name for name, url in URL_NAMES.items()}
    fields = {k: v for k, v in raw.items() if k in FIELDS}
    fields.update({by_url[k]: v for k, v in raw.items() if k in by_url})
    return fields


def previous_period(label: str) -> str:
    """The period of the same kind that ends where ``label`` starts: 2024 -> 2023,
    2024Q1 -> 2023Q4, R12-2024-06 -> R12-2023-06 (the 12 months before, not overlapping).

    >>> previous_period("2024Q1"), previous_period("R12-2024-06"), previous_period("2024-01")
    ('2023Q4', 'R12-2023-06', '2023-12')
    """
    period = parse_period(label)
    probe = period.start - dt.timedelta(days=1)
    if period.kind == "year":
        return str(probe.year)
    if period.kind == "quarter":
        return f"{probe.year}Q{(probe.month - 1) // 3 + 1}"
    if period.kind == "month":
        return f"{probe.year}-{probe.month:02d}"
    return f"R12-{probe.year}-{probe.month:02d}"


def trend_periods(label: str, first_day: dt.date, max_quarters: int = 20) -> list[str]:
    """Quarters from the data's first complete quarter to the one holding ``label``'s last day.

    >>> trend_periods("2024", dt.date(2023, 2, 1))
    ['2023Q2', '2023Q3', '2023Q4', '2024Q1', '2024Q2', '2024Q3', '2024Q4']
    """
    last = parse_period(label).last_day
    first_q = dt.date(first_day.year, 3 * ((first_day.month - 1) // 3) + 1, 1)
    if first_q < first_day:
        month = first_q.month + 3
        first_q = dt.date(first_q.year + (month > 12), (month - 1) % 12 + 1, 1)
    first_label = f"{first_q.year}Q{(first_q.month - 1) // 3 + 1}"
    last_label = f"{last.year}Q{(last.month - 1) // 3 + 1}"
    series = [p.label for p in period_series(first_label, last_label)]
    return series[-max_quarters:]


def _clean(name: str, value: object) -> str:
    """A raw choice as a short plain string; anything else is refused before it is looked up."""
    if value is None:
        return ""
    text = str(value).strip()
    if not _SAFE.match(text):
        raise ChoiceError(f"{name}: {text[:40]!r} is not a valid value")
    return text


def _capital(name: object) -> str:
    """A name as a label: first letter upper case (``tramadol`` -> ``Tramadol``)."""
    text = str(name)
    return text[:1].upper() + text[1:]


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
