"""Read every file a render or a server produced and report what must not be there.

The scanner is the last check before a report site leaves the secure environment, and the
output-scan tests run it on a rendered batch. It reads every file of a folder — CSV, HTML,
executed notebooks (``.ipynb``), JSON (manifests, page entries) and other text — and the tables
embedded in pages (the CSV downloads are data URLs inside the HTML), and reports:

``small_count``
    a published person count of 1–4: ``patients``, ``listed``, ``population``, ``persons``,
    their ``nation_`` twins, and any column published with a ``<count>_suppressed`` flag;
``built_on_hidden``
    a rate, share, DDD or index shown on a row whose count is hidden (a ``rank`` only when a
    hidden row is placed before a shown one: ranked on published values, hidden rows come last);
``recoverable``
    a hidden cell that the totals and complements published beside it give back: the table is
    audited with :func:`workbench.disclosure.recoverable_cells`, its margins read from the
    table itself (``all`` rows of a breakdown, the ``cluster`` row of a cluster's practices);
``person_key`` / ``cpr_number`` / ``birth_date``
    anything that looks like our person key (``P`` + 9 digits), a CPR number (``DDMMYY-SSSS``,
    or ten digits starting with a valid date) or a calendar date (a birth date is one; pages
    name periods, never days; timestamps with a time of day are the files' own, and dates under
    a JSON ``provenance`` key are reference releases: both allowed);
``practice``
    under ``public``, any practice id or name of the register; under ``practice``, one of a
    practice outside the viewer's cluster;
``unreadable``
    a file the scanner cannot read (a database, an archive; images and fonts excepted): what
    it can't read, nobody has checked, so it must not be published.

It knows the register's practices when given the dataset (:func:`register_practices`); without
it, only the structural checks run.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from workbench.disclosure import (
    DEFAULT_POLICY,
    Derived,
    DisclosureError,
    Margin,
    TableSpec,
    recoverable_cells,
    scan_for_person_keys,
)
from workbench.profiles import Profile

if TYPE_CHECKING:
    from workbench.engine import Workbench

PERSON_KEY = re.compile(r"(?<![A-Za-z0-9])P\d{9}(?!\d)")
# Not inside a longer token: a UUID (a kernel id: 3c053097-7928-…) or a hex digest is no CPR.
# Nor a part of a decimal number (1234567890.5), though a sentence may end right after one.
CPR_DASHED = re.compile(r"(?<![\w\-])(?<!\d[.,])(\d{6})-(\d{4})(?![\w\-])(?![.,]\d)")
CPR_PLAIN = re.compile(r"(?<![\w\-])(?<!\d[.,])(\d{6})(\d{4})(?![\w\-])(?![.,]\d)")
ISO_DATE = re.compile(r"(?<![\w\-])((?:19|20)\d\d)-(\d\d)-(\d\d)(?![\w\-])(?![T ]\d\d:)")
DANISH_DATE = re.compile(r"(?<![\d.\-/])(\d\d)[.\-/](\d\d)[.\-/]((?:19|20)\d\d)(?![\d.\-/])")
SVG_TEXT = re.compile(r"<text\b[^>]*>([^<]*)</text>")  # a figure's words (no nested markup)
DATA_URL = re.compile(r"data:([\w/+.-]+)(?:;charset=[\w-]+)?;base64,([A-Za-z0-9+/=]+)")
TAG = re.compile(r"<[^>]*>")
COUNT = re.compile(r"^(?:\w+_)?(?:patients|listed|population|persons)$")
KEY_NAMES = frozenset({"period", "year", "quarter", "month"})  # numeric in a CSV, yet keys
IDENTIFIERS = ("unit_id", "practice_id", "cluster_id", "region_code", "municipality_code",
               "product", "product_id", "drug", "atc_code", "period")  # digits, not numbers
NOT_BUILT_ON_ROW = re.compile(r"^practice_decile_\d+$")  # national aggregates beside a row
PARTITIONS = frozenset({"consumption_group", "started", "sex", "age_group"})
TEXT_SUFFIXES = frozenset({".txt", ".md", ".log", ".tsv", ".xml", ".svg", ".js", ".css"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".ico", ".woff", ".woff2"})
METADATA = re.compile(r"\.provenance\b")  # reference releases, data versions: dates of files
KINDS = ("small_count", "built_on_hidden", "recoverable", "person_key", "cpr_number",
         "birth_date", "practice", "unreadable")


@dataclass(frozen=True)
class Finding:
    """One thing that must not leave: which file, where in it, what, and the offending text."""

    file: str
    where: str
    kind: str
    detail: str


@dataclass
class ScanReport:
    """Every file read and every finding; :attr:`ok` when there is none."""

    folder: Path
    profile: str
    files: Counter = field(default_factory=Counter)  # by suffix
    tables: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.findings))

    def summary(self) -> str:
        files = ", ".join(f"{n} {suffix or '(none)'}" for suffix, n in sorted(self.files.items()))
        head = (f"scanned {sum(self.files.values())} files ({files}), {self.tables} tables, "
                f"profile {self.profile}: ")
        if self.ok:
            return head + "nothing found"
        lines = [head + f"{len(self.findings)} findings {self.by_kind()}"]
        lines += [f"  {f.kind}: {f.file} [{f.where}] {f.detail}" for f in self.findings[:50]]
        return "\n".join(lines)


@dataclass(frozen=True)
class Practice:
    name: str
    cluster: str


def register_practices(source: Path | Workbench) -> dict[str, Practice]:
    """The register's practices (id -> name and cluster), which the practice checks look for.

    ``source`` is a database file, or a session already open on it (DuckDB opens a file once
    per process with one configuration, so a process holding a session must pass it)."""
    from workbench.engine import Workbench, connect

    session = source if isinstance(source, Workbench) else connect(source)
    try:
        rows = session.registers.practices.select(
            "practice_id", "practice_name", "cluster_id").execute()
    finally:
        if session is not source:
            session.con.disconnect()
    return {str(r.practice_id): Practice(str(r.practice_name), str(r.cluster_id))
            for r in rows.itertuples()}


def scan(folder: Path, profile: Profile, practices: Mapping[str, Practice] | None = None,
         threshold: int = DEFAULT_POLICY.threshold) -> ScanReport:
    """Read every file under ``folder``; report what would disclose a person or a practice."""
    profile = _bound(profile, practices)
    report = ScanReport(Path(folder), profile.spec())
    scanner = _Scanner(report, profile, practices or {}, threshold)
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        report.files[path.suffix.lower()] += 1
        scanner.file(path, path.relative_to(folder).as_posix())
    return report


def _bound(profile: Profile, practices: Mapping[str, Practice] | None) -> Profile:
    if profile.name == "practice" and practices and profile.practice in practices:
        return profile.bind(practices[profile.practice].cluster)
    return profile


class _Scanner:
    def __init__(self, report: ScanReport, profile: Profile, practices: Mapping[str, Practice],
                 threshold: int) -> None:
        self.report, self.profile, self.threshold = report, profile, threshold
        self.seen: set[Finding] = set()
        self.forbidden = {pid: p for pid, p in practices.items()
                          if not profile.allows_practice(pid, p.cluster)}
        names = sorted({p.name for p in self.forbidden.values()
                        if p.name not in {q.name for pid, q in practices.items()
                                          if pid not in self.forbidden}}, key=len, reverse=True)
        self.names = re.compile("|".join(re.escape(n) for n in names)) if names else None
        ids = sorted(self.forbidden)
        # an id is a whole number: not the integer or fractional digits of a decimal (a DDD sum
        # of 360425.97 is not practice 360425), as in the CPR patterns above
        self.ids = re.compile(r"(?<!\d)(?<!\d[.,])(" + "|".join(ids) + r")(?!\d)(?![.,]\d)"
                              ) if ids else None

    def add(self, file: str, where: str, kind: str, detail: str) -> None:
        finding = Finding(file, where, kind, detail[:200])
        if finding not in self.seen:
            self.seen.add(finding)
            self.report.findings.append(finding)

    # --- files ----------------------------------------------------------------------------------
    def file(self, path: Path, name: str) -> None:
        suffix = path.suffix.lower()
        try:
            if suffix == ".csv":
                self.csv(path.read_bytes(), name, "file")
            elif suffix in (".html", ".htm"):
                self.html(path.read_text(encoding="utf-8"), name, "page")
            elif suffix == ".ipynb":
                self.notebook(json.loads(path.read_text(encoding="utf-8")), name)
            elif suffix == ".json":
                self.json_value(json.loads(path.read_text(encoding="utf-8")), name, "$")
            elif suffix in TEXT_SUFFIXES or suffix == "":
                self.text(path.read_text(encoding="utf-8"), name, "text")
            elif suffix not in IMAGE_SUFFIXES:  # a database, an archive: nothing to publish
                self.add(name, "file", "unreadable",
                         f"a {suffix} file the scanner can't read may hold anything; "
                         "keep it out of what is published")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.add(name, "file", "unreadable", f"{type(exc).__name__}: {exc}")

    def notebook(self, nb: dict, name: str) -> None:
        for index, cell in enumerate(nb.get("cells", [])):
            where = f"cell {index}"
            self.text("".join(cell.get("source", [])), name, f"{where} source")
            for output in cell.get("outputs", []):
                for mime, value in output.get("data", {}).items():
                    body = "".join(value) if isinstance(value, list) else str(value)
                    if mime == "text/html":
                        self.html(body, name, f"{where} {mime}")
                    elif mime.startswith("text/") or mime.endswith("json"):
                        self.text(body, name, f"{where} {mime}")
                if "text" in output:
                    self.text("".join(output["text"]), name, f"{where} stream")
                if output.get("output_type") == "error":
                    self.text("\n".join(output.get("traceback", [])), name, f"{where} error")

    def json_value(self, value: object, name: str, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.text(str(key), name, f"{where} key")
                self.json_value(item, name, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_value(item, name, f"{where}[{i}]")
        elif isinstance(value, str):
            self.text(value, name, where, dates=not METADATA.search(where))

    def html(self, body: str, name: str, where: str) -> None:
        for i, match in enumerate(DATA_URL.finditer(body)):
            if match.group(1) == "text/csv":
                try:
                    data = base64.b64decode(match.group(2), validate=True)
                except binascii.Error as exc:
                    self.add(name, where, "unreadable", f"embedded CSV {i}: {exc}")
                    continue
                self.csv(data, name, f"{where}, embedded CSV {i}")
            elif match.group(1) == "image/svg+xml":  # a figure: its words are text
                data = match.group(2)  # browsers take it unpadded (stylesheets' icons often are)
                try:
                    figure = base64.b64decode(data + "=" * (-len(data) % 4),
                                              validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError) as exc:
                    self.add(name, where, "unreadable", f"embedded figure {i}: {exc}")
                    continue
                self.text(html.unescape(" ".join(SVG_TEXT.findall(figure))), name,
                          f"{where}, embedded figure {i}")
        visible = DATA_URL.sub("data:", body)
        self.text(visible, name, where)
        if self.names is not None:  # a name split by markup (<b>Lægerne</b> Torvet)
            for match in self.names.finditer(" ".join(TAG.sub(" ", visible).split())):
                self.add(name, where, "practice", f"practice name {match.group(0)!r}")

    # --- text -----------------------------------------------------------------------------------
    def text(self, body: str, name: str, where: str, dates: bool = True) -> None:
        for match in PERSON_KEY.finditer(body):
            self.add(name, where, "person_key", match.group(0))
        for match in CPR_DASHED.finditer(body):
            self.add(name, where, "cpr_number", match.group(0))
        for match in CPR_PLAIN.finditer(body):
            if _is_date(match.group(1)[:2], match.group(1)[2:4]):
                self.add(name, where, "cpr_number", match.group(0))
        for match in ISO_DATE.finditer(body) if dates else ():
            if _is_date(match.group(3), match.group(2)):
                self.add(name, where, "birth_date", match.group(0))
        for match in DANISH_DATE.finditer(body) if dates else ():
            if _is_date(match.group(1), match.group(2)):
                self.add(name, where, "birth_date", match.group(0))
        if self.ids is not None:
            for match in self.ids.finditer(body):
                self.add(name, where, "practice", f"practice id {match.group(1)}")
        if self.names is not None:
            for match in self.names.finditer(body):
                self.add(name, where, "practice", f"practice name {match.group(0)!r}")

    # --- tables ---------------------------------------------------------------------------------
    def csv(self, data: bytes, name: str, where: str) -> None:
        try:
            table = pd.read_csv(io.BytesIO(data), dtype_backend="numpy_nullable",
                                dtype=dict.fromkeys(IDENTIFIERS, "string"))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            self.add(name, where, "unreadable", f"CSV: {exc}")
            return
        self.report.tables += 1
        self.table(table, name, where)
        self.text(data.decode("utf-8", errors="replace"), name, where)

    def table(self, df: pd.DataFrame, name: str, where: str) -> None:
        try:
            scan_for_person_keys(df)
        except DisclosureError as exc:
            self.add(name, where, "person_key", str(exc))
        flagged = {str(c)[: -len("_suppressed")] for c in df.columns
                   if str(c).endswith("_suppressed")}
        counts = [c for c in df.columns if (COUNT.match(str(c)) or c in flagged)
                  and pd.api.types.is_numeric_dtype(df[c])]
        for count in counts:
            values = df[count].astype("Float64")
            small = df[(values > 0) & (values < self.threshold)]
            for index in small.index[:20]:
                self.add(name, f"{where}, row {index}", "small_count",
                         f"{count} = {df.at[index, count]} ({_row_label(df, index)})")
        flags = {c for c in df.columns if str(c).endswith("_suppressed")}
        values = [c for c in df.columns if c not in flags and c not in counts
                  and c not in KEY_NAMES and pd.api.types.is_numeric_dtype(df[c])
                  and not pd.api.types.is_bool_dtype(df[c])]
        for column in values:
            if NOT_BUILT_ON_ROW.match(str(column)):
                continue
            bases = _bases(str(column), counts)
            hidden = df[bases].isna().any(axis=1) if bases else pd.Series(False, index=df.index)
            shown = hidden & df[column].notna()
            if column == "rank" and _ranked_last(df[column], hidden):
                continue  # the hidden rows' place says only that they are hidden
            for index in df.index[shown.to_numpy()][:20]:
                self.add(name, f"{where}, row {index}", "built_on_hidden",
                         f"{column} = {df.at[index, column]} shown beside a hidden "
                         f"{'/'.join(bases)} ({_row_label(df, index)})")
        for finding in self.audit(df, counts, flags, values):
            self.add(name, f"{where}, row {finding.row}", "recoverable",
                     f"{finding.column} {finding.why} in [{finding.low:g}, {finding.high:g}] "
                     f"({', '.join(f'{k}={v}' for k, v in finding.key.items())})")

    def audit(self, df: pd.DataFrame, counts: list[str], flags: set[str],
              values: list[str]) -> list:
        """The table's own margins, then the attacker's audit of its hidden cells."""
        if not counts or not df[counts].isna().any().any():
            return []  # nothing hidden: nothing to recover (small counts are reported above)
        keys = tuple(c for c in df.columns if c not in flags and c not in counts
                     and c not in values)
        margins = []
        for key in keys:
            column = df[key].astype("string")
            if column.eq("all").any():
                overlapping = () if key in PARTITIONS else tuple(
                    c for c in counts if c.endswith("patients"))
                margins.append(Margin(key, "all", overlapping=overlapping))
            elif key == "unit_id" and column.eq("cluster").any():
                margins.append(Margin(key, "cluster", overlapping=tuple(
                    c for c in counts if c.endswith("patients"))))
        if not margins:
            return []
        derived = [Derived(c, on=tuple(_bases(c, counts) or counts),
                           additive=c == "ddd" and len(_bases(c, counts)) == 1) for c in values]
        frame = df.drop(columns=sorted(flags))
        if frame.duplicated(list(keys)).any():
            return []  # no row identity to audit by (never the case for page tables)
        frame[counts] = frame[counts].astype("Float64")
        try:
            spec = TableSpec(keys=keys, counts=tuple(counts), derived=tuple(derived),
                             margins=tuple(margins))
            return recoverable_cells(frame, spec)
        except ValueError:  # margins that do not add up as read: audited as separate rows
            return []


def _bases(column: str, counts: list[str]) -> list[str]:
    """The counts a value column is built on: ``nation_x`` on the ``nation_`` counts, any other
    on the unprefixed ones."""
    prefix = column.split("_", 1)[0] + "_" if column.startswith("nation_") else ""
    return [c for c in counts if (c.startswith(prefix) if prefix else "_" not in c)]


def _ranked_last(ranks: pd.Series, hidden: pd.Series) -> bool:
    """Whether every hidden row ranks after every shown one: a rank given on the published
    values, hidden rows last, tells nothing of a hidden value."""
    visible = ranks[~hidden.to_numpy()].dropna()
    concealed = ranks[hidden.to_numpy()].dropna()
    return concealed.empty or visible.empty or float(visible.max()) < float(concealed.min())


def _row_label(df: pd.DataFrame, index: object) -> str:
    text = [f"{c}={df.at[index, c]}" for c in df.columns
            if df[c].dtype.kind in "OSU" or str(df[c].dtype) in ("string", "str")][:5]
    return ", ".join(text)


def _is_date(day: str, month: str) -> bool:
    return 1 <= int(day) <= 31 and 1 <= int(month) <= 12


def iter_findings(report: ScanReport, kind: str) -> Iterator[Finding]:
    return (f for f in report.findings if f.kind == kind)
