"""The exploration notebook: paired with its jupytext source, parameterisable, and it runs.

``notebooks/explore.py`` (jupytext percent format) is the committed source; ``explore.ipynb`` is
its pairing, kept without outputs so diffs stay readable and no figure leaves through git. The
notebook is executed with papermill, the way the batch runner executes pages, against a freshly
generated municipality: it must pick its practice and year from whatever data it is given.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

from workbench.paths import NOTEBOOKS_DIR, Dataset

SOURCE = NOTEBOOKS_DIR / "explore.py"
PAIRED = NOTEBOOKS_DIR / "explore.ipynb"
# `name: type = literal  # help`: what papermill can override and a form can be built from.
PARAMETER_LINE = re.compile(r"^(\w+): (str|int|float|bool) = (.+?)  # \S.*$")


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_ipynb_is_the_py_source_without_outputs() -> None:
    source = jupytext.read(SOURCE)
    paired = nbformat.read(PAIRED, as_version=4)
    assert [(c.cell_type, c.source) for c in paired.cells] == [
        (c.cell_type, c.source) for c in source.cells
    ], "explore.ipynb is out of date: run `jupytext --sync notebooks/explore.py`"
    for cell in _code_cells(paired):
        assert not cell.outputs and cell.execution_count is None, "strip the outputs"


def test_first_cell_holds_literal_parameters_with_help() -> None:
    first = jupytext.read(SOURCE).cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    lines = first.source.splitlines()
    assert lines
    for line in lines:
        match = PARAMETER_LINE.match(line)
        assert match, f"not `name: type = value  # help`: {line!r}"
        value = ast.literal_eval(match.group(3))
        assert type(value).__name__ == match.group(2), line
    names = [PARAMETER_LINE.match(line).group(1) for line in lines]  # type: ignore[union-attr]
    assert {"data_dir", "practice"} <= set(names)


@pytest.mark.slow
def test_explore_runs_on_a_generated_municipality(
    municipality_dataset: Dataset, tmp_path: Path
) -> None:
    notebook = tmp_path / "explore.ipynb"
    nbformat.write(jupytext.read(SOURCE), notebook)
    executed = papermill.execute_notebook(
        str(notebook),
        str(tmp_path / "explore.out.ipynb"),
        parameters={"data_dir": str(municipality_dataset.root)},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOKS_DIR),
    )
    outputs = [out for cell in _code_cells(executed) for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "the plot is missing"
