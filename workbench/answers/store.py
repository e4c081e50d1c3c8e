"""Reading the answer store: a page's slice in one query, never a computation.

:class:`AnswerStore` opens a built store (a DuckDB file) read-only and answers what pages ask
with the columns and rows the engine gives (:meth:`AnswerStore.measures` is
:meth:`workbench.engine.Workbench.measures` for every choice a page offers), by summing the
stored cells of the slice asked: a unit's rows, or every unit's rows of one level, selection and
period (a funnel's, a ranking's). Slices are read with the DuckDB connection's own parameterised
SQL: a page asks a few dozen slices of a few hundred rows each, and compiling each as an Ibis
expression would cost more than reading it. :meth:`AnswerStore.table` gives an analyst any
stored table as an Ibis table.

A question the store can't answer (a selection, period or level it doesn't hold) raises
:class:`NotInStore`: a page never falls back to computing, so a choice missing from the store
is a bug that shows, not a slow page.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from workbench.analysis.funnel import Fit
from workbench.answers.comparisons import as_fit, contour_lines, judge
from workbench.engine.journeys import OUTCOMES
from workbench.engine.query import MEASURES

PERSON_DIMS = ("sex", "age_group")
CELL_DIMS = ("sex", "age_group", "consumption_group", "started")
PART_DIMS = ("depot", "addictive", "pack_size", "product")
BY_DIMS = (*CELL_DIMS, *PART_DIMS, "drug")


class NotInStore(LookupError):
    """A question the answer store doesn't hold: a bug in what a page offers, or a stale
    store."""


@dataclass(frozen=True)
class Selection:
    """A selection a page can ask about: a drug group, or a drug (ATC code) of a group."""

    sel: str
    kind: str  # "group" or "drug"
    group: str


class AnswerStore:
    """A built answer store, open read-only (see the module doc)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no answer store; build it first")
        self.con = duckdb.connect(str(self.path), read_only=True)
        self.con.execute("SET enable_progress_bar = false")
        self._lock = threading.Lock()
        self.reads = 0  # slices read (a test counts them)

    def close(self) -> None:
        self.con.close()

    def __repr__(self) -> str:
        return f"<AnswerStore {self.path}>"

    # --- what the store holds -----------------------------------------------------------------
    def sql(self, query: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        """One read of the store (counted in :attr:`reads`). Columns of a fixed vocabulary,
        stored as ENUMs, come back as the plain text the engine gives."""
        with self._lock:
            self.reads += 1
            found = self.con.execute(query, list(parameters)).df()
        for column in found.columns:
            if isinstance(found[column].dtype, pd.CategoricalDtype):
                found[column] = found[column].astype(found[column].cat.categories.dtype)
        return found

    @cached_property
    def periods(self) -> pd.DataFrame:
        """Every period held: ``period, kind, period_start, days`` (newest first per kind)."""
        return self.sql("SELECT period, kind, period_start, days FROM periods ORDER BY pid")

    @cached_property
    def span(self) -> tuple[dt.date, dt.date]:
        """The first and last dispensing day of the register the store was built from."""
        found = self.sql("SELECT first_day, last_day FROM answer_state")
        return (pd.Timestamp(found["first_day"].iloc[0]).date(),
                pd.Timestamp(found["last_day"].iloc[0]).date())

    @cached_property
    def days(self) -> dict[str, int]:
        return dict(zip(self.periods["period"], self.periods["days"].astype(int), strict=True))

    @cached_property
    def selections(self) -> dict[str, Selection]:
        """Every selection held, by id: the groups, and the drugs that were redeemed."""
        rows = self.sql("SELECT sel, kind, \"group\" FROM selections ORDER BY sid")
        return {r.sel: Selection(r.sel, r.kind, r.group) for r in rows.itertuples()}

    def drugs_of(self, group: str) -> list[str]:
        """The drugs (ATC codes) of a group that were redeemed, in code order."""
        return [s.sel for s in self.selections.values() if s.kind == "drug" and s.group == group]

    def _selection(self, group: str, drug: str | None) -> Selection:
        sel = drug or group
        found = self.selections.get(sel)
        if found is None or found.group != group:
            raise NotInStore(f"no answers for {group!r}" + (f" / {drug!r}" if drug else ""))
        return found

    def _check_periods(self, periods: Sequence[str]) -> list[str]:
        periods = list(periods)
        unknown = [p for p in periods if p not in self.days]
        if unknown:
            raise NotInStore(f"no answers for period(s) {unknown}")
        return periods

    # --- measures -----------------------------------------------------------------------------
    def measures(
        self,
        groups: str | Iterable[str],
        level: str,
        periods: str | Iterable[str],
        *,
        units: Iterable[str] | None = None,
        by: str | None = None,
        filters: Mapping[str, Any] | None = None,
        measures: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """The engine's measures table for these choices (``groups``: group ids; ``filters``:
        at most ``{"drug": ATC code}``; ``by``: one breakdown), from the stored cells, in one
        read.

        Every unit of the level is there (0 patients without a redemption); a breakdown's
        categories are those someone redeemed in (the engine's rows), person dimensions
        (sex, age group) those with listed persons too.
        """
        target = (None, level, None if units is None else [str(u) for u in units])
        return self.measures_of(groups, [target], periods, by=by, filters=filters,
                                measures=measures)

    def measures_of(
        self,
        groups: str | Iterable[str],
        targets: Sequence[tuple[str | None, str, Sequence[str] | None]],
        periods: str | Iterable[str],
        *,
        by: str | None = None,
        filters: Mapping[str, Any] | None = None,
        measures: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """:meth:`measures` for several ``targets`` at once — ``(role, level, units)``, units
        ``None`` for every unit of the level — in one read; a ``role`` column names each
        target's rows when roles are given (a page's unit, its cluster and the nation).
        ``hidden`` says which rows' figures no view may publish (:mod:`.protected`)."""
        groups = [groups] if isinstance(groups, str) else list(groups)
        periods = self._check_periods([periods] if isinstance(periods, str) else periods)
        filters = dict(filters or {})
        drug = filters.pop("drug", None)
        if filters:
            raise NotInStore(f"the store answers a drug filter only, not {sorted(filters)}")
        if by is not None and by not in BY_DIMS:
            raise NotInStore(f"no breakdown {by!r} in the store; use one of {list(BY_DIMS)}")
        if by == "drug" and drug:
            raise NotInStore("a breakdown by drug with a drug chosen")
        selections = [self._selection(g, drug) for g in groups]
        wanted = list(dict.fromkeys(MEASURES if measures is None else measures))
        rows = self._read(selections, targets, periods, by)
        frames = []
        for role, level, units in targets:
            for selection in selections:
                table = self._assemble(rows, selection, role, level, units, periods, by)
                frames.append(table)
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        roles = ["role"] if any(role is not None for role, _, _ in targets) else []
        keep = ["level", "unit_id", "period", "group", *([by] if by else []), *wanted, *roles,
                "hidden"]
        return df[keep]

    def _read(self, selections: Sequence[Selection], targets: Sequence[tuple],
              periods: list[str], by: str | None) -> pd.DataFrame:
        """Every figure the targets need, in one statement: the numerator (``part`` ``num``),
        the breakdown's denominators (``tot``) and the listed persons (``lst``), each summed
        to unit, period, selection and the breakdown's value (``value``)."""
        where_units, unit_params = self._targets_clause(targets)
        period_list = ", ".join("?" * len(periods))
        person = by in PERSON_DIMS
        statements: list[str] = []
        params: list[Any] = []
        if by in PART_DIMS or by == "drug":
            part_sql, part_params = self._parts_sql(selections, by, where_units, unit_params,
                                                    period_list, periods)
            statements.append(part_sql)
            params += part_params
        else:
            sels = [s.sel for s in selections]
            value = by if by else "NULL"
            known = " AND sex IS NOT NULL" if person else ""
            key = (f"sel AS hsel, '{by}' AS hdim, CAST({by} AS VARCHAR) AS hvalue" if by
                   else "sel AS hsel, 'total' AS hdim, '' AS hvalue")
            statements.append(
                f"SELECT 'num' AS part, level, unit_id, period, sel, CAST({value} AS VARCHAR) "
                f"AS value, sum(patients) AS patients, sum(ddd) AS ddd, NULL AS listed, {key} "
                f"FROM cells WHERE ({where_units}) AND sel IN ({', '.join('?' * len(sels))}) "
                f"AND period IN ({period_list}){known} GROUP BY ALL")
            params += [*unit_params, *sels, *periods]
        if by is not None:
            sels = [s.sel for s in selections]
            known = " AND sex IS NOT NULL" if person else ""
            statements.append(
                f"SELECT 'tot', level, unit_id, period, sel, NULL, sum(patients), sum(ddd), NULL, "
                f"sel, 'total', '' FROM cells WHERE ({where_units}) AND sel IN "
                f"({', '.join('?' * len(sels))}) "
                f"AND period IN ({period_list}){known} GROUP BY ALL")
            params += [*unit_params, *sels, *periods]
        value = by if person else "NULL"
        known = " AND sex IS NOT NULL" if person else ""
        statements.append(
            f"SELECT 'lst', level, unit_id, period, NULL, CAST({value} AS VARCHAR), NULL, NULL, "
            f"sum(listed), NULL, NULL, NULL FROM listed WHERE ({where_units}) "
            f"AND period IN ({period_list}){known} GROUP BY ALL")
        params += [*unit_params, *periods]
        # each figure's decision (:mod:`.protected`) comes with it: ``hidden`` when no view may
        # publish it; the figure is named as the store's protection names it (hsel, hdim, hvalue)
        query = (
            f"SELECT r.* EXCLUDE (hsel, hdim, hvalue), h.level IS NOT NULL AS hidden "
            f"FROM ({' UNION ALL '.join(statements)}) r LEFT JOIN (SELECT level, unit_id, sel, "
            f"period, dim, value FROM hidden WHERE ({where_units}) AND period IN ({period_list})"
            f") h ON h.level = CAST(r.level AS VARCHAR) AND h.unit_id = r.unit_id "
            f"AND h.period = r.period AND h.sel = r.hsel AND h.dim = r.hdim "
            f"AND h.value = r.hvalue")
        return self.sql(query, [*params, *unit_params, *periods])

    def _targets_clause(self, targets: Sequence[tuple]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for _, level, units in targets:
            if units is None:
                clauses.append("level = ?")
                params.append(level)
            elif units:
                clauses.append(f"(level = ? AND unit_id IN ({', '.join('?' * len(units))}))")
                params += [level, *units]
        return (" OR ".join(clauses) or "false"), params

    def _parts_sql(self, selections: Sequence[Selection], by: str, where_units: str,
                   unit_params: list[Any], period_list: str, periods: list[str]
                   ) -> tuple[str, list[Any]]:
        """The numerator of a breakdown by drug or by a property of what was dispensed, under
        each selection's own id (``sel``)."""
        parts, params = [], []
        for selection in selections:
            if by == "drug":
                drugs = self.drugs_of(selection.group) or ["\0"]
                parts.append(
                    f"SELECT 'num' AS part, level, unit_id, period, ? AS sel, sel AS value, "
                    f"sum(patients) AS patients, sum(ddd) AS ddd, NULL AS listed, "
                    f"sel AS hsel, 'total' AS hdim, '' AS hvalue FROM cells "
                    f"WHERE ({where_units}) AND sel IN "
                    f"({', '.join('?' * len(drugs))}) AND period IN ({period_list}) GROUP BY ALL")
                params += [selection.sel, *unit_params, *drugs, *periods]
            elif by == "addictive" and selection.kind == "drug":
                flag = str(bool(self.selections_flags.get(selection.sel)))
                parts.append(
                    f"SELECT 'num' AS part, level, unit_id, period, sel, ? AS value, "
                    f"sum(patients) AS patients, sum(ddd) AS ddd, NULL AS listed, "
                    f"sel AS hsel, 'total' AS hdim, '' AS hvalue FROM cells "
                    f"WHERE ({where_units}) AND sel = ? AND period IN "
                    f"({period_list}) GROUP BY ALL")
                params += [flag, *unit_params, selection.sel, *periods]
            else:
                sels = [selection.sel]
                if by == "product" and selection.kind == "group":
                    sels = self.drugs_of(selection.group) or [selection.sel]
                parts.append(
                    f"SELECT 'num' AS part, level, unit_id, period, ? AS sel, value, "
                    f"sum(patients) AS patients, sum(ddd) AS ddd, NULL AS listed, "
                    f"sel AS hsel, CAST(dim AS VARCHAR) AS hdim, value AS hvalue FROM parts "
                    f"WHERE ({where_units}) AND sel IN "
                    f"({', '.join('?' * len(sels))}) AND period IN ({period_list}) AND dim = ? "
                    f"GROUP BY ALL")
                params += [selection.sel, *unit_params, *sels, *periods, by]
        return " UNION ALL ".join(parts), params

    @cached_property
    def selections_flags(self) -> dict[str, bool]:
        """Each drug's addictive flag (an ATC property)."""
        found = self.sql("SELECT sel, addictive FROM selections WHERE kind = 'drug'")
        return dict(zip(found["sel"], found["addictive"].astype(bool), strict=True))

    def _assemble(self, rows: pd.DataFrame, selection: Selection, role: str | None,
                  level: str, units: Sequence[str] | None, periods: list[str],
                  by: str | None) -> pd.DataFrame:
        """One target's and selection's measures table from the rows :meth:`_read` gave."""
        mine = rows[(rows["level"].to_numpy() == level)
                    & ((rows["sel"].to_numpy() == selection.sel) | (rows["part"] == "lst"))]
        if units is not None:
            mine = mine[mine["unit_id"].isin(units)]
        numerator = mine[mine["part"] == "num"].rename(columns={"value": by or "value"})
        listed = mine[mine["part"] == "lst"].rename(columns={"value": by or "value"})
        keys = ["unit_id", "period"]
        frame = self._frame(level, periods, units)
        person = by in PERSON_DIMS
        if person:
            # every person cell with listed persons, and any a patient falls in
            cells = pd.concat([listed[[*keys, by]], numerator[[*keys, by]]]).drop_duplicates()
            frame = frame.merge(cells, on=keys, how="left")
            table = frame.merge(numerator[[*keys, by, "patients", "ddd", "hidden"]],
                                on=[*keys, by], how="left")
            table = table.merge(listed[[*keys, by, "listed"]], on=[*keys, by], how="left")
        else:
            cols = [*keys, *([by] if by else []), "patients", "ddd", "hidden"]
            table = frame.merge(numerator[cols], on=keys, how="left")
            table = table.merge(listed[[*keys, "listed"]], on=keys, how="left")
        table["patients"] = table["patients"].fillna(0).astype("int64")
        table["ddd"] = table["ddd"].fillna(0.0).astype(float)
        table["listed"] = table["listed"].fillna(0.0).astype(float)
        table["hidden"] = table["hidden"].astype("boolean").fillna(False).astype(bool)
        if by is not None:
            totals = mine[mine["part"] == "tot"][[*keys, "patients"]].rename(
                columns={"patients": "group_patients"})
            table = table.merge(totals, on=keys, how="left")
            share = table["patients"] / table["group_patients"].where(
                table["group_patients"] > 0)
            table["share"] = share.astype(float)
            table = table.drop(columns="group_patients")
            if by in ("depot", "addictive", "pack_size", "product", "drug"):
                table[by] = table[by].astype(object)
        else:
            table["share"] = np.where(table["patients"] > 0, 1.0, np.nan)
        days = table["period"].map(self.days).astype(float)
        listed_ok = table["listed"].where(table["listed"] > 0)
        table["patients_per_1000"] = table["patients"] / listed_ok * 1000
        table["ddd_per_1000"] = table["ddd"] / listed_ok * 1000
        table["ddd_per_1000_per_day"] = table["ddd_per_1000"] / days
        table["level"] = level
        table["group"] = selection.group
        if role is not None:
            table["role"] = role
        if by is not None:  # the categories in a fixed order, whatever order they were read in
            order = table[by].map(lambda v: "" if v is None or v != v else str(v))
            table = table.assign(_order=order).sort_values(
                ["unit_id", "period", "_order"], kind="stable").drop(columns="_order")
        return table.reset_index(drop=True)

    def _frame(self, level: str, periods: list[str], units: Sequence[str] | None
               ) -> pd.DataFrame:
        """Every unit of the level (or of ``units`` that the level has) × period."""
        known = self.units(level)
        ids = known if units is None else [u for u in units if u in set(known)]
        return pd.DataFrame({"unit_id": np.repeat(ids, len(periods)),
                             "period": np.tile(periods, len(ids))})

    def units(self, level: str) -> list[str]:
        """Every unit of a level (a unit has at least one practice), sorted."""
        return self._units().get(level, [])

    def _units(self) -> dict[str, list[str]]:
        if not hasattr(self, "_unit_lists"):
            rows = self.sql("SELECT level, unit_id FROM units ORDER BY level, unit_id")
            self._unit_lists = {level: list(part["unit_id"])
                                for level, part in rows.groupby("level", sort=False)}
        return self._unit_lists

    def _where(self, level: str, sels: Sequence[str], periods: Sequence[str],
               units: Sequence[str] | None, table: str = "") -> tuple[str, list[Any]]:
        t = table
        clause = (f"{t}level = ? AND {t}sel IN ({', '.join('?' * len(sels))}) "
                  f"AND {t}period IN ({', '.join('?' * len(periods))})")
        params: list[Any] = [level, *sels, *periods]
        if units is not None:
            clause += (f" AND {t}unit_id IN ({', '.join('?' * len(units))})" if units
                       else " AND false")
            params += list(units)
        return clause, params

    # --- comparisons ---------------------------------------------------------------------------
    def funnel(self, group: str, level: str, period: str, *, basis: str = "patients",
               drug: str | None = None, units: Sequence[str] | None = None,
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The standardised funnel of every unit of ``level`` for a selection and period:
        ``(table, lines)`` as :func:`workbench.analysis.funnel` and
        :func:`~workbench.analysis.funnel.contours` give them (``units``: only these rows of
        it; the fit is always the whole level's)."""
        selection = self._selection(group, drug)
        self._check_periods([period])
        rows = self._standardised(level, [selection.sel], period, units)
        found = self.sql("SELECT * FROM funnels WHERE level = ? AND sel = ? AND period = ? "
                         "AND basis = ?", [level, selection.sel, period, basis])
        if found.empty:
            fitted = Fit(np.nan, 1.0, np.nan, 0.0, "none", 0)
            table = self._judged(rows, fitted, basis, selection)
            return table, contour_lines(fitted, np.nan, np.nan).assign(
                period=period, group=selection.group)
        fitted = as_fit(found.iloc[0])
        table = self._judged(rows, fitted, basis, selection)
        lines = contour_lines(fitted, float(found["min_exposure"].iloc[0]),
                              float(found["max_exposure"].iloc[0]))
        lines.insert(0, "group", selection.group)
        lines.insert(0, "period", period)
        return table, lines

    def standardised(self, groups: Sequence[str], level: str, period: str, *,
                     basis: str = "patients", drug: str | None = None,
                     units: Sequence[str] | None = None) -> pd.DataFrame:
        """Each unit's standardised figures (:func:`workbench.analysis.standardised`'s
        columns ``patients, listed, observed, expected, variance, oe, oe_lower, oe_upper``)
        with its funnel's ``z``, ``flag_95`` and ``flag_998``."""
        selections = [self._selection(g, drug) for g in groups]
        self._check_periods([period])
        rows = self._standardised(level, [s.sel for s in selections], period, units)
        fits = self._fits(level, [s.sel for s in selections], period, basis)
        parts = []
        for selection in selections:
            mine = rows[rows["sel"] == selection.sel]
            fitted = fits.get(selection.sel, Fit(np.nan, 1.0, np.nan, 0.0, "none", 0))
            parts.append(self._judged(mine, fitted, basis, selection))
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        return table.assign(
            measure=basis, oe=table["value"],
            oe_lower=table["ratio_lower"], oe_upper=table["ratio_upper"],
            crude_per_1000=table["observed"] / table["listed"].where(table["listed"] > 0) * 1000,
            expected_per_1000=table["exposure"] / table["listed"].where(table["listed"] > 0)
            * 1000,
        ).rename(columns={"exposure": "expected"})

    def _standardised(self, level: str, sels: Sequence[str], period: str,
                      units: Sequence[str] | None) -> pd.DataFrame:
        # ``hidden``: the unit's figure for the selection and period is one no view may
        # publish (:mod:`.protected`); its ratio rests on the same patients
        where, params = self._where(level, sels, [period], units, table="s.")
        return self.sql(
            f"SELECT s.*, h.level IS NOT NULL AS hidden FROM standardised s LEFT JOIN hidden h "
            f"ON h.level = CAST(s.level AS VARCHAR) AND h.unit_id = s.unit_id AND h.sel = s.sel "
            f"AND h.period = s.period AND h.dim = 'total' AND h.value = '' WHERE {where} "
            f"ORDER BY s.sel, s.unit_id", params)

    def _fits(self, level: str, sels: Sequence[str], period: str, basis: str
              ) -> dict[str, Fit]:
        found = self.sql(f"SELECT * FROM funnels WHERE level = ? AND sel IN "
                         f"({', '.join('?' * len(sels))}) AND period = ? AND basis = ?",
                         [level, *sels, period, basis])
        return {row["sel"]: as_fit(row) for _, row in found.iterrows()}

    def _judged(self, rows: pd.DataFrame, fitted: Fit, basis: str,
                selection: Selection) -> pd.DataFrame:
        judged = judge(rows, fitted, basis)
        judged = judged.assign(group=selection.group, phi=fitted.phi, tau2=fitted.tau2,
                               adjustment=fitted.adjustment)
        columns = ["level", "unit_id", "period", "group", "patients", "listed", "observed",
                   "expected", "variance", "value", "target", "z", "lower_95", "upper_95",
                   "lower_998", "upper_998", "flag_95", "flag_998", "phi", "tau2",
                   "adjustment", "ratio_lower", "ratio_upper", "hidden"]
        judged["patients"] = judged["patients"].astype("int64")
        judged["hidden"] = judged["hidden"].astype(bool)
        return judged[columns].rename(columns={"expected": "exposure"}).reset_index(drop=True)

    def deciles(self, group: str, periods: Sequence[str], measure: str, *,
                drug: str | None = None) -> pd.DataFrame:
        """``period, units, decile_10 … decile_90``: the deciles of the practices' published
        values of ``measure`` per period (``units``: how many values they rest on)."""
        selection = self._selection(group, drug)
        periods = self._check_periods(periods)
        found = self.sql(
            f"SELECT * FROM deciles WHERE sel = ? AND measure = ? AND period IN "
            f"({', '.join('?' * len(periods))})", [selection.sel, measure, *periods])
        order = {p: i for i, p in enumerate(periods)}
        found = found.sort_values("period", key=lambda s: s.map(order)).reset_index(drop=True)
        return found.drop(columns=["sel", "measure"])

    def risks(self, level: str, period: str, *, units: Sequence[str] | None = None,
              risks: Sequence[str] | None = None) -> pd.DataFrame:
        """Every risk of the level's units in a period: the engine's risk measures, with each
        practice's and cluster's funnel columns (``target, z, flag_95, flag_998`` …)."""
        self._check_periods([period])
        clause, params = "level = ? AND period = ?", [level, period]
        if units is not None:
            clause += f" AND unit_id IN ({', '.join('?' * len(units))})" if units else " AND false"
            params += list(units)
        if risks is not None:
            clause += f" AND risk IN ({', '.join('?' * len(risks))})" if risks else " AND false"
            params += list(risks)
        found = self.sql(f"SELECT * FROM risks WHERE {clause} ORDER BY risk, unit_id", params)
        if found.empty and period not in self.offered_risk_periods:
            raise NotInStore(f"no risks for period {period!r}")
        return found

    @cached_property
    def offered_risk_periods(self) -> set[str]:
        return set(self.sql("SELECT DISTINCT period FROM risks")["period"])

    def journeys(self, group: str, level: str, period: str, *,
                 units: Sequence[str] | None = None) -> pd.DataFrame:
        """The journeys of the period's new users of a group (the engine's columns)."""
        clause = "level = ? AND \"group\" = ? AND period = ?"
        params: list[Any] = [level, group, period]
        if units is not None:
            clause += f" AND unit_id IN ({', '.join('?' * len(units))})" if units else " AND false"
            params += list(units)
        found = self.sql(f"SELECT level, unit_id, period, \"group\", outcome, persons, cohort, "
                         f"share FROM journeys WHERE {clause}", params)
        if found.empty:
            raise NotInStore(f"no journeys for {group!r} in {period!r}")
        order = {o: i for i, o in enumerate(OUTCOMES)}
        return found.sort_values(["unit_id", "outcome"], key=lambda s: s.map(order)
                                 if s.name == "outcome" else s).reset_index(drop=True)

    def journey_periods(self) -> set[str]:
        """The cohort periods whose journeys the store holds."""
        return set(self.sql("SELECT DISTINCT period FROM journeys")["period"])

    def listed(self, level: str, periods: Sequence[str], units: Sequence[str] | None = None,
               by: str | None = None) -> pd.DataFrame:
        """``unit_id, period, [by], listed``: mean list sizes (by sex or age group: persons
        the persons register knows)."""
        clause = f"level = ? AND period IN ({', '.join('?' * len(periods))})"
        params: list[Any] = [level, *periods]
        if units is not None:
            clause += f" AND unit_id IN ({', '.join('?' * len(units))})" if units else " AND false"
            params += list(units)
        keys = ["unit_id", "period", *([by] if by else [])]
        if by:
            clause += " AND sex IS NOT NULL"
        column = ", ".join(keys)
        return self.sql(f"SELECT {column}, sum(listed) AS listed FROM listed WHERE {clause} "
                        f"GROUP BY {column}", params)
