"""Disclosure control: what may leave the workbench, and the audit that tries to break it.

Every figure that leaves the engine for publication (a report, a dashboard, a CSV export) goes
through :func:`apply`. It works on an executed table (a pandas DataFrame) described by a
:class:`TableSpec`: which columns are person counts, which values are derived from them, and which
rows add up to which (declared by the caller as :class:`Margin` s: only the caller knows that sexes
add up to "all" but periods do not, since a person can be a patient in several periods, and that
the patients of a cluster are at most, not exactly, the sum over its practices).

The rules, and the attack each one prevents:

1. **Primary suppression.** A person count ``n`` with ``0 < n < threshold`` (default 5) is hidden:
   a figure about 1–4 persons can identify them. 0 is published: a true zero describes nobody.
   Listed persons (a mean list size, not an integer) follow the same rule.
2. **Derived values follow their counts.** A rate, share or DDD sum built on a hidden count is
   hidden too; otherwise ``patients = rate × listed / 1000`` gives the count back. A share is also
   hidden when its denominator (the group's total row) is hidden.
3. **Secondary suppression.** For every declared additive equation (a total and its parts, for every
   combination of the other keys), a hidden cell must not be recoverable by subtraction:
   - an equation with exactly one hidden cell gets a second one (this includes a hidden total whose
     parts are all published);
   - when the total is published, the hidden parts together must be at least ``threshold``:
     otherwise ``total - published parts`` pins every hidden part into an interval narrower than
     the suppression band (two hidden parts summing to 2 are both 1);
   - the complement is the smallest published *non-zero* cell of the equation (a hidden zero adds
     no uncertainty: its equation still pins the other cell's interval to its own value).
   Rules are repeated to a fixed point, then the table is audited (:func:`recoverable_cells`);
   while the audit finds a leak (two-way tables and beyond leak through chains of equations even
   when every single equation has two hidden cells), one more complement is hidden: for a solved
   cell the smallest one that un-solves it, else the smallest next to it.
4. **Rounding** (optional, ``DisclosurePolicy(rounding=5)``) applies to published person counts
   *after* suppression, so suppression decisions rest on true values. Counts are rounded to the
   nearest multiple (halves up), and a non-zero count never rounds to 0 or below the threshold
   (that would claim a true zero or a small cell). Rates are not recomputed: a rate published with
   its denominator still gives the exact count, so rounding is presentation, never the protection.
5. **What is published.** Hidden values become NA (nullable dtypes) and a ``<count>_suppressed``
   flag per count column says which; :func:`suppression_mask` gives it for every value column.
   Why a cell is hidden (primary or secondary) is *not* published: a reader who knows that a
   secondary cell holds at least ``threshold`` persons can pin the primary one (``A + B = 6`` with
   ``B >= 5`` gives ``A = 1``). Analyst mode shows it.

Analyst mode (:func:`set_analyst_mode`, :func:`analyst_mode`) shows unsuppressed values with the
flags and reasons inside an interactive session. Render and serve run under publishing mode (the
environment variable ``WORKBENCH_PUBLISHING``, set by :func:`publishing`, inherited by the Papermill
and Voilà kernels they start); asking for analyst mode there raises :class:`DisclosureError`, and
publishers call :func:`require_safe` before writing anything.

The audit (:func:`recoverable_cells`) is an attacker who knows the published table, the declared
margins and that counts are not negative. It finds every hidden value the margins solve (linear
algebra: the unit vector in the row space, checked against a null-space basis from scipy) and every
one they confine to an interval narrower than the threshold (exact: a linear programme per bound,
solved by HiGHS through ``scipy.optimize.linprog``, since combining equations narrows far more than
any one equation shows). Known limitations:

- tables are protected one at a time here; what links tables (a drug in its group's table and on
  its own page, a cluster beside its region) is decided once in the answer store
  (:mod:`workbench.answers.protected`, ``docs/disclosure.md``) and arrives as ``decided``;
- an attacker who knows the algorithm (complements are the smallest non-zero cells) or who uses
  integrality is not modelled;
- absent rows are taken as true zeros (complete the table before applying);
- the cost grows with the largest connected group of hidden cells (a dense SVD per group and up
  to two linear programmes per hidden cell): quick for the tables a page shows (tens to hundreds
  of cells), not meant for a national practice x age x sex cube.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.linalg import null_space
from scipy.optimize import OptimizeResult, linprog

PUBLISHING_ENV = "WORKBENCH_PUBLISHING"
"""Set (to anything but empty or "0") in every process that renders or serves pages."""

PERSON_KEY_COLUMNS = frozenset({"person_id", "person_key", "cpr", "cpr_nr", "cprnr", "pnr"})
PERSON_KEY_VALUE = re.compile(r"\b(?:P\d{9}|\d{6}-?\d{4})\b")
"""Our pseudonymous person key (P + 9 digits) or a CPR number (DDMMYY-SSSS, dash optional)."""

_PINNED = 1e-6  # distance of a unit vector to the row space: ~1e-15 when pinned, >0.1 if not
_TOLERANCE = 1e-6  # relative: margins that add up, interval widths at the threshold


class DisclosureError(RuntimeError):
    """A figure would leave the workbench unprotected, or a publisher runs in analyst mode."""


@dataclass(frozen=True)
class DisclosurePolicy:
    """The threshold below which a non-zero person count is hidden, and optional rounding."""

    threshold: int = 5
    rounding: int | None = None

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {self.threshold}")
        if self.rounding is not None and self.rounding < 2:
            raise ValueError(f"rounding base must be at least 2 (or None), got {self.rounding}")


DEFAULT_POLICY = DisclosurePolicy()


@dataclass(frozen=True)
class Margin:
    """Rows whose ``column`` is ``total`` are the sum of the rows holding ``parts``.

    The equation holds separately for every combination of the other key columns. ``parts=None``
    means every other value of the column except the totals of other margins on it; so with a
    subtotal ``Margin("age", "0-64", parts=("0-17", "18-44", "45-64"))``, ``Margin("age", "all")``
    adds up the age bands and does not count the subtotal twice.

    ``overlapping`` names the counts whose parts can share persons, so that the total is at most
    their sum and at least each part: patients of a cluster are distinct persons, and one treated
    by two of its practices is a patient of both (listed persons and DDD still add up exactly).
    It relaxes only the interval check: for solvability every margin counts as exact, since DDD
    built on the same persons does add up and the overlap is small and easy to guess.
    """

    column: str
    total: Hashable
    parts: tuple[Hashable, ...] | None = None
    overlapping: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.parts is not None:
            object.__setattr__(self, "parts", tuple(self.parts))
        names = (self.overlapping,) if isinstance(self.overlapping, str) else self.overlapping
        object.__setattr__(self, "overlapping", tuple(names))


@dataclass(frozen=True)
class Derived:
    """A value computed from person counts: a rate, a share or a DDD sum.

    ``on``: the count columns of the same row it is built on (hidden whenever one of them is).
    ``share_of``: for a share, the key values that locate its denominator row, e.g.
    ``{"consumption_group": "all"}``; the share is also hidden when that row's counts are.
    ``additive``: the value adds up along the margins like its counts (a DDD sum), so the audit
    checks that hidden ones cannot be solved for.
    """

    column: str
    on: tuple[str, ...]
    share_of: Mapping[str, Hashable] | None = None
    additive: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "on", (self.on,) if isinstance(self.on, str) else tuple(self.on))
        if self.share_of is not None:
            object.__setattr__(self, "share_of", dict(self.share_of))


@dataclass(frozen=True)
class TableSpec:
    """What each column of a table to publish is, and which of its rows add up.

    Every column must be declared: an undeclared numeric column could be a rate nobody suppresses.
    ``keys`` identify a row (unique together); ``labels`` are descriptive text passed through;
    ``counts`` are person counts (patients, listed persons); ``derived`` values are built on them.
    ``decided`` names a boolean column: the rows whose figures the answer store hides in every
    view (:mod:`workbench.answers.protected`, decided over the relations between views); their
    counts (those of ``decides``; all when empty) are hidden here whatever their size, and the
    column itself is not published.
    """

    keys: tuple[str, ...]
    counts: tuple[str, ...]
    derived: tuple[Derived, ...] = ()
    margins: tuple[Margin, ...] = ()
    labels: tuple[str, ...] = ()
    decided: str | None = None
    decides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("keys", "counts", "derived", "margins", "labels", "decides"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        _check_spec(self)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.labels, *self.counts, *(d.column for d in self.derived),
                *((self.decided,) if self.decided else ()))


@dataclass(frozen=True)
class Finding:
    """A protection failure in a published table.

    ``why``: ``"small"`` (a count of 1..threshold-1 is shown), ``"determined"`` (a hidden value is
    solved by the equations; ``low == high`` is the value an attacker gets) or ``"interval"`` (the
    hidden value is confined to ``[low, high]``, narrower than the threshold).
    """

    row: Hashable
    column: str
    key: Mapping[str, Hashable]
    why: str
    low: float
    high: float


# --- modes -------------------------------------------------------------------------------------

_analyst = False


def publishing_active() -> bool:
    """Whether this process renders or serves (fails closed: any value but "" or "0" is on)."""
    return os.environ.get(PUBLISHING_ENV, "").strip() not in ("", "0")


@contextmanager
def publishing() -> Iterator[None]:
    """Run a block as a publisher; child processes (Papermill, Voilà kernels) inherit the mode."""
    if _analyst:
        raise DisclosureError("analyst mode is on in this process: turn it off before publishing")
    previous = os.environ.get(PUBLISHING_ENV)
    os.environ[PUBLISHING_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PUBLISHING_ENV]
        else:
            os.environ[PUBLISHING_ENV] = previous


def set_analyst_mode(on: bool) -> None:
    """Show unsuppressed values (with flags and reasons) in this interactive session.

    Raises :class:`DisclosureError` under publishing mode: rendered or served pages never show them.
    """
    global _analyst
    if on and publishing_active():
        raise DisclosureError(
            f"analyst mode is not available while publishing ({PUBLISHING_ENV} is set): "
            "rendered and served pages always show suppressed figures"
        )
    _analyst = on


def analyst_mode_active() -> bool:
    return _analyst


@contextmanager
def analyst_mode() -> Iterator[None]:
    """Analyst mode for the duration of a block."""
    global _analyst
    previous = _analyst
    set_analyst_mode(True)
    try:
        yield
    finally:
        _analyst = previous


def require_safe() -> None:
    """Refuse to publish from a process in analyst mode; every publisher calls it before writing."""
    if _analyst:
        raise DisclosureError(
            "analyst mode is on: unsuppressed figures must not be published; "
            "call set_analyst_mode(False) and re-run apply()"
        )


def _analyst_view() -> bool:
    """Analyst mode, re-checked at use: it may have been switched on before publishing began."""
    if _analyst and publishing_active():
        raise DisclosureError(f"analyst mode was switched on, but {PUBLISHING_ENV} is set")
    return _analyst


# --- the public operations ---------------------------------------------------------------------


def apply(
    df: pd.DataFrame, spec: TableSpec, policy: DisclosurePolicy = DEFAULT_POLICY
) -> pd.DataFrame:
    """The table as it may be published: hidden values NA, one ``<count>_suppressed`` flag each.

    In analyst mode the values stay, and a ``<count>_suppression`` column says why a value would be
    hidden (``primary``/``secondary``). The input is not modified; row order and index are kept.
    """
    analyst = _analyst_view()
    frame = df.reset_index(drop=True)
    _check_table(frame, spec)
    equations = _equations(frame, spec)
    _check_margins(frame, spec, equations)
    hidden, primary = {}, {}
    decided = (frame[spec.decided].to_numpy(dtype=bool) if spec.decided
               else np.zeros(len(frame), dtype=bool))
    for count in spec.counts:
        values = frame[count].to_numpy(dtype=float)
        forced = decided if not spec.decides or count in spec.decides else None
        hidden[count], primary[count] = _protect(values, equations, policy.threshold, count,
                                                 forced)
    # Built column by column into one new frame: a page publishes a dozen small tables, and
    # pandas' per-column assignment, ``where`` and ``astype`` cost more than the rules do.
    hide = {count: hidden[count] for count in spec.counts} if not analyst else {}
    if not analyst:
        hide.update({d.column: _derived_mask(frame, spec, d, hidden) for d in spec.derived})
    valued = {*spec.counts, *(d.column for d in spec.derived)}
    columns = {column: _nullable(series, hide.get(column)) if column in valued else series.array
               for column, series in frame.items() if column != spec.decided}
    for count in spec.counts:
        columns[_flag(count)] = hidden[count]
        if analyst:
            columns[f"{count}_suppression"] = _reasons(hidden[count], primary[count]).array
    out = pd.DataFrame(columns, index=df.index)
    if policy.rounding is not None and not analyst:
        for count in spec.counts:
            rounded = _round(out[count].to_numpy(float, na_value=np.nan), policy)
            out[count] = pd.Series(rounded, index=out.index).astype(out[count].dtype)
    return out


def suppression_mask(published: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Which values of a published table are hidden, for every count and derived column.

    Renderers use it to tell a hidden value ("x") from one that is not defined (a rate on 0 listed).
    """
    frame = published.reset_index(drop=True)
    counts = {c: frame[_flag(c)].to_numpy(dtype=bool) for c in spec.counts}
    derived = {d.column: _derived_mask(frame, spec, d, counts) for d in spec.derived}
    return pd.DataFrame({**counts, **derived}, index=published.index)


