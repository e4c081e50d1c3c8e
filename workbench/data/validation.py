"""What makes a register row acceptable: per-row checks with pandera, cross-table checks in SQL.

Two stages, because they need different tools:

* **Row stage** (:func:`validate_chunk`): every field of a row is checked on its own, with
  pandera, on chunks of about a million rows read as *text*. Reading text first is what turns a
  wrong type into a quarantined row instead of a crashed load. The checks are vectorised with
  pyarrow compute on pandas' Arrow-backed strings (a million rows in a fraction of a second) and
  run lazily, so pandera's ``failure_cases`` names every failing row and check at once.
* **Set stage** (:func:`reject_rules`, :func:`warning_rules`): checks that need other rows or
  other tables (duplicates, references, a redemption after death, a person not listed) are SQL
  run by DuckDB over the whole staged table, which is much faster than anything row-wise.

Each rejected row is quarantined once, with the *first* problem found, in this order: the row's
fields in contract order (a missing value before a wrong type before a bad format, value or
range), then the one-row date rules, then exact duplicates, duplicate keys, and references in
the order the contract lists them. One reason a row is enough to act on; fixing it and loading
again shows any next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, reduce

import numpy as np
import pandas as pd
import pandera.pandas as pda
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from workbench.data.schema import (
    REFERENCES,
    TABLES_BY_NAME,
    TRUE_WORDS,
    ColumnSpec,
    Domain,
    Kind,
    OrderRule,
    Reference,
    TableSpec,
)

ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.TEXT: pa.string(),
    Kind.DATE: pa.date32(),
    Kind.INTEGER: pa.int32(),
    Kind.FLOAT: pa.float64(),
    Kind.BOOLEAN: pa.bool_(),
}

# What text each kind accepts. Arrow's casts are stricter or looser in places (``+1`` is not an
# int32 to Arrow, ``2024-02-30`` matches the date pattern), so a pattern only pre-filters and the
# cast decides; see _parse.
_WELL_FORMED: dict[Kind, str] = {
    Kind.DATE: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    Kind.INTEGER: r"^-?0*[0-9]{1,9}$",
    Kind.FLOAT: r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$",
}

PARSE_CHECK = {Kind.DATE: "not_a_date", Kind.INTEGER: "not_an_integer", Kind.FLOAT: "not_a_number"}
PARSE_PROBLEM = {
    "not_a_date": "{value!r} is not a date (write YYYY-MM-DD)",
    "not_an_integer": "{value!r} is not a whole number",
    "not_a_number": "{value!r} is not a number (use . as the decimal mark)",
}
ROW_FIELD = "*"  # the field of a problem that concerns the whole record
EMPTY_ROW = "empty_row"


# --------------------------------------------------------------------------------------------
# Parsing text with pyarrow: null where the text is not a valid value.
# --------------------------------------------------------------------------------------------


def _parse(text: pa.Array, kind: Kind) -> pa.Array:
    """``text`` cast to ``kind``, null where it does not parse (and where it was null).

    The common case, a chunk with no bad value, costs one cast; only a chunk with a bad value
    pays for the pattern and the stricter second pass.
    """
    target = ARROW_TYPES[kind]
    if kind in (Kind.TEXT, Kind.BOOLEAN):
        return text
    try:
        parsed = text.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = _parse_slowly(text, kind)
    if kind is Kind.FLOAT:  # Arrow reads "inf" and "nan"; a register value is never either
        parsed = pc.if_else(pc.is_finite(parsed), parsed, pa.scalar(None, target))
    return parsed


def _parse_slowly(text: pa.Array, kind: Kind) -> pa.Array:
    target = ARROW_TYPES[kind]
    well_formed = pc.match_substring_regex(text, _WELL_FORMED[kind])
    candidates = pc.if_else(well_formed, text, pa.scalar(None, pa.string()))
    if kind is Kind.DATE:
        # strptime rolls 2024-02-30 over to 2024-03-01: keep only dates whose day survives.
        stamp = pc.strptime(candidates, format="%Y-%m-%d", unit="s", error_is_null=True)
        day = pc.utf8_slice_codeunits(candidates, 8, 10).cast(pa.int64())
        same_day = pc.equal(pc.day(stamp), day)
        return pc.if_else(same_day, stamp, pa.scalar(None, stamp.type)).cast(target)
    try:
        return candidates.cast(target)
    except pa.ArrowInvalid:  # a well-formed value Arrow still refuses: decide one by one
        return pa.array([_cast_one(v, target) for v in candidates.to_pylist()], target)


def _cast_one(value: str | None, target: pa.DataType) -> object:
    try:
        return pa.scalar(value, pa.string()).cast(target).as_py()
    except pa.ArrowInvalid:
        return None


def _text(series: pd.Series) -> pa.Array:
    """The Arrow array behind an Arrow-backed pandas column (no copy)."""
    return pa.array(series)


def _mask(values: pa.Array, index: pd.Index) -> pd.Series:
    """A pandera check result; null (not applicable) counts as passing."""
    return pd.Series(values.fill_null(True).to_numpy(zero_copy_only=False), index=index)


# --------------------------------------------------------------------------------------------
# The row stage: a pandera schema per table, built from the contract.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """How one named check reads in a quarantine reason."""

    field: str
    template: str


def _parse_check(col: ColumnSpec) -> tuple[pda.Check, str, Problem]:
    name = PARSE_CHECK[col.kind]

    def parses(series: pd.Series) -> pd.Series:
        text = _text(series)
        return _mask(pc.or_(pc.is_null(text), pc.is_valid(_parse(text, col.kind))), series.index)

    return pda.Check(parses, name=name), name, Problem(col.name, PARSE_PROBLEM[name])


def _pattern_check(col: ColumnSpec) -> tuple[pda.Check, str, Problem]:
    pattern = f"^(?:{col.pattern})$"

    def matches(series: pd.Series) -> pd.Series:
        return _mask(pc.match_substring_regex(_text(series), pattern), series.index)

    return (
        pda.Check(matches, name="bad_format"),
        "bad_format",
        Problem(col.name, f"{{value!r}} is not {col.pattern_hint}"),
    )


def _domain_check(col: ColumnSpec, domain: Domain) -> tuple[pda.Check, str, Problem]:
    values = pa.array(sorted(domain.values()), pa.string())

    def allowed(series: pd.Series) -> pd.Series:
        return _mask(pc.is_in(_text(series), value_set=values), series.index)

    return (
        pda.Check(allowed, name="not_allowed"),
        "not_allowed",
        Problem(col.name, f"{{value!r}} is not {domain.description}"),
    )


def _range_checks(col: ColumnSpec) -> Iterator[tuple[pda.Check, str, Problem]]:
    if col.minimum is not None:
        minimum = col.minimum
        compare = pc.greater_equal if col.minimum_inclusive else pc.greater
        sign = ">=" if col.minimum_inclusive else ">"

        def big_enough(series: pd.Series) -> pd.Series:
            return _mask(compare(_parse(_text(series), col.kind), minimum), series.index)

        yield (
            pda.Check(big_enough, name="too_small"),
            "too_small",
            Problem(col.name, f"{{value}} is not {sign} {minimum:g}"),
        )
    if col.nonzero:

        def nonzero(series: pd.Series) -> pd.Series:
            return _mask(pc.not_equal(_parse(_text(series), col.kind), 0), series.index)

        yield (
            pda.Check(nonzero, name="zero"),
            "zero",
            Problem(col.name, "0 is not allowed (a return has a negative number)"),
        )


def _column_checks(col: ColumnSpec) -> list[tuple[pda.Check, str, Problem]]:
    checks = []
    if col.kind in PARSE_CHECK:
        checks.append(_parse_check(col))
    if col.pattern:
        checks.append(_pattern_check(col))
    if col.domain:
        checks.append(_domain_check(col, col.domain))
    checks.extend(_range_checks(col))
    return checks


def _order_check(rule: OrderRule) -> pda.Check:
    def in_order(df: pd.DataFrame) -> pd.Series:
        earlier = _parse(_text(df[rule.earlier]), Kind.DATE)
        later = _parse(_text(df[rule.later]), Kind.DATE)
        ok = pc.greater(later, earlier) if rule.strict else pc.greater_equal(later, earlier)
        return _mask(ok, df.index)

    return pda.Check(in_order, name=rule.name, ignore_na=False)


def _not_empty_check() -> pda.Check:
    def not_empty(df: pd.DataFrame) -> pd.Series:
        filled = [pc.is_valid(_text(df[name])) for name in df.columns]
        return _mask(reduce(pc.or_, filled), df.index)

    return pda.Check(not_empty, name=EMPTY_ROW, ignore_na=False)


@dataclass(frozen=True)
class RowSchema:
    """A table's pandera schema, with the order and wording of its checks."""

    schema: pda.DataFrameSchema
    priority: dict[tuple[str, str], int]  # (column, check) -> rank: lower is reported first
    problems: dict[tuple[str, str], Problem]


