"""The ``workbench`` command: what batch operators and ``make`` run.

Typer gives typed options, ``--help`` on every command and shell completion for free. Every
command takes ``--data DIR`` so several datasets can live side by side. Expected failures (bad
input, bad definitions, an unknown area) print one clear message and exit with status 2; a
traceback means a bug.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from workbench.paths import Dataset
from workbench.publish.voila import DEFAULT_PER_CLIENT, DEFAULT_TOTAL

if TYPE_CHECKING:
    from workbench.data.generator import GenerationSummary

app = typer.Typer(
    help="Prescribing-feedback workbench for general practice.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Generate a synthetic register or load a real extract.", no_args_is_help=True
)
definitions_app = typer.Typer(
    help="Drug groups, flags and age bands in parameters/.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(definitions_app, name="definitions")

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Dataset folder to write or read (default: the project's data/, or $WORKBENCH_DATA).",
        file_okay=False,
    ),
]


def fail(message: str) -> None:
    """Print an expected error the user can act on, and stop with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def parse_years(text: str) -> tuple[int, int]:
    """``2020:2025`` or ``2024`` to an inclusive pair of years."""
    parts = text.split(":")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        first, last = 0, -1
    if not (1990 <= first <= last <= 2100):
        raise typer.BadParameter(f"{text!r}: give years as FIRST:LAST, e.g. 2020:2025")
    return first, last


@data_app.command("generate")
def data_generate(
    area: Annotated[
        str,
        typer.Option(help="'nation', a region code (1081-1085) or a municipality code (e.g. 851)."),
    ] = "nation",
    years: Annotated[
        str, typer.Option(help="Inclusive range of years, FIRST:LAST.", parser=parse_years)
    ] = "2020:2025",
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same data.")
    ] = 2026,
    data: DataOption = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Generate a synthetic register at full real density and build its database."""
    from workbench.data.generator import generate
    from workbench.data.loader import LoadError

    dataset = Dataset.at(data)
    try:
        summary = generate(area, years, seed, dataset, progress=progress)  # type: ignore[arg-type]
    except (ValueError, LoadError) as exc:
        fail(str(exc))
    _write_generation_report(summary, dataset)
    typer.echo(str(summary))
    typer.echo(f"database: {dataset.database}")


def _write_generation_report(summary: GenerationSummary, dataset: Dataset) -> None:
    """``reports/generation.json``: rows and wall-clock windows per phase and table, which
    ``make bench`` matches against its memory samples."""
    import json

    load = summary.load_report
    tables = {
        name: {
            "rows": rows,
            "seconds": load.seconds.get(name) if load else None,
            "window": load.windows.get(name) if load else None,
        }
        for name, rows in summary.rows.items()
    }
    report = {
        "area": summary.area,
        "years": list(summary.years),
        "seed": summary.seed,
        "phases": {
            "generate": {"seconds": summary.seconds_generate, "window": summary.window},
            "load": {"seconds": summary.seconds_load},
        },
        "tables": tables,
    }
    dataset.reports_dir.mkdir(parents=True, exist_ok=True)
    (dataset.reports_dir / "generation.json").write_text(json.dumps(report, indent=2))


@data_app.command("load")
def data_load(
    source: Annotated[
        Path, typer.Argument(help="Folder holding the six register tables (CSV or Parquet).")
    ],
    data: DataOption = None,
    append: Annotated[bool, typer.Option(
        help="Add a delivery (a month of redemptions; any other table given replaces the old) "
             "to the loaded register, and refresh the answer store's periods it changes.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Validate a register extract and build the workbench database from it."""
    from workbench.answers import Progress, StoreError, build_store
    from workbench.data.loader import LoadError, append_register, load_register

    dataset = Dataset.at(data)
    try:
        load = append_register if append else load_register
        report = load(source, dataset, progress=progress)
    except LoadError as exc:
        fail(str(exc))
    typer.echo(report.summary())
    typer.echo(f"database: {dataset.database}")
    if append and dataset.answers.is_file():
        try:
            built = build_store(dataset, progress=Progress(say=lambda line: typer.echo(line)))
        except StoreError as exc:
            fail(str(exc))
        typer.echo(str(built))


