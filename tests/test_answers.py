"""The answer store: hand-worked answers on a tiny register, random slices against the engine
on the raw tables of a generated municipality, and a build that a kill can't spoil."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
from engine_fixtures import IBUPROFEN, MORPHINE, OXYCODONE_DEPOT, TinyRegister, world

import workbench as wb
from workbench.analysis import funnel, standardised
from workbench.answers import AnswerStore, NotInStore, Progress, build_store, current
from workbench.answers.local import stored_key
from workbench.answers.store import BY_DIMS
from workbench.engine.journeys import journeys
from workbench.engine.marts import FINGERPRINT_KEY, METADATA_TABLE
from workbench.paths import Dataset

QUIET = Progress(say=lambda _: None)


def dataset_of(reg: TinyRegister, root: Path, fingerprint: str = "tiny") -> Dataset:
    """A tiny register written as a dataset folder, with the fingerprint a loader writes."""
    dataset = Dataset.at(root)
    root.mkdir(parents=True, exist_ok=True)
    con = reg.backend(dataset.database)
    con.create_table(METADATA_TABLE, ibis.memtable(
        {"key": [FINGERPRINT_KEY], "value": [fingerprint]}))
    con.disconnect()
    return dataset


# --- hand-worked answers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> AnswerStore:
    """Three persons over 2023-2024 (world(): practices 000001 and 000002 in cluster K1,
    000003 in K2, all in region 1081; MORPHINE 10 DDD a pack, OXYCODONE_DEPOT 30):

    * ``a`` (F, born 1950-06-15) gets morphine from 000001 on 2024-01-10 (1 pack) and from
      000002 on 2024-03-05 (2 packs): one patient of each practice, one of cluster K1;
    * ``b`` (M, born 1980-01-01) gets morphine from 000001 on 2024-02-01 and returns the pack
      on 2024-04-15: a patient of 2024Q1, none of 2024Q2 (net −10) nor of 2024 (net 0);
    * ``c`` (F, born 2000-05-05) gets oxycodone from 000003 on 2023-06-01 and 2024-06-01,
      366 days apart (2024 is a leap year): started again in every period of 2024 holding it;
      and ibuprofen from 000003 on 2024-06-01.
    """
    reg = world()
    reg.person("a", sex="F", born="1950-06-15").listing("a", "000001", "2020-01-01")
    reg.person("b", sex="M", born="1980-01-01").listing("b", "000001", "2020-01-01")
    reg.person("c", sex="F", born="2000-05-05").listing("c", "000003", "2020-01-01")
    reg.redeem("a", "2024-01-10", MORPHINE, packs=1, prescriber="000001")
    reg.redeem("a", "2024-03-05", MORPHINE, packs=2, prescriber="000002")
    reg.redeem("b", "2024-02-01", MORPHINE, packs=1, prescriber="000001")
    reg.redeem("b", "2024-04-15", MORPHINE, packs=-1, prescriber="000001")
    reg.redeem("c", "2023-06-01", OXYCODONE_DEPOT, packs=1, prescriber="000003")
    reg.redeem("c", "2024-06-01", OXYCODONE_DEPOT, packs=1, prescriber="000003")
    reg.redeem("c", "2024-06-01", IBUPROFEN, packs=1, prescriber="000003")
    reg.redeem("c", "2024-12-31", IBUPROFEN, packs=1, prescriber="000003")
    dataset = dataset_of(reg, tmp_path_factory.mktemp("tiny"))
    build_store(dataset, progress=QUIET)
    return AnswerStore(dataset.answers)


def value(store: AnswerStore, level: str, unit: str, period: str, measure: str,
          group: str = "opioids", **kwargs: object) -> object:
    table = store.measures(group, level, period, units=[unit], **kwargs)
    assert len(table) == 1, table
    return table[measure].iloc[0]


def test_a_person_of_two_practices_is_one_patient_of_their_cluster(tiny) -> None:
    assert value(tiny, "practice", "000001", "2024Q1", "patients") == 2  # a and b
    assert value(tiny, "practice", "000002", "2024Q1", "patients") == 1  # a
    assert value(tiny, "cluster", "K1", "2024Q1", "patients") == 2  # a once, and b
    assert value(tiny, "cluster", "K1", "2024Q1", "ddd") == 40.0
    assert value(tiny, "region", "1081", "2024Q1", "patients") == 2
    assert value(tiny, "nation", "DK", "2024-03", "patients") == 1


def test_a_return_nets_a_patient_away(tiny) -> None:
    assert value(tiny, "practice", "000001", "2024Q2", "patients") == 0
    assert value(tiny, "practice", "000001", "2024Q2", "ddd") == -10.0
    assert value(tiny, "practice", "000001", "2024", "patients") == 1  # a; b nets to 0
    # every R12 period of the data holds both b's pack and its return: a alone
    assert value(tiny, "practice", "000001", "R12-2024-05", "patients") == 1
    assert value(tiny, "practice", "000001", "R12-2024-05", "ddd") == 10.0


def test_rolling_periods_and_started_after_366_days(tiny) -> None:
    # R12-2024-05 (June 2023 - May 2024) holds c's first pack, R12-2024-06 only the second
    for period in ("R12-2024-05", "R12-2024-06", "2023-06", "2024", "2024Q2"):
        assert value(tiny, "practice", "000003", period, "patients") == 1, period
    started = tiny.measures("opioids", "practice", "R12-2024-06", units=["000003"],
                            by="started")
    assert dict(zip(started["started"], started["patients"], strict=True)) == {"started": 1}
    # within the year 2024 the first redemption is 2024-06-01, 366 days after the last
    started = tiny.measures("opioids", "practice", "2024", units=["000003"], by="started")
    assert dict(zip(started["started"], started["patients"], strict=True)) == {"started": 1}


def test_breakdowns_by_person_and_patient(tiny) -> None:
    by_sex = tiny.measures("opioids", "cluster", "2024Q1", units=["K1"], by="sex")
    assert dict(zip(by_sex["sex"], by_sex["patients"], strict=True)) == {"F": 1, "M": 1}
    assert by_sex["share"].tolist() == [0.5, 0.5]
    ages = tiny.measures("opioids", "cluster", "2024Q1", units=["K1"], by="age_group")
    found = {g: n for g, n in zip(ages["age_group"], ages["patients"], strict=True) if n}
    assert found == {"65-79": 1, "25-44": 1}  # a is 73 on 1 January 2024; b is 44
    groups = tiny.measures("opioids", "cluster", "2024Q1", units=["K1"],
                           by="consumption_group")
    assert dict(zip(groups["consumption_group"], groups["patients"], strict=True)) == {
        "under 3 months": 2}
    depot = tiny.measures("opioids", "nation", "2024", by="depot")
    assert dict(zip(depot["depot"], depot["patients"], strict=True)) == {"False": 1, "True": 1}


def test_fixed_vocabularies_are_stored_as_enums_and_read_as_text(tiny) -> None:
    types = dict(tiny.sql("SELECT column_name, column_type FROM (DESCRIBE cells)").itertuples(
        index=False))
    assert types["level"].startswith("ENUM('practice', 'cluster'")
    assert types["sex"] == "ENUM('F', 'M')"
    assert types["started"] == "ENUM('started', 'continued')"
    assert types["sel"] == "VARCHAR"  # a delivery may bring a new drug
    parts = dict(tiny.sql("SELECT column_name, column_type FROM (DESCRIBE parts)").itertuples(
        index=False))
    assert parts["dim"].startswith("ENUM(") and parts["value"] == "VARCHAR"
    read = tiny.sql("SELECT DISTINCT level, sex FROM cells WHERE sex IS NOT NULL")
    assert not any(isinstance(t, pd.CategoricalDtype) for t in read.dtypes)
    assert set(read["sex"]) == {"F", "M"}
    by_level = tiny.sql("SELECT level, sum(patients) AS n FROM cells WHERE level = ? AND "
                        "sel = ? AND period = ? GROUP BY ALL", ["cluster", "opioids", "2024Q1"])
    assert by_level.to_dict("records") == [{"level": "cluster", "n": 2}]


def test_listed_persons_and_rates(tiny) -> None:
    assert value(tiny, "practice", "000001", "2024", "listed") == 2.0
    assert value(tiny, "cluster", "K1", "2024", "listed") == 2.0
    rate = value(tiny, "cluster", "K1", "2024Q1", "patients_per_1000")
    assert rate == pytest.approx(2 / 2 * 1000)


def test_a_drug_is_a_selection_and_other_choices_are_refused(tiny) -> None:
    assert tiny.drugs_of("opioids") == ["N02AA01", "N02AA05"]
    assert value(tiny, "practice", "000003", "2024", "patients",
                 filters={"drug": "N02AA05"}) == 1
    with pytest.raises(NotInStore):
        tiny.measures("opioids", "practice", "2019", units=["000001"])
    with pytest.raises(NotInStore):
        tiny.measures("opioids", "practice", "2024", filters={"drug": "M01AE01"})
    with pytest.raises(NotInStore):
        tiny.measures("opioids", "practice", "2024", filters={"sex": "F"})


# --- random slices against the engine on the raw tables --------------------------------------


@pytest.fixture(scope="module")
def pair(pages_dataset: Dataset):
    store = AnswerStore(pages_dataset.answers)
    session = wb.connect(pages_dataset.database, use_marts=False)
    yield store, session
    store.close()
    session.con.disconnect()


def _compare(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str],
             columns: list[str]) -> None:
    for df in (got, expected):
        for key in keys:
            df[key] = [None if pd.isna(v) else str(v) for v in df[key]]
    merged = got.merge(expected, on=keys, how="outer", suffixes=("_store", "_engine"),
                       indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys]
    for column in columns:
        a, b = merged[f"{column}_store"], merged[f"{column}_engine"]
        if a.dtype == object or b.dtype == object:
            assert (a.fillna("") == b.fillna("")).all(), column
        else:
            assert np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-9,
                               equal_nan=True), column


@pytest.mark.slow
def test_random_slices_equal_the_engine_on_the_raw_tables(pair) -> None:
    store, session = pair
    rng = random.Random(17)
    periods = list(store.periods["period"])
    groups = [s.sel for s in store.selections.values() if s.kind == "group"]
    measures = ["patients", "ddd", "listed", "share", "patients_per_1000",
                "ddd_per_1000_per_day"]
    for _ in range(60):
        group = rng.choice(groups)
        drugs = store.drugs_of(group)
        drug = rng.choice(drugs) if drugs and rng.random() < 0.4 else None
        level = rng.choice(["practice", "cluster", "municipality", "region", "nation"])
        unit = [rng.choice(store.units(level))] if rng.random() < 0.7 else None
        period = rng.choice(periods)
        by = rng.choice([None, *BY_DIMS])
        if by == "drug" and drug:
            by = None
        filters = {"drug": drug} if drug else None
        got = store.measures(group, level, period, units=unit, by=by, filters=filters,
                             measures=measures)
        expected = session.measures(group, level, period, units=unit,
                                    by=[by] if by else (), filters=filters,
                                    measures=measures).to_pandas()
        _compare(got, expected, ["unit_id", "period", "group", *([by] if by else [])],
                 measures)


@pytest.mark.slow
def test_stored_comparisons_equal_the_analysis_on_the_raw_tables(pair) -> None:
    store, session = pair
    rng = random.Random(5)
    periods = sorted(store.offered_risk_periods)
    groups = [s.sel for s in store.selections.values() if s.kind == "group"]
    for _ in range(4):
        group, period = rng.choice(groups), rng.choice(periods)
        level, basis = rng.choice(["practice", "cluster"]), rng.choice(["patients", "ddd"])
        table, _ = store.funnel(group, level, period, basis=basis)
        expected = funnel(session, group, period, level=level,
                          indicator=f"standardised_{basis}").to_pandas()
        _compare(table, expected, ["unit_id", "period", "group"],
                 ["patients", "listed", "observed", "exposure", "value", "z", "lower_95",
                  "upper_998", "flag_95", "flag_998"])
        own = store.standardised([group], level, period, basis=basis)
        expected = standardised(session, group, level, period, measure=basis).to_pandas()
        _compare(own, expected, ["unit_id", "period", "group"],
                 ["observed", "expected", "oe", "oe_lower", "oe_upper"])
        risks = store.risks(level, period)
        _compare(risks, session.risks(None, level, period).to_pandas(),
                 ["unit_id", "period", "risk"], ["patients", "population", "listed", "share"])
    cohort = sorted(store.journey_periods())[-1]
    for level in ("practice", "nation"):
        got = store.journeys("opioids", level, cohort)
        expected = journeys(session.registers, session.definitions, ["opioids"], level,
                            [wb.parse_period(cohort)]).to_pandas()
        _compare(got, expected, ["unit_id", "period", "group", "outcome"],
                 ["persons", "cohort", "share"])


# --- building ---------------------------------------------------------------------------------


def test_a_store_of_other_data_is_not_current(tiny, tmp_path: Path) -> None:
    reg = world()
    reg.person("x").listing("x", "000001", "2020-01-01")
    reg.redeem("x", "2024-01-01", MORPHINE, prescriber="000001")
    reg.redeem("x", "2024-02-29", MORPHINE, prescriber="000001")
    dataset = dataset_of(reg, tmp_path / "d", fingerprint="one")
    report = build_store(dataset, progress=QUIET)
    assert report.built and current(dataset)
    assert not build_store(dataset, progress=QUIET).built  # current: not built again
    con = ibis.duckdb.connect(str(dataset.database))
    con.raw_sql(f"UPDATE {METADATA_TABLE} SET value = 'two'")
    con.disconnect()
    assert not current(dataset)


@pytest.mark.slow
def test_a_build_killed_midway_leaves_the_previous_store(pages_dataset: Dataset,
                                                         tmp_path: Path) -> None:
    import shutil

    dataset = Dataset.at(tmp_path / "data")
    dataset.root.mkdir()
    shutil.copy2(pages_dataset.database, dataset.database)
    shutil.copy2(pages_dataset.answers, dataset.answers)
    key = stored_key(dataset.answers)
    assert key is not None and current(dataset)
    child = subprocess.Popen(
        [sys.executable, "-m", "workbench.publish.cli", "data", "build", "--force",
         "--data", str(dataset.root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    assert child.stdout is not None
    for line in child.stdout:  # killed once it is well into the build
        if "answers: cells" in line:
            break
    time.sleep(1)
    child.kill()
    child.wait()
    assert stored_key(dataset.answers) == key and current(dataset)
    store = AnswerStore(dataset.answers)
    assert store.measures("opioids", "nation", "2024")["patients"].iloc[0] > 0
    store.close()
    leftovers = [p.name for p in dataset.root.iterdir() if ".building" in p.name
                 or ".scratch" in p.name]
    assert leftovers  # what the killed build left ...
    build_store(dataset, force=True, progress=QUIET)
    assert not [p for p in dataset.root.iterdir()
                if ".building" in p.name or ".scratch" in p.name]  # ... the next one removes
