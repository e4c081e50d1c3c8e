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
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Validate a register extract and build the workbench database from it."""
    from workbench.data.loader import LoadError, load_register

    dataset = Dataset.at(data)
    try:
        report = load_register(source, dataset, progress=progress)
    except LoadError as exc:
        fail(str(exc))
    typer.echo(report.summary())
    typer.echo(f"database: {dataset.database}")


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
) -> None:
    """Serve the five pages of both themes as read-only Voilà dashboards (Ctrl-C stops)."""
    from workbench.publish.serve import ServeError, prepare, run, urls

    dataset = Dataset.at(data)
    try:
        prepare(dataset)
    except ServeError as exc:
        fail(str(exc))
    typer.echo("dashboards (Ctrl-C stops): " + "  ".join(urls(port)))
    sys.exit(run(dataset, port))


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
