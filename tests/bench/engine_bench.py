"""Engine benchmarks for ``make bench``: the full indicator table and dashboard latency.

* :func:`bench_engine_full_table` computes every measure for all practices × months × groups
  three ways in one run — the engine (from its marts), hand-written DuckDB SQL on the raw
  register, and a straightforward pandas version — checks that the three agree on every number,
  and only then reports the times side by side (targets: engine ≤ 2× the SQL, ≥ 10× faster than
  pandas) with the peak resident memory of each phase (target ≤ 4 GiB).
* :func:`bench_dashboard_latency` times 50 dashboard-style questions with random (seeded)
  groups, levels, units, periods, breakdowns and filters, as the five pages ask them (target:
  p95 ≤ 300 ms).

Both run in-process (the engine is a library) and sample this process's RSS every 50 ms; building
stale marts is timed separately and reported, since it happens once per data load.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import psutil

from workbench.definitions import Definitions, load_definitions
from workbench.engine import Workbench, connect, period_series
from workbench.engine.marts import current_marts
from workbench.paths import Dataset

GIB = 2**30
FULL_MEASURES = [
    "patients",
    "listed",
    "ddd",
    "patients_per_1000",
    "ddd_per_1000",
    "ddd_per_1000_per_day",
]
KEY = ["practice_id", "month", "group"]


class PeakRss:
    """The peak resident memory of this process while a ``with`` block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@contextmanager
def measured(figures: dict[str, Any], name: str) -> Iterator[None]:
    """Record wall seconds and peak RSS of the block as ``figures[name]``."""
    with PeakRss() as rss:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
    figures[name] = {"seconds": round(seconds, 3), "peak_rss_bytes": rss.peak}


def _session(data: Path, figures: dict[str, Any]) -> Workbench:
    """A read-only session with current marts, building them first (timed) when stale."""
    database = Dataset.at(data).database
    if not database.exists():
        raise FileNotFoundError(f"{database}: no register; generate the national one first")
    probe = connect(database)
    stale = probe.marts is None
    probe.con.disconnect()
    if stale:
        with measured(figures, "marts_build"):
            connect(database, read_only=False).con.disconnect()
    session = connect(database)
    if session.marts is None or current_marts(session.con, session.definitions) is None:
        raise RuntimeError("the marts could not be built (no data_fingerprint in metadata?)")
    return session


def _month_labels(con: duckdb.DuckDBPyConnection) -> list[str]:
    first, last = con.sql("select min(dispensed_on), max(dispensed_on) from redemptions").fetchone()
    return [p.label for p in period_series(f"{first:%Y-%m}", f"{last:%Y-%m}")]


# ---- the three implementations -------------------------------------------------------------


def engine_full_table(session: Workbench, months: list[str]) -> pd.DataFrame:
    """The engine's answer: one call, from the marts."""
    table = session.measures(
        groups=list(session.definitions.groups),
        level="practice",
        periods=months,
        measures=FULL_MEASURES,
    ).to_pandas()
    table = table.rename(columns={"unit_id": "practice_id", "period": "month"})
    return table[[*KEY, *FULL_MEASURES]]


def _group_case(definitions: Definitions) -> str:
    """The drug groups as a SQL CASE over ``atc_code`` (written out from the definitions)."""

    def any_prefix(prefixes: list[str]) -> str:
        return " OR ".join(f"starts_with(atc_code, '{p}')" for p in prefixes) or "false"

    whens = [
        f"WHEN ({any_prefix([*g.atc_include, *g.atc_legacy])}) "
        f"AND NOT ({any_prefix(g.atc_exclude)}) THEN '{gid}'"
        for gid, g in definitions.groups.items()
    ]
    return "CASE " + " ".join(whens) + " END"


