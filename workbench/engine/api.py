"""The workbench in a notebook: ``connect()`` and one call for any indicator.

>>> import workbench.engine as wb                                  # doctest: +SKIP
>>> session = wb.connect()                                         # doctest: +SKIP
>>> session.measures(groups="opioids", level="cluster", periods="2024",
...                  by="consumption_group").to_pandas()           # doctest: +SKIP

Every method returns a *lazy* Ibis table: nothing runs until ``.to_pandas()``, ``.execute()`` or
a plot asks for rows, so an analyst can keep filtering, joining and grouping it in Ibis first.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from workbench.definitions import Definitions, load_definitions
from workbench.engine.marts import build_marts, current_marts, marts_key
from workbench.engine.measures import compute_measures
from workbench.engine.peers import deciles, percentile_ranks
from workbench.engine.query import Query
from workbench.engine.registers import Registers
from workbench.engine.units import NATION_ID, check_level
from workbench.paths import Dataset

PeriodsArg = Any  # "2024", "2024Q1..2024Q4", a Period, or a list of labels/periods

# DuckDB's own default is 80 % of the machine's memory; a dashboard server shares the machine
# with its kernels, so a session is capped (queries past the cap spill to ``temp_directory``).
DEFAULT_MEMORY_LIMIT = "3GB"


def duckdb_config(
    memory_limit: str | None = None, temp_directory: str | Path | None = None
) -> dict[str, str]:
    """The DuckDB settings :func:`connect` opens a database with: ``memory_limit`` (default
    3GB) and ``temp_directory`` for spilling (default a folder of this process in the system's
    temp folder, which DuckDB creates only when it spills and removes on close — never next
    to a read-only database). The defaults are the same for every session of a process:
    DuckDB refuses a second connection to an open file with other settings.

    >>> duckdb_config("1GB", "/tmp/spill")
    {'memory_limit': '1GB', 'temp_directory': '/tmp/spill'}
    """
    temp = temp_directory or Path(tempfile.gettempdir()) / f"workbench-duckdb-{os.getpid()}"
    return {"memory_limit": str(memory_limit or DEFAULT_MEMORY_LIMIT),
            "temp_directory": str(temp)}


class Workbench:
    """A session on one register: ask for measures, comparisons and peer ranks.

    Build it with :func:`connect`. ``con`` is the Ibis backend, ``registers`` the six tables,
    ``definitions`` the drug groups and age bands in force, ``marts`` the stored marts in use
    (None: every query reads the raw tables).
    """

    def __init__(
        self,
        con: BaseBackend,
        definitions: Definitions | None = None,
        *,
        writable: bool = False,
        use_marts: bool = True,
    ) -> None:
        self.con = con
        self.registers = Registers.from_backend(con)
        self.definitions = definitions or load_definitions()
        self.marts = current_marts(con, self.definitions) if use_marts else None
        if use_marts and self.marts is None and writable and marts_key(con, self.definitions):
            self.marts = build_marts(con, self.definitions)

    def __repr__(self) -> str:
        return f"<Workbench on {self.con.name} backend>"

    def measures(
        self,
        groups: str | Iterable[str] | None = None,
        level: str = "nation",
        periods: PeriodsArg = None,
        *,
        units: str | Iterable[str] | None = None,
        by: str | Iterable[str] = (),
        filters: Mapping[str, Any] | None = None,
        measures: str | Iterable[str] | None = None,
        non_gp: bool = False,
        share_within: str | Iterable[str] = (),
    ) -> ir.Table:
        """Measures per unit, period and group, broken down ``by`` any dimensions.

        groups:   group ids (``"opioids"``), ATC prefixes (``"N02AA"``) or product ids; one
                  answer per item. ``None``: every redemption, and no ``group`` column.
        level:    ``nation``, ``region``, ``municipality``, ``cluster`` or ``practice``.
        periods:  ``"2024"``, ``"2024Q1"``, ``"2024-03"``, ``"R12-2024-06"``, a list of them, or a
                  series ``"2024-01..2024-12"``.
        units:    only these unit ids of the level (default: every unit).
        by:       breakdowns: ``group``, ``drug``, ``product``, ``addictive``, ``depot``,
                  ``pack_size``, ``sex``, ``age``, ``age_group``, ``consumption_group``,
                  ``started``.
        filters:  ``{dimension: value or values}``, e.g. ``{"sex": "F", "depot": True}``.
        measures: some of ``patients``, ``share``, ``listed``, ``ddd``, ``patients_per_1000``,
                  ``ddd_per_1000``, ``ddd_per_1000_per_day`` (default: all).
        non_gp:   at nation level, add rows for redemptions of non-GP prescribers beside the GP
                  figures, labelled in a ``prescriber`` column.
        share_within: breakdowns kept in the share's denominator (e.g. ``"sex"``: the share of
                  women's patients, not of all patients).

        >>> session.measures("opioids", "practice", "2024", by="sex",
        ...                  measures=["patients", "patients_per_1000"])  # doctest: +SKIP
        """
        query = self._measures_query(groups, level, periods, units=units, by=by,
                                     filters=filters, measures=measures, non_gp=non_gp,
                                     share_within=share_within)
        return compute_measures(self.registers, self.definitions, query, self.marts)

    def _measures_query(self, groups: str | Iterable[str] | None = None, level: str = "nation",
                        periods: PeriodsArg = None, **kwargs: Any) -> Query:
        if periods is None:
            raise ValueError("say which period(s): periods='2024', '2024Q1..2024Q4', ...")
        return Query.build(self.definitions, groups=groups, level=level, periods=periods,
                           **{"units": None, **kwargs})

    def _answer(self, query: Query, compute: Any, what: str, *extra: Any) -> ir.Table:
        """``compute(query)``: the on-demand answer (pages read the answer store instead)."""
        return compute(query)

    def compare(
        self,
        unit: str,
        level: str,
        groups: str | Iterable[str] | None = None,
        periods: PeriodsArg = None,
        **kwargs: Any,
    ) -> ir.Table:
        """One unit beside its cluster (for a practice), its region and the nation, in one table.

        Takes the same arguments as :meth:`measures` (except ``units``); the ``level`` column
        tells the rows apart.

        >>> session.compare("012345", "practice", "opioids", "2024")  # doctest: +SKIP
        """
        parts = [
            self.measures(groups, lvl, periods, units=[uid], **kwargs)
            for lvl, uid in self.context_of(unit, level)
        ]
        return ibis.union(*parts)

    def context_of(self, unit: str, level: str) -> list[tuple[str, str]]:
        """``[(level, unit_id), ...]``: the unit, the cluster (of a practice), the region and the
        nation it belongs to, from the practices table."""
        level = check_level(level)
        if level == "nation":
            return [("nation", NATION_ID)]
        practices = self.registers.practices
        column = {
            "practice": "practice_id",
            "cluster": "cluster_id",
            "municipality": "municipality_code",
            "region": "region_code",
        }[level]
        wanted = ["cluster_id", "region_code"] if level == "practice" else ["region_code"]
        found = practices.filter(practices[column] == unit).select(*wanted).distinct().to_pyarrow()
        if found.num_rows == 0:
            raise ValueError(f"no practice belongs to {level} {unit!r}")
        if found.num_rows > 1:
            raise ValueError(f"{level} {unit!r} spans several regions; compare it to the nation")
        row = found.to_pylist()[0]
        context = [(level, unit)]
        if level == "practice" and row["cluster_id"] is not None:
            context.append(("cluster", row["cluster_id"]))
        if level != "region":
            context.append(("region", row["region_code"]))
        return [*context, ("nation", NATION_ID)]

    def percentiles(self, measure: str, level: str = "practice", **kwargs: Any) -> ir.Table:
        """Each unit's national percentile rank (0–100) on ``measure`` per period (and group
        and breakdown); ``kwargs`` as for :meth:`measures`.

        >>> session.percentiles("ddd_per_1000", "practice", groups="opioids",
        ...                     periods="2024Q1..2024Q4")  # doctest: +SKIP
        """
        return percentile_ranks(self.measures(level=level, measures=[measure], **kwargs), measure)

    def deciles(self, measure: str, level: str = "practice", **kwargs: Any) -> ir.Table:
        """The 10th, 20th, …, 90th percentiles of ``measure`` across units per period, the
        lines OpenPrescribing draws; ``kwargs`` as for :meth:`measures`.

        >>> session.deciles("ddd_per_1000", groups="opioids",
        ...                 periods="2024-01..2024-12")  # doctest: +SKIP
        """
        return deciles(self.measures(level=level, measures=[measure], **kwargs), measure)

    # --- person-level measures of issue 7 (thin delegations; see the modules' docs) ----------

    def journeys(
        self,
        groups: str | Iterable[str],
        level: str = "nation",
        periods: PeriodsArg = None,
        *,
        units: str | Iterable[str] | None = None,
        data_end: Any = None,
    ) -> ir.Table:
        """What became of the period's new users: reached 90/365 DDD within 6/12 months,
        stopped, died (:func:`workbench.engine.journeys.journeys`). ``data_end``: the first
        day after the data (a ``datetime.date``; default the day after the last redemption).

        >>> session.journeys("opioids", "practice", "2023", units="012345")  # doctest: +SKIP
        """
        from workbench.engine.journeys import journeys

        if periods is None:
            raise ValueError("say which period(s): periods='2024', '2024Q1..2024Q4', ...")
        query = Query.build(self.definitions, groups=groups, level=level, units=units,
                            periods=periods)
        assert query.groups is not None
        return self._answer(query, lambda q: journeys(
            self.registers, self.definitions, q.groups, q.level, q.periods, units=q.units,
            marts=self.marts, data_end=data_end), "journeys", data_end)

    def transitions(
        self,
        groups: str | Iterable[str],
        level: str = "nation",
        periods: PeriodsArg = None,
        *,
        units: str | Iterable[str] | None = None,
    ) -> ir.Table:
        """Patients by consumption group a year before and at the end of the period
        (:func:`workbench.engine.journeys.transitions`).

        >>> session.transitions("opioids", "cluster", "2024", units="K1")  # doctest: +SKIP
        """
        from workbench.engine.journeys import transitions

        if periods is None:
            raise ValueError("say which period(s): periods='2024', '2024Q1..2024Q4', ...")
        query = Query.build(self.definitions, groups=groups, level=level, units=units,
                            periods=periods)
        assert query.groups is not None
        return self._answer(query, lambda q: transitions(
            self.registers, self.definitions, q.groups, q.level, q.periods, units=q.units,
            marts=self.marts), "transitions")

    def risks(
        self,
        risks: str | Iterable[str] | None = None,
        level: str = "nation",
        periods: PeriodsArg = None,
        *,
        units: str | Iterable[str] | None = None,
    ) -> ir.Table:
        """Risky combinations of ``parameters/risks.yaml`` as measures: patients, population,
        listed, per 1,000 listed, share (:func:`workbench.engine.risks.risk_measures`).

        >>> session.risks("opioid_benzodiazepine", "practice", "2024")  # doctest: +SKIP
        """
        from workbench.engine.risks import risk_measures

        if periods is None:
            raise ValueError("say which period(s): periods='2024', '2024Q1..2024Q4', ...")
        query = Query.build(self.definitions, groups=None, level=level, units=units,
                            periods=periods)
        chosen = None if risks is None else [risks] if isinstance(risks, str) else list(risks)
        return self._answer(query, lambda q: risk_measures(
            self.registers, self.definitions, chosen, q.level, q.periods, units=q.units,
            marts=self.marts), "risks", chosen)


def connect(
    database: str | Path | BaseBackend | None = None,
    *,
    read_only: bool = True,
    definitions: Definitions | None = None,
    use_marts: bool = True,
    memory_limit: str | None = None,
    temp_directory: str | Path | None = None,
) -> Workbench:
    """Open a session: on the default dataset's database, a DuckDB file, or any Ibis backend
    that holds the register tables.

    A DuckDB file is opened with a memory cap and a spill folder (see :func:`duckdb_config`:
    3GB unless ``memory_limit`` says otherwise). A backend
    passed in keeps its own settings unless ``memory_limit``/``temp_directory`` are given (and
    it is DuckDB).

    Read-only by default: a notebook can't change the data. With ``read_only=False`` stale or
    missing marts (see :mod:`workbench.engine.marts`) are rebuilt on connect; read-only, stale
    marts are ignored and queries read the raw tables. ``use_marts=False`` always reads the raw
    tables (the reference the marts are tested against).

    >>> import ibis
    >>> from workbench.engine import connect
    >>> connect(ibis.duckdb.connect())  # an empty database  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: the database has no table(s) [...]
    """
    options = {"writable": not read_only, "use_marts": use_marts}
    if isinstance(database, BaseBackend):
        if database.name == "duckdb" and (memory_limit or temp_directory):
            settings = {"memory_limit": memory_limit, "temp_directory": temp_directory}
            for name, value in settings.items():
                if value:
                    database.raw_sql(f"SET {name} = '{str(value).replace(chr(39), chr(39) * 2)}'")
        return Workbench(database, definitions, **options)
    path = Path(database) if database is not None else Dataset.at().database
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no database; generate or load a register first (see README)"
        )
    config = duckdb_config(memory_limit, temp_directory)
    con = ibis.duckdb.connect(str(path), read_only=read_only, **config)
    return Workbench(con, definitions, **options)
