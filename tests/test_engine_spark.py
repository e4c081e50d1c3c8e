"""Spark portability: the engine's Ibis expressions give the same answers on PySpark as on DuckDB.

The issue's requirement: "the same expressions run on PySpark (local mode in tests, with the
machine's Java 17)". Each test loads one small register into an in-memory DuckDB backend and
into a local Spark session, asks both the same question through the public API, and compares
the rows (sorted, floats with a tolerance). The registers are the hand-made world of
``engine_fixtures`` and a richer deterministic one (several practices, clusters, municipalities
and regions, moves between practices, returns, 365/366-day gaps, consumption-group boundaries,
birthdays on period starts and 29 February, non-GP prescribers).

Spark runs a tiny query in seconds, not milliseconds (every exchange is a job), so the
questions are few and broad: each covers several measures, periods or dimensions at once.
Spark is started once per session (``local[2]``, no UI, 2 shuffle partitions, UTC, a temporary
warehouse). Without Java or pyspark the tests *fail* with what to install: CI has Java 17, and a
silently skipped conformance test would prove nothing.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa
import pytest
from engine_fixtures import (
    IBUPROFEN,
    MORPHINE,
    OXYCODONE_DEPOT,
    SCHEMAS,
    ZOPICLONE,
    TinyRegister,
    world,
)

import workbench as wb
from workbench.engine import build_marts
from workbench.engine.query import MEASURES

pytestmark = pytest.mark.spark

# The products the rich register adds to world()'s four (id: ATC, form, pack size, DDD a pack).
TRAMADOL_1DDD = "100003"  # N02AX02: 1 DDD a pack, to hit 89/90/365/366 DDD exactly
FENTANYL_PATCH = "100004"  # N02AB03, a depot form
DIAZEPAM = "300002"  # N05BA01, sedatives, addictive
QUETIAPINE = "400001"  # N05AH04, antipsychotics
LITHIUM = "400002"  # N05AN01: excluded from antipsychotics, in no group
METHYLPHENIDATE = "500001"  # N06BA04 depot capsule: stimulants, addictive, depot
SERTRALINE = "600001"  # N06AB06, antidepressants
PARACETAMOL = "700001"  # N02BE01
GABAPENTIN_LEGACY = "800001"  # N03AX12, the legacy code of a gabapentinoid
PREGABALIN = "800002"  # N02BF02
EXTRA_PRODUCTS = [
    (TRAMADOL_1DDD, "N02AX02", "tablet", 10, 1.0),
    (FENTANYL_PATCH, "N02AB03", "patch", 5, 15.0),
    (DIAZEPAM, "N05BA01", "tablet", 25, 5.0),
    (QUETIAPINE, "N05AH04", "tablet", 100, 25.0),
    (LITHIUM, "N05AN01", "tablet", 100, 50.0),
    (METHYLPHENIDATE, "N06BA04", "depot capsule", 30, 30.0),
    (SERTRALINE, "N06AB06", "tablet", 100, 100.0),
    (PARACETAMOL, "N02BE01", "tablet", 100, 16.7),
    (GABAPENTIN_LEGACY, "N03AX12", "capsule", 100, 33.3),
    (PREGABALIN, "N02BF02", "capsule", 56, 18.7),
]

# Practice: (cluster or None, region, municipality). 000005 belongs to no cluster.
EXTRA_PRACTICES = {
    "000005": (None, "1084", "101"),
    "000006": ("K3", "1084", "147"),
    "000007": ("K4", "1084", "147"),
    "000008": ("K4", "1084", "147"),
}


def rich_world(seed: int = 7) -> TinyRegister:
    """A deterministic register with every kind of row the engine treats specially.

    Eight practices in four clusters (one practice in none), four municipalities, two regions;
    about sixty persons, some moving practice mid-period or leaving; seeded redemptions over
    2022-2024 of every group, plus hand-placed cases at each boundary of the contract.
    """
    reg = world()
    for product_id, atc, form, pack_size, ddd in EXTRA_PRODUCTS:
        reg.product(product_id, atc, form, pack_size, ddd)
    for practice_id, (cluster, region, municipality) in EXTRA_PRACTICES.items():
        reg.practice(practice_id, cluster, region, municipality)  # type: ignore[arg-type]
    reg.cluster("K4", "1084")
    practices = ["000001", "000002", "000003", "000004", *EXTRA_PRACTICES]
    products = [MORPHINE, OXYCODONE_DEPOT, IBUPROFEN, ZOPICLONE, *(p[0] for p in EXTRA_PRODUCTS)]
    rng = random.Random(seed)
    # Birthdays on period starts (1 Jan, 1 Apr, 1 Jul), the day before one, and 29 February:
    # age on the period's first day puts them on either side of an age band's edge.
    birthdays = ["01-01", "12-31", "04-01", "03-31", "07-01", "02-29", "06-15", "10-01"]
    for i in range(60):
        pid = f"r{i:02d}"
        year = 1936 + (i * 7) % 76 if i % 8 != 5 else 1944 + 4 * (i % 12)  # 29 Feb: leap years
        reg.person(pid, sex="FM"[i % 2], born=f"{year}-{birthdays[i % 8]}")
        home = practices[i % len(practices)]
        if i % 6 == 0:  # moves practice mid-quarter, to another cluster
            other = practices[(i + 3) % len(practices)]
            reg.listing(pid, home, "2019-01-01", "2024-02-15").listing(pid, other, "2024-02-15")
        elif i % 6 == 1:  # leaves the list mid-year
            reg.listing(pid, home, "2021-06-01", "2024-07-17")
        else:
            reg.listing(pid, home, "2018-01-01")
        for _ in range(rng.randint(2, 9)):
            year, month, day = (
                rng.choice([2022, 2023, 2024]),
                rng.randint(1, 12),
                rng.randint(1, 28),
            )
            on = f"{year}-{month:02d}-{day:02d}"
            kind = rng.random()
            if kind < 0.75:
                prescriber, ptype = home, "gp"
            elif kind < 0.85:
                prescriber, ptype = None, rng.choice(["specialist", "hospital", "other"])
            elif kind < 0.92:
                prescriber, ptype = rng.choice(practices), "gp"
            else:
                prescriber, ptype = "999999", "gp"  # a GP id that is no known practice
            reg.redeem(pid, on, rng.choice(products), rng.randint(1, 4), prescriber, ptype)
    _boundary_cases(reg)
    return reg


def _boundary_cases(reg: TinyRegister) -> None:
    """Hand-placed persons at the contract's edges (see test_engine_breakdowns for each rule)."""
    cases = {  # person: listing practice
        "gap365": "000001",
        "gap366": "000001",
        "leap": "000002",
        "net0": "000003",
        "u89": "000004",
        "m90": "000005",
        "m365": "000006",
        "o366": "000007",
    }
    for pid, practice in cases.items():
        reg.person(pid, sex="M", born="1950-01-01").listing(pid, practice, "2015-01-01")
    # Started or continued: a previous redemption exactly 365 / 366 days before.
    reg.redeem("gap365", "2023-01-01", prescriber="000001").redeem("gap365", "2024-01-01")
    reg.redeem("gap366", "2023-01-01", prescriber="000001").redeem("gap366", "2024-01-02")
    # 1 January of a leap year is outside the 365-day consumption window of 2024.
    reg.redeem("leap", "2024-01-01", TRAMADOL_1DDD, packs=400, prescriber="000002")
    reg.redeem("leap", "2024-12-20", TRAMADOL_1DDD, packs=10, prescriber="000002")
    # A purchase and its return: net DDD 0, no patient.
    reg.redeem("net0", "2024-03-03", MORPHINE, packs=2, prescriber="000003")
    reg.redeem("net0", "2024-03-20", MORPHINE, packs=-2, prescriber="000003")
    # Consumption groups at 89, 90, 365 and 366 DDD in the year to 31 December 2024.
    for pid, practice, ddd in [
        ("u89", "000004", 89),
        ("m90", "000005", 90),
        ("m365", "000006", 365),
        ("o366", "000007", 366),
    ]:
        reg.redeem(pid, "2024-12-05", TRAMADOL_1DDD, packs=ddd, prescriber=practice)