def recoverable_cells(
    published: pd.DataFrame, spec: TableSpec, policy: DisclosurePolicy = DEFAULT_POLICY
) -> list[Finding]:
    """Audit a published table the way an attacker would; an empty list means no leak was found.

    Every NA in a count or additive derived column is an unknown; the declared margins give linear
    constraints with the published values as constants. Reported: shown counts of
    1..threshold-1, unknowns the margins solve (the unit vector lies in the row space of the
    coefficients) and, for counts, unknowns that the margins and non-negativity confine to an
    interval narrower than the threshold (exact bounds by linear programming; overlapping margins
    as inequalities). Audit tables before rounding: rounded constants do not add up, and no
    interval is claimed for constraints without a solution.
    """
    frame = published.reset_index(drop=True)
    equations = _equations(frame, spec)
    audited = [(c, float(policy.threshold)) for c in spec.counts]
    audited += [(d.column, None) for d in spec.derived if d.additive]
    findings = []
    for column, threshold in audited:
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        for position, why, low, high in _leaks(values, equations, threshold, column):
            key = {k: frame.at[position, k] for k in spec.keys}
            findings.append(Finding(published.index[position], column, key, why, low, high))
    return findings


def scan_for_person_keys(df: pd.DataFrame) -> None:
    """Raise :class:`DisclosureError` if a table holds person keys; every publisher calls it.

    Checks column names (``person_id``, ``cpr`` …), column labels, the index and every text column
    for our person key (P + 9 digits) or a CPR-like number (10 digits, dash optional). Numeric
    columns are not scanned: national DDD sums have 10 digits too.
    """
    problems = [f"column {c!r} is a person key" for c in df.columns
                if str(c).lower() in PERSON_KEY_COLUMNS]
    problems += [f"column label {c!r} looks like a person key" for c in df.columns
                 if PERSON_KEY_VALUE.search(str(c))]
    columns = list(df.items())
    if not isinstance(df.index, pd.RangeIndex):  # a range holds no text
        index = df.index.to_frame(index=False)
        columns += [("index " + str(n), s) for n, s in index.items()]
    textual = [(name, values) for name, values in columns if _textual(values)]
    # One search over every text value of the table first: tables are scanned on every publish
    # and hardly ever hold a key, so only a hit pays for finding the column. The values are
    # joined by newlines, which a key can't span and which \b sees as a boundary.
    if textual and PERSON_KEY_VALUE.search("\n".join(
            _texts(values) for _, values in textual)):
        problems += [f"{name!r} holds values that look like person keys"
                     for name, values in textual if PERSON_KEY_VALUE.search(_texts(values))]
    if problems:
        raise DisclosureError("person keys must never be published: " + "; ".join(problems))


