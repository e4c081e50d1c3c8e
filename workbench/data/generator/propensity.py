"""Practice- and cluster-level prescribing propensities, with planted outliers (ground truth).

Real practices differ in how readily they prescribe, and the workbench exists to show that. Each
(practice, group) and (cluster, group) gets a lognormal multiplier with mean 1 on the rate of
GP-prescribed treatment starts; a few practices and clusters per group are set to clearly high or
low values so that analysts (and tests) can check the workbench finds them. Drawn for the whole
nation from its own stream, so an area run carries the same propensities as the nation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data.generator.parameters import GeneratorParameters
from workbench.data.generator.practices import PracticeLayout
from workbench.data.generator.streams import stream

HIGH, NONE, LOW = 1, 0, -1


@dataclass(frozen=True)
class Propensities:
    groups: list[str]
    practice: np.ndarray  # (n_practices, n_groups), the practice's own multiplier
    cluster: np.ndarray  # (n_clusters, n_groups)
    practice_outlier: np.ndarray  # HIGH / NONE / LOW, same shape as practice
    cluster_outlier: np.ndarray

    def effective(self, layout: PracticeLayout) -> np.ndarray:
        """The multiplier applied to a practice's listed persons: practice x its cluster."""
        return self.practice * self.cluster[layout.cluster]

    def practice_table(self, layout: PracticeLayout, keep: np.ndarray) -> pd.DataFrame:
        """Ground truth per (practice, group) for the practices flagged in ``keep``."""
        eff = self.effective(layout)
        idx = np.flatnonzero(keep)
        n_groups = len(self.groups)
        rows = np.repeat(idx, n_groups)
        cols = np.tile(np.arange(n_groups), len(idx))
        return pd.DataFrame(
            {
                "practice_id": layout.practice_id[rows],
                "cluster_id": layout.cluster_id[layout.cluster[rows]],
                "group": np.array(self.groups)[cols],
                "practice_multiplier": self.practice[rows, cols],
                "cluster_multiplier": self.cluster[layout.cluster[rows], cols],
                "effective_multiplier": eff[rows, cols],
                "outlier": _direction(self.practice_outlier[rows, cols]),
            }
        )

    def cluster_table(self, layout: PracticeLayout, keep_clusters: np.ndarray) -> pd.DataFrame:
        idx = np.flatnonzero(keep_clusters)
        n_groups = len(self.groups)
        rows = np.repeat(idx, n_groups)
        cols = np.tile(np.arange(n_groups), len(idx))
        return pd.DataFrame(
            {
                "cluster_id": layout.cluster_id[rows],
                "group": np.array(self.groups)[cols],
                "cluster_multiplier": self.cluster[rows, cols],
                "outlier": _direction(self.cluster_outlier[rows, cols]),
            }
        )


def _direction(flags: np.ndarray) -> np.ndarray:
    out = np.full(len(flags), None, dtype=object)
    out[flags == HIGH] = "high"
    out[flags == LOW] = "low"
    return out


def draw_propensities(
    layout: PracticeLayout, params: GeneratorParameters, seed: int
) -> Propensities:
    """Lognormal multipliers (mean 1) per practice and cluster and group, outliers planted."""
    rng = stream(seed, "propensity")
    cfg = params.propensity
    groups = list(params.groups)
    n_clusters = len(layout.cluster_id)
    practice = _lognormal(rng, cfg.practice_sigma, (layout.n, len(groups)))
    cluster = _lognormal(rng, cfg.cluster_sigma, (n_clusters, len(groups)))
    practice_flag = np.zeros(practice.shape, dtype=np.int8)
    cluster_flag = np.zeros(cluster.shape, dtype=np.int8)
    po, co = cfg.practice_outliers, cfg.cluster_outliers
    n_practice_outliers = int(round(po.share * layout.n))
    for g in range(len(groups)):
        chosen = rng.choice(layout.n, size=n_practice_outliers, replace=False)
        high = rng.random(n_practice_outliers) < po.high_share
        practice[chosen, g] = np.where(
            high, rng.uniform(*po.high_range, size=len(chosen)), po.low_value
        )
        practice_flag[chosen, g] = np.where(high, HIGH, LOW)
        chosen = rng.choice(n_clusters, size=co.per_group, replace=False)
        high = np.arange(co.per_group) % 2 == int(rng.integers(2))
        cluster[chosen, g] = np.where(
            high, rng.uniform(*co.high_range, size=len(chosen)), co.low_value
        )
        cluster_flag[chosen, g] = np.where(high, HIGH, LOW)
    return Propensities(groups, practice, cluster, practice_flag, cluster_flag)


def _lognormal(rng: np.random.Generator, sigma: float, shape: tuple[int, int]) -> np.ndarray:
    return rng.lognormal(-0.5 * sigma**2, sigma, size=shape)
