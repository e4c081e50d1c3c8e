"""The report site: an HTML page without code per executed notebook, its CSVs, and an index.

A page notebook shows only HTML its page built from published (suppressed) tables; every
section with a figure carries its table as a CSV data link (``<a class="wb-csv" download=…>``).
The batch writes those same bytes as files beside the page, so the CSV behind a figure is the
one the reader of the page downloads. The HTML is nbconvert's ``basic`` template without
inputs or prompts, wrapped in a small shell: it is self-contained (figures are inline SVG
images) and opens offline. Drill-down links, which point at dashboards
(``cluster_insight.ipynb?…``), are rewritten to the pages of the batch; a link to a page the
batch didn't render keeps its text and loses its target.

``DIR/index.html`` lists every page: per theme, the nation's overview, then region → cluster →
practice, with the status of each page.
"""

from __future__ import annotations

import base64
import html
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from urllib.parse import parse_qs

import nbformat

from workbench.glossary import glossary
from workbench.publish.batch.plan import INTERVENTION_KINDS, PageTask, Plan

CSV_LINK = re.compile(
    r'<a class="wb-csv" download="([^"]+)" href="data:text/csv;charset=utf-8;base64,([^"]*)"')
PAGE_LINK = re.compile(r'href="([a-z_]+)\.ipynb\?([^"]*)"')
CSV_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,80}\.csv$")
HTML_NAME = "page.html"
NOTEBOOK_NAME = "page.ipynb"
FAILED_NOTEBOOK_NAME = "failed.ipynb"

# The operator's words of the index (the pages' own words come from the glossary).
WORDS = {
    "da": {"title": "Rapporter", "status_ok": "færdig", "status_failed": "fejlet",
           "status_pending": "mangler", "not_rendered": "ikke med i denne kørsel",
           "no_cluster": "Uden klynge", "pages": "sider", "index": "Indeks",
           "made_from": "Data", "period": "Periode"},
    "en": {"title": "Reports", "status_ok": "done", "status_failed": "failed",
           "status_pending": "missing", "not_rendered": "not in this batch",
           "no_cluster": "No cluster", "pages": "pages", "index": "Index",
           "made_from": "Data", "period": "Period"},
}

SHELL_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1em auto;
  max-width:1140px;padding:0 1em;color:#222}
