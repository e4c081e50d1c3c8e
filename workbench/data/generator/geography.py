"""Danish geography and population as the generator needs it: areas, municipal sizes, age shares.

Reference populations are FOLK1A (municipal totals 1 Jan 2025 and 2026; national single-age/sex
structure 2025Q4). The generator needs the population on 1 Jan of any first year, so each
municipality's total is carried back or forward with its own observed 2025->2026 growth (clipped,
so one odd year does not compound). No municipal age structure is public in our reference, so the
national single-age/sex shares are applied to each municipality with a mild urban/rural tilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data import reference
from workbench.data.generator.parameters import GeneratorParameters

MAX_AGE = 105
N_AGES = MAX_AGE + 1
FEMALE, MALE = 0, 1
# The single-age structure is FOLK1A 2025Q4 (1 Oct 2025); it is taken as the start of 2026.
STRUCTURE_YEAR = 2026


@dataclass(frozen=True)
class Geography:
    """The 98 municipalities in code order, with what the generator derives from them."""

    codes: np.ndarray  # 3-digit municipality codes (str)
    names: np.ndarray
    region: np.ndarray  # region code per municipality (str)
    landsdel: np.ndarray
    population_2025: np.ndarray
    growth: np.ndarray  # annual growth used to move the 2025 totals to other years
    density_z: np.ndarray  # standardised log density, clipped to +-1.5
    national_shares: np.ndarray  # (N_AGES, 2) national age/sex shares (STRUCTURE_YEAR), sum 1
    death: np.ndarray  # (N_AGES, 2) annual death probability

    @property
    def n(self) -> int:
        return len(self.codes)

    def population_on(self, year: int) -> np.ndarray:
        """Population on 1 Jan ``year`` per municipality (real 2025 size moved by its growth)."""
        return np.rint(self.population_2025 * (1.0 + self.growth) ** (year - 2025)).astype(np.int64)

    def national_population_on(self, year: int) -> float:
        return float(self.population_on(year).sum())

    def resolve_area(self, area: str) -> np.ndarray:
        """Municipality indices of ``area``: "nation", a region code or a municipality code."""
        area = str(area).strip()
        if area == "nation":
            return np.arange(self.n)
        if area in set(self.region):
            return np.flatnonzero(self.region == area)
        if area.startswith("0") and area.lstrip("0") in set(self.codes):
            area = area.lstrip("0")  # the 4-digit CPR/DAGI form, e.g. "0851"
        if area in set(self.codes):
            return np.flatnonzero(self.codes == area)
        regions = ", ".join(sorted(set(self.region)))
        raise ValueError(
            f"unknown area {area!r}: use 'nation', a region code ({regions}) or a 3-digit "
            "municipality code from data/reference/dk_municipalities.csv (e.g. '851' Aalborg, "
            "'101' København, '741' Samsø)"
        )

    def national_shares_on(self, year: int) -> np.ndarray:
        """National age/sex shares on 1 Jan ``year``: the reference cohorts moved in time.

        Going back, a cohort aged a in ``year`` is the reference cohort aged a + d divided by
        its survival over d years (migration ignored; ages whose cohort is past 105 keep the
        reference share); going forward, cohorts survive and the youngest ages repeat the
        reference's youngest. Keeps the simulated population from starting older than it was.
        """
        d = STRUCTURE_YEAR - year
        ages = np.arange(N_AGES)
        alive = 1.0 - self.death
        shares = np.empty_like(self.national_shares)
        for sex in (FEMALE, MALE):
            if d >= 0:
                survival = np.ones(N_AGES)
                for i in range(d):
                    survival *= alive[np.minimum(ages + i, MAX_AGE), sex]
                source = ages + d
                known = source <= MAX_AGE
                moved = self.national_shares[np.minimum(source, MAX_AGE), sex] / survival
                shares[:, sex] = np.where(known, moved, self.national_shares[:, sex])
            else:
                survival = np.ones(N_AGES)
                for i in range(1, -d + 1):
                    survival *= alive[np.maximum(ages - i, 0), sex]
                source = np.maximum(ages + d, 0)
                shares[:, sex] = self.national_shares[source, sex] * survival
        return shares / shares.sum()

    def age_sex_shares(
        self, municipality: int, params: GeneratorParameters, year: int
    ) -> np.ndarray:
        """Age/sex shares (N_AGES, 2) of a municipality on 1 Jan ``year``, with the urban tilt."""
        tilt = params.population.urban_tilt
        ages = np.arange(N_AGES)
        direction = np.zeros(N_AGES)
        direction[(ages >= tilt.young_ages[0]) & (ages <= tilt.young_ages[1])] = 1.0
        direction[(ages >= tilt.old_ages[0]) & (ages <= tilt.old_ages[1])] = -1.0
        factor = np.exp(tilt.strength * self.density_z[municipality] * direction)
        shares = self.national_shares_on(year) * factor[:, None]
        return shares / shares.sum()


def load_geography(params: GeneratorParameters) -> Geography:
    """Build the Geography from the reference CSVs (municipalities sorted by code)."""
    m = reference.municipalities().copy()
    m["code_int"] = m["municipality_code"].astype(int)
    m = m.sort_values("code_int").reset_index(drop=True)
    pop25 = m["population_2025q1"].to_numpy(np.int64)
    pop26 = m["population_2026q1"].to_numpy(np.int64)
    lo, hi = params.population.growth_clip
    growth = np.clip(pop26 / pop25 - 1.0, lo, hi)
    return Geography(
        codes=m["municipality_code"].to_numpy(str),
        names=m["municipality_name"].to_numpy(str),
        region=m["region_code"].to_numpy(str),
        landsdel=m["landsdel_code_dst"].to_numpy(str),
        population_2025=pop25,
        growth=growth,
        density_z=_density_z(pop25, m["area_km2_2025"].to_numpy(float)),
        national_shares=_national_shares(reference.population_by_age_sex()),
        death=death_probabilities(params),
    )


def death_probabilities(params: GeneratorParameters) -> np.ndarray:
    """(N_AGES, 2) annual death probability: Gompertz-Makeham, infant value at age 0, capped."""
    ages = np.arange(N_AGES)
    q = np.zeros((N_AGES, 2))
    for sex, col in (("F", FEMALE), ("M", MALE)):
        m = params.population.mortality[sex]
        q[:, col] = np.minimum(m.makeham + m.b * np.exp(m.c * ages), 0.6)
        q[0, col] = m.infant_q0
    return q


def _density_z(population: np.ndarray, area_km2: np.ndarray) -> np.ndarray:
    log_density = np.log(population / area_km2)
    mean = np.average(log_density, weights=population)
    sd = np.sqrt(np.average((log_density - mean) ** 2, weights=population))
    return np.clip((log_density - mean) / sd, -1.5, 1.5)


def _national_shares(pop: pd.DataFrame) -> np.ndarray:
    table = np.zeros((N_AGES, 2))
    ages = pop["age"].to_numpy()
    table[ages, FEMALE] = pop["female"].to_numpy(float)
    table[ages, MALE] = pop["male"].to_numpy(float)
    return table / table.sum()


def interpolate_by_age(curve: list[tuple[float, float]]) -> np.ndarray:
    """Values at ages 0..MAX_AGE from (age, value) anchors, linear between, flat beyond the ends."""
    xs, ys = zip(*curve, strict=True)
    return np.interp(np.arange(N_AGES), xs, ys)
