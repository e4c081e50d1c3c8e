"""A plausible Danish-style product catalogue (varenumre) for every in-scope substance with a DDD.

No public Danish product register is in our reference data, so products are generic: the Danish
substance name and a maker ('Sertralin "Teva"'), forms matched to the WHO route of the DDD, typical
strengths and several pack sizes. The substances that matter for prescribing get hand-written
forms, strengths and packs (``catalogue.substances`` in generator.yaml); every other in-scope
substance gets one default form per WHO route with strengths at round fractions of its DDD.

DDD per pack = amount per pack / WHO DDD of the product's route, in milligrams:
tablets, capsules, suppositories, injections: strength x pack size; oral solutions: mg/ml x ml;
nasal sprays: mcg per dose x doses; patches: mcg/h x 24 h x days worn x patches (e.g. fentanyl
25 mcg/h = 0.6 mg/day against a TD DDD of 1.2 mg: 0.5 DDD per day of wear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.data import reference
from workbench.data.generator.parameters import (
    Catalogue,
    FormSpec,
    GeneratorParameters,
    GeneratorParametersError,
)
from workbench.data.generator.streams import stream
from workbench.data.schema import TABLES_BY_NAME
from workbench.definitions import Definitions

TO_MG = {"g": 1000.0, "mg": 1.0, "mcg": 0.001}
SUFFIXES = (
    ("ine", "in"),
    ("one", "on"),
    ("ole", "ol"),
    ("ide", "id"),
    ("ate", "at"),
    ("ene", "en"),
)


@dataclass(frozen=True)
class RouteDDD:
    route: str
    ddd_mg: float
    depot: bool


def build_catalogue(
    params: GeneratorParameters, definitions: Definitions, seed: int
) -> pd.DataFrame:
    """The products table (contract columns plus the helper columns the generator uses).

    Helper columns: ``group``, ``ddd_per_unit`` (DDD in one tablet, ml, patch, dose or ampoule),
    ``unit_days`` (days one unit lasts: 1, or the wear time of a patch, the interval of a depot
    injection), ``form_weight`` (how often the form is chosen for its substance).
    """
    cat = params.catalogue
    _check_forms(cat, definitions)
    routes = _route_ddds(definitions)
    _check_used_substances(params, routes, definitions)
    rng = stream(seed, "catalogue")
    rows: list[dict] = []
    for atc in sorted(routes):
        name = danish_name(atc, routes[atc][0][0], cat)
        for form, spec in _forms_for(atc, routes[atc], cat):
            ddd = _ddd_for_form(routes[atc], cat.form_routes[form], form)
            if ddd is None:
                raise GeneratorParametersError(
                    f"catalogue.substances.{atc}: form {form!r} needs a WHO DDD for route "
                    f"{cat.form_routes[form]!r}, which {atc} does not have"
                )
            rows.extend(_products(rng, atc, name, form, spec, ddd, cat, definitions))
    products = pd.DataFrame(rows)
    ids = rng.choice(999_999, size=len(products), replace=False) + 1
    products.insert(0, "product_id", [f"{i:06d}" for i in ids])
    return products


def contract_columns() -> list[str]:
    """The products table's columns, from the one schema contract the loader also checks."""
    return list(TABLES_BY_NAME["products"].names)


def danish_name(atc: str, english: str, cat: Catalogue) -> str:
    """The substance name in Danish spelling where a simple rule or the YAML gives it.

    >>> from workbench.data.generator.parameters import load_parameters
    >>> cat = load_parameters().catalogue
    >>> [danish_name(a, n, cat) for a, n in [("N06AB06", "sertraline"), ("N02AA05", "oxycodone")]]
    ['Sertralin', 'Oxycodon']
    """
    if atc in cat.danish_names:
        return cat.danish_names[atc]
    words = []
    english = english.replace("ic acid", "syre").replace(", combinations", " (kombination)")
    for word in english.replace(" and ", " og ").split(" "):
        for suffix, replacement in SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix) + 2:
                word = word[: -len(suffix)] + replacement
                break
        words.append(word)
    name = " ".join(words)
    return name[:1].upper() + name[1:]


def _route_ddds(definitions: Definitions) -> dict[str, list[tuple[str, RouteDDD]]]:
    """(english name, RouteDDD) rows per in-scope ATC code with a DDD in a mass unit."""
    atc = reference.atc_ddd()
    out: dict[str, list[tuple[str, RouteDDD]]] = {}
    for row in atc[atc["has_ddd"]].itertuples():
        if definitions.group_for_atc(row.atc_code) is None or row.ddd_unit not in TO_MG:
            continue
        route = RouteDDD(row.adm_route, row.ddd * TO_MG[row.ddd_unit], "depot" in row.who_note)
        out.setdefault(row.atc_code, []).append((row.substance_name, route))
    return out


