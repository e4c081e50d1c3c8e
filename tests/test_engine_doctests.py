"""The examples in the engine's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "workbench.engine",
    "workbench.engine.api",
    "workbench.engine.months",
    "workbench.engine.peers",
    "workbench.engine.periods",
    "workbench.engine.persons",
    "workbench.engine.registers",
    "workbench.engine.units",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
