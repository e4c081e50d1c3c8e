"""The report site's HTML: an exporter kept from page to page writes what a new one writes.

A batch worker keeps its nbconvert exporter (a new one compiles its templates again, a tenth of
a second per page), so nothing one page leaves in the exporter may show in the next page."""

from __future__ import annotations

import nbformat

from workbench.publish.batch import site
from workbench.publish.batch.plan import PageTask


def notebook(title: str, body: str) -> nbformat.NotebookNode:
    """A page notebook after Papermill: a parameters cell without output, cells with HTML."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell('unit = "K001"')
    params.metadata["tags"] = ["parameters"]
    shown = []
    for html in (f"<h1>{title}</h1>", body):
        cell = nbformat.v4.new_code_cell("view.section('x')")
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": html})]
        shown.append(cell)
    nb.cells = [params, *shown, nbformat.v4.new_markdown_cell("*Note* on the page")]
    return nb


def test_a_reused_exporter_writes_what_a_new_one_writes() -> None:
    task = PageTask("analgesics", "practice_insight", "172409", "", {})
    first = notebook("Første side", '<a href="cluster_insight.ipynb?unit=K001">klynge</a>')
    second = notebook("Anden side", "<p>intet link</p>")
    site._exporters.clear()
    reused = [site.page_html(nb, task, frozenset(), "da") for nb in (first, second, first)]
    assert len(site._exporters) == 1  # one exporter served all three pages
    fresh = []
    for nb in (first, second, first):
        site._exporters.clear()
        fresh.append(site.page_html(nb, task, frozenset(), "da"))
    assert reused == fresh
    assert "Første side" in reused[0] and "Første side" not in reused[1]
    assert "<em>Note</em>" in reused[1] and 'class="wb-not-rendered"' in reused[0]
    assert "unit = " not in reused[0]  # no code