# --- validation --------------------------------------------------------------------------------


def _check_spec(spec: TableSpec) -> None:
    names = spec.columns
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ValueError(f"column(s) {doubles} are declared in more than one role")
    for d in spec.derived:
        if not d.on or not set(d.on) <= set(spec.counts):
            raise ValueError(
                f"derived column {d.column!r} must be built on declared counts {spec.counts}, "
                f"got {d.on}"
            )
        if d.share_of is not None and not set(d.share_of) <= set(spec.keys):
            raise ValueError(f"share_of of {d.column!r} must name key columns, got {d.share_of}")
    if not set(spec.decides) <= set(spec.counts) or (spec.decides and not spec.decided):
        raise ValueError(f"decides {spec.decides} must name counts {spec.counts} of a decided "
                         "column")
    for m in spec.margins:
        if m.column not in spec.keys:
            raise ValueError(f"margin column {m.column!r} is not a key column {spec.keys}")
        if not set(m.overlapping) <= set(spec.counts):
            raise ValueError(f"overlapping {m.overlapping} of margin {m.column!r} are not counts")


def _check_table(frame: pd.DataFrame, spec: TableSpec) -> None:
    missing = [c for c in spec.columns if c not in frame.columns]
    undeclared = [c for c in frame.columns if c not in spec.columns]
    if missing or undeclared:
        raise ValueError(
            f"table and spec disagree: missing {missing}, undeclared {undeclared}; declare every "
            "column as a key, label, count or derived value so nothing escapes suppression"
        )
    if frame.columns.has_duplicates:
        raise ValueError(f"columns {sorted(set(frame.columns[frame.columns.duplicated()]))} "
                         "appear more than once")
    if spec.keys and len(set(_key_tuples(frame, spec.keys))) < len(frame):
        raise ValueError(f"key columns {spec.keys} do not identify rows uniquely")
    if spec.decided and not pd.api.types.is_bool_dtype(frame[spec.decided].dtype):
        raise ValueError(f"column {spec.decided!r} (decided) is not boolean")
    for column in (*spec.counts, *(d.column for d in spec.derived)):
        dtype = frame[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise ValueError(f"column {column!r} is not numeric ({dtype})")
    for count in spec.counts:
        values = frame[count].to_numpy(dtype=float, na_value=np.nan)
        if np.isnan(values).any() or (values < 0).any():
            raise ValueError(f"count column {count!r} has missing or negative values")


# --- the additive structure --------------------------------------------------------------------

class Equation(NamedTuple):
    """A declared margin in one combination of the other keys: total = sum of parts.

    ``cells`` (the parts, then the total) and ``signs`` (+1 for a part, -1 for the total) are
    kept so the audit, run after every round of suppression, does not rebuild them.
    """

    total: int
    parts: np.ndarray
    overlapping: frozenset[str]
    cells: np.ndarray
    signs: np.ndarray


def _equations(frame: pd.DataFrame, spec: TableSpec) -> list[Equation]:
    equations = []
    for margin in spec.margins:
        column = frame[margin.column]
        is_total = column.eq(margin.total).fillna(False).to_numpy(dtype=bool)
        if len(frame) and not is_total.any():
            raise ValueError(
                f"margin {margin.column!r}: no row holds the total {margin.total!r}; a misspelt "
                "total would publish it unprotected (declare only margins the table has)"
            )
        if margin.parts is None:
            totals = [m.total for m in spec.margins if m.column == margin.column]
            is_part = ~column.isin(totals).to_numpy(dtype=bool)
        else:
            is_part = column.isin(margin.parts).to_numpy(dtype=bool)
        others = [k for k in spec.keys if k != margin.column]
        for rows in _groups(frame, others):
            total, parts = rows[is_total[rows]], rows[is_part[rows]]
            if total.size and parts.size:
                cells, signs = np.append(parts, total[0]), np.append(np.ones(parts.size), -1.0)
                equations.append(
                    Equation(int(total[0]), parts, frozenset(margin.overlapping), cells, signs)
                )
    return equations


def _check_margins(frame: pd.DataFrame, spec: TableSpec, equations: list[Equation]) -> None:
    """The declared margins must hold: the audit reasons from them, so a wrong declaration would
    make it certify a table whose real relations it never checked."""
    for count in spec.counts:
        values = frame[count].to_numpy(dtype=float)
        for total, parts, overlapping, _, _ in equations:
            slack = _TOLERANCE * max(1.0, values[total], values[parts].sum())
            low = values[parts].max() if count in overlapping else values[parts].sum()
            if not low - slack <= values[total] <= values[parts].sum() + slack:
                where = frame.loc[total, list(spec.keys)].to_dict()
                raise ValueError(
                    f"{count!r} of total row {where} is {values[total]:g}, but its parts sum to "
                    f"{values[parts].sum():g}; declare only totals that add up, or name the count "
                    "in Margin(overlapping=...) when parts can share persons"
                )


def _key_tuples(frame: pd.DataFrame, keys: tuple[str, ...] | list[str]) -> list[tuple]:
    """Each row's key values as a tuple, every missing value ``None`` (so missing equals
    missing, as in ``DataFrame.duplicated``): the tables published are small, and plain tuples
    cost less than pandas' hashing of a column at a time."""
    return list(zip(*(frame[k].to_numpy(dtype=object, na_value=None) for k in keys),
                    strict=True))


def _groups(frame: pd.DataFrame, keys: list[str]) -> list[np.ndarray]:
    """Row positions of each combination of ``keys`` (missing values form a group of their own)."""
    codes = np.zeros(len(frame), dtype=np.int64)
    for key in keys:
        column, uniques = pd.factorize(frame[key], use_na_sentinel=False)
        codes = pd.factorize(codes * len(uniques) + column)[0]
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)


