"""The register contract in one place: tables, columns, types, nullability, formats, allowed values,
and the register's own (Danish) column names.

Everything that decides whether a value is acceptable is *data* here, so the loader, its
validation and its documentation never disagree: :mod:`workbench.data.validation` turns these
specs into pandera checks and SQL, and :mod:`workbench.data.loader` uses the name map to read an
extract as delivered. Column names are matched case-insensitively, in English or Danish.

Danish names map as follows (either set, any case, may be used in any file; a file may not use
both names for one column):

==============  ===================================================================
table           Danish → contract name
==============  ===================================================================
persons         PNR→person_id, KOEN/KØN→sex, FOED_DAG/FOEDSELSDATO→birth_date,
                DOED_DATO/DOEDSDATO→death_date, KOM/KOMMUNE→municipality_code,
                UDV_DATO/UDVANDRINGSDATO→emigration_date
listings        PNR→person_id, YDERNR/YDER_NR→practice_id,
                TILG_DATO/FRA_DATO→start_date, AFG_DATO/TIL_DATO→end_date
practices       YDERNR/YDER_NR→practice_id, PRAKSISNAVN/YDERNAVN→practice_name,
                KOM/KOMMUNE→municipality_code, REGION/REGIONSKODE→region_code,
                KLYNGE_ID/KLYNGE→cluster_id, ANTAL_LAEGER/ANTAL_LÆGER→n_gps
clusters        KLYNGE_ID/KLYNGE→cluster_id, KLYNGENAVN/KLYNGE_NAVN→cluster_name,
                REGION/REGIONSKODE→region_code
products        VNR/VARENR→product_id, VARENAVN/NAVN→product_name, ATC→atc_code,
                LAEGEMIDDELFORM/FORM→form, STYRKE→strength,
                STYRKE_ENHED/ENHED→strength_unit, PAKNINGSSTR/PAKSTR→pack_size,
                DDD_PR_PAKNING/DDD_PAKNING→ddd_per_pack, DEPOT→depot
redemptions     PNR→person_id, EKSD/EKSPEDITIONSDATO→dispensed_on, VNR/VARENR→product_id,
                APK/ANTAL_PAKNINGER→packs, YDERNR/ORD_YDERNR→prescriber_id,
                ORDINATORTYPE/ORD_TYPE→prescriber_type
==============  ===================================================================

Values are normalised before they are checked, as registers write them: sex ``K``/``2`` → ``F``
and ``1`` → ``M`` (any case); a municipality in the 4-digit CPR form (``0101``) → its 3-digit DST
code (``101``); a region in DST's 2-digit form (``81``) → its official code (``1081``);
prescriber types in any case → lower case; booleans as true/false, 1/0, yes/no or ja/nej.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from workbench.data import reference
from workbench.definitions import ATC_PREFIX


class Kind(StrEnum):
    """The type a column has in the database (and what its text must parse as)."""

    TEXT = "VARCHAR"
    DATE = "DATE"
    INTEGER = "INTEGER"
    FLOAT = "DOUBLE"
    BOOLEAN = "BOOLEAN"


@dataclass(frozen=True)
class Domain:
    """A closed set of allowed values, with the register spellings that normalise to them.

    Values and aliases are given as functions so sets that come from the reference data are read
    only when a load needs them, not when this module is imported.
    """

    values: Callable[[], frozenset[str]]
    description: str
    aliases: Callable[[], Mapping[str, str]] = dict
    case: str | None = None  # "upper" or "lower": fold before mapping aliases


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the contract: name, type, nullability, format and allowed values."""

    name: str
    kind: Kind
    description: str
    nullable: bool = False
    optional: bool = False  # may be absent from the file (then loaded as all null)
    danish: tuple[str, ...] = ()
    pattern: str | None = None  # the whole text must match (identifiers)
    pattern_hint: str = ""
    domain: Domain | None = None
    minimum: float | None = None  # numbers: value must be > minimum (or >= if inclusive)
    minimum_inclusive: bool = False
    nonzero: bool = False
    zero_pad: int | None = None  # integer-typed Parquet ids lost their leading zeros: pad back