def _ddd_for_form(routes: list[tuple[str, RouteDDD]], route: str, form: str) -> float | None:
    """The WHO DDD (mg) for a form: its route's DDD, the depot row for depot injections."""
    want_depot = form == "depot injection"
    candidates = [r for _, r in routes if r.route == route]
    matching = [r for r in candidates if r.depot == want_depot] or candidates
    return matching[0].ddd_mg if matching else None


def _forms_for(
    atc: str, routes: list[tuple[str, RouteDDD]], cat: Catalogue
) -> list[tuple[str, FormSpec]]:
    """The forms of a substance: from the YAML, or one default form per WHO route."""
    if atc in cat.substances:
        return list(cat.substances[atc].forms.items())
    forms: list[tuple[str, FormSpec]] = []
    seen: set[str] = set()
    for _, r in routes:
        if r.route not in cat.route_forms:
            continue  # e.g. loxapine inhalation powder: no such form in the contract
        form = "depot injection" if r.route == "P" and r.depot else cat.route_forms[r.route]
        if form in seen:
            continue
        seen.add(form)
        strengths = _default_strengths(r.ddd_mg, form, cat)
        weight = 1.0 if r.route == "O" else 0.1
        forms.append(
            (form, FormSpec(strengths=strengths, packs=cat.defaults.packs[form], weight=weight))
        )
    return forms


def _default_strengths(ddd_mg: float, form: str, cat: Catalogue) -> list[float]:
    nice = np.array(cat.defaults.nice_strengths)
    unit = _unit(form, None, cat)
    scale = 1000.0 if unit in ("mcg", "mcg/h") else 1.0
    wanted = [ddd_mg * f * scale for f in cat.defaults.strength_fractions]
    picked = sorted({float(nice[np.argmin(np.abs(np.log(nice / w)))]) for w in wanted})
    return picked


def _unit(form: str, spec_unit: str | None, cat: Catalogue) -> str:
    return spec_unit or cat.defaults.units.get(form, "mg")


def _mg_per_unit(strength: float, unit: str, unit_days: float) -> float:
    """Milligrams of substance in one unit (tablet, ml, dose, ampoule, patch worn unit_days)."""
    if unit == "mcg/h":
        return strength * 24.0 / 1000.0 * unit_days
    if unit == "mg/ml":
        return strength
    return strength * TO_MG[unit]


def _products(
    rng: np.random.Generator,
    atc: str,
    name: str,
    form: str,
    spec: FormSpec,
    ddd_mg: float,
    cat: Catalogue,
    definitions: Definitions,
) -> list[dict]:
    """One product per maker x strength x pack size the maker offers."""
    unit = _unit(form, spec.unit, cat)
    unit_days = spec.unit_days or cat.defaults.unit_days.get(form, 1.0)
    lo, hi = cat.defaults.makers_common if atc in cat.substances else cat.defaults.makers_rare
    n_makers = int(rng.integers(lo, hi + 1))
    makers = rng.choice(len(cat.makers), size=n_makers, replace=False)
    rows = []
    for maker in makers:
        packs = [p for p in spec.packs if rng.random() < 0.75] or [spec.packs[-1]]
        for strength in spec.strengths:
            ddd_per_unit = _mg_per_unit(strength, unit, unit_days) / ddd_mg
            for pack in packs:
                rows.append(
                    {
                        "product_name": f'{name} "{cat.makers[maker]}"',
                        "atc_code": atc,
                        "form": form,
                        "strength": float(strength),
                        "strength_unit": unit,
                        "pack_size": int(pack),
                        "ddd_per_pack": round(ddd_per_unit * pack, 4),
                        "depot": definitions.is_depot(form),
                        "group": definitions.group_for_atc(atc),
                        "ddd_per_unit": ddd_per_unit,
                        "unit_days": float(unit_days),
                        "form_weight": spec.weight,
                    }
                )
    return rows


