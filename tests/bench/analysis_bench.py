"""Analysis benchmark and the planted-outlier check (issue 7).

* :func:`bench_analysis_standardised` (``make bench``): age/sex-standardised measures — expected,
  O/E with its exact interval, DSR with Dobson's interval — for every practice and every drug
  group in one year, on the national register, for patients and for DDD; wall time and peak RSS
  of each, and (when the dataset has the generator's ground truth) how well the 99.8 % funnel of
  the standardised ratios finds the planted outliers.
* :func:`evaluate_outliers`: the same check on any generated dataset, printed per group: how
  many practices the funnel flags at 99.8 %, and how many of the practices the generator made
  outliers (``ground_truth/outliers.csv``, level ``practice``) are among them. A planted outlier
  is found when it is flagged in its direction (high/low).

Run alone::

    .venv/bin/python tests/bench/analysis_bench.py evaluate --data .tmp/region-a [--period 2024]
    .venv/bin/python tests/bench/analysis_bench.py bench --data data/bench-nation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from engine_bench import GIB, measured

from workbench.analysis import funnel_table, standardised
from workbench.engine import Workbench, connect
from workbench.paths import Dataset

# The standardised ratio O/E (the one to act on) and the crude rate, for comparison.
INDICATORS = ("standardised_patients", "crude_patients_per_1000")


def last_full_year(session: Workbench) -> str:
    """The last calendar year the data covers to its end (December)."""
    last = pd.Timestamp(
        session.registers.redemptions.dispensed_on.max().to_pandas()
    )
    return str(last.year if last.month == 12 and last.day >= 24 else last.year - 1)


def practice_clusters(session: Workbench) -> pd.Series:
    practices = session.registers.practices.select("practice_id", "cluster_id").to_pandas()
    return practices.set_index("practice_id")["cluster_id"]


def flag_table(table: pd.DataFrame, indicator: str, method: str = "additive") -> pd.DataFrame:
    """The funnel of the practices of ``table`` (a :func:`standardised` result) per group."""
    if indicator == "standardised_patients":
        fitted = funnel_table(table, observed="observed", exposure="expected",
                              variance="variance", method=method)
    else:
        fitted = funnel_table(table, observed="observed", exposure="listed", per=1000.0,
                              method=method)
    return fitted.to_pandas()


def outlier_scores(
    fitted: pd.DataFrame, truth: pd.DataFrame, clusters: pd.Series, effective: pd.DataFrame | None
) -> pd.DataFrame:
    """Per group: practices, flagged at 99.8 % (high/low), planted (high/low), found, precision
    and recall. ``truth``: ``outliers.csv``; ``clusters``: practice id -> cluster id.

    Flags that are not planted practice outliers are explained where possible: ``in_cluster``
    counts those in a planted outlier *cluster* of the same direction (the generator multiplies
    a practice's rate by its cluster's), and ``effective`` (when the ground truth has the
    practices' propensities) those whose practice × cluster multiplier is beyond 1.5 (or below
    1/1.5) in the flagged direction.
    """
    planted = truth[truth["level"] == "practice"]
    planted_clusters = truth[truth["level"] == "cluster"]
    rows = []
    for group, part in fitted.groupby("group"):
        plant = planted[planted["group"] == group].set_index("unit_id")["direction"]
        plant = plant[plant.index.isin(part["unit_id"])]
        flags = part.set_index("unit_id")["flag_998"].dropna()
        found = sum(flags.get(u) == d for u, d in plant.items())
        cluster_dir = planted_clusters[planted_clusters["group"] == group].set_index("unit_id")[
            "direction"
        ]
        other = flags[[plant.get(u) != d for u, d in flags.items()]]
        in_cluster = sum(cluster_dir.get(clusters.get(u)) == d for u, d in other.items())
        explained = float("nan")
        if effective is not None:
            mult = effective[effective["group"] == group].set_index("practice_id")[
                "effective_multiplier"
            ]
            explained = sum(
                (mult.get(u, 1.0) >= 1.5) if d == "high" else (mult.get(u, 1.0) <= 1 / 1.5)
                for u, d in other.items()
            )
        rows.append({
            "group": group,
            "practices": len(part),
            "flagged": len(flags),
            "flagged_high": int((flags == "high").sum()),
            "flagged_low": int((flags == "low").sum()),
            "planted": len(plant),
            "planted_high": int((plant == "high").sum()),
            "planted_low": int((plant == "low").sum()),
            "found": int(found),
            "in_cluster": int(in_cluster),
            "effective": explained,
            "precision": found / len(flags) if len(flags) else float("nan"),
            "recall": found / len(plant) if len(plant) else float("nan"),
            "phi": float(part["phi"].iloc[0]),
            "adjustment": part["adjustment"].iloc[0],
        })
    out = pd.DataFrame(rows)
    total = out[["practices", "flagged", "flagged_high", "flagged_low", "planted",
                 "planted_high", "planted_low", "found", "in_cluster", "effective"]].sum(
        min_count=1
    )
    out.loc[len(out)] = {
        **total.to_dict(), "group": "all",
        "precision": total["found"] / total["flagged"] if total["flagged"] else float("nan"),
        "recall": total["found"] / total["planted"] if total["planted"] else float("nan"),
        "phi": float("nan"), "adjustment": "",
    }
    return out


def _truth(data: Path) -> pd.DataFrame | None:
    path = Dataset.at(data).ground_truth_dir / "outliers.csv"
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={"unit_id": str})


def _effective(data: Path) -> pd.DataFrame | None:
    path = Dataset.at(data).ground_truth_dir / "practice_propensity.parquet"
    return pd.read_parquet(path) if path.exists() else None


def evaluate_outliers(data: Path, period: str | None = None, method: str = "additive",
                      table: pd.DataFrame | None = None,
                      clusters: pd.Series | None = None) -> dict[str, Any]:
    """How many practices are flagged at 99.8 % per group, and how many planted outliers are
    among them, for the standardised ratio and the crude rate (printed and returned).

    ``table`` (a :func:`standardised` result of every practice) and ``clusters`` (practice id
    -> cluster id) are computed from the dataset unless given."""
    truth = _truth(data)
    if truth is None:
        raise FileNotFoundError(f"{data}: no ground_truth/outliers.csv (not a generated dataset)")
    if table is None or clusters is None:
        session = connect(Dataset.at(data).database)
        period = period or last_full_year(session)
        table = standardised(session, list(session.definitions.groups), "practice",
                             period).to_pandas()
        clusters = practice_clusters(session)
        session.con.disconnect()
    effective = _effective(data)
    result: dict[str, Any] = {"data": str(data), "period": period, "method": method}
    for indicator in INDICATORS:
        scores = outlier_scores(flag_table(table, indicator, method), truth, clusters, effective)
        result[indicator] = scores.to_dict(orient="records")
        print(f"\n== {indicator}, funnel of all practices, {period}, 99.8 % limits "
              f"({method} overdispersion) ==")
        print(scores.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return result


def bench_analysis_standardised(data: Path) -> dict:
    """Standardised measures for all practices × groups, one year, national data (read-only;
    the engine reads the raw tables when the database holds no current marts)."""
    database = Dataset.at(data).database
    if not database.exists():
        raise FileNotFoundError(f"{database}: no register; generate the national one first")
    session = connect(database)
    period = last_full_year(session)
    groups = list(session.definitions.groups)
    figures: dict[str, Any] = {}
    tables: dict[str, pd.DataFrame] = {}
    for measure in ("patients", "ddd"):
        with measured(figures, f"standardised_{measure}"):
            tables[measure] = standardised(session, groups, "practice", period,
                                           measure=measure).to_pandas()
    clusters = practice_clusters(session)
    result: dict[str, Any] = {
        "benchmark": "analysis_standardised",
        "database": str(database),
        "marts": session.marts is not None,
        "period": period,
        "practices": int(tables["patients"]["unit_id"].nunique()),
        "rows": len(tables["patients"]),
        "figures": figures,
    }
    session.con.disconnect()
    print(f"\n== standardised measures: {result['practices']:,} practices × {len(groups)} groups,"
          f" {period} ({'marts' if result['marts'] else 'raw tables'}) ==")
    print(f"{'':24s} {'seconds':>9s} {'peak RSS':>10s}")
    for name, f in figures.items():
        print(f"{name:24s} {f['seconds']:9.2f} {f['peak_rss_bytes'] / GIB:7.2f} GiB")
    if _truth(data) is not None:
        result["outliers"] = evaluate_outliers(data, period, table=tables["patients"],
                                               clusters=clusters)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["evaluate", "bench"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--period", default=None)
    parser.add_argument("--method", default="additive",
                        choices=["additive", "multiplicative", "none"])
    args = parser.parse_args()
    start = time.perf_counter()
    if args.what == "evaluate":
        result = evaluate_outliers(args.data, args.period, args.method)
    else:
        result = bench_analysis_standardised(args.data)
    print(f"\n({time.perf_counter() - start:.1f} s)")
    json.dumps(result)  # the figures must be JSON for bench/results
    return 0


if __name__ == "__main__":
    sys.exit(main())
