"""Materialised marts: the expensive, query-independent steps stored once in the database.

Every query starts from the same two things, whatever its filters: the redemptions classified
and attributed (:func:`~workbench.engine.facts.redemption_facts`: product join, DDD, group by
ATC rules, attribution) and, for started/continued, each person's redemption days per group with
the 365-day look-back already judged (:func:`~workbench.engine.patients.redemption_days`, a
window over the whole history). The marts store exactly those expressions' results, so answers
from the marts are identical to answers from the raw tables — the engine runs the same code on
either — only faster. ``engine_facts`` is sorted by date so a period reads few row groups.

They are keyed on the data fingerprint the loader writes (``metadata``: ``key =
'data_fingerprint'``), on the drug definitions and on :data:`MARTS_VERSION`: when any of them
changes the marts are stale, a writable session rebuilds them, and a read-only one computes from
the raw tables instead (correct, slower). Without a fingerprint the engine can't tell whether the
data changed, so it never trusts marts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from workbench.definitions import Definitions
from workbench.engine.facts import redemption_facts
from workbench.engine.patients import redemption_days
from workbench.engine.registers import Registers

# Bump when what the marts hold changes, so old databases rebuild.
MARTS_VERSION = "1"
FACTS_TABLE = "engine_facts"
DAYS_TABLE = "engine_group_days"
STATE_TABLE = "engine_marts_state"
METADATA_TABLE = "metadata"
FINGERPRINT_KEY = "data_fingerprint"


@dataclass(frozen=True)
class Marts:
    """The stored tables: ``facts`` (redemption facts, every product) and ``days``
    (redemption days with ``new_use``, per definitions group)."""

    facts: ir.Table
    days: ir.Table


def definitions_digest(definitions: Definitions) -> str:
    """A hash of everything in the definitions that changes a mart's rows."""
    content = {
        "groups": {gid: g.model_dump(mode="json") for gid, g in definitions.groups.items()},
        "addictive": definitions.addictive.model_dump(mode="json"),
        "depot": definitions.depot.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def data_fingerprint(con: BaseBackend) -> str | None:
    """The loader's fingerprint of the data in ``con``, or None if it wrote none."""
    if METADATA_TABLE not in con.list_tables():
        return None
    meta = con.table(METADATA_TABLE)
    found = meta.filter(meta.key == FINGERPRINT_KEY).select("value").to_pyarrow()
    return found.column("value")[0].as_py() if found.num_rows == 1 else None


def marts_key(con: BaseBackend, definitions: Definitions) -> str | None:
    """What the marts must have been built from to be current (None: unknowable)."""
    fingerprint = data_fingerprint(con)
    if fingerprint is None:
        return None
    return f"{MARTS_VERSION}:{fingerprint}:{definitions_digest(definitions)}"


def current_marts(con: BaseBackend, definitions: Definitions) -> Marts | None:
    """The marts if they exist and match the data and definitions, else None."""
    key = marts_key(con, definitions)
    if key is None or STATE_TABLE not in con.list_tables():
        return None
    state = con.table(STATE_TABLE).to_pyarrow()
    if state.num_rows != 1 or state.column("marts_key")[0].as_py() != key:
        return None
    return Marts(facts=con.table(FACTS_TABLE), days=con.table(DAYS_TABLE))


def build_marts(con: BaseBackend, definitions: Definitions) -> Marts:
    """(Re)build the marts in ``con`` from its register tables; needs a writable connection.

    The state row is written last, so an interrupted build leaves the marts stale, not wrong.
    """
    key = marts_key(con, definitions)
    if key is None:
        raise ValueError(
            f"no '{FINGERPRINT_KEY}' in table '{METADATA_TABLE}': load the data with the "
            "loader so the engine can tell when the marts go stale"
        )
    if STATE_TABLE in con.list_tables():
        con.drop_table(STATE_TABLE)
    reg = Registers.from_backend(con)
    facts = redemption_facts(reg.redemptions, reg.products, reg.practices, definitions)
    con.create_table(FACTS_TABLE, facts.order_by("dispensed_on"), overwrite=True)
    stored = con.table(FACTS_TABLE)
    grouped = stored.filter(stored.product_group.notnull()).mutate(group=stored.product_group)
    con.create_table(DAYS_TABLE, redemption_days(grouped), overwrite=True)
    con.create_table(STATE_TABLE, ibis.memtable({"marts_key": [key]}), overwrite=True)
    return Marts(facts=stored, days=con.table(DAYS_TABLE))
