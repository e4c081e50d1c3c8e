"""The national layout of general practices and their quality clusters (klynger).

The layout is built for the whole nation from the seed and the reference geography only, never
from the area being generated: a municipality run then holds exactly that municipality's part of
the national layout, so practice and cluster ids, names and sizes agree between runs.

Practices are placed in each municipality until their capacity (GPs x listed persons per GP)
covers its population; solo and partnership practices are about equal in number (PLO 2019).
Clusters follow municipalities: large ones are split, small ones joined within their landsdel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data.generator.geography import Geography
from workbench.data.generator.parameters import Clusters, GeneratorParameters
from workbench.data.generator.streams import stream

SOLO_NAMES = (
    "Lægeklinikken {street} {number}",
    "Lægepraksis {street} {number}",
    "Lægen {street} {number}",
)
GROUP_NAMES = (
    "Lægerne {street}",
    "Lægehuset {street}",
    "Lægecentret {street}",
    "Lægehuset i {town}",
    "Lægerne i {town}",
    "{town} Lægecenter",
)


@dataclass(frozen=True)
class PracticeLayout:
    """All practices (sorted by municipality) and clusters of the nation."""

    practice_id: np.ndarray
    practice_name: np.ndarray
    municipality: np.ndarray  # index into Geography
    n_gps: np.ndarray
    capacity: np.ndarray  # expected list size, the weight when persons choose a practice
    cluster: np.ndarray  # index into the cluster arrays
    cluster_id: np.ndarray
    cluster_name: np.ndarray
    cluster_region: np.ndarray
    choice_keys: np.ndarray  # municipality + cumulative capacity share, for sample_practice

    @property
    def n(self) -> int:
        return len(self.practice_id)

    def sample_practice(self, municipality: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A practice in each given municipality, chosen proportionally to capacity."""
        idx = np.searchsorted(self.choice_keys, municipality + u, side="right")
        return np.minimum(idx, self.n - 1)

    def practices_table(self, geo: Geography, keep: np.ndarray) -> pd.DataFrame:
        """The contract's practices table for the practices flagged in ``keep``."""
        m = self.municipality[keep]
        return pd.DataFrame(
            {
                "practice_id": self.practice_id[keep],
                "practice_name": self.practice_name[keep],
                "municipality_code": geo.codes[m],
                "region_code": geo.region[m],
                "cluster_id": self.cluster_id[self.cluster[keep]],
                "n_gps": self.n_gps[keep].astype(np.int32),
            }
        )

    def clusters_table(self, keep_clusters: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "cluster_id": self.cluster_id[keep_clusters],
                "cluster_name": self.cluster_name[keep_clusters],
                "region_code": self.cluster_region[keep_clusters],
            }
        )


def build_layout(geo: Geography, params: GeneratorParameters, seed: int) -> PracticeLayout:
    """Place practices in every municipality and group them into clusters (deterministic)."""
    rng = stream(seed, "layout")
    cfg = params.practices
    sizes = np.array([int(k) for k in cfg.n_gps])
    size_p = np.array(list(cfg.n_gps.values()))
    municipality, n_gps, capacity, names = [], [], [], []
    for m in range(geo.n):
        per_gp = cfg.list_per_gp[geo.region[m]]
        gps = _practice_sizes(
            rng, geo.population_2025[m], per_gp, cfg.solo_list_factor, sizes, size_p
        )
        jitter = rng.uniform(*cfg.capacity_jitter, size=len(gps))
        cap = gps * per_gp * np.where(gps == 1, cfg.solo_list_factor, 1.0) * jitter
        municipality.append(np.full(len(gps), m))
        n_gps.append(gps)
        capacity.append(cap)
        names.extend(_practice_names(rng, gps, geo.names[m], cfg.streets))
    municipality = np.concatenate(municipality)
    n_gps = np.concatenate(n_gps)
    capacity = np.concatenate(capacity)
    ids = rng.choice(999_999, size=len(n_gps), replace=False) + 1
    cluster, cluster_names, cluster_region = _clusters(
        geo, municipality, capacity, params.clusters, rng
    )
    return PracticeLayout(
        practice_id=np.array([f"{i:06d}" for i in ids]),
        practice_name=np.array(names),
        municipality=municipality,
        n_gps=n_gps,
        capacity=capacity,
        cluster=cluster,
        cluster_id=np.array([f"K{i + 1:03d}" for i in range(len(cluster_names))]),
        cluster_name=np.array(cluster_names),
        cluster_region=np.array(cluster_region),
        choice_keys=_choice_keys(municipality, capacity),
    )


