"""The synthetic national register generator: the six contract tables plus ground truth.

``generate(area, years, seed, dataset)`` writes a realistic synthetic register of an area (the
nation, a region or a municipality, always at full real population density) as Parquet under
``dataset.register_dir``, writes what was built in (prescribing propensities, planted outliers,
residence, arguments) under ``dataset.ground_truth_dir``, and builds the database with the loader.
Same seed and arguments give byte-identical files. The assumptions are in
``parameters/generator.yaml``; ``data/README.md`` documents the tables and the calibration.

Steps: national practice layout and propensities (the same for every area) -> product catalogue
-> persons over the years -> per municipality chunk of persons, treatment episodes and their
redemptions, written as one Parquet part each (memory stays bounded by the chunk).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from workbench.data.generator.catalogue import build_catalogue, contract_columns, index_products
from workbench.data.generator.geography import Geography, load_geography
from workbench.data.generator.parameters import (
    PRESCRIBER_CATEGORIES,
    GeneratorParameters,
    load_parameters,
)
from workbench.data.generator.population import Population, day, simulate_population
from workbench.data.generator.practices import PracticeLayout, build_layout
from workbench.data.generator.propensity import Propensities, draw_propensities
from workbench.data.generator.rates import solve_rates
from workbench.data.generator.redemptions import RunContext, chunk_redemptions
from workbench.data.generator.streams import stream
from workbench.data.generator.treatment import (
    ChunkPersons,
    ComponentModel,
    Timeline,
    chunk_persons,
    substance_table,
    window_exit,
)
from workbench.data.generator.writer import (
    clear_outputs,
    listings_table,
    person_id_array,
    persons_table,
    redemptions_table,
    residence_table,
    write_json,
    write_table,
)
from workbench.definitions import load_definitions
from workbench.paths import PARAMETERS_DIR, Dataset

if TYPE_CHECKING:
    from workbench.data.loader import LoadReport

__all__ = ["GenerationSummary", "generate", "write_register"]

CHUNK_PERSONS = 200_000
YEAR_RANGE = (1995, 2035)


@dataclass
class GenerationSummary:
    """What a generation run produced and how long it took."""

    area: str
    years: tuple[int, int]
    seed: int
    municipalities: int
    rows: dict[str, int] = field(default_factory=dict)
    seconds_generate: float = 0.0
    seconds_load: float | None = None
    register_dir: Path | None = None
    ground_truth_dir: Path | None = None
    # Wall-clock (epoch) span of writing the Parquet files, and the loader's report.
    window: tuple[float, float] | None = None
    load_report: LoadReport | None = None

    @property
    def seconds(self) -> float:
        return self.seconds_generate + (self.seconds_load or 0.0)

    def __str__(self) -> str:
        """A few lines for the CLI: what was generated, how big, how long, where."""
        first, last = self.years
        load = "" if self.seconds_load is None else f", database built in {self.seconds_load:.0f} s"
        rows = " · ".join(f"{name} {n:,}" for name, n in self.rows.items())
        places = "municipality" if self.municipalities == 1 else "municipalities"
        return (
            f"generated {self.area} {first}-{last} (seed {self.seed}, {self.municipalities} "
            f"{places}) in {self.seconds_generate:.0f} s{load}\n  {rows}\n"
            f"  register: {self.register_dir}\n  ground truth: {self.ground_truth_dir}"
        )


def generate(
    area: str, years: tuple[int, int], seed: int, dataset: Dataset, *, progress: bool = True
) -> GenerationSummary:
    """Write the synthetic register of ``area`` for ``years`` (inclusive) and build the database."""
    summary = write_register(area, years, seed, dataset, progress=progress)
    from workbench.data.loader import load_register  # written alongside; imported when used

    started = time.perf_counter()
    summary.load_report = load_register(dataset.register_dir, dataset, progress=progress)
    summary.seconds_load = time.perf_counter() - started
    return summary


def write_register(
    area: str,
    years: tuple[int, int],
    seed: int,
    dataset: Dataset,
    *,
    progress: bool = True,
    parameters: Path | None = None,
) -> GenerationSummary:
    """Everything ``generate`` does except building the database: the Parquet files only."""
    started, started_at = time.perf_counter(), time.time()
    first, last = _check_arguments(years, seed)
    params = load_parameters(parameters)
    geo = load_geography(params)
    area_idx = geo.resolve_area(str(area))
    layout = build_layout(geo, params, seed)
    run = _Run(
        seed=seed,
        params=params,
        geo=geo,
        area_idx=area_idx,
        layout=layout,
        propensities=draw_propensities(layout, params, seed),
        products=build_catalogue(params, load_definitions(), seed),
        pop=simulate_population(geo, layout, params, area_idx, (first, last), seed),
    )
    summary = GenerationSummary(str(area), (first, last), seed, len(area_idx))
    summary.register_dir, summary.ground_truth_dir = dataset.register_dir, dataset.ground_truth_dir
    clear_outputs(dataset.register_dir, dataset.ground_truth_dir)
    summary.rows.update(_write_small_tables(run, dataset.register_dir))
    ctx = _run_context(run, first, last)
    summary.rows["redemptions"] = _write_redemptions(run, ctx, dataset.register_dir, progress)
    _write_ground_truth(run, dataset.ground_truth_dir, summary, parameters)
    summary.seconds_generate = time.perf_counter() - started
    summary.window = (started_at, time.time())
    return summary


@dataclass
class _Run:
    """What one generation run has built, and the area's part of the national layout."""

    seed: int
    params: GeneratorParameters
    geo: Geography
    area_idx: np.ndarray
    layout: PracticeLayout
    propensities: Propensities
    products: pd.DataFrame
    pop: Population

    def __post_init__(self) -> None:
        self.ids = person_id_array(self.pop.number)
        self.in_area = np.isin(self.layout.municipality, self.area_idx)  # per practice
        self.clusters = np.isin(  # per cluster: has a practice in the area
            np.arange(len(self.layout.cluster_id)), self.layout.cluster[self.in_area]
        )


