"""parameters/ is validated on load: each kind of mistake gives a located, actionable error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workbench.definitions import DefinitionsError, load_definitions
from workbench.paths import PARAMETERS_DIR


@pytest.fixture
def params(tmp_path: Path) -> Path:
    """A writable copy of parameters/ to break in each test."""
    target = tmp_path / "parameters"
    shutil.copytree(PARAMETERS_DIR, target)
    return target


def edit(params: Path, name: str, old: str, new: str) -> None:
    path = params / name
    text = path.read_text()
    assert old in text, f"fixture text {old!r} not in {name}"
    path.write_text(text.replace(old, new, 1))


def test_shipped_definitions_load() -> None:
    defs = load_definitions()
    assert set(defs.themes) == {"psychotropics", "analgesics"}
    assert defs.groups_of("analgesics") == ["opioids", "paracetamol", "nsaids", "gabapentinoids"]
    assert defs.group_for_atc("N02AX02") == "opioids"  # tramadol
    assert defs.group_for_atc("N05AN01") is None  # lithium is not an antipsychotic here
    assert defs.group_for_atc("N05AH04") == "antipsychotics"  # quetiapine
    # WHO 2026 moved the gabapentinoids to N02BF; old codes still classify the same.
    assert defs.group_for_atc("N02BF02") == "gabapentinoids"
    assert defs.group_for_atc("N03AX16") == "gabapentinoids"
    assert defs.group_for_atc("N02BE01") == "paracetamol"
    assert defs.group_for_atc("C09AA05") is None
    assert defs.is_addictive("N05CF01") and defs.is_addictive("N06BA04")
    assert not defs.is_addictive("N06BA09")  # atomoxetine
    assert not defs.is_addictive("N06AB06")
    assert defs.is_depot("patch") and not defs.is_depot("tablet")
    assert [defs.age_band(a) for a in (0, 17, 18, 64, 65, 80, 104)] == [
        "0-17",
        "0-17",
        "18-24",
        "45-64",
        "65-79",
        "80+",
        "80+",
    ]


def test_bad_atc_prefix_is_located(params: Path) -> None:
    edit(params, "groups.yaml", 'atc_include: ["N02A"]', 'atc_include: ["N2A"]')
    with pytest.raises(DefinitionsError) as err:
        load_definitions(params)
    message = str(err.value)
    assert "groups.yaml" in message and "groups.opioids.atc_include.0" in message
    assert "an ATC prefix looks like" in message


def test_prefix_matching_no_code_is_rejected(params: Path) -> None:
    edit(params, "groups.yaml", 'atc_include: ["N02A"]', 'atc_include: ["N02Z"]')
    with pytest.raises(
        DefinitionsError, match=r"groups.opioids.atc_include has 'N02Z'.*matches no"
    ):
        load_definitions(params)


def test_code_in_two_groups_is_rejected(params: Path) -> None:
    edit(params, "groups.yaml", 'atc_exclude: ["N02BF"]', "atc_exclude: []")
    with pytest.raises(
        DefinitionsError, match=r"N02BF0\d is in groups 'paracetamol' and 'gabapentinoids'"
    ):
        load_definitions(params)


def test_theme_naming_unknown_group(params: Path) -> None:
    edit(
        params, "groups.yaml", '"stimulants", "antidepressants"]', '"stimulant", "antidepressants"]'
    )
    with pytest.raises(
        DefinitionsError, match=r"theme 'psychotropics' names unknown group\(s\) \['stimulant'\]"
    ):
        load_definitions(params)


def test_unknown_key_is_named(params: Path) -> None:
    edit(params, "groups.yaml", '    atc_include: ["N06A"]', '    atc_includes: ["N06A"]')
    with pytest.raises(DefinitionsError) as err:
        load_definitions(params)
    assert "groups.antidepressants.atc_includes" in str(err.value)
    assert "unknown key" in str(err.value)


def test_unquoted_number_like_id_cannot_slip_through(params: Path) -> None:
    # YAML 1.1 reads `no` as False: a label that became a boolean is an error, not a silent label.
    edit(params, "groups.yaml", '{da: "NSAID", en: "NSAIDs"}', "{da: no, en: NSAIDs}")
    with pytest.raises(DefinitionsError, match=r"groups.nsaids.label.da"):
        load_definitions(params)


def test_age_band_gap(params: Path) -> None:
    edit(params, "age_bands.yaml", '{id: "18-24", min: 18', '{id: "18-24", min: 19')
    with pytest.raises(DefinitionsError, match=r"age_bands\[1\].*starts at 19, expected 18"):
        load_definitions(params)


def test_missing_file_and_bad_yaml(params: Path) -> None:
    (params / "age_bands.yaml").unlink()
    with pytest.raises(DefinitionsError, match="age_bands.yaml: file not found"):
        load_definitions(params)
    (params / "age_bands.yaml").write_text("age_bands: [ {id: 0-17\n")
    with pytest.raises(DefinitionsError, match="not valid YAML"):
        load_definitions(params)


# --- parameters/risks.yaml (issue 7) ------------------------------------------------------


def test_shipped_risks_load() -> None:
    defs = load_definitions()
    risk = defs.risks["opioid_benzodiazepine"]
    assert risk.kind == "concurrent_use" and risk.classes == ["opioids", "benzodiazepines_z"]
    assert risk.direction == "low_is_good" and risk.source and risk.rationale
    assert defs.risk_classes["benzodiazepines_z"].matches("N05CF01")  # zopiclone
    assert not defs.risk_classes["stimulants"].matches("N06BA09")  # atomoxetine
    assert not defs.risk_classes["antipsychotics"].matches("N05AN01")  # lithium
    assert all(r.reviewed.year >= 2026 for r in defs.risks.values())


def test_risk_naming_unknown_class(params: Path) -> None:
    edit(params, "risks.yaml", 'classes: ["antipsychotics"]', 'classes: ["antipsychotic"]')
    with pytest.raises(DefinitionsError, match=r"risk 'antipsychotic_polypharmacy' names unknown"):
        load_definitions(params)


def test_risk_without_source_is_located(params: Path) -> None:
    edit(params, "risks.yaml", '    source: "NCQA HEDIS', '    sources: "NCQA HEDIS')
    with pytest.raises(DefinitionsError) as err:
        load_definitions(params)
    message = str(err.value)
    assert "risks.yaml" in message
    assert "antipsychotic_polypharmacy.multiple_substances.source" in message


def test_risk_kind_parameters_are_checked(params: Path) -> None:
    edit(params, "risks.yaml", "min_overlap_days: 90", "min_overlap_days: 0")
    with pytest.raises(DefinitionsError, match=r"min_overlap_days"):
        load_definitions(params)


def test_risk_class_prefix_must_match_a_code(params: Path) -> None:
    edit(params, "risks.yaml", 'atc_include: ["N05BA", "N05CD", "N05CF"]',
         'atc_include: ["N05BA", "N05CD", "N05CZ"]')
    with pytest.raises(DefinitionsError, match=r"benzodiazepines_z.atc_include has 'N05CZ'"):
        load_definitions(params)
