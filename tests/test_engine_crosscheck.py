"""Cross-check: on a generated municipality, every measure for every practice equals a plain
pandas computation written here, independently of the engine, from the raw register tables.

The engine's own tests prove each rule on hand-made registers; this one proves the rules hold
together on realistic data (returns, movers, non-GP prescribers, several practices), with the
marts and without them.
"""

from __future__ import annotations

import shutil

import duckdb
import ibis
import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.engine.marts import build_marts
from workbench.paths import Dataset

AREA = "727"  # Odder: seven practices, ~24,000 persons, a few seconds to generate
PERIODS = {  # label: (first day, day after the last, days)
    "2024": ("2024-01-01", "2025-01-01", 366),
    "2024Q2": ("2024-04-01", "2024-07-01", 91),
    "2024-02": ("2024-02-01", "2024-03-01", 29),
}
MEASURES = [
    "patients",
    "listed",
    "ddd",
    "patients_per_1000",
    "ddd_per_1000",
    "ddd_per_1000_per_day",
]


@pytest.fixture(scope="module")
def odder(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    from workbench.data.generator import generate

    dataset = Dataset.at(tmp_path_factory.mktemp("odder"))
    generate(AREA, (2023, 2024), 5, dataset, progress=False)
    return dataset


@pytest.fixture(scope="module")
def expected(odder: Dataset) -> pd.DataFrame:
    return expected_by_pandas(odder)


def expected_by_pandas(dataset: Dataset) -> pd.DataFrame:
    """The contract, read literally, in pandas: attribution by prescriber, DDD = packs x DDD per
    pack, patients = persons with net DDD > 0, listed = person-days / days in the period."""
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        red = con.sql("select * from redemptions").df()
        products = con.sql("select product_id, atc_code, ddd_per_pack from products").df()
        practices = con.sql("select practice_id from practices").df()
        listings = con.sql("select * from listings").df()
    defs = wb.load_definitions()
    products["group"] = products["atc_code"].map(defs.group_for_atc)
    red = red.merge(products, on="product_id")
    red = red[
        (red["prescriber_type"] == "gp") & red["prescriber_id"].isin(practices["practice_id"])
    ]
    red = red[red["group"].notna()]
    red["ddd"] = red["packs"] * red["ddd_per_pack"]
    red["dispensed_on"] = pd.to_datetime(red["dispensed_on"])
    listings["start_date"] = pd.to_datetime(listings["start_date"])
    listings["end_date"] = pd.to_datetime(listings["end_date"])

    rows = []
    for label, (first, after, days) in PERIODS.items():
        start, end = pd.Timestamp(first), pd.Timestamp(after)
        # listed: each listing's overlap with [start, end), in days
        lo = listings["start_date"].clip(lower=start)
        hi = listings["end_date"].fillna(end).clip(upper=end)
        overlap = (hi - lo).dt.days.clip(lower=0)
        listed = overlap.groupby(listings["practice_id"]).sum() / days
        in_period = red[(red["dispensed_on"] >= start) & (red["dispensed_on"] < end)]
        per_person = in_period.groupby(["prescriber_id", "group", "person_id"])["ddd"].sum()
        patients = (per_person.round(9) > 0).groupby(level=[0, 1]).sum()
        ddd = in_period.groupby(["prescriber_id", "group"])["ddd"].sum()
        for practice in practices["practice_id"]:
            for group in defs.groups:
                n_listed = float(listed.get(practice, 0.0))
                n_patients = int(patients.get((practice, group), 0))
                n_ddd = float(ddd.get((practice, group), 0.0))
                rows.append(
                    {
                        "unit_id": practice,
                        "period": label,
                        "group": group,
                        "patients": n_patients,
                        "listed": n_listed,
                        "ddd": n_ddd,
                        "patients_per_1000": n_patients / n_listed * 1000 if n_listed else np.nan,
                        "ddd_per_1000": n_ddd / n_listed * 1000 if n_listed else np.nan,
                        "ddd_per_1000_per_day": (
                            n_ddd / n_listed * 1000 / days if n_listed else np.nan
                        ),
                    }
                )
    return pd.DataFrame(rows).sort_values(["unit_id", "period", "group"], ignore_index=True)


@pytest.mark.parametrize("marts", [False, True], ids=["raw", "marts"])
def test_every_practice_measure_equals_pandas(
    odder: Dataset, expected: pd.DataFrame, marts: bool, tmp_path
) -> None:
    if marts:  # on a copy: building marts needs a writable connection
        copy = tmp_path / "workbench.duckdb"
        shutil.copy(odder.database, copy)
        con = ibis.duckdb.connect(str(copy))
        build_marts(con, wb.load_definitions())
        session = wb.connect(con)
        assert session.marts is not None
    else:
        session = wb.connect(odder.database, use_marts=False)
    got = (
        session.measures(
            list(wb.load_definitions().groups), "practice", list(PERIODS), measures=MEASURES
        )
        .to_pandas()[["unit_id", "period", "group", *MEASURES]]
        .sort_values(["unit_id", "period", "group"], ignore_index=True)
    )
    want = expected
    assert len(want) == 7 * len(PERIODS) * 8
    assert want["patients"].sum() > 1000  # a real register, not an empty one
    pd.testing.assert_frame_equal(
        got.astype({"patients": "int64"}),
        want.astype({"patients": "int64"}),
        check_dtype=False,
        rtol=1e-9,
        atol=1e-9,
    )
