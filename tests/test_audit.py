"""The audit log holds no person key, however one is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench import audit


@pytest.mark.parametrize("value", [
    "P123456789", "p123456789", "P123456789x", "xP123456789", "unit=p123456789&x=1",
    "0102031234", "010203-1234", "id0102031234", "0102031234567", 1020312345, 1020312345.0,
])
def test_anything_like_a_person_key_or_cpr_number_is_removed(value: object) -> None:
    assert audit.clean(value) == audit.REMOVED


@pytest.mark.parametrize("value", [
    "K025", "000042", "2024Q1", "R12-2024-06", "2024-06-01", "P12345678", 42, 3.5, True, None,
])
def test_ordinary_values_are_kept(value: object) -> None:
    assert audit.clean(value) == value


def test_a_logged_line_is_masked_in_every_field(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    audit.record("refused", profile="practice:000042", page="practice_insight",
                 unit="p123456789", parameters={"group": "x0102031234", "nested": ["P987654321"]},
                 path=log, reason="asked for P111111111x")
    text = log.read_text()
    for key in ("123456789", "0102031234", "987654321", "111111111"):
        assert key not in text
    line = audit.read(log)[0]
    assert line["unit"] == audit.REMOVED and line["reason"] == audit.REMOVED
    assert line["parameters"] == {"group": audit.REMOVED, "nested": [audit.REMOVED]}
    assert line["profile"] == "practice:000042"