# --- Spark --------------------------------------------------------------------------------


def _require_java() -> None:
    """Fail (not skip) with what to install when there is no Java 17+ for Spark."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        pytest.fail(
            "the Spark conformance tests need Java 17 (CI has it): install a JDK, e.g. "
            "`apt-get install -y openjdk-17-jre-headless`, or set JAVA_HOME",
            pytrace=False,
        )
    found = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', found.stderr + found.stdout)
    if not match or int(match.group(1)) < 17:
        pytest.fail(f"Spark 4 needs Java 17 or newer; {java} says: {found.stderr.strip()}")


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local Spark session for every test here (starting one costs ~5-9 s)."""
    _require_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.fail("pyspark is missing: `pip install -e '.[dev]'` installs it", pytrace=False)
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    # Spark's Python workers (if any are needed) run the interpreter running the tests.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("workbench-conformance")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.driver.memory", "1g")
        # Whole-stage code generation compiles Java for every stage: on registers of a few
        # hundred rows that costs more than it saves (about a third of each query here).
        .config("spark.sql.codegen.wholeStage", "false")
        # Ibis hands small tables (periods, group names) over as pandas frames: through Arrow
        # they become JVM-side relations, not Python RDDs that need a Python worker per scan.
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class Pair:
    """One register on both backends, with a session per backend (raw tables or marts)."""

    def __init__(self, spark: Any, reg: TinyRegister) -> None:
        self.reg = reg
        self.duck_con = reg.backend()
        # A session of its own shares the Spark context but not the temporary views, so two
        # registers with the same table names live side by side.
        self.spark_session = spark.newSession()
        for table, schema in SCHEMAS.items():
            data = pa.Table.from_pylist(reg.rows[table], schema=schema)
            self.spark_session.createDataFrame(data).createOrReplaceTempView(table)
        self.spark_con = ibis.pyspark.connect(self.spark_session)
        self.duck = wb.connect(self.duck_con, use_marts=False)
        self.on_spark = wb.connect(self.spark_con, use_marts=False)