@cache
def row_schema(table: str) -> RowSchema:
    """The pandera schema of ``table``: every column is text; checks parse what they need."""
    spec = TABLES_BY_NAME[table]
    columns: dict[str, pda.Column] = {}
    # A blank CSV line reads as a row of empty fields: say so, rather than "person_id is empty".
    priority: dict[tuple[str, str], int] = {("", EMPTY_ROW): 0}
    problems = {("", EMPTY_ROW): Problem(ROW_FIELD, "the row is empty (a blank line?)")}
    for col in spec.columns:
        checks = _column_checks(col)
        columns[col.name] = pda.Column(
            nullable=col.nullable, required=not col.optional, checks=[c for c, _, _ in checks]
        )
        priority[(col.name, "not_nullable")] = len(priority)
        problems[(col.name, "not_nullable")] = Problem(col.name, "is empty but required")
        for _, name, problem in checks:
            priority[(col.name, name)] = len(priority)
            problems[(col.name, name)] = problem
    for rule in spec.order_rules:
        problems[("", rule.name)] = Problem(rule.later, f"{rule.problem}: {{value}}")
        priority[("", rule.name)] = len(priority)
    checks = [_not_empty_check(), *(_order_check(r) for r in spec.order_rules)]
    schema = pda.DataFrameSchema(columns, checks=checks, strict=False)
    return RowSchema(schema, priority, problems)


