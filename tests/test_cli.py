"""The command line: typed options, clear errors with exit status 2, never a traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from workbench.publish.cli import app, parse_years

runner = CliRunner()


def test_parse_years() -> None:
    assert parse_years("2020:2025") == (2020, 2025)
    assert parse_years("2024") == (2024, 2024)
    for bad in ("2025:2020", "20-25", "x", "2020:2021:2022"):
        with pytest.raises(typer.BadParameter):
            parse_years(bad)


def test_definitions_check() -> None:
    result = runner.invoke(app, ["definitions", "check"])
    assert result.exit_code == 0, result.output
    assert "opioids" in result.output and "definitions OK" in result.output


def test_info_on_missing_dataset_is_a_clear_error(tmp_path) -> None:
    result = runner.invoke(app, ["data", "info", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