def frame(table: ibis.Table) -> pd.DataFrame:
    """Execute and sort by every non-measure column (then the measures), for comparing."""
    df = table.to_pandas()
    keys = [c for c in df.columns if c not in (*MEASURES, "percentile")]
    df = df.sort_values(keys + [c for c in df.columns if c not in keys], na_position="first")
    return df.reset_index(drop=True)


def assert_same(duck: ibis.Table, spark: ibis.Table) -> pd.DataFrame:
    """The DuckDB and Spark answers are equal: same columns, rows, and values (floats to 1e-9).

    Returns the DuckDB frame so a test can check the question was not answered vacuously.
    """
    expected, got = frame(duck), frame(spark)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected), f"DuckDB {len(expected)} rows, Spark {len(got)}"
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9, atol=1e-9)
    return expected


def on_both(pair: Pair, ask: Callable[[wb.Workbench], ibis.Table]) -> pd.DataFrame:
    """Ask both sessions the same question (one lambda, so the two can't drift apart)."""
    return assert_same(ask(pair.duck), ask(pair.on_spark))


@pytest.fixture(scope="module")
def tiny(spark: Any) -> Pair:
    """engine_fixtures' world with the persons of test_engine_api (three practices, 70 DDD)."""
    reg = world()
    for pid, practice, packs in [("p1", "000001", 2), ("p3", "000003", 1), ("p4", "000004", 4)]:
        reg.person(pid).listing(pid, practice, "2020-01-01")
        reg.redeem(pid, "2024-02-01", MORPHINE, packs=packs, prescriber=practice)
    reg.redeem("p1", "2024-05-01", OXYCODONE_DEPOT, prescriber=None, prescriber_type="hospital")
    return Pair(spark, reg)