def normalise(chunk: pa.Table, spec: TableSpec) -> pa.Table:
    """Register spellings to contract values (K→F, 0101→101, 81→1081, GP→gp), see schema.py."""
    for col in spec.columns:
        if col.domain is None or col.name not in chunk.column_names:
            continue
        text = chunk[col.name]
        if col.domain.case == "upper":
            text = pc.utf8_upper(text)
        elif col.domain.case == "lower":
            text = pc.utf8_lower(text)
        aliases = col.domain.aliases()
        if aliases:
            keys = pa.array(list(aliases), pa.string())
            position = pc.index_in(text, value_set=keys)
            mapped = pc.take(pa.array(list(aliases.values()), pa.string()), position)
            text = pc.coalesce(mapped, text)
        chunk = chunk.set_column(chunk.schema.get_field_index(col.name), col.name, text)
    return chunk


@dataclass(frozen=True)
class ChunkResult:
    """The rows of a chunk that passed, typed, and the first problem of each that did not."""

    valid: pa.Table
    rejected: np.ndarray  # positions in the chunk
    fields: list[str]
    rules: list[str]
    problems: list[str]


def validate_chunk(raw: pa.Table, table: str) -> ChunkResult:
    """Check a chunk of text rows; return the valid rows typed and the rejected rows' reasons.

    ``raw`` has the contract's column names (plus any extra columns) and string values, as read.
    Problems quote the value as written, before normalisation.
    """
    spec = TABLES_BY_NAME[table]
    rules = row_schema(table)
    normalised = normalise(raw, spec)
    frame = normalised.to_pandas(types_mapper=pd.ArrowDtype)
    try:
        rules.schema.validate(frame, lazy=True)
        failures = None
    except SchemaErrors as exc:
        failures = exc.failure_cases
    if failures is None or failures.empty:
        return ChunkResult(to_typed(normalised, spec), np.empty(0, np.int64), [], [], [])
    return _split(raw, normalised, spec, rules, failures)


