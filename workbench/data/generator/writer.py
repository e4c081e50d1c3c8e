"""Turning the generator's integer arrays into the contract's tables, written as Parquet.

The generator works on integer codes (person numbers, practice and product row numbers, days
since 1970); this module is the one place that maps them to the contract's columns: string ids
with leading zeros kept, dates as Arrow date32, nulls where a date or prescriber is absent.
Strings are built once per run with Arrow compute and then taken by index, which keeps writing
tens of millions of redemption rows fast. Parquet output is byte-identical for identical input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workbench.data.generator.geography import FEMALE, Geography
from workbench.data.generator.population import NO_DATE, Population, Segments
from workbench.data.generator.practices import PracticeLayout
from workbench.data.generator.redemptions import PRESCRIBER_TYPES, Redemptions

TABLES = ("persons", "listings", "practices", "clusters", "products", "redemptions")
GROUND_TRUTH_FILES = (
    "practice_propensity.parquet",
    "cluster_propensity.parquet",
    "outliers.csv",
    "residence.parquet",
    "generation.json",
)
PERSON_ID_MULTIPLIER = 387_420_489  # 3**18, coprime with 10**9: the scrambling is one-to-one
COMPRESSION = "zstd"


def person_id_array(numbers: np.ndarray) -> pa.Array:
    """'P' + 9 digits per person number, scrambled so ids never look like CPR numbers or counters.

    >>> person_id_array(np.array([0, 1])).to_pylist()
    ['P123456789', 'P510877278']
    """
    scrambled = (numbers.astype(np.int64) * PERSON_ID_MULTIPLIER + 123_456_789) % 1_000_000_000
    digits = pc.utf8_lpad(pc.cast(pa.array(scrambled), pa.string()), width=9, padding="0")
    return pc.binary_join_element_wise("P", digits, "")


def dates(days: np.ndarray) -> pa.Array:
    """date32 from days since 1970, null where NO_DATE."""
    days = np.asarray(days, dtype=np.int32)
    return pa.array(days, type=pa.int32(), mask=days == NO_DATE).cast(pa.date32())


def clear_outputs(register_dir: Path, ground_truth_dir: Path) -> None:
    """Remove what a previous run wrote (only our own file names), so no stale part remains."""
    for table in TABLES:
        for path in (register_dir / f"{table}.parquet", register_dir / f"{table}.csv"):
            path.unlink(missing_ok=True)
        if (register_dir / table).is_dir():
            shutil.rmtree(register_dir / table)
    for name in GROUND_TRUTH_FILES:
        (ground_truth_dir / name).unlink(missing_ok=True)
    register_dir.mkdir(parents=True, exist_ok=True)
    ground_truth_dir.mkdir(parents=True, exist_ok=True)


def write_table(table: pa.Table | pd.DataFrame, path: Path) -> int:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table, path, compression=COMPRESSION)
    return table.num_rows


def persons_table(pop: Population, geo: Geography, ids: pa.Array) -> pa.Table:
    return pa.table(
        {
            "person_id": ids,
            "sex": pa.array(np.where(pop.sex == FEMALE, "F", "M")),
            "birth_date": dates(pop.birth),
            "death_date": dates(pop.death),
            "municipality_code": pa.array(geo.codes[pop.last_municipality]),
            "emigration_date": dates(pop.emigration),
        }
    )


def listings_table(listings: Segments, layout: PracticeLayout, ids: pa.Array) -> pa.Table:
    return pa.table(
        {
            "person_id": ids.take(pa.array(listings.person)),
            "practice_id": pa.array(layout.practice_id[listings.unit]),
            "start_date": dates(listings.start),
            "end_date": dates(listings.end),
        }
    )


def residence_table(residence: Segments, geo: Geography, ids: pa.Array) -> pa.Table:
    """Ground truth: where each person lived in the area, [start, end)."""
    return pa.table(
        {
            "person_id": ids.take(pa.array(residence.person)),
            "municipality_code": pa.array(geo.codes[residence.unit]),
            "start_date": dates(residence.start),
            "end_date": dates(residence.end),
        }
    )


def redemptions_table(
    rows: Redemptions, ids: pa.Array, product_ids: pa.Array, practice_ids: pa.Array
) -> pa.Table:
    prescriber = pa.array(rows.prescriber, mask=rows.prescriber < 0)
    return pa.table(
        {
            "person_id": ids.take(pa.array(rows.person)),
            "dispensed_on": dates(rows.day),
            "product_id": product_ids.take(pa.array(rows.product)),
            "packs": pa.array(rows.packs, type=pa.int32()),
            "prescriber_id": practice_ids.take(prescriber),
            "prescriber_type": pa.array(PRESCRIBER_TYPES).take(pa.array(rows.prescriber_type)),
        }
    )


def write_json(data: dict, path: Path) -> None:
    path.write_text(
        json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