def _check_forms(cat: Catalogue, definitions: Definitions) -> None:
    known = set(definitions.forms)
    used = set(cat.form_routes) | set(cat.route_forms.values()) | set(cat.defaults.packs)
    for spec in cat.substances.values():
        used |= set(spec.forms)
    unknown = sorted(used - known)
    if unknown:
        raise GeneratorParametersError(
            f"generator.yaml catalogue uses forms {unknown} that groups.yaml 'forms:' does not list"
        )
    missing = sorted(set(cat.route_forms.values()) - set(cat.defaults.packs))
    if missing:
        raise GeneratorParametersError(f"catalogue.defaults.packs has no pack sizes for {missing}")


def _check_used_substances(
    params: GeneratorParameters, routes: dict, definitions: Definitions
) -> None:
    """Every substance a component prescribes must be in its group and in the catalogue."""
    for gid, group in params.groups.items():
        for cid, comp in group.components.items():
            for atc in comp.substances:
                if atc not in routes:
                    raise GeneratorParametersError(
                        f"groups.{gid}.components.{cid}.substances: {atc} has no WHO DDD in scope"
                    )
                if definitions.group_for_atc(atc) != gid:
                    raise GeneratorParametersError(
                        f"groups.{gid}.components.{cid}.substances: {atc} belongs to group "
                        f"{definitions.group_for_atc(atc)!r}, not {gid!r}"
                    )


@dataclass(frozen=True)
class ProductIndex:
    """The catalogue as padded lookup tables, so product choice is vectorised per episode.

    Levels: substance-form ("sf") -> strength ("sfs") -> pack size ("sfsp") -> products (one per
    maker offering it). Padded entries are NaN (floats) or -1 (indices).
    """

    sf_atc: np.ndarray
    sf_weight: np.ndarray
    sf_depot: np.ndarray
    sf_daily_ddd: np.ndarray  # (n_sf, max strengths): DDD per day at one unit per unit_days
    sf_sfs: np.ndarray
    sfs_pack_ddd: np.ndarray  # (n_sfs, max packs): DDD per pack
    sfs_sfsp: np.ndarray
    sfsp_products: np.ndarray  # (n_sfsp, max makers): product row numbers
    sfsp_count: np.ndarray

    def forms_of(self, atc: str) -> np.ndarray:
        return np.flatnonzero(self.sf_atc == atc)


def index_products(products: pd.DataFrame) -> ProductIndex:
    """Build the padded lookup tables from the products table (row order = product number)."""
    p = products.reset_index(drop=True)
    p["row"] = np.arange(len(p))
    p["daily_ddd"] = p["ddd_per_unit"] / p["unit_days"]
    sf = p.groupby(["atc_code", "form"], sort=True)
    p["sf"] = sf.ngroup()
    p["sfs"] = p.groupby(["sf", "strength"], sort=True).ngroup()
    p["sfsp"] = p.groupby(["sfs", "pack_size"], sort=True).ngroup()
    sf_first = p.drop_duplicates("sf").sort_values("sf")
    sfs_first = p.drop_duplicates("sfs").sort_values("sfs")
    sfsp_first = p.drop_duplicates("sfsp").sort_values("sfsp")
    sf_daily, sf_sfs = _pad(sfs_first["sf"], sfs_first["daily_ddd"], sfs_first["sfs"])
    sfs_pack, sfs_sfsp = _pad(sfsp_first["sfs"], sfsp_first["ddd_per_pack"], sfsp_first["sfsp"])
    _, sfsp_products = _pad(p["sfsp"], p["row"], p["row"])
    return ProductIndex(
        sf_atc=sf_first["atc_code"].to_numpy(str),
        sf_weight=sf_first["form_weight"].to_numpy(float),
        sf_depot=sf_first["depot"].to_numpy(bool),
        sf_daily_ddd=sf_daily,
        sf_sfs=sf_sfs.astype(np.int64),
        sfs_pack_ddd=sfs_pack,
        sfs_sfsp=sfs_sfsp.astype(np.int64),
        sfsp_products=sfsp_products.astype(np.int64),
        sfsp_count=np.bincount(p["sfsp"].to_numpy()),
    )


def _pad(owner: pd.Series, value: pd.Series, child: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Per owner, its children's values and ids in padded rows (NaN / -1 where absent)."""
    owner = owner.to_numpy()
    order = np.argsort(owner, kind="stable")
    owner = owner[order]
    counts = np.bincount(owner)
    slot = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    values = np.full((len(counts), counts.max()), np.nan)
    ids = np.full((len(counts), counts.max()), -1.0)
    values[owner, slot] = value.to_numpy(float)[order]
    ids[owner, slot] = child.to_numpy(float)[order]
    return values, ids
