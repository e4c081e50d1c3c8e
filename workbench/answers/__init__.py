"""The answer store: every answer a page can show, computed once for all units and choices.

Pages, the batch and the dashboards only read slices of it (:class:`AnswerStore`); the
on-demand engine (:mod:`workbench.engine`) stays the definition and the analyst's tool. Built
set-based over any Ibis backend (:func:`build_answers`); a dataset folder's store is
``DATA/answers.duckdb`` (:func:`build_store`).
"""

from workbench.answers.build import Progress, build_answers
from workbench.answers.local import StoreError, StoreReport, build_store, current, store_path
from workbench.answers.store import AnswerStore, NotInStore

__all__ = [
    "AnswerStore",
    "NotInStore",
    "Progress",
    "StoreError",
    "StoreReport",
    "build_answers",
    "build_store",
    "current",
    "store_path",
]