# --- suppression -------------------------------------------------------------------------------


def _protect(
    values: np.ndarray, equations: list[Equation], threshold: float, column: str,
    decided: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Primary and secondary suppression of one count column: (hidden, primary) masks; the
    ``decided`` rows (hidden in every view by the answer store) count as primary."""
    primary = (values > 0) & (values < threshold)
    if decided is not None:
        primary |= decided & (values > 0)
    hidden = primary.copy()
    while True:
        _close(values, hidden, equations, threshold)
        leaks = _leaks(np.where(hidden, np.nan, values), equations, threshold, column)
        if not leaks:
            return hidden, primary
        hidden[_remedy(values, hidden, equations, leaks[0])] = True


def _close(
    values: np.ndarray, hidden: np.ndarray, equations: list[Equation], threshold: float
) -> None:
    """Add complements until no single equation exposes a hidden cell (in place)."""
    changed = True
    while changed:
        changed = False
        for equation in equations:
            if _exposed(values, hidden, equation.total, equation.parts, threshold):
                hidden[_smallest(values, hidden, [equation])] = True
                changed = True


def _exposed(
    values: np.ndarray, hidden: np.ndarray, total: int, parts: np.ndarray, threshold: float
) -> bool:
    """One hidden cell is solved by subtraction; hidden parts summing below the threshold are
    each confined to an interval narrower than the suppression band."""
    n_hidden = int(hidden[total]) + int(hidden[parts].sum())
    if n_hidden <= 1:
        return n_hidden == 1
    if hidden[total]:
        return False
    residual = values[total] - values[parts][~hidden[parts]].sum()
    return residual < threshold


def _remedy(
    values: np.ndarray, hidden: np.ndarray, equations: list[Equation], leak: Leak
) -> int:
    """The cell to hide next against a leak the audit found.

    A value solved through a chain of equations (multi-way tables) is not helped by any cell of
    its own equations when those are all hidden already; so for a solved value, the smallest
    published cell of its connected group whose hiding un-solves it; otherwise (or for a narrow
    interval) the smallest published cell of its own equations, then of its group.
    """
    position, why = leak[0], leak[1]
    group = _group(hidden, equations, position)
    if why == "determined":
        for cell in _candidates(values, hidden, [equations[i] for i in group]):
            trial = hidden.copy()
            trial[cell] = True
            solved = _determined(_rows(np.where(trial, np.nan, values), equations))
            if position not in {found[0] for found in solved}:
                return int(cell)
    own = [equations[i] for i in group if position in equations[i].cells]
    return _smallest(values, hidden, own, [equations[i] for i in group])


def _group(hidden: np.ndarray, equations: list[Equation], position: int) -> list[int]:
    """Indices of the equations linked to a hidden cell through hidden cells."""
    membership: dict[int, list[int]] = defaultdict(list)
    for i, equation in enumerate(equations):
        for cell in equation.cells:
            membership[int(cell)].append(i)
    reached: set[int] = set()
    seen, stack = {position}, [position]
    while stack:
        for i in membership[stack.pop()]:
            if i not in reached:
                reached.add(i)
                cells = equations[i].cells
                fresh = {int(c) for c in cells[hidden[cells]]} - seen
                seen |= fresh
                stack.extend(fresh)
    return sorted(reached)


def _candidates(
    values: np.ndarray, hidden: np.ndarray, equations: list[Equation]
) -> np.ndarray:
    """Published non-zero cells of some equations, smallest first (parts before totals on ties).

    A zero is never a complement: hiding it adds no uncertainty (its equation still pins the
    other hidden cell to an interval as narrow as that cell's own value).
    """
    if not equations:
        return np.array([], dtype=int)
    cells = np.concatenate([e.cells for e in equations])
    cells = cells[np.sort(np.unique(cells, return_index=True)[1])]
    cells = cells[~hidden[cells] & (values[cells] > 0)]
    return cells[np.argsort(values[cells], kind="stable")]


def _smallest(values: np.ndarray, hidden: np.ndarray, *pools: list[Equation]) -> int:
    """The first candidate of the first pool of equations that has one."""
    for pool in pools:
        candidates = _candidates(values, hidden, pool)
        if candidates.size:
            return int(candidates[0])
    raise DisclosureError(
        "no published non-zero cell is left to protect a hidden one; "
        "the table's declared totals do not add up"
    )


def _derived_mask(
    frame: pd.DataFrame, spec: TableSpec, derived: Derived, counts: Mapping[str, np.ndarray]
) -> np.ndarray:
    mask = np.logical_or.reduce([counts[c] for c in derived.on])
    if derived.share_of is not None:
        denominator = _denominator_rows(frame, spec, derived)
        mask = mask | np.logical_or.reduce([counts[c][denominator] for c in derived.on])
    return mask


def _denominator_rows(frame: pd.DataFrame, spec: TableSpec, derived: Derived) -> np.ndarray:
    """Each row's denominator row: the row with the same keys but ``share_of``'s values."""
    rows = _key_tuples(frame, spec.keys)
    where = {key: position for position, key in enumerate(rows)}  # keys are unique
    fixed = [(spec.keys.index(k), v) for k, v in derived.share_of.items()]
    wanted = []
    for key in rows:
        asked = list(key)
        for i, value in fixed:
            asked[i] = value
        wanted.append(where.get(tuple(asked), -1))
    positions = np.array(wanted, dtype=np.int64)
    if (positions < 0).any():
        raise ValueError(f"share {derived.column!r}: denominator rows {derived.share_of} missing")
    return positions


def _round(values: np.ndarray, policy: DisclosurePolicy) -> np.ndarray:
    """Nearest multiple of the base, halves up; a non-zero count never reads as 0 or as small."""
    base = policy.rounding
    nearest = np.floor(values / base + 0.5) * base
    least = np.ceil(policy.threshold / base) * base
    return np.where(values > 0, np.maximum(nearest, least), values)


def _nullable(series: pd.Series,
              hidden: np.ndarray | None = None) -> pd.api.extensions.ExtensionArray:
    """The column as a nullable array (``Int64`` for integers, else ``Float64``), NA where
    ``hidden``. Plain NumPy columns are wrapped directly (what ``astype`` gives, without its
    dispatch); anything else goes through ``astype``."""
    values = series.to_numpy() if isinstance(series.dtype, np.dtype) else None
    if values is not None and values.dtype == np.int64:
        mask = np.zeros(len(values), dtype=bool)
        array = pd.arrays.IntegerArray(values.copy(), mask)
    elif values is not None and values.dtype == np.float64:
        array = pd.arrays.FloatingArray(values.copy(), np.isnan(values))
    else:
        array = series.astype("Int64" if pd.api.types.is_integer_dtype(series)
                              else "Float64").array.copy()
    if hidden is not None and hidden.any():
        array[hidden] = pd.NA
    return array


def _reasons(hidden: np.ndarray, primary: np.ndarray) -> pd.Series:
    reasons = np.where(primary, "primary", np.where(hidden, "secondary", None))
    return pd.Series(reasons, dtype="string")


def _flag(count: str) -> str:
    return f"{count}_suppressed"


def _texts(values: pd.Series) -> str:
    """A column's values as text, one a line (missing values left out)."""
    return "\n".join(v if isinstance(v, str) else str(v)
                     for v in values.to_numpy(dtype=object, na_value=None) if v is not None)


def _textual(values: pd.Series) -> bool:
    dtype = values.dtype
    return (
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )


# --- the audit ---------------------------------------------------------------------------------

Leak = tuple[int, str, float, float]  # (position, why, low, high)
Row = tuple[np.ndarray, np.ndarray, float, bool]  # unknowns, coefficients, rhs, "<=" (else "=")


def _leaks(
    published: np.ndarray, equations: list[Equation], threshold: float | None, column: str
) -> list[Leak]:
    """Leaks of one column, NaN meaning hidden; intervals are checked when a threshold is given.

    Solvability treats every margin as exact, overlapping or not: DDD built on the same persons
    does add up, and the overlap between practices is small and easy to guess.
    """
    leaks: list[Leak] = []
    if threshold is not None:
        small = np.flatnonzero((published > 0) & (published < threshold))
        leaks += [(int(p), "small", published[p], published[p]) for p in small]
    leaks += _determined(_rows(published, equations))
    if threshold is not None:
        solved = {leak[0] for leak in leaks}
        narrow = _narrow(_rows(published, equations, column), threshold)
        leaks += [leak for leak in narrow if leak[0] not in solved]
    return sorted(leaks, key=lambda leak: leak[0])


def _rows(published: np.ndarray, equations: list[Equation], column: str = "") -> list[Row]:
    """The margins as constraints on the hidden cells, published values moved to the right.

    A margin is ``sum(parts) - total = 0``; where ``column`` is overlapping it is
    ``total - sum(parts) <= 0`` and ``part - total <= 0`` (the published parts need only the
    largest of them).
    """
    rows = []
    for total, parts, overlapping, cells, signs in equations:
        if column not in overlapping:
            constraints = [(cells, signs, False)]
        else:
            shown = parts[~np.isnan(published[parts])]
            pairs = [*parts[np.isnan(published[parts])]]
            pairs += [shown[np.argmax(published[shown])]] if shown.size else []
            constraints = [(cells, -signs, True)]
            constraints += [(np.array([p, total]), np.array([1.0, -1.0]), True) for p in pairs]
        for members, coefficients, inequality in constraints:
            unknown = np.isnan(published[members])
            if unknown.any():
                rhs = -float(coefficients[~unknown] @ published[members[~unknown]])
                rows.append((members[unknown], coefficients[unknown], rhs, inequality))
    return rows


def _connected(rows: list[Row]) -> list[list[int]]:
    """Rows grouped by shared unknowns, so that each system solved stays small."""
    parent: dict[int, int] = {}

    def root(p: int) -> int:
        while parent.setdefault(p, p) != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for unknowns, *_ in rows:
        for p in unknowns[1:]:
            parent[root(int(p))] = root(int(unknowns[0]))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (unknowns, *_) in enumerate(rows):
        groups[root(int(unknowns[0]))].append(i)
    return list(groups.values())


def _system(rows: list[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(unknown positions, ``A_eq``, ``b_eq``, ``A_ub``, ``b_ub``) over the unknowns of ``rows``."""
    variables = np.unique(np.concatenate([row[0] for row in rows]))
    matrix = np.zeros((len(rows), variables.size))
    for i, (unknowns, coefficients, _, _) in enumerate(rows):
        matrix[i, np.searchsorted(variables, unknowns)] = coefficients
    rhs = np.array([row[2] for row in rows])
    inequality = np.array([row[3] for row in rows], dtype=bool)
    return variables, matrix[~inequality], rhs[~inequality], matrix[inequality], rhs[inequality]


def _determined(rows: list[Row]) -> list[Leak]:
    """Unknowns with one solution: their unit vector lies in the row space of the equations, i.e.
    its distance to it (the norm of that unknown's row of a null-space basis) is ~0. The value is
    then the same in every solution; least squares gives one (and, for constants that do not add
    up, such as an overlapping margin taken as exact, the value that fits them best).

    Inequalities (overlapping margins) never pin a value on their own and are left out.
    """
    leaks = []
    equalities = [row for row in rows if not row[3]]
    for component in _connected(equalities):
        variables, matrix, rhs, _, _ = _system([equalities[i] for i in component])
        pinned = np.linalg.norm(null_space(matrix), axis=1) < _PINNED
        if pinned.any():
            solution = np.linalg.lstsq(matrix, rhs, rcond=None)[0]
            leaks += [(int(variables[j]), "determined", float(solution[j]), float(solution[j]))
                      for j in np.flatnonzero(pinned)]
    return leaks


def _narrow(rows: list[Row], threshold: float) -> list[Leak]:
    """Unknowns that the constraints and non-negativity confine to an interval narrower than the
    threshold: the exact interval, from a linear programme per bound (HiGHS via ``linprog``).

    Every optimum met is a feasible point, so an unknown that they already spread over the
    threshold is not narrow and needs no (further) bound. Intervals within a rounding tolerance
    of the threshold are not narrow.
    """
    leaks = []
    for component in _connected(rows):
        variables, a_eq, b_eq, a_ub, b_ub = _system([rows[i] for i in component])
        constraints = {"bounds": (0, None), "method": "highs"}
        if b_eq.size:
            constraints.update(A_eq=a_eq, b_eq=b_eq)
        if b_ub.size:
            constraints.update(A_ub=a_ub, b_ub=b_ub)
        start = linprog(np.zeros(variables.size), **constraints)
        if start.status == 2:
            continue  # constants that do not add up (a rounded table): no interval to claim
        width = threshold - _TOLERANCE * max(1.0, np.abs(np.concatenate([b_eq, b_ub])).max())
        lowest, highest = _solution(start), _solution(start)
        for j in range(variables.size):
            bounds = []
            for sign in (1.0, -1.0):
                if highest[j] - lowest[j] >= width:
                    break
                objective = sign * np.eye(variables.size)[j]
                result = linprog(objective, **constraints)
                if result.status == 2:  # the start was feasible: HiGHS's presolve calls some
                    # unbounded programmes infeasible (a hidden total above parts that may
                    # exceed it); without presolve it tells
                    result = linprog(objective, **constraints, options={"presolve": False})
                if result.status == 3:  # unbounded (only above: unknowns are not negative)
                    break
                point = _solution(result)
                lowest, highest = np.minimum(lowest, point), np.maximum(highest, point)
                bounds.append(sign * result.fun)
            if len(bounds) == 2 and bounds[1] - bounds[0] < width:
                leaks.append((int(variables[j]), "interval", bounds[0], bounds[1]))
    return leaks


def _solution(result: OptimizeResult) -> np.ndarray:
    """The optimal point of a linear programme; anything but an optimum fails the audit closed."""
    if result.status != 0:
        raise DisclosureError(f"the audit's linear programme failed: {result.message}")
    return result.x


__all__ = [
    "DEFAULT_POLICY",
    "PUBLISHING_ENV",
    "Derived",
    "DisclosureError",
    "DisclosurePolicy",
    "Finding",
    "Margin",
    "TableSpec",
    "analyst_mode",
    "analyst_mode_active",
    "apply",
    "publishing",
    "publishing_active",
    "recoverable_cells",
    "require_safe",
    "scan_for_person_keys",
    "set_analyst_mode",
    "suppression_mask",
]