@data_app.command("info")
def data_info(data: DataOption = None) -> None:
    """Show what a dataset holds: rows per table, what was quarantined, and its provenance."""
    import duckdb

    dataset = Dataset.at(data)
    if not dataset.database.exists():
        fail(f"{dataset.database} does not exist: run `workbench data generate` or `data load`")
    with duckdb.connect(str(dataset.database), read_only=True) as con:
        typer.echo(f"dataset: {dataset.root}")
        for key, value in con.execute("select key, value from metadata order by key").fetchall():
            typer.echo(f"  {key}: {value}")
        typer.echo(
            f"{'table':14s} {'rows in':>12s} {'loaded':>12s} {'quarantined':>12s} {'warnings':>10s}"
        )
        rows = con.execute(
            'select "table", rows_in, loaded, quarantined, warnings from reconciliation'
        ).fetchall()
        for table, rows_in, loaded, quarantined, warnings in rows:
            typer.echo(
                f"{table:14s} {rows_in:12,d} {loaded:12,d} {quarantined:12,d} {warnings:10,d}"
            )


@data_app.command("build")
def data_build(
    data: DataOption = None,
    force: Annotated[bool, typer.Option(help="Build even if the store is current.")] = False,
) -> None:
    """Build the dataset's answer store: every answer a page can show, for every unit, period
    and choice (skipped when the store is current; a killed build leaves the previous one)."""
    from workbench.answers import Progress, StoreError, build_store

    dataset = Dataset.at(data)
    if not dataset.exists():
        fail(f"{dataset.database} does not exist: run `workbench data generate` or `data load`")
    try:
        report = build_store(dataset, force=force,
                             progress=Progress(say=lambda line: typer.echo(line)))
    except StoreError as exc:
        fail(str(exc))
    typer.echo(str(report))


@data_app.command("attack")
def data_attack(
    data: DataOption = None,
    primaries_only: Annotated[bool, typer.Option(
        help="Attack tables protected one at a time (only counts of 1-4 hidden) instead.")
    ] = False,
    oracle: Annotated[bool, typer.Option(
        help="An attacker who knows, for each relation, whether its persons overlap (no view "
             "tells that): how far beyond a viewer's reach the remaining risk lies.")
    ] = False,
) -> None:
    """Read every view of the built store as an attacker would and list each count of 1-4 it
    gives away (exactly, or to a range narrower than the threshold), by one relation and by
    chains of relations; exit 1 when any."""
    from workbench.answers.attack import attack_store

    dataset = Dataset.at(data)
    try:
        report = attack_store(dataset, primaries_only=primaries_only, oracle=oracle,
                              say=lambda line: typer.echo(line))
    except FileNotFoundError as exc:
        fail(str(exc))
    typer.echo(str(report))
    for title, found in (("by one relation", report.by_one),
                         ("by chains of relations", report.by_chains)):
        if len(found):
            typer.echo(f"given away {title} (first 50):")
            typer.echo(found.head(50).to_string(index=False))
    if len(report.by_chains):
        raise typer.Exit(1)


@definitions_app.command("check")
def definitions_check() -> None:
    """Validate parameters/ and list the groups with the ATC codes they take."""
    from workbench.data.reference import atc_ddd
    from workbench.definitions import DefinitionsError, load_definitions

    try:
        defs = load_definitions()
    except DefinitionsError as exc:
        fail(str(exc))
    codes = sorted(set(atc_ddd()["atc_code"]))
    for theme in defs.themes.values():
        typer.echo(f"{theme.id}: {theme.label.en}")
        for gid in theme.groups:
            n = sum(defs.groups[gid].matches(c) for c in codes)
            typer.echo(f"  {gid:16s} {n:4d} ATC codes  {defs.groups[gid].label.en}")
    typer.echo("definitions OK")