def _practice_sizes(
    rng: np.random.Generator,
    population: int,
    per_gp: int,
    solo_factor: float,
    sizes: np.ndarray,
    size_p: np.ndarray,
) -> np.ndarray:
    """GPs per practice, drawn until the practices can list the municipality's population."""
    drawn: list[int] = []
    covered = 0.0
    while covered < population or not drawn:
        gps = int(rng.choice(sizes, p=size_p))
        drawn.append(gps)
        covered += gps * per_gp * (solo_factor if gps == 1 else 1.0)
    return np.array(drawn)


def _practice_names(
    rng: np.random.Generator, n_gps: np.ndarray, town: str, streets: list[str]
) -> list[str]:
    """Danish-style practice names, unique within the municipality."""
    names: list[str] = []
    used: set[str] = set()
    street_order = rng.permutation(len(streets))
    for i, gps in enumerate(n_gps):
        street = streets[street_order[i % len(streets)]]
        number = int(rng.integers(1, 120))
        patterns = SOLO_NAMES if gps == 1 else GROUP_NAMES
        name = patterns[int(rng.integers(len(patterns)))].format(
            street=street, number=number, town=town
        )
        while name in used:
            name = f"Lægerne {street} {number}"
            number += 2
        used.add(name)
        names.append(name)
    return names


def _choice_keys(municipality: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Per practice: its municipality index plus its cumulative capacity share within it.

    Practices are sorted by municipality, so the keys increase, and one searchsorted on
    ``municipality + u`` picks a practice in that municipality proportionally to capacity.
    """
    keys = np.empty(len(capacity))
    for m in np.unique(municipality):
        sel = municipality == m
        cum = np.cumsum(capacity[sel])
        keys[sel] = m + cum / cum[-1]
    return keys


def _clusters(
    geo: Geography,
    municipality: np.ndarray,
    capacity: np.ndarray,
    cfg: Clusters,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Assign every practice to a cluster; returns (cluster per practice, names, regions)."""
    cluster = np.full(len(municipality), -1)
    names: list[str] = []
    regions: list[str] = []
    order = sorted(range(geo.n), key=lambda m: (geo.region[m], geo.landsdel[m], int(geo.codes[m])))
    for (region, _), members in _by_landsdel(geo, order):
        for muni_group, parts in _cluster_plan(geo, members, cfg):
            if parts == 1:
                sel = np.isin(municipality, muni_group)
                cluster[sel] = len(names)
                names.append("Klynge " + _join_names([geo.names[m] for m in muni_group]))
                regions.append(region)
                continue
            m = muni_group[0]
            sel = np.flatnonzero(municipality == m)
            shuffled = rng.permutation(sel)
            share = np.cumsum(capacity[shuffled]) / capacity[shuffled].sum()
            part = np.minimum((share * parts - 1e-9).astype(int), parts - 1)
            for p in range(parts):
                cluster[shuffled[part == p]] = len(names)
                label = cfg.compass[p] if parts <= len(cfg.compass) else str(p + 1)
                names.append(f"Klynge {geo.names[m]} {label}")
                regions.append(region)
    return cluster, names, regions


def _by_landsdel(geo: Geography, order: list[int]) -> list[tuple[tuple[str, str], list[int]]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for m in order:
        groups.setdefault((geo.region[m], geo.landsdel[m]), []).append(m)
    return list(groups.items())


def _cluster_plan(geo: Geography, members: list[int], cfg: Clusters) -> list[tuple[list[int], int]]:
    """(municipalities, number of clusters) for one landsdel: split the large, join the small."""
    plan: list[tuple[list[int], int]] = []
    pending: list[int] = []
    pop = geo.population_2025
    for m in members:
        if pop[m] >= cfg.split_above:
            plan.append(([m], max(2, int(round(pop[m] / cfg.target_listed)))))
        elif pop[m] >= cfg.join_below:
            plan.append(([m], 1))
        else:
            pending.append(m)
            if pop[pending].sum() >= cfg.join_below:
                plan.append((pending, 1))
                pending = []
    if pending:
        joinable = [i for i, (_, parts) in enumerate(plan) if parts == 1]
        if not joinable:
            plan.append((pending, 1))
        else:
            smallest = min(joinable, key=lambda i: pop[plan[i][0]].sum())
            plan[smallest] = (plan[smallest][0] + pending, 1)
    return plan


def _join_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " og " + names[-1]