def _first_failures(failures: pd.DataFrame, rules: RowSchema) -> pd.DataFrame:
    """One row per failing chunk position: its highest-priority failure."""
    if failures["index"].isna().any():
        raise RuntimeError(f"pandera reported a failure without a row:\n{failures.head()}")
    wide = failures["schema_context"] == "DataFrameSchema"
    column = failures["column"].astype(str).where(~wide, "")
    ranks = {f"{c}\t{k}": rank for (c, k), rank in rules.priority.items()}
    rank = (column + "\t" + failures["check"].astype(str)).map(ranks)
    failures = failures.assign(column=column, rank=rank)
    failures = failures.sort_values(["index", "rank"], kind="stable")
    return failures.drop_duplicates("index", keep="first")


def _split(
    raw: pa.Table,
    normalised: pa.Table,
    spec: TableSpec,
    rules: RowSchema,
    failures: pd.DataFrame,
) -> ChunkResult:
    first = _first_failures(failures, rules).reset_index(drop=True)
    positions = first["index"].to_numpy(np.int64)
    fields = [""] * len(first)
    problems = [""] * len(first)
    for (column, check), group in first.groupby(["column", "check"], sort=False):
        problem = rules.problems[(column, check)]
        taken = pa.array(group["index"].to_numpy(np.int64))
        if check == EMPTY_ROW:
            values = [""] * len(group)
        elif column:
            values = raw[problem.field].take(taken).to_pylist()
        else:
            values = _order_values(spec, check, raw.take(taken))
        for i, value in zip(group.index, values, strict=True):
            fields[i] = problem.field
            problems[i] = problem.template.format(value=value)
    keep = np.ones(raw.num_rows, dtype=bool)
    keep[positions] = False
    valid = to_typed(normalised.filter(pa.array(keep)), spec)
    return ChunkResult(valid, positions, fields, first["check"].tolist(), problems)


def _order_values(spec: TableSpec, check: str, rows: pa.Table) -> list[str]:
    rule = next(r for r in spec.order_rules if r.name == check)
    pairs = zip(rows[rule.earlier].to_pylist(), rows[rule.later].to_pylist(), strict=True)
    return [f"{rule.earlier} {a}, {rule.later} {b}" for a, b in pairs]


def to_typed(chunk: pa.Table, spec: TableSpec) -> pa.Table:
    """Valid text rows to the database types of the contract; extra columns stay text."""
    columns = {}
    for name in chunk.column_names:
        text = chunk[name]
        kind = spec.column(name).kind if name in spec.names else Kind.TEXT
        if kind is Kind.BOOLEAN:
            truth = pc.is_in(text, value_set=pa.array(sorted(TRUE_WORDS)))
            columns[name] = pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truth)
        else:
            columns[name] = _parse(text, kind)
    return pa.table(columns)


# --------------------------------------------------------------------------------------------
# The set stage: SQL over a whole staged table and the tables already loaded.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetRule:
    """A check over many rows, as SQL selecting ``wb_rid, field, rule, problem``.

    ``{rows}`` stands for the staged rows of the table still in the running (``wb_rid`` is a
    row's id); tables already loaded are named plainly. ``wb_place(wb_rid)``, defined by the
    loader, says where a row came from ("file row N").
    """

    name: str
    sql: str


def quote(name: str) -> str:
    """A column name as a SQL identifier (extra columns may hold any character)."""
    return '"' + name.replace('"', '""') + '"'