def sql_full_table(
    con: duckdb.DuckDBPyConnection, definitions: Definitions, months: list[str]
) -> pd.DataFrame:
    """Hand-written DuckDB SQL on the raw register tables: the same contract, in one query."""
    first, last = f"{months[0]}-01", f"{months[-1]}-01"
    groups = ", ".join(f"('{g}')" for g in definitions.groups)
    sql = f"""
    WITH product_groups AS (
        SELECT product_id, ddd_per_pack, {_group_case(definitions)} AS grp FROM products
    ),
    months AS (
        SELECT m::DATE AS month, (m + INTERVAL 1 MONTH)::DATE AS month_end,
               datediff('day', m, m + INTERVAL 1 MONTH) AS days
        FROM generate_series(DATE '{first}', DATE '{last}', INTERVAL 1 MONTH) t(m)
    ),
    per_person AS (
        SELECT r.prescriber_id AS practice_id, g.grp,
               date_trunc('month', r.dispensed_on)::DATE AS month, r.person_id,
               sum(r.packs * g.ddd_per_pack) AS net
        FROM redemptions r JOIN product_groups g USING (product_id)
        WHERE r.prescriber_type = 'gp' AND g.grp IS NOT NULL
          AND r.prescriber_id IN (SELECT practice_id FROM practices)
          AND r.dispensed_on >= DATE '{first}'
          AND r.dispensed_on < (DATE '{last}' + INTERVAL 1 MONTH)
        GROUP BY ALL
    ),
    numerators AS (
        SELECT practice_id, grp, month, count(*) FILTER (WHERE round(net, 9) > 0) AS patients,
               sum(net) AS ddd
        FROM per_person GROUP BY ALL
    ),
    listed AS (
        SELECT l.practice_id, m.month,
               sum(datediff('day', greatest(l.start_date, m.month),
                            least(coalesce(l.end_date, m.month_end), m.month_end))) AS person_days
        FROM listings l JOIN months m
          ON l.start_date < m.month_end AND (l.end_date IS NULL OR l.end_date > m.month)
         AND (l.end_date IS NULL OR l.end_date > l.start_date)
        GROUP BY ALL
    ),
    frame AS (
        SELECT p.practice_id, m.month, m.days, g.grp
        FROM (SELECT DISTINCT practice_id FROM practices) p CROSS JOIN months m
        CROSS JOIN (VALUES {groups}) g(grp)
    ),
    joined AS (
        SELECT f.practice_id, strftime(f.month, '%Y-%m') AS month, f.grp AS "group", f.days,
               coalesce(n.patients, 0) AS patients,
               coalesce(l.person_days, 0) / f.days AS listed,
               coalesce(n.ddd, 0.0) AS ddd
        FROM frame f
        LEFT JOIN numerators n USING (practice_id, month, grp)
        LEFT JOIN listed l USING (practice_id, month)
    )
    SELECT practice_id, month, "group", patients, listed, ddd,
           CASE WHEN listed > 0 THEN patients / listed * 1000 END AS patients_per_1000,
           CASE WHEN listed > 0 THEN ddd / listed * 1000 END AS ddd_per_1000,
           CASE WHEN listed > 0 THEN ddd / listed * 1000 / days END AS ddd_per_1000_per_day
    FROM joined
    """
    return con.sql(sql).df()


def pandas_full_table(
    con: duckdb.DuckDBPyConnection, definitions: Definitions, months: list[str]
) -> pd.DataFrame:
    """A straightforward pandas version: load the tables, merge, group, divide.

    The redemptions are read in batches of the columns it needs and summed per person and cell
    batch by batch (sums of sums are the same sums), so the national register (52 M rows, about
    18 GiB as one DataFrame of every column) fits in a few GiB; everything else is plain pandas.
    """
    products = con.table("products").df()
    practices = con.table("practices").df()
    listings = con.table("listings").df()

    def group_of(atc: str) -> str | None:
        return next((gid for gid, g in definitions.groups.items() if g.matches(atc)), None)

    products["group"] = products.atc_code.map(group_of)
    columns = "person_id, product_id, prescriber_type, prescriber_id, dispensed_on, packs"
    reader = con.sql(f"select {columns} from redemptions").to_arrow_reader(2_000_000)
    partial = []
    for batch in reader:
        redemptions = batch.to_pandas()
        red = redemptions[
            (redemptions.prescriber_type == "gp")
            & redemptions.prescriber_id.isin(practices.practice_id)
        ]
        red = red.merge(products[["product_id", "group", "ddd_per_pack"]], on="product_id")
        red = red[red["group"].notna()]
        red = red.assign(
            ddd=red.packs * red.ddd_per_pack,
            month=pd.to_datetime(red.dispensed_on).dt.strftime("%Y-%m"),
            practice_id=red.prescriber_id,
        )
        red = red[red.month.isin(months)]
        partial.append(red.groupby(["practice_id", "month", "group", "person_id"]).ddd.sum())
    per_person = pd.concat(partial).groupby(level=[0, 1, 2, 3]).sum()
    per_person = per_person.reset_index()
    per_person["patient"] = per_person.ddd.round(9) > 0
    numerators = per_person.groupby(KEY).agg(patients=("patient", "sum"), ddd=("ddd", "sum"))

    start = pd.to_datetime(listings.start_date).to_numpy()
    end = pd.to_datetime(listings.end_date).to_numpy()
    parts = []
    for month in months:
        m_start = np.datetime64(f"{month}-01")
        m_end = (pd.Timestamp(m_start) + pd.DateOffset(months=1)).to_datetime64()
        ends = np.where(pd.isna(end), m_end, np.minimum(end, m_end))
        days = (ends - np.maximum(start, m_start)) / np.timedelta64(1, "D")
        person_days = pd.Series(np.clip(days, 0, None), index=listings.practice_id)
        summed = person_days.groupby(level=0).sum()
        parts.append(
            pd.DataFrame(
                {
                    "practice_id": summed.index,
                    "month": month,
                    "listed": summed.to_numpy() / ((m_end - m_start) / np.timedelta64(1, "D")),
                    "days": (m_end - m_start) / np.timedelta64(1, "D"),
                }
            )
        )
    listed = pd.concat(parts)
    frame = pd.MultiIndex.from_product(
        [practices.practice_id.unique(), months, list(definitions.groups)], names=KEY
    ).to_frame(index=False)
    table = frame.merge(numerators.reset_index(), on=KEY, how="left")
    table = table.merge(listed, on=["practice_id", "month"], how="left")
    month_days = {m: pd.Period(m).days_in_month for m in months}
    table["days"] = table.month.map(month_days)
    table["patients"] = table.patients.fillna(0).astype("int64")
    table["ddd"] = table.ddd.fillna(0.0)
    table["listed"] = table.listed.fillna(0.0)
    known = table.listed > 0
    safe = table.listed.where(known)
    table["patients_per_1000"] = table.patients / safe * 1000
    table["ddd_per_1000"] = table.ddd / safe * 1000
    table["ddd_per_1000_per_day"] = table.ddd_per_1000 / table.days
    return table[[*KEY, *FULL_MEASURES]]


