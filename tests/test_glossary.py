from __future__ import annotations

import pytest

from workbench.glossary import glossary


def test_labels_in_both_languages_default_danish() -> None:
    g = glossary()
    assert g.label("measures", "patients_per_1000") == "Patienter pr. 1.000 sikrede"
    assert g.label("measures", "patients_per_1000", "en") == "Patients per 1,000 listed"
    assert g.label("groups", "opioids", "en") == "Opioids"  # merged from groups.yaml
    assert g.label("pages", "cluster_insight") == "Klyngeindblik"


def test_every_entry_has_both_languages() -> None:
    for section, entries in glossary().sections.items():
        for key, label in entries.items():
            assert label.da.strip() and label.en.strip(), f"{section}.{key}"


def test_missing_entry_says_where_to_add_it() -> None:
    with pytest.raises(KeyError, match="add it to parameters/glossary.yaml"):
        glossary().label("measures", "nonexistent")
    with pytest.raises(ValueError, match="language"):
        glossary().label("measures", "patients", "sv")