def _check_arguments(years: tuple[int, int], seed: int) -> tuple[int, int]:
    first, last = (int(y) for y in years)
    if not YEAR_RANGE[0] <= first <= last <= YEAR_RANGE[1]:
        raise ValueError(
            f"years must be (first, last) with {YEAR_RANGE[0]} <= first <= last <= "
            f"{YEAR_RANGE[1]}, got {years}"
        )
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return first, last


def _write_small_tables(run: _Run, register_dir: Path) -> dict[str, int]:
    """persons, listings, practices, clusters and products, one file each; returns row counts."""
    tables = {
        "persons": persons_table(run.pop, run.geo, run.ids),
        "listings": listings_table(run.pop.listings, run.layout, run.ids),
        "practices": run.layout.practices_table(run.geo, run.in_area),
        "clusters": run.layout.clusters_table(run.clusters),
        "products": run.products[contract_columns()],
    }
    return {name: write_table(t, register_dir / f"{name}.parquet") for name, t in tables.items()}


def _run_context(run: _Run, first: int, last: int) -> RunContext:
    params = run.params
    sim_years = np.arange(first - max(params.burn_in_years.values()), last + 1)
    index = index_products(run.products)
    groups = list(params.groups)
    models = []
    for rates in solve_rates(params, run.geo, sim_years, first):
        group = params.groups[rates.group]
        comp = group.components[rates.component]
        prescribers = np.array([group.prescribers.get(c, 0.0) for c in PRESCRIBER_CATEGORIES])
        substances = substance_table(comp, params, index)
        models.append(
            ComponentModel(rates, comp, groups.index(rates.group), prescribers, substances)
        )
    return RunContext(
        params=params,
        models=models,
        products=index,
        layout=run.layout,
        multipliers=run.propensities.effective(run.layout),
        year_bounds=np.array([day(y) for y in range(sim_years[0], last + 2)], dtype=np.int64),
        window=(day(first), day(last + 1)),
    )