@app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port for the dashboards.")] = 8866,
    data: DataOption = None,
    site: Annotated[
        Path, typer.Option(help="Report site of `workbench render`, served on port + 1 if built.")
    ] = Path("site"),
    profile: Annotated[
        str, typer.Option(help="Who may see what: public (no practice identifiable), practice "
                          "(with --practice: its own pages and its cluster's), analyst (all; "
                          "inside the secure environment only).")
    ] = "public",
    practice: Annotated[
        str | None, typer.Option(help="The practice (ydernummer) of --profile practice.")
    ] = None,
    audit_log: Annotated[
        Path | None, typer.Option(help="Audit log of page views (default: DATA/audit.log).")
    ] = None,
    max_kernels: Annotated[
        int, typer.Option(help="Page views served at once (one kernel each); past it a polite "
                          "'busy, try again' page. Sets the memory ceiling.")
    ] = DEFAULT_TOTAL,
    max_kernels_per_client: Annotated[
        int, typer.Option(help="Page views served at once to one client (remote address).")
    ] = DEFAULT_PER_CLIENT,
) -> None:
    """Serve the theme pages as read-only Voilà dashboards for one profile (Ctrl-C stops)."""
    from workbench.publish.serve import (
        Limits,
        ServeError,
        check_profile,
        parse_profile,
        prepare,
        run,
        serve_site,
        urls,
    )

    dataset = Dataset.at(data)
    try:
        viewer = check_profile(dataset, parse_profile(profile, practice))
        limits = Limits(max_kernels, max_kernels_per_client)
        typer.echo(str(prepare(dataset)))
    except ServeError as exc:
        fail(str(exc))
    typer.echo(f"profile: {viewer.spec()}" + (" (inside the secure environment only)"
                                              if viewer.name == "analyst" else ""))
    typer.echo("dashboards (Ctrl-C stops): " + "  ".join(urls(port)))
    static = serve_site(site, port + 1) if (site / "index.html").is_file() else None
    if static is not None:
        typer.echo(f"report site: http://127.0.0.1:{port + 1}/index.html ({site})")
    try:
        code = run(dataset, port, profile=viewer, audit=audit_log, limits=limits)
    finally:
        if static is not None:
            static.terminate()
            static.wait(timeout=10)
    sys.exit(code)


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeated and/or comma-separated option values, in order, without empties."""
    if not values:
        return None
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command("render")
def render(
    theme: Annotated[str, typer.Option(help="psychotropics, analgesics or all.")] = "all",
    area: Annotated[str, typer.Option(help="nation or a region code (1081-1085).")] = "nation",
    period: Annotated[
        str, typer.Option(help="2024, 2024Q1 or R12-2025-06; default: the newest complete year.")
    ] = "",
    pages: Annotated[
        list[str] | None,
        typer.Option(help="Only these page kinds (overview, cluster_insight, ...); repeatable."),
    ] = None,
    units: Annotated[
        list[str] | None,
        typer.Option(help="Only these clusters (with their practices) and practices; the "
                     "overview is always rendered unless --pages leaves it out."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N pages of each theme, in site order.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Pages rendered at once (default: the number of cores).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder of the report site.")] = Path("site"),
    executor: Annotated[
        str, typer.Option(help="local (worker processes here) or dask (an existing cluster).")
    ] = "local",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, e.g. tcp://10.0.0.5:8786.")
    ] = None,
    language: Annotated[str, typer.Option(help="da or en.")] = "da",
    profile: Annotated[
        str, typer.Option(help="Who the site is for: public (no practice pages), "
                          "practice:ID (one practice's pages and its cluster's) or analyst "
                          "(everything; secure environment only).")
    ] = "public",
    notebooks: Annotated[
        Path | None, typer.Option(help="Folder of the page notebooks (default: notebooks/).")
    ] = None,
    interventions: Annotated[
        Path | None,
        typer.Option(help="Folder of the intervention-area files (parameters/interventions/)."),
    ] = None,
    fresh_kernels: Annotated[
        bool, typer.Option(help="A new kernel for every page instead of one per worker.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Render every page, even unchanged ones.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    data: DataOption = None,
) -> None:
    """Render the theme pages for every cluster and practice of an area into a report site.

    Exit status 1 if any page failed (the others are rendered), 2 for a bad option.
    """
    import os

    from workbench.pages.choices import PAGE_KINDS
    from workbench.publish.batch import (
        BatchError,
        BatchOptions,
        Interrupted,
        PlanError,
        run_batch,
    )

    themes = ("psychotropics", "analgesics") if theme == "all" else (theme,)
    options = BatchOptions(
        themes=themes, area=area, out=out, data=data, period=period,
        pages=_split(pages) or PAGE_KINDS, units=_split(units), limit=limit,
        workers=workers or os.cpu_count() or 1, executor=executor, scheduler=scheduler,
        language=language, profile=profile, fresh_kernels=fresh_kernels, force=force,
        progress=progress,
    )
    if notebooks is not None:
        options.notebooks = notebooks
    if interventions is not None:
        options.interventions = interventions
    asked = {"themes": list(themes), "area": area, "period": period, "pages": list(options.pages),
             "units": list(options.units or []), "language": language, "out": str(out)}
    try:
        result = run_batch(options)
    except (BatchError, PlanError) as exc:
        _audit_render(data, profile, asked, outcome="refused", error=str(exc))
        fail(str(exc))
    except (Interrupted, KeyboardInterrupt):
        _audit_render(data, profile, asked, outcome="stopped")
        typer.echo("render: stopped; finished pages are kept, a re-run resumes", err=True)
        raise typer.Exit(code=143) from None
    _audit_render(data, profile, asked, outcome="ok" if result.ok else "failed",
                  rendered=result.rendered, skipped=result.skipped, failed=len(result.failed))
    typer.echo(result.summary())
    if not result.ok:
        raise typer.Exit(code=1)


def _audit_render(data: Path | None, profile: str, asked: dict, **outcome: object) -> None:
    """One audit line per render run (``$WORKBENCH_AUDIT_LOG``, else the dataset's log)."""
    import os

    from workbench.audit import AUDIT_ENV, record

    log = os.environ.get(AUDIT_ENV) or Dataset.at(data).root / "audit.log"
    record("render", profile=profile, page="(batch)", unit=str(asked["area"]),
           parameters=asked, path=Path(log), **outcome)


@app.command("scan")
def scan_output(
    folder: Annotated[Path, typer.Argument(help="Output folder (a report site, exports).")],
    profile: Annotated[
        str, typer.Option(help="The profile it was made for: public, practice:ID or analyst.")
    ] = "public",
    data: DataOption = None,
) -> None:
    """Read every file of an output folder and report what must not be published: counts of
    1-4 persons, values built on hidden ones, recoverable cells, person keys, CPR numbers,
    birth dates, practices the profile may not see. Exit status 1 if anything is found."""
    from workbench.profiles import Profile, ProfileError
    from workbench.publish.scan import register_practices, scan

    try:
        viewer = Profile.parse(profile)
    except ProfileError as exc:
        fail(str(exc))
    if not folder.is_dir():
        fail(f"{folder} is not a folder")
    dataset = Dataset.at(data)
    practices = register_practices(dataset.database) if dataset.exists() else None
    if practices is None:
        typer.echo(f"note: no database at {dataset.database}: practices are not checked",
                   err=True)
    report = scan(folder, viewer, practices)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(code=1)


@app.command("export")
def export(
    group: Annotated[
        list[str],
        typer.Option(help="Drug group (e.g. opioids); repeat or comma-separate for several."),
    ],
    period: Annotated[
        str, typer.Option(help="2024, 2024Q1, 2024-03, R12-2024-06, a series 2024-01..2024-12.")
    ],
    level: Annotated[
        str, typer.Option(help="nation, region, municipality, cluster or practice.")
    ] = "practice",
    measures: Annotated[
        str, typer.Option(help="Comma-separated measures, in the order of the columns.")
    ] = "patients,listed,ddd,patients_per_1000,ddd_per_1000",
    by: Annotated[
        list[str] | None,
        typer.Option(help="Breakdown (sex, age_group, consumption_group, ...); adds 'all' rows."),
    ] = None,
    units: Annotated[
        str | None, typer.Option(help="Only these unit ids of the level, comma-separated.")
    ] = None,
    unsuppressed: Annotated[
        bool,
        typer.Option(help="Analyst mode: show suppressed values (refused while publishing)."),
    ] = False,
    output_format: Annotated[str, typer.Option("--format", help="csv, tsv or json.")] = "csv",
    data: DataOption = None,
) -> None:
    """Write one indicator table to stdout, per unit and period, with disclosure control."""
    from workbench.publish.export import ExportError
    from workbench.publish.export import export as export_table

    try:
        text = export_table(group, period, level=level, measures=measures.split(","),
                            by=by or (), units=units.split(",") if units is not None else None,
                            unsuppressed=unsuppressed, fmt=output_format, data=data)
    except ExportError as exc:
        fail(str(exc))
    typer.echo(text, nl=False)


def main() -> None:
    app(prog_name="workbench")


if __name__ == "__main__":
    sys.exit(main())
