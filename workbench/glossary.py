"""One glossary of user-facing words in Danish and English.

Pages, dashboards, CSV headers and the CLI take every label from here so a term is translated
once and the two languages never drift. Drug-group and flag labels stay beside their
definitions in ``groups.yaml`` and are merged in, so a new group needs no glossary edit.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from workbench.definitions import SAFE_LOADER, DefinitionsError, Label, load_definitions
from workbench.paths import PARAMETERS_DIR

LANGUAGES = ("da", "en")
DEFAULT_LANGUAGE = "da"


class GlossaryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    measures: dict[str, Label]
    levels: dict[str, Label]
    pages: dict[str, Label]
    breakdowns: dict[str, Label]
    values: dict[str, Label]
    ui: dict[str, Label] = {}  # texts of pages and dashboards (workbench.pages)


class Glossary:
    """Look up a label by section and key: ``glossary().label("measures", "patients", "en")``."""

    def __init__(self, sections: dict[str, dict[str, Label]]):
        self.sections = sections

    def label(self, section: str, key: str, language: str = DEFAULT_LANGUAGE) -> str:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, not {language!r}")
        try:
            return self.sections[section][key](language)
        except KeyError:
            raise KeyError(
                f"no glossary entry {section}.{key}; add it to parameters/glossary.yaml"
            ) from None


@cache
def glossary(parameters_dir: Path = PARAMETERS_DIR) -> Glossary:
    path = parameters_dir / "glossary.yaml"
    try:
        parsed = GlossaryFile.model_validate(yaml.load(path.read_text(encoding="utf-8"),
                                                             Loader=SAFE_LOADER))
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionsError(f"{path}: cannot read the glossary: {exc}") from exc
    except ValidationError as exc:
        where = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors())
        raise DefinitionsError(f"{path}: invalid glossary: {where}") from None
    defs = load_definitions(parameters_dir)
    sections = {name: dict(getattr(parsed, name)) for name in GlossaryFile.model_fields}
    sections["groups"] = {gid: g.label for gid, g in defs.groups.items()}
    sections["themes"] = {tid: t.label for tid, t in defs.themes.items()}
    sections["flags"] = {"addictive": defs.addictive.label, "depot": defs.depot.label}
    return Glossary(sections)