@pytest.fixture(scope="module")
def rich(spark: Any) -> Pair:
    """The rich register on both backends, built once for the module."""
    return Pair(spark, rich_world())


# --- The hand-made world ------------------------------------------------------------------


def test_tiny_world_practices_by_hand(tiny: Pair) -> None:
    got = on_both(tiny, lambda s: s.measures(["opioids", MORPHINE], "practice", ["2024", "2024Q1"]))
    year = got[(got.period == "2024") & (got.group == "opioids")].set_index("unit_id")
    assert year.ddd.to_dict() == {"000001": 20, "000002": 0, "000003": 10, "000004": 40}
    assert year.patients.sum() == 3


# --- The rich register --------------------------------------------------------------------

LEVELS = ("nation", "region", "municipality", "cluster", "practice")
# One period of each kind in one question: month, quarter, year, rolling 12 months.
MIXED_PERIODS = ["2024-02", "2024Q1", "2024", "R12-2024-06"]
# A group id, a second group, an ATC prefix and a product id.
SELECTIONS = ["opioids", "sedatives", "N02AA", OXYCODONE_DEPOT]


@pytest.mark.parametrize("level", LEVELS)
def test_every_measure_at_every_level_and_period_kind(rich: Pair, level: str) -> None:
    got = on_both(rich, lambda s: s.measures(SELECTIONS, level, MIXED_PERIODS))
    assert set(got.period) == set(MIXED_PERIODS) and set(got.group) == set(SELECTIONS)
    assert got.patients.sum() > 0 and got.listed.sum() > 0


def test_a_series_of_months_of_every_redemption(rich: Pair) -> None:
    got = on_both(rich, lambda s: s.measures(None, "cluster", "2023-11..2024-03"))
    assert got.period.nunique() == 5 and "group" not in got.columns


# Every breakdown dimension, several to a question (a Spark query costs seconds whatever its
# width), each kind (redemption, person, patient) in each, at different levels and periods.
BREAKDOWNS: list[dict[str, Any]] = [
    dict(
        groups=["opioids", "sedatives"],
        level="practice",
        periods=["2024-12", "2024"],
        by=["drug", "pack_size", "sex", "consumption_group"],
        share_within="sex",
    ),
    dict(
        groups=["opioids", "gabapentinoids", "stimulants"],
        level="cluster",
        periods=["2024-01", "2024Q1"],
        by=["product", "addictive", "depot", "age", "started"],
    ),
    dict(groups=None, level="region", periods=["2023", "2024"], by=["group", "age_group"]),
]


@pytest.mark.parametrize("question", BREAKDOWNS, ids=lambda q: "-".join(q["by"]))
def test_every_breakdown_and_share(rich: Pair, question: dict[str, Any]) -> None:
    got = on_both(rich, lambda s: s.measures(**question))
    assert got.patients.sum() > 0 and got.share.notna().any()
    for dim in question["by"]:
        assert got[dim].notna().any(), f"no {dim} in the answer"


def test_filters_of_every_kind(rich: Pair) -> None:
    filters = {
        "addictive": True,  # redemption dimensions
        "depot": False,
        "sex": "M",  # person dimensions
        "age_group": ["45-64", "65-79", "80+"],
        "started": "started",  # patient dimensions
        "consumption_group": ["3 months to 1 year", "over 1 year"],
    }
    got = on_both(rich, lambda s: s.measures(["opioids", "N05"], "region", "2024", filters=filters))
    assert got.patients.sum() > 0


def test_compare_a_practice_with_its_cluster_region_and_nation(rich: Pair) -> None:
    got = on_both(rich, lambda s: s.compare("000006", "practice", "opioids", "2024Q4"))
    assert set(got.level) == {"practice", "cluster", "region", "nation"}


