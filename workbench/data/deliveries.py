"""What a delivery appended to the register changed (``workbench data load --append``).

The loader builds the new database beside the old; before it is moved into place, the two are
compared table by table for the earliest day whose answers the delivery can change, and the
``deliveries`` table records it with the fingerprints before and after. The answer store reads
that chain to rebuild only the periods from that day on (:mod:`workbench.answers.local`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from workbench.data.schema import TABLES_BY_NAME
from workbench.data.validation import quote

# The earliest day a change to a table can move answers from, by table, as SQL over the rows
# that differ (``d``: old and new side by side on the table's key). Rows only added to the
# persons, practices, clusters or products act through the redemptions and listings that
# name them (whose own differences count); a row changed or removed there can move anything.
EVERYTHING = dt.date(1900, 1, 1)


def record_delivery(new: Path, old: Path, folder: Path) -> None:
    """Write ``deliveries``: the old database's rows and this one's, with ``changed_from``."""
    with duckdb.connect(str(new)) as con:
        quoted = str(old).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS old (READ_ONLY)")
        changed = [day for day in (
            _changed_redemptions(con), _changed_listings(con), _changed_persons(con),
            *(_changed_snapshot(con, t) for t in ("practices", "clusters", "products")),
        ) if day is not None]
        before = con.execute("SELECT value FROM old.metadata WHERE key = 'data_fingerprint'"
                             ).fetchone()
        after = con.execute("SELECT value FROM main.metadata WHERE key = 'data_fingerprint'"
                            ).fetchone()
        added = con.execute("SELECT (SELECT count(*) FROM main.redemptions) - "
                            "(SELECT count(*) FROM old.redemptions)").fetchone()[0]
        con.execute(
            "CREATE TABLE main.deliveries (folder VARCHAR, loaded_at TIMESTAMP, "
            "fingerprint_before VARCHAR, fingerprint_after VARCHAR, changed_from DATE, "
            "redemptions_added BIGINT)")
        kept = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'old' "
                           "AND table_name = 'deliveries'").fetchone()[0]
        if kept:
            con.execute("INSERT INTO main.deliveries SELECT * FROM old.deliveries")
        con.execute("INSERT INTO main.deliveries VALUES (?, now(), ?, ?, ?, ?)",
                    [str(folder), before[0] if before else None, after[0] if after else None,
                     min(changed) if changed else None, added])
        con.execute("DETACH old")
        con.execute("CHECKPOINT")


def _columns(table: str) -> str:
    return ", ".join(quote(c) for c in TABLES_BY_NAME[table].names)


def _changed_redemptions(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The first day of a redemption added or gone."""
    cols = _columns("redemptions")
    return con.execute(
        f"""SELECT min(dispensed_on) FROM (
              (SELECT {cols} FROM main.redemptions EXCEPT ALL SELECT {cols} FROM old.redemptions)
              UNION ALL
              (SELECT {cols} FROM old.redemptions EXCEPT ALL SELECT {cols} FROM main.redemptions))
        """).fetchone()[0]


def _changed_listings(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """A listing added, gone or moved to another practice counts from its start; one whose end
    changed, from the earlier of the two ends."""
    far = "DATE '9999-12-31'"
    return con.execute(
        f"""SELECT min(CASE
                WHEN n.person_id IS NULL THEN o.start_date
                WHEN o.person_id IS NULL THEN n.start_date
                WHEN n.practice_id IS DISTINCT FROM o.practice_id THEN n.start_date
                ELSE least(coalesce(n.end_date, {far}), coalesce(o.end_date, {far})) END)
            FROM main.listings n FULL JOIN old.listings o
              ON n.person_id = o.person_id AND n.start_date = o.start_date
            WHERE n.person_id IS NULL OR o.person_id IS NULL
               OR n.practice_id IS DISTINCT FROM o.practice_id
               OR n.end_date IS DISTINCT FROM o.end_date""").fetchone()[0]


def _changed_persons(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """A person's sex or birth date changed moves everything; a death date, from the earlier
    of the two (a death ends a journey's follow-up)."""
    far = "DATE '9999-12-31'"
    everything = f"DATE '{EVERYTHING.isoformat()}'"
    day = con.execute(
        f"""SELECT min(CASE
                WHEN n.sex IS DISTINCT FROM o.sex OR n.birth_date IS DISTINCT FROM o.birth_date
                THEN {everything}
                ELSE least(coalesce(n.death_date, {far}), coalesce(o.death_date, {far})) END)
            FROM main.persons n JOIN old.persons o ON n.person_id = o.person_id
            WHERE n.sex IS DISTINCT FROM o.sex OR n.birth_date IS DISTINCT FROM o.birth_date
               OR n.death_date IS DISTINCT FROM o.death_date""").fetchone()[0]
    return None if day is None or day.year == 9999 else day


def _changed_snapshot(con: duckdb.DuckDBPyConnection, table: str) -> dt.date | None:
    """A practice, cluster or product changed or gone can move anything."""
    cols = _columns(table)
    gone = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM old.{table} EXCEPT ALL "
                       f"SELECT {cols} FROM main.{table})").fetchone()[0]
    return EVERYTHING if gone else None
