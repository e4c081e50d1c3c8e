"""Where pages read from: one answer store per dataset and process, opened read-only.

A page never computes a figure: every figure is a slice of the dataset's answer store
(:mod:`workbench.answers`). A store that is missing, or was built from other data, definitions or
code, is refused here with what to run — not worked around by computing — so a served page is
either fast and right or says plainly that the store must be built.
"""

from __future__ import annotations

from pathlib import Path

from workbench.answers import AnswerStore, StoreError, current, store_path
from workbench.answers.local import store_key, stored_key
from workbench.engine import Workbench
from workbench.engine.marts import data_fingerprint
from workbench.paths import Dataset

_stores: dict[Path, AnswerStore] = {}


def database_path(session: Workbench) -> Path | None:
    """The DuckDB file a session reads (None: in memory, or another backend)."""
    if session.con.name != "duckdb":
        return None
    found = session.con.con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return Path(found[0]).resolve() if found and found[0] else None


def store_for(dataset: Dataset, session: Workbench | None = None) -> AnswerStore:
    """The dataset's answer store, once per process; a :class:`StoreError` when it is missing
    or stale (``session``: an open session on the dataset, whose connection tells the data's
    fingerprint)."""
    path = store_path(dataset).resolve()
    found = _stores.get(path)
    if found is None:
        if session is not None:
            fingerprint = data_fingerprint(session.con)
            fresh = fingerprint is not None and stored_key(path) == store_key(
                fingerprint, session.definitions)
        else:
            fresh = current(dataset)
        if not fresh:
            raise StoreError(
                f"{path}: no current answer store for {dataset.root} (missing, or built from "
                f"other data, definitions or code); build it with `workbench data build --data "
                f"{dataset.root}`")
        found = _stores[path] = AnswerStore(path)
    return found


def store_of(session: Workbench) -> AnswerStore:
    """The answer store of the dataset a session reads."""
    path = database_path(session)
    if path is None:
        raise StoreError("pages read a dataset's answer store; this session reads no dataset "
                         "folder's database")
    return store_for(Dataset.at(path.parent), session)


def forget_stores() -> None:
    """Close every store of this process (tests that rebuild a dataset under one path)."""
    for store in _stores.values():
        store.close()
    _stores.clear()