@dataclass(frozen=True)
class OrderRule:
    """Two dates of one row that must be in order (``later`` may be null: open or alive)."""

    name: str
    earlier: str
    later: str
    strict: bool  # True: later > earlier; False: later >= earlier
    problem: str


@dataclass(frozen=True)
class TableSpec:
    """One register table: its columns, primary key and one-row rules."""

    name: str
    columns: tuple[ColumnSpec, ...]
    description: str
    primary_key: tuple[str, ...] = ()
    order_rules: tuple[OrderRule, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    def aliases(self) -> dict[str, str]:
        """Every accepted source name, folded to lower case, to its contract name."""
        out: dict[str, str] = {}
        for col in self.columns:
            for alias in (col.name, *col.danish):
                out[alias.casefold()] = col.name
        return out


SIX_DIGITS = r"[0-9]{6}"
SIX_DIGITS_HINT = "exactly 6 digits (keep leading zeros, e.g. 012345)"
ATC_PATTERN = ATC_PREFIX.pattern.strip("^$")
PRESCRIBER_TYPES = frozenset({"gp", "specialist", "hospital", "other"})
TRUE_WORDS = frozenset({"true", "t", "1", "yes", "y", "ja", "j"})
FALSE_WORDS = frozenset({"false", "f", "0", "no", "n", "nej"})


@cache
def municipality_codes() -> frozenset[str]:
    return frozenset(reference.municipalities()["municipality_code"])


@cache
def municipality_aliases() -> dict[str, str]:
    """CPR writes municipalities as 4 digits (0101); DST and the contract as 3 (101)."""
    df = reference.municipalities()
    return dict(zip(df["municipality_code_4digit"], df["municipality_code"], strict=True))


@cache
def region_codes() -> frozenset[str]:
    return frozenset(reference.regions()["region_code"])


@cache
def region_aliases() -> dict[str, str]:
    """DST writes regions as 81-85; the contract uses the official 1081-1085."""
    df = reference.regions()
    return dict(zip(df["region_code_dst"], df["region_code"], strict=True))


SEX = Domain(
    values=lambda: frozenset({"F", "M"}),
    description="F or M (K/2 and M/1 are read as F and M)",
    aliases=lambda: {"K": "F", "2": "F", "1": "M"},
    case="upper",
)
MUNICIPALITY = Domain(
    values=municipality_codes,
    description="a municipality code of data/reference/dk_municipalities.csv (e.g. 101, 851)",
    aliases=municipality_aliases,
)
REGION = Domain(
    values=region_codes,
    description="a region code 1081-1085 (or DST's 81-85)",
    aliases=region_aliases,
)
PRESCRIBER_TYPE = Domain(
    values=lambda: PRESCRIBER_TYPES,
    description="one of gp, specialist, hospital, other",
    case="lower",
)
BOOLEAN = Domain(
    values=lambda: TRUE_WORDS | FALSE_WORDS,
    description="true or false (also 1/0, yes/no, ja/nej)",
    case="lower",
)


def _id(name: str, description: str, *danish: str, nullable: bool = False) -> ColumnSpec:
    return ColumnSpec(name, Kind.TEXT, description, nullable=nullable, danish=danish)


def _six_digit_id(name: str, description: str, *danish: str) -> ColumnSpec:
    return ColumnSpec(
        name,
        Kind.TEXT,
        description,
        danish=danish,
        pattern=SIX_DIGITS,
        pattern_hint=SIX_DIGITS_HINT,
        zero_pad=6,
    )


def _date(name: str, description: str, *danish: str, **kw: bool) -> ColumnSpec:
    return ColumnSpec(name, Kind.DATE, description, danish=danish, **kw)


PERSON_ID = _id("person_id", "pseudonymous person key (never a CPR number)", "PNR")

PERSONS = TableSpec(
    "persons",
    (
        PERSON_ID,
        ColumnSpec("sex", Kind.TEXT, "F or M", danish=("KOEN", "KØN"), domain=SEX),
        _date("birth_date", "date of birth", "FOED_DAG", "FOEDSELSDATO"),
        _date(
            "death_date", "date of death, null if alive", "DOED_DATO", "DOEDSDATO", nullable=True
        ),
        ColumnSpec(
            "municipality_code",
            Kind.TEXT,
            "municipality of residence, 3-digit DST code",
            danish=("KOM", "KOMMUNE"),
            domain=MUNICIPALITY,
        ),
        _date(
            "emigration_date",
            "date of emigration, null if none",
            "UDV_DATO",
            "UDVANDRINGSDATO",
            nullable=True,
            optional=True,
        ),
    ),
    "CPR register: one row per person",
    primary_key=("person_id",),
    order_rules=(
        OrderRule(
            "death_before_birth",
            "birth_date",
            "death_date",
            strict=False,
            problem="death_date is before birth_date",
        ),
    ),
)

LISTINGS = TableSpec(
    "listings",
    (
        PERSON_ID,
        _six_digit_id("practice_id", "the practice's ydernummer", "YDERNR", "YDER_NR"),
        _date("start_date", "first day listed (inclusive)", "TILG_DATO", "FRA_DATO"),
        _date(
            "end_date",
            "day the listing ended (exclusive), null while open",
            "AFG_DATO",
            "TIL_DATO",
            nullable=True,
        ),
    ),
    "sygesikring: which practice a person is listed with, [start_date, end_date)",
    primary_key=("person_id", "start_date"),
    order_rules=(
        OrderRule(
            "end_not_after_start",
            "start_date",
            "end_date",
            strict=True,
            problem="end_date is not after start_date (a period is [start, end))",
        ),
    ),
)

PRACTICES = TableSpec(
    "practices",
    (
        _six_digit_id("practice_id", "ydernummer", "YDERNR", "YDER_NR"),
        ColumnSpec(
            "practice_name", Kind.TEXT, "name", nullable=True, danish=("PRAKSISNAVN", "YDERNAVN")
        ),
        ColumnSpec(
            "municipality_code",
            Kind.TEXT,
            "municipality of the practice",
            danish=("KOM", "KOMMUNE"),
            domain=MUNICIPALITY,
        ),
        ColumnSpec(
            "region_code",
            Kind.TEXT,
            "region 1081-1085",
            danish=("REGION", "REGIONSKODE"),
            domain=REGION,
        ),
        # About 2% of GPs are in no cluster (KiAP): null is allowed, an unknown id is not.
        _id(
            "cluster_id",
            "the practice's cluster, null if none",
            "KLYNGE_ID",
            "KLYNGE",
            nullable=True,
        ),
        ColumnSpec(
            "n_gps",
            Kind.INTEGER,
            "number of GPs",
            danish=("ANTAL_LAEGER", "ANTAL_LÆGER"),
            minimum=1,
            minimum_inclusive=True,
        ),
    ),
    "ydere: general practices",
    primary_key=("practice_id",),
)

CLUSTERS = TableSpec(
    "clusters",
    (
        _id("cluster_id", "cluster (klynge) id", "KLYNGE_ID", "KLYNGE"),
        ColumnSpec(
            "cluster_name", Kind.TEXT, "name", nullable=True, danish=("KLYNGENAVN", "KLYNGE_NAVN")
        ),
        ColumnSpec(
            "region_code",
            Kind.TEXT,
            "region 1081-1085",
            danish=("REGION", "REGIONSKODE"),
            domain=REGION,
        ),
    ),
    "praksisklynger: quality clusters of practices",
    primary_key=("cluster_id",),
)

PRODUCTS = TableSpec(
    "products",
    (
        _six_digit_id("product_id", "varenummer", "VNR", "VARENR"),
        ColumnSpec("product_name", Kind.TEXT, "name", nullable=True, danish=("VARENAVN", "NAVN")),
        ColumnSpec(
            "atc_code",
            Kind.TEXT,
            "WHO ATC code",
            danish=("ATC",),
            pattern=ATC_PATTERN,
            pattern_hint="an ATC code such as N02AA01",
        ),
        ColumnSpec("form", Kind.TEXT, "dosage form", danish=("LAEGEMIDDELFORM", "FORM")),
        ColumnSpec("strength", Kind.FLOAT, "strength", nullable=True, danish=("STYRKE",)),
        ColumnSpec(
            "strength_unit",
            Kind.TEXT,
            "unit of strength",
            nullable=True,
            danish=("STYRKE_ENHED", "ENHED"),
        ),
        ColumnSpec(
            "pack_size",
            Kind.INTEGER,
            "units in a pack",
            danish=("PAKNINGSSTR", "PAKSTR"),
            minimum=0,
        ),
        ColumnSpec(
            "ddd_per_pack",
            Kind.FLOAT,
            "defined daily doses in a pack",
            danish=("DDD_PR_PAKNING", "DDD_PAKNING"),
            minimum=0,
        ),
        ColumnSpec(
            "depot",
            Kind.BOOLEAN,
            "prolonged-release formulation",
            danish=("DEPOT",),
            domain=BOOLEAN,
        ),
    ),
    "varenumre: the product catalogue",
    primary_key=("product_id",),
)

REDEMPTIONS = TableSpec(
    "redemptions",
    (
        PERSON_ID,
        _date("dispensed_on", "dispensing date", "EKSD", "EKSPEDITIONSDATO"),
        _six_digit_id("product_id", "varenummer", "VNR", "VARENR"),
        ColumnSpec(
            "packs",
            Kind.INTEGER,
            "packs dispensed, negative for a return",
            danish=("APK", "ANTAL_PAKNINGER"),
            nonzero=True,
        ),
        # Not format-checked: non-GP prescribers carry other identifiers; an unknown one is a
        # warning (see validation.py), the redemption then counts for no practice. Integer-typed
        # Parquet ids are padded like practice ids, so they still match.
        ColumnSpec(
            "prescriber_id",
            Kind.TEXT,
            "prescribing practice's ydernummer, or null",
            nullable=True,
            danish=("YDERNR", "ORD_YDERNR"),
            zero_pad=6,
        ),
        ColumnSpec(
            "prescriber_type",
            Kind.TEXT,
            "gp, specialist, hospital or other",
            danish=("ORDINATORTYPE", "ORD_TYPE"),
            domain=PRESCRIBER_TYPE,
        ),
    ),
    "Lægemiddelstatistikregisteret: one row per pharmacy dispensing",
)

# Load order: a table is checked against the tables before it.
TABLES: tuple[TableSpec, ...] = (CLUSTERS, PRACTICES, PRODUCTS, PERSONS, LISTINGS, REDEMPTIONS)
TABLES_BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}


@dataclass(frozen=True)
class Reference:
    """``column`` of ``table`` must name a loaded row of ``parent`` (or be null, if nullable).

    ``during_life`` names a date of the row that must fall in the referenced person's life
    (not before birth_date, not after death_date): a dispensing after death is impossible.
    """

    table: str
    column: str
    parent: str
    parent_column: str
    during_life: str | None = None

    @property
    def rule(self) -> str:
        return f"unknown_{self.parent.removesuffix('s')}"


REFERENCES: tuple[Reference, ...] = (
    Reference("practices", "cluster_id", "clusters", "cluster_id"),
    Reference("listings", "person_id", "persons", "person_id"),
    Reference("listings", "practice_id", "practices", "practice_id"),
    Reference("redemptions", "product_id", "products", "product_id"),
    Reference("redemptions", "person_id", "persons", "person_id", during_life="dispensed_on"),
)