def test_percentiles_and_deciles(rich: Pair) -> None:
    ranks = on_both(
        rich,
        lambda s: s.percentiles(
            "ddd_per_1000", "practice", groups=["opioids", "sedatives"], periods="2024Q1..2024Q4"
        ),
    )
    assert ranks.percentile.max() == 100
    lines = on_both(
        rich, lambda s: s.deciles("patients_per_1000", groups="opioids", periods="2024Q3..2024Q4")
    )
    assert sorted(lines.decile.unique()) == list(range(10, 100, 10))


def test_non_gp_prescribers_at_nation_level(rich: Pair) -> None:
    got = on_both(rich, lambda s: s.measures("opioids", "nation", "2024", non_gp=True))
    assert {"gp", "specialist", "hospital", "gp_unknown_practice"} <= set(got.prescriber)


# --- Marts ----------------------------------------------------------------------------------

# One question through both marts: started/continued reads the stored redemption days, the
# rest the stored facts (non-GP rows included).
MART_QUESTION = dict(
    groups=["opioids", "sedatives"],
    level="nation",
    periods=["2024Q1", "2024"],
    by=["started", "consumption_group"],
    non_gp=True,
)


def test_marts_built_on_spark_answer_as_duckdb_raw_tables(rich: Pair) -> None:
    """The marts are plain Ibis too: built by Spark, read by Spark, equal to DuckDB's raw answer."""
    fingerprint = pa.table({"key": ["data_fingerprint"], "value": ["spark-conformance"]})
    rich.spark_session.createDataFrame(fingerprint).createOrReplaceTempView("metadata")
    marts = build_marts(rich.spark_con, rich.on_spark.definitions)
    assert marts.facts.count().execute() == len(rich.reg.rows["redemptions"])
    from_marts = wb.connect(rich.spark_con)
    assert from_marts.marts is not None
    got = assert_same(rich.duck.measures(**MART_QUESTION), from_marts.measures(**MART_QUESTION))
    assert got.patients.sum() > 0


def test_the_answer_store_built_on_spark_equals_duckdbs(rich: Pair) -> None:
    """The answer store's build is plain Ibis: every table it writes, built by Spark, holds the
    rows DuckDB's build of the same register holds."""
    from workbench.answers import Progress, build_answers
    from workbench.answers.judged import build_judged

    quiet = Progress(say=lambda _: None)
    built: dict[str, dict[str, pd.DataFrame]] = {}
    for name, con, session in (("duckdb", rich.duck_con, rich.duck),
                               ("spark", rich.spark_con, rich.on_spark)):
        def put(table: str, expr: ibis.Table, con: Any = con, prefix: str = name) -> ibis.Table:
            con.create_table(f"{prefix}_{table}", expr, overwrite=True)
            return con.table(f"{prefix}_{table}")

        def insert(table: str, expr: ibis.Table, con: Any = con, prefix: str = name) -> None:
            con.insert(f"{prefix}_{table}", expr)

        answers = build_answers(session.registers, session.definitions, put, quiet, insert)
        answers["units"] = con.table(f"{name}_units")
        answers.update(build_judged(session.registers, session.definitions, answers, put,
                                    insert, quiet))
        built[name] = {table: expr.to_pandas() for table, expr in answers.items()}
    assert set(built["spark"]) == set(built["duckdb"])
    for table, expected in built["duckdb"].items():
        got = built["spark"][table]
        assert list(got.columns) == list(expected.columns), table
        # every column but the floats orders the rows (text may come back as object or string)
        keys = [c for c in expected.columns if not pd.api.types.is_float_dtype(expected[c])]

        def ordered(df: pd.DataFrame, keys: list[str] = keys) -> pd.DataFrame:
            return df.sort_values(keys, na_position="first").reset_index(drop=True)

        assert len(got) == len(expected) > 0, table
        pd.testing.assert_frame_equal(ordered(got), ordered(expected), check_dtype=False,
                                      rtol=1e-9, atol=1e-9, obj=table)