def _exact_duplicates(columns: list[str]) -> SetRule:
    """Later copies of a row with every field equal (nulls equal): the first copy is kept.

    Grouping on a hash of the whole row keeps this fast on 60 million rows; only rows whose hash
    repeats are then compared field by field.
    """
    cols = ", ".join(quote(c) for c in columns)
    return SetRule(
        "duplicate_row",
        f"""
        WITH repeated AS (
            SELECT hash({cols}) AS wb_hash FROM {{rows}} GROUP BY ALL HAVING count(*) > 1
        )
        SELECT wb_rid, '{ROW_FIELD}' AS field, 'duplicate_row' AS rule,
               'exact duplicate of ' || wb_place(wb_first) || ' (the first copy is kept)'
                   AS problem
        FROM (
            SELECT wb_rid, min(wb_rid) OVER (PARTITION BY {cols}) AS wb_first
            FROM {{rows}} WHERE hash({cols}) IN (SELECT wb_hash FROM repeated)
        )
        WHERE wb_rid <> wb_first
        """,
    )


def _duplicate_keys(spec: TableSpec) -> SetRule:
    key = ", ".join(quote(c) for c in spec.primary_key)
    shown = " || ', ' || ".join(f"'{c} ' || {quote(c)}" for c in spec.primary_key)
    return SetRule(
        "duplicate_key",
        f"""
        SELECT wb_rid, '{", ".join(spec.primary_key)}' AS field, 'duplicate_key' AS rule,
               {shown} || ' is already given at ' || wb_place(wb_first)
                   || ' (the first is kept)' AS problem
        FROM (SELECT wb_rid, {key}, min(wb_rid) OVER (PARTITION BY {key}) AS wb_first
              FROM {{rows}})
        WHERE wb_rid <> wb_first
        """,
    )


def _reference(ref: Reference) -> SetRule:
    if ref.during_life:
        return _reference_in_life(ref)
    return SetRule(
        ref.rule,
        f"""
        SELECT r.wb_rid, '{ref.column}' AS field, '{ref.rule}' AS rule,
               '{ref.column} ' || r.{ref.column} || ' is not in {ref.parent} '
                   || '(absent there, or quarantined)' AS problem
        FROM {{rows}} r ANTI JOIN {ref.parent} p ON p.{ref.parent_column} = r.{ref.column}
        WHERE r.{ref.column} IS NOT NULL
        """,
    )


def _reference_in_life(ref: Reference) -> SetRule:
    """A person reference and the date's place in that person's life, in one join."""
    col, day = ref.column, ref.during_life
    return SetRule(
        ref.rule,
        f"""
        SELECT r.wb_rid,
               CASE WHEN p.{ref.parent_column} IS NULL THEN '{col}' ELSE '{day}' END AS field,
               CASE WHEN p.{ref.parent_column} IS NULL THEN '{ref.rule}'
                    WHEN r.{day} > p.death_date THEN 'after_death'
                    ELSE 'before_birth' END AS rule,
               CASE WHEN p.{ref.parent_column} IS NULL
                        THEN '{col} ' || r.{col} || ' is not in {ref.parent} '
                             || '(absent there, or quarantined)'
                    WHEN r.{day} > p.death_date
                        THEN '{day} ' || r.{day} || ' is after the death of person '
                             || r.{col} || ' on ' || p.death_date
                    ELSE '{day} ' || r.{day} || ' is before the birth of person '
                         || r.{col} || ' on ' || p.birth_date END AS problem
        FROM {{rows}} r LEFT JOIN {ref.parent} p ON p.{ref.parent_column} = r.{col}
        WHERE r.{col} IS NOT NULL AND (p.{ref.parent_column} IS NULL
              OR r.{day} > p.death_date OR r.{day} < p.birth_date)
        """,
    )


def reject_rules(table: str, columns: list[str]) -> list[SetRule]:
    """The set checks that quarantine rows of ``table``, in the order they are applied.

    ``columns`` are the staged columns (the contract's and any extra), compared for exact
    duplicates.
    """
    spec = TABLES_BY_NAME[table]
    rules = [_exact_duplicates(columns)]
    if spec.primary_key:
        rules.append(_duplicate_keys(spec))
    rules.extend(_reference(r) for r in REFERENCES if r.table == table)
    return rules