nav.wb-crumbs{font-size:.9em;margin-bottom:.8em}nav.wb-crumbs a{margin-right:.6em}
.cell{margin:0}.wb-not-rendered{color:#777;text-decoration:line-through dotted}
ul.wb-tree{list-style:none;padding-left:1.1em}details>summary{cursor:pointer}
.wb-status-failed{color:#b00020;font-weight:600}.wb-status-pending{color:#8a4b00}
.wb-meta{color:#555;font-size:.9em}
"""


def html_outputs(nb: nbformat.NotebookNode) -> Iterable[str]:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/html")
            if text:
                yield "".join(text) if isinstance(text, list) else text


def extract_csvs(nb: nbformat.NotebookNode) -> dict[str, bytes]:
    """The published tables the page offers for download, by file name."""
    found: dict[str, bytes] = {}
    for text in html_outputs(nb):
        for name, data in CSV_LINK.findall(text):
            name = html.unescape(name)
            if not CSV_NAME.match(name):
                raise ValueError(f"unexpected CSV name {name!r} in the page's output")
            found[name] = base64.b64decode(data)
    return found


def target_of(kind: str, query: str) -> str:
    """The batch page id a dashboard link points at."""
    fields = {k: v[-1] for k, v in parse_qs(html.unescape(query)).items()}
    unit = "DK" if kind == "overview" else fields.get("unit", "")
    # dashboard URLs call the theme ``topic`` (Voilà claims ``theme``); older links ``theme``
    parts = [fields.get("topic") or fields.get("theme", ""), kind, unit]
    if kind in INTERVENTION_KINDS:
        parts.append(fields.get("group", ""))
    return "/".join(parts)


def rewrite_links(text: str, task: PageTask, planned: set[str] | frozenset[str],
                  language: str) -> str:
    """Dashboard links to the batch's pages (relative), or to nothing when not rendered."""
    here = PurePosixPath(task.id)

    def swap(match: re.Match[str]) -> str:
        target = target_of(match.group(1), match.group(2))
        if target in planned:
            return f'href="{os.path.relpath(f"{target}/{HTML_NAME}", here)}"'
        note = html.escape(WORDS[language]["not_rendered"])
        return f'class="wb-not-rendered" title="{note}"'

    return PAGE_LINK.sub(swap, text)


_exporters: list = []  # idle HTML exporters of this process
_exporters_lock = threading.Lock()


@contextmanager
def _exporter() -> Iterator[object]:
    """An HTML exporter of this process, kept from page to page: a new one compiles its Jinja
    templates again, 0.1 s of every page. Lent to one page at a time (a Dask worker renders
    pages on several threads at once)."""
    with _exporters_lock:
        exporter = _exporters.pop() if _exporters else None
    if exporter is None:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(template_name="basic", exclude_input=True,
                                exclude_input_prompt=True, exclude_output_prompt=True)
    yield exporter
    with _exporters_lock:
        _exporters.append(exporter)


def warm_exporter() -> None:
    """Compile an exporter's templates now (a worker does it while the batch precomputes), so
    the worker's first page doesn't."""
    with _exporter() as exporter:
        exporter.from_notebook_node(nbformat.v4.new_notebook())


def page_html(nb: nbformat.NotebookNode, task: PageTask, planned: set[str] | frozenset[str],
              language: str) -> str:
    """The executed notebook as a standalone HTML page without code."""
    shown = nbformat.from_dict(nb)  # without the code cells that show nothing
    shown.cells = [c for c in nb.cells if c.cell_type != "code" or c.get("outputs")]
    with _exporter() as exporter:
        body, _ = exporter.from_notebook_node(shown)
    body = rewrite_links(body, task, planned, language)
    g = glossary()
    title = f"{g.label('pages', task.kind, language)} · {task.name or task.unit}"
    depth = len(task.id.split("/"))
    crumbs = (f'<nav class="wb-crumbs"><a href="{"../" * depth}index.html">'
              f'{html.escape(WORDS[language]["index"])}</a> › '
              f'{html.escape(g.label("themes", task.theme, language))} › '
              f'{html.escape(title)}</nav>')
    return (f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{SHELL_CSS}</style></head>"
            f"<body>{crumbs}{body}</body></html>\n")


def _status(entry: dict | None, language: str) -> str:
    status = (entry or {}).get("status", "pending")
    if status == "ok":
        return ""
    word = WORDS[language].get(f"status_{status}", status)
    return f' <span class="wb-status-{status}">({html.escape(word)})</span>'


def _link(task: PageTask, entries: dict[str, dict], label: str, language: str) -> str:
    entry = entries.get(task.id)
    text = html.escape(label)
    if entry and entry.get("status") == "ok":
        text = f'<a href="{task.id}/{HTML_NAME}">{text}</a>'
    elif entry and entry.get("status") == "failed":
        text = f'<a href="{task.id}/{FAILED_NOTEBOOK_NAME}">{text}</a>'
    return text + _status(entry, language)


def index_html(plan: Plan, entries: dict[str, dict], provenance: dict, language: str,
               region_names: dict[str, str]) -> str:
    """``index.html``: nation → region → cluster → practice, per theme."""
    g = glossary()
    w = WORDS[language]

    def page_label(task: PageTask) -> str:
        label = g.label("pages", task.kind, language)
        if task.kind in INTERVENTION_KINDS:
            label += f": {g.label('groups', task.group, language)}"
        return label

    parts = []
    for theme in plan.themes:
        tasks = [t for t in plan.tasks if t.theme == theme]
        if not tasks:
            continue
        parts.append(f"<h2>{html.escape(g.label('themes', theme, language))}</h2>")
        nation = [t for t in tasks if t.kind == "overview"]
        items = "".join(f"<li>{_link(t, entries, page_label(t), language)}</li>" for t in nation)
        parts.append(f'<p><b>{html.escape(g.label("levels", "nation", language))}</b></p>'
                     f'<ul class="wb-tree">{items}</ul>')
        regions: dict[str, dict[str, list[PageTask]]] = {}
        for t in tasks:
            if t.kind != "overview":
                regions.setdefault(t.region, {}).setdefault(t.cluster, []).append(t)
        for region, clusters in regions.items():
            name = region_names.get(region, region)
            parts.append(f'<details open><summary><b>{html.escape(name)}</b> ({region})'
                         '</summary><ul class="wb-tree">')
            for cluster, ctasks in clusters.items():
                own = [t for t in ctasks if t.kind.startswith("cluster")]
                cname = own[0].name if own else (cluster or w["no_cluster"])
                links = " · ".join(_link(t, entries, page_label(t), language) for t in own)
                parts.append(f"<li><details><summary>{html.escape(cname)} "
                             f"({html.escape(cluster)}) {links}</summary><ul class='wb-tree'>")
                practices: dict[str, list[PageTask]] = {}
                for t in ctasks:
                    if t.kind.startswith("practice"):
                        practices.setdefault(t.unit, []).append(t)
                for unit, ptasks in practices.items():
                    links = " · ".join(_link(t, entries, page_label(t), language)
                                       for t in ptasks)
                    parts.append(f"<li>{html.escape(ptasks[0].name)} ({unit}): {links}</li>")
                parts.append("</ul></details></li>")
            parts.append("</ul></details>")
    counts: dict[str, int] = {}
    for t in plan.tasks:
        status = entries.get(t.id, {}).get("status", "pending")
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {w.get('status_' + s, s)}" for s, n in sorted(counts.items()))
    code = provenance["code_version"]
    fingerprint = str(provenance["data_fingerprint"])[:12]
    meta = (f'<p class="wb-meta">{html.escape(w["period"])}: {html.escape(plan.period)} · '
            f'{len(plan.tasks)} {w["pages"]}: {html.escape(summary)} · '
            f'{html.escape(w["made_from"])}: {html.escape(fingerprint)}'
            f' · workbench {html.escape(code["workbench"])}'
            f' ({html.escape(str(code["git_commit"] or "-")[:12])})'
            ' · <a href="manifest.json">manifest.json</a></p>')
    return (f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(w['title'])}</title><style>{SHELL_CSS}</style></head><body>"
            f"<h1>{html.escape(w['title'])}</h1>{meta}{''.join(parts)}</body></html>\n")