def _normalised(table: pd.DataFrame) -> pd.DataFrame:
    table = table[[*KEY, *FULL_MEASURES]].astype({"patients": "int64"})
    table = table.astype({k: "object" for k in KEY}).astype({k: str for k in KEY})
    return table.sort_values(KEY).reset_index(drop=True)


def _assert_same(name: str, got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The three implementations must agree on every row and number before timing counts."""
    pd.testing.assert_frame_equal(
        _normalised(got), _normalised(want), check_dtype=False, rtol=1e-9, obj=name
    )


# ---- the benchmarks ------------------------------------------------------------------------


def bench_engine_full_table(data: Path) -> dict:
    """Every measure for all practices × months × groups: engine vs SQL vs pandas."""
    figures: dict[str, Any] = {}
    session = _session(data, figures)
    definitions = load_definitions()
    # The session's own DuckDB connection (same memory cap): DuckDB refuses a second connection
    # to one file with other settings.
    raw = session.con.con
    months = _month_labels(raw)
    results: dict[str, pd.DataFrame] = {}
    runs: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("engine", lambda: engine_full_table(session, months)),
        ("duckdb_sql", lambda: sql_full_table(raw, definitions, months)),
        ("pandas", lambda: pandas_full_table(raw, definitions, months)),
    ]
    for name, run in runs:
        with measured(figures, name):
            results[name] = run()
    _assert_same("engine vs SQL", results["engine"], results["duckdb_sql"])
    _assert_same("pandas vs SQL", results["pandas"], results["duckdb_sql"])
    engine, sql, pdf = (figures[n]["seconds"] for n in ("engine", "duckdb_sql", "pandas"))
    result = {
        "benchmark": "engine_full_table",
        "database": str(Dataset.at(data).database),
        "rows": len(results["engine"]),
        "months": len(months),
        "redemptions": raw.sql("select count(*) from redemptions").fetchone()[0],
        "figures": figures,
        "engine_vs_sql": round(engine / sql, 2),
        "pandas_vs_engine": round(pdf / engine, 1),
        "agree": True,
        "targets": {
            "engine_vs_sql_max": 2.0,
            "pandas_vs_engine_min": 10.0,
            "peak_rss_bytes": 4 * GIB,
        },
    }
    print(
        f"\n== engine full table: {result['rows']:,} rows (practices × months × groups), "
        f"{result['redemptions']:,} redemptions =="
    )
    print(f"{'':12s} {'seconds':>9s} {'peak RSS':>10s}")
    for name in ("marts_build", "engine", "duckdb_sql", "pandas"):
        if name in figures:
            f = figures[name]
            print(f"{name:12s} {f['seconds']:9.2f} {f['peak_rss_bytes'] / GIB:7.2f} GiB")
    print(
        f"engine / SQL = {result['engine_vs_sql']} (target ≤ 2), pandas / engine = "
        f"{result['pandas_vs_engine']} (target ≥ 10); all three agree on every number"
    )
    session.con.disconnect()
    return result


def dashboard_questions(session: Workbench, n: int = 50, seed: int = 2026) -> list[dict]:
    """``n`` questions as the five pages ask them, with random groups, units, periods,
    breakdowns and filters (seeded, so every run asks the same)."""
    rng = random.Random(seed)
    practices = session.registers.practices.to_pandas()
    raw = session.con.sql("select max(dispensed_on) as last from redemptions").to_pandas()
    last = pd.Timestamp(raw["last"].iloc[0])
    year = last.year if last.month == 12 else last.year - 1
    months = [f"{year}-{m:02d}" for m in range(1, 13)]
    periods = [
        lambda: rng.choice(months),
        lambda: f"{year}Q{rng.randint(1, 4)}",
        lambda: str(rng.choice([year - 1, year])),
        lambda: f"R12-{rng.choice(months)}",
        lambda: f"{months[0]}..{months[-1]}",
        lambda: f"R12-{year - 1}-{rng.randint(1, 12):02d}..R12-{year}-{rng.randint(1, 12):02d}",
        lambda: f"{year - 1}Q1..{year}Q4",
    ]
    breakdowns = [
        (),
        (),
        "sex",
        "age_group",
        "consumption_group",
        "started",
        "depot",
        "addictive",
        ["sex", "age_group"],
    ]
    filters = [
        None,
        None,
        None,
        {"sex": "F"},
        {"age_group": ["65-79", "80+"]},
        {"consumption_group": "over 1 year"},
        {"started": "started"},
    ]
    questions = []
    for _ in range(n):
        practice = practices.sample(1, random_state=rng.randrange(2**31)).iloc[0]
        page = rng.choice(["overview", "cluster", "cluster_area", "practice", "practice_area"])
        ask: dict[str, Any] = {"periods": rng.choice(periods)()}
        if page == "overview":
            ask |= {
                "level": rng.choice(["nation", "region"]),
                "groups": rng.choice(list(session.definitions.groups)),
            }
        elif page == "cluster":
            ask |= {
                "level": "cluster",
                "units": [practice.cluster_id],
                "groups": list(session.definitions.groups),
            }
        elif page == "cluster_area":
            members = practices[practices.cluster_id == practice.cluster_id].practice_id
            ask |= {
                "level": "practice",
                "units": sorted(members),
                "groups": rng.choice(list(session.definitions.groups)),
            }
        elif page == "practice":
            ask |= {
                "level": "practice",
                "units": [practice.practice_id],
                "groups": list(session.definitions.groups),
            }
        else:
            ask |= {
                "level": "practice",
                "units": [practice.practice_id],
                "groups": rng.choice(list(session.definitions.groups)),
            }
        by = rng.choice(breakdowns)
        chosen = rng.choice(filters)
        if by:
            ask["by"] = by
        if chosen and not set(chosen) & set([by] if isinstance(by, str) else by):
            ask["filters"] = chosen
        ask["page"] = page
        questions.append(ask)
    return questions


def bench_dashboard_latency(data: Path) -> dict:
    """p50/p95 latency of 50 dashboard-style questions (each to a pandas frame)."""
    figures: dict[str, Any] = {}
    session = _session(data, figures)
    questions = dashboard_questions(session)
    # One untimed question first: the connection's first query loads the catalogue.
    session.measures("opioids", "nation", questions[0]["periods"]).to_pandas()
    timings = []
    with PeakRss() as rss:
        for question in questions:
            ask = {k: v for k, v in question.items() if k != "page"}
            start = time.perf_counter()
            rows = len(session.measures(**ask).to_pandas())
            timings.append(
                {**question, "ms": round((time.perf_counter() - start) * 1000, 1), "rows": rows}
            )
    ms = sorted(t["ms"] for t in timings)
    p50 = statistics.median(ms)
    p95 = float(np.percentile(ms, 95))
    result = {
        "benchmark": "dashboard_latency",
        "database": str(Dataset.at(data).database),
        "questions": len(ms),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "max_ms": ms[-1],
        "peak_rss_bytes": rss.peak,
        "figures": figures,
        "targets": {"p95_ms": 300, "peak_rss_bytes": 4 * GIB},
        "timings": timings,
    }
    print(f"\n== dashboard latency: {len(ms)} questions with random filters ==")
    print(
        f"p50 {p50:7.1f} ms   p95 {p95:7.1f} ms (target ≤ 300)   max {ms[-1]:7.1f} ms   "
        f"peak memory {rss.peak / GIB:.2f} GiB (target ≤ 4 GiB)"
    )
    slowest = sorted(timings, key=lambda t: -t["ms"])[:5]
    for t in slowest:
        shown = {k: v for k, v in t.items() if k not in ("ms", "rows")}
        print(f"  {t['ms']:7.1f} ms  {shown}")
    session.con.disconnect()
    return result
