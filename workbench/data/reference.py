"""The reference data we ship (WHO ATC/DDD 2026, Danish geography and population).

Copies of ``../shared/reference`` live in ``data/reference`` with their source notes
(``data/reference/README.md``). They are read as strings first so codes keep their leading
zeros, and the column names are already English; this module only types them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from workbench.paths import REFERENCE_DIR


def _read(name: str, reference_dir: Path | None = None) -> pd.DataFrame:
    path = (reference_dir or REFERENCE_DIR) / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: reference file missing (restore it from git)")
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


@cache
def atc_ddd() -> pd.DataFrame:
    """One row per (ATC code, route, DDD) as WHO lists it; ``ddd`` is NaN where WHO gives none."""
    df = _read("atc_ddd.csv")
    df["ddd"] = pd.to_numeric(df["ddd"].replace("", None), errors="raise")
    df["has_ddd"] = df["has_ddd"] == "1"
    return df


@cache
def atc_hierarchy() -> pd.DataFrame:
    df = _read("atc_hierarchy.csv")
    df["atc_level"] = df["atc_level"].astype(int)
    return df


@cache
def regions() -> pd.DataFrame:
    df = _read("dk_regions.csv")
    for col in ("n_municipalities", "population_2026q1", "population_2025q1"):
        df[col] = df[col].astype(int)
    return df


@cache
def municipalities() -> pd.DataFrame:
    """The 98 municipalities with 3-digit DST codes (as strings), region codes and populations."""
    df = _read("dk_municipalities.csv")
    for col in ("population_2026q1", "population_2025q1"):
        df[col] = df[col].astype(int)
    df["area_km2_2025"] = df["area_km2_2025"].astype(float)
    return df


@cache
def population_by_age_sex() -> pd.DataFrame:
    """National population by single year of age (0-105) and sex, FOLK1A 2025Q4."""
    df = _read("dk_population_single_age_sex.csv")
    for col in ("age", "male", "female", "total"):
        df[col] = df[col].astype(int)
    return df[["age", "male", "female", "total", "reference_date"]]


@cache
def prescribing_prevalence() -> pd.DataFrame:
    """Published Danish prescribing figures, each row with its source (see the README)."""
    return _read("dk_prescribing_prevalence.csv")


@cache
def general_practice() -> pd.DataFrame:
    return _read("dk_general_practice.csv")


def atc_ddd_index_version() -> str:
    """The WHO index snapshot the DDDs come from, recorded in provenance."""
    return str(atc_ddd()["who_index_snapshot"].iloc[0])
