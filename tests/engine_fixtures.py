"""Tiny hand-made registers for the engine tests, small enough to check every figure by hand.

A test starts from :func:`world` (four practices in three clusters and two regions, and a
catalogue of four products with round DDD per pack), adds the persons, listings and redemptions
of its case, and asks the session it builds:

>>> reg = world()
>>> reg.person("p1").listing("p1", "000001", "2024-01-01")
>>> reg.redeem("p1", "2024-03-01", MORPHINE, packs=2)  # 2 packs x 10 DDD
>>> reg.session().measures("opioids", "practice", "2024Q1").to_pandas()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa

from workbench.engine import Workbench, connect

MORPHINE = "100001"  # N02AA01 tablet, 10 DDD a pack, 20 tablets
OXYCODONE_DEPOT = "100002"  # N02AA05 depot tablet, 30 DDD a pack, 30 tablets
IBUPROFEN = "200001"  # M01AE01 tablet, 25 DDD a pack, 50 tablets
ZOPICLONE = "300001"  # N05CF01 tablet, 30 DDD a pack, 30 tablets (sedatives)

SCHEMAS: dict[str, pa.Schema] = {
    "persons": pa.schema(
        [
            ("person_id", pa.string()),
            ("sex", pa.string()),
            ("birth_date", pa.date32()),
            ("death_date", pa.date32()),
            ("municipality_code", pa.string()),
        ]
    ),
    "listings": pa.schema(
        [
            ("person_id", pa.string()),
            ("practice_id", pa.string()),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
        ]
    ),
    "practices": pa.schema(
        [
            ("practice_id", pa.string()),
            ("practice_name", pa.string()),
            ("municipality_code", pa.string()),
            ("region_code", pa.string()),
            ("cluster_id", pa.string()),
            ("n_gps", pa.int32()),
        ]
    ),
    "clusters": pa.schema(
        [("cluster_id", pa.string()), ("cluster_name", pa.string()), ("region_code", pa.string())]
    ),
    "products": pa.schema(
        [
            ("product_id", pa.string()),
            ("product_name", pa.string()),
            ("atc_code", pa.string()),
            ("form", pa.string()),
            ("strength", pa.float64()),
            ("strength_unit", pa.string()),
            ("pack_size", pa.int32()),
            ("ddd_per_pack", pa.float64()),
            ("depot", pa.bool_()),
        ]
    ),
    "redemptions": pa.schema(
        [
            ("person_id", pa.string()),
            ("dispensed_on", pa.date32()),
            ("product_id", pa.string()),
            ("packs", pa.int32()),
            ("prescriber_id", pa.string()),
            ("prescriber_type", pa.string()),
        ]
    ),
}


def day(value: str | dt.date | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


@dataclass
class TinyRegister:
    """Rows of the six register tables, added with chainable helpers."""

    rows: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in SCHEMAS})

    def practice(
        self, practice_id: str, cluster: str, region: str, municipality: str
    ) -> TinyRegister:
        self.rows["practices"].append(
            {
                "practice_id": practice_id,
                "practice_name": f"Practice {practice_id}",
                "municipality_code": municipality,
                "region_code": region,
                "cluster_id": cluster,
                "n_gps": 1,
            }
        )
        return self

    def cluster(self, cluster_id: str, region: str) -> TinyRegister:
        self.rows["clusters"].append(
            {
                "cluster_id": cluster_id,
                "cluster_name": f"Cluster {cluster_id}",
                "region_code": region,
            }
        )
        return self

    def product(
        self, product_id: str, atc: str, form: str, pack_size: int, ddd_per_pack: float
    ) -> TinyRegister:
        self.rows["products"].append(
            {
                "product_id": product_id,
                "product_name": f"Product {product_id}",
                "atc_code": atc,
                "form": form,
                "strength": 10.0,
                "strength_unit": "mg",
                "pack_size": pack_size,
                "ddd_per_pack": ddd_per_pack,
                "depot": form.startswith("depot"),
            }
        )
        return self

    def person(
        self, person_id: str, sex: str = "F", born: str = "1960-06-15", died: str | None = None
    ) -> TinyRegister:
        self.rows["persons"].append(
            {
                "person_id": person_id,
                "sex": sex,
                "birth_date": day(born),
                "death_date": day(died),
                "municipality_code": "851",
            }
        )
        return self

    def listing(
        self, person_id: str, practice_id: str, start: str, end: str | None = None
    ) -> TinyRegister:
        self.rows["listings"].append(
            {
                "person_id": person_id,
                "practice_id": practice_id,
                "start_date": day(start),
                "end_date": day(end),
            }
        )
        return self

    def redeem(
        self,
        person_id: str,
        on: str | dt.date,
        product_id: str = MORPHINE,
        packs: int = 1,
        prescriber: str | None = "000001",
        prescriber_type: str = "gp",
    ) -> TinyRegister:
        self.rows["redemptions"].append(
            {
                "person_id": person_id,
                "dispensed_on": day(on),
                "product_id": product_id,
                "packs": packs,
                "prescriber_id": prescriber,
                "prescriber_type": prescriber_type,
            }
        )
        return self

    def backend(self, path: Path | None = None) -> ibis.BaseBackend:
        """The register in a DuckDB database: in memory, or written to ``path``."""
        con = ibis.duckdb.connect(str(path) if path else ":memory:")
        for name, schema in SCHEMAS.items():
            con.create_table(name, pa.Table.from_pylist(self.rows[name], schema=schema))
        return con

    def session(self) -> Workbench:
        return connect(self.backend())


def world() -> TinyRegister:
    """Practices 000001 and 000002 (cluster K1, municipality 851) and 000003 (K2, 860) in region
    1081; 000004 (K3, 101) in region 1084. Products: MORPHINE, OXYCODONE_DEPOT, IBUPROFEN,
    ZOPICLONE. No persons yet."""
    reg = TinyRegister()
    reg.practice("000001", "K1", "1081", "851").practice("000002", "K1", "1081", "851")
    reg.practice("000003", "K2", "1081", "860").practice("000004", "K3", "1084", "101")
    reg.cluster("K1", "1081").cluster("K2", "1081").cluster("K3", "1084")
    reg.product(MORPHINE, "N02AA01", "tablet", 20, 10.0)
    reg.product(OXYCODONE_DEPOT, "N02AA05", "depot tablet", 30, 30.0)
    reg.product(IBUPROFEN, "M01AE01", "tablet", 50, 25.0)
    reg.product(ZOPICLONE, "N05CF01", "tablet", 30, 30.0)
    return reg


def rows(table: ibis.Table, **where: object) -> pd.DataFrame:
    """Execute ``table`` and keep the rows matching ``where`` (column=value), sorted for reading."""
    df = table.to_pandas()
    for column, value in where.items():
        df = df[df[column] == value]
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def one(table: ibis.Table, **where: object) -> dict:
    """The single row of ``table`` matching ``where``, as a dict (fails if not exactly one)."""
    df = rows(table, **where)
    assert len(df) == 1, f"expected one row for {where}, got\n{df}"
    return df.iloc[0].to_dict()