def _chunks(pop: Population, area_idx: np.ndarray) -> list[tuple[int, int, int, int]]:
    """(municipality, part, first person, end person): persons by entry municipality, capped."""
    out = []
    bounds = np.searchsorted(pop.first_municipality, np.r_[area_idx, area_idx[-1] + 1])
    for i, m in enumerate(area_idx):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        for part, start in enumerate(range(lo, hi, CHUNK_PERSONS)):
            out.append((int(m), part, start, min(start + CHUNK_PERSONS, hi)))
    return out


def _chunk_persons(pop: Population, m: int, lo: int, hi: int, ctx: RunContext) -> ChunkPersons:
    return chunk_persons(
        first=lo,
        birth=pop.birth[lo:hi].astype(np.int64),
        sex=pop.sex[lo:hi].astype(np.int64),
        entry=pop.entry[lo:hi].astype(np.int64),
        exit_day=window_exit(pop.exit[lo:hi], ctx.window[1]),
        first_municipality=m,
        listings=Timeline(pop.listings, lo, hi),
        residence=Timeline(pop.residence, lo, hi),
        year_bounds=ctx.year_bounds,
    )


def _write_redemptions(run: _Run, ctx: RunContext, register_dir: Path, progress: bool) -> int:
    """One Parquet part per chunk under redemptions/; returns the number of rows."""
    folder = register_dir / "redemptions"
    folder.mkdir()
    product_ids = pa.array(run.products["product_id"].to_numpy(str))
    practice_ids = pa.array(run.layout.practice_id)
    total = 0
    chunks = _chunks(run.pop, run.area_idx)
    bar = tqdm(chunks, disable=not progress, desc="redemptions", unit="chunk")
    for number, (m, part, lo, hi) in enumerate(bar):
        bar.set_postfix_str(str(run.geo.names[m]))
        rng = stream(run.seed, "treatment", int(run.geo.codes[m]), part)
        rows = chunk_redemptions(ctx, _chunk_persons(run.pop, m, lo, hi, ctx), rng)
        table = redemptions_table(rows, run.ids, product_ids, practice_ids)
        total += write_table(table, folder / f"part-{number:05d}.parquet")
    return total


def _outlier_rows(table: pd.DataFrame, level: str, unit: str, multiplier: str) -> pd.DataFrame:
    rows = table[table["outlier"].notna()]
    return pd.DataFrame(
        {
            "level": level,
            "unit_id": rows[unit],
            "group": rows["group"],
            "direction": rows["outlier"],
            "multiplier": rows[multiplier],
        }
    )


def _write_ground_truth(
    run: _Run, folder: Path, summary: GenerationSummary, parameters: Path | None
) -> None:
    """Propensities and planted outliers, residence periods and the generation arguments."""
    practice = run.propensities.practice_table(run.layout, run.in_area)
    cluster = run.propensities.cluster_table(run.layout, run.clusters)
    write_table(practice, folder / "practice_propensity.parquet")
    write_table(cluster, folder / "cluster_propensity.parquet")
    outliers = pd.concat(
        [
            _outlier_rows(practice, "practice", "practice_id", "practice_multiplier"),
            _outlier_rows(cluster, "cluster", "cluster_id", "cluster_multiplier"),
        ]
    )
    outliers.to_csv(folder / "outliers.csv", index=False)
    write_table(residence_table(run.pop.residence, run.geo, run.ids), folder / "residence.parquet")
    path = Path(parameters or PARAMETERS_DIR / "generator.yaml")
    write_json(
        {
            "area": summary.area,
            "years": list(summary.years),
            "seed": summary.seed,
            "municipalities": [str(c) for c in run.geo.codes[run.area_idx]],
            "parameters_version": run.params.version,
            "parameters_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": summary.rows,
        },
        folder / "generation.json",
    )
