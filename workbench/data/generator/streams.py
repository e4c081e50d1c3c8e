"""Deterministic random streams, one per purpose and unit of work.

Every random draw comes from a numpy Generator seeded with ``SeedSequence([seed, purpose, *keys])``.
Keying streams by purpose and by municipality (rather than drawing everything from one stream in
sequence) is what makes the national practice layout identical whatever area is generated, and
makes a municipality's starting population the same in a municipality run and a national run:
a stream's draws never depend on how much another part of the run consumed.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {
    "layout": 1,
    "catalogue": 2,
    "propensity": 3,
    "population": 4,
    "dynamics": 5,
    "treatment": 6,
}


def stream(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """A fresh generator for ``purpose`` (see PURPOSES) and integer ``keys`` (a municipality...)."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, PURPOSES[purpose], *keys]))
    )