# Valid but suspicious: kept, and recorded in load_warnings.
_WARNINGS: dict[str, tuple[SetRule, ...]] = {
    "practices": (
        SetRule(
            "region_differs_from_municipality",
            """
            SELECT r.wb_rid, 'region_code' AS field, 'region_differs_from_municipality' AS rule,
                   'region_code ' || r.region_code || ' differs from ' || m.region_code
                   || ', the region of municipality ' || r.municipality_code AS problem
            FROM {rows} r JOIN reference_municipalities m
                ON m.municipality_code = r.municipality_code
            WHERE m.region_code <> r.region_code
            """,
        ),
        SetRule(
            "region_differs_from_cluster",
            """
            SELECT r.wb_rid, 'cluster_id' AS field, 'region_differs_from_cluster' AS rule,
                   'cluster ' || r.cluster_id || ' is in region ' || c.region_code
                   || ', the practice in ' || r.region_code AS problem
            FROM {rows} r JOIN clusters c ON c.cluster_id = r.cluster_id
            WHERE c.region_code <> r.region_code
            """,
        ),
    ),
    "listings": (
        # Kept: a person listed twice at once is counted twice in list sizes, but which period
        # is wrong is not for the loader to guess. The warning names both rows.
        SetRule(
            "overlapping_listing",
            """
            SELECT wb_rid, 'start_date' AS field, 'overlapping_listing' AS rule,
                   'person ' || person_id || ' is still listed from ' || wb_previous_start
                   || ' (' || wb_place(wb_previous) || ') on ' || start_date AS problem
            FROM (
                SELECT wb_rid, person_id, start_date,
                       lag(start_date) OVER w AS wb_previous_start,
                       lag(end_date) OVER w AS wb_previous_end,
                       lag(wb_rid) OVER w AS wb_previous
                FROM {rows}
                WINDOW w AS (PARTITION BY person_id ORDER BY start_date, wb_rid)
            )
            WHERE wb_previous IS NOT NULL
              AND (wb_previous_end IS NULL OR wb_previous_end > start_date)
            """,
        ),
    ),
    "redemptions": (
        # An as-of join (the person's latest listing started on or before the day) is sort-based
        # and fast; a range join is not. Where listings overlap (warned above) the latest one
        # decides.
        SetRule(
            "not_listed",
            """
            SELECT r.wb_rid, 'person_id' AS field, 'not_listed' AS rule,
                   'person ' || r.person_id || ' is listed with no practice on '
                   || r.dispensed_on AS problem
            FROM {rows} r ASOF LEFT JOIN listings l
                ON l.person_id = r.person_id AND r.dispensed_on >= l.start_date
            WHERE l.person_id IS NULL OR l.end_date <= r.dispensed_on
            """,
        ),
        # Kept as given: the redemption then counts for no practice. An id of a practice that
        # closed before the extract, or of a non-GP prescriber, is information, not an error.
        SetRule(
            "unknown_prescriber",
            """
            SELECT r.wb_rid, 'prescriber_id' AS field, 'unknown_prescriber' AS rule,
                   'prescriber_id ' || r.prescriber_id || ' is not a practice in practices; '
                   || 'the redemption counts for no practice' AS problem
            FROM {rows} r ANTI JOIN practices p ON p.practice_id = r.prescriber_id
            WHERE r.prescriber_id IS NOT NULL
            """,
        ),
        SetRule(
            "gp_without_prescriber",
            """
            SELECT r.wb_rid, 'prescriber_id' AS field, 'gp_without_prescriber' AS rule,
                   'prescriber_type is gp but prescriber_id is empty; '
                   || 'the redemption counts for no practice' AS problem
            FROM {rows} r
            WHERE r.prescriber_type = 'gp' AND r.prescriber_id IS NULL
            """,
        ),
    ),
}


def warning_rules(table: str) -> tuple[SetRule, ...]:
    """The set checks that keep a row but record a warning about it."""
    return _WARNINGS.get(table, ())
