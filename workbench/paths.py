"""Where things live: the project tree and the layout of one dataset folder.

Every command takes ``--data DIR`` so several generated or loaded registers can live side by
side; this module is the one place that knows what a dataset folder holds, so the generator,
the loader and the engine never disagree about file names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMETERS_DIR = PROJECT_ROOT / "parameters"
REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def shown(path: Path | str) -> str:
    """A path as a published file names it: relative to the project when inside it, else by
    its own name only. Sites and manifests travel; the machine's folders must not go with them
    (a dataset ``data/nation`` is named so, one elsewhere by its folder's name)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return resolved.name


def default_data_dir() -> Path:
    """The dataset folder used when no ``--data`` is given (``WORKBENCH_DATA`` overrides)."""
    return Path(os.environ.get("WORKBENCH_DATA", PROJECT_ROOT / "data")).resolve()


@dataclass(frozen=True)
class Dataset:
    """One dataset folder: the register as files, the database built from it, and its reports.

    ``register/`` holds the six tables of the schema contract (Parquet or CSV) as the generator
    wrote them or as an extract was delivered; ``ground_truth/`` holds what the generator built
    in (propensities, planted outliers) and is never read by the engine; ``workbench.duckdb`` is
    the database every query runs on.
    """

    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Dataset:
        return cls(Path(root).resolve() if root is not None else default_data_dir())

    @property
    def register_dir(self) -> Path:
        return self.root / "register"

    @property
    def ground_truth_dir(self) -> Path:
        return self.root / "ground_truth"

    @property
    def database(self) -> Path:
        return self.root / "workbench.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def answers(self) -> Path:
        """The answer store (:mod:`workbench.answers`): every answer a page can show,
        unsuppressed, so beside the register (as secret as it), never inside a site."""
        return self.root / "answers.duckdb"

    def exists(self) -> bool:
        return self.database.exists()
