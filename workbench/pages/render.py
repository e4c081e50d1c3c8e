"""HTML for a built page: header, key-figure cards, sections with figure, sentence and CSV.

The same HTML is shown by a batch run (Papermill output, converted to a report) and inside the
dashboard's widgets, so both look alike. Figures are inline PNGs; a CSV link is a data URL of the
section's published table. Class names (``wb-kf``, ``wb-figure``, ``wb-section``) are a contract
with the browser tests.
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd
from matplotlib.figure import Figure

from workbench.glossary import glossary
from workbench.pages.base import KeyFigure, Page, Section

CSS = """
<style>
.wb-page{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
  max-width:1100px}
.wb-sub{font-size:1.05em;color:#444;margin:0 0 .6em}
.wb-kfs{display:flex;flex-wrap:wrap;gap:10px;margin:.5em 0 1em}
.wb-kf{border:1px solid #ddd;border-left:5px solid #D55E00;border-radius:4px;padding:8px 12px;
  min-width:180px;max-width:260px}
.wb-kf .l{font-size:.85em;color:#555}.wb-kf .v{font-size:1.6em;font-weight:600}
.wb-kf .c,.wb-kf .d{font-size:.85em;color:#444}
.wb-section{margin:1.2em 0;border-top:1px solid #eee;padding-top:.4em}
.wb-section h3{margin:.3em 0}.wb-sentence{margin:.2em 0 .5em;color:#333}
.wb-figure{margin:0}.wb-figure img{max-width:100%;height:auto}
.wb-csv{font-size:.9em}.wb-links a{margin-right:1em}.wb-note{color:#8a4b00}
.wb-table{border-collapse:collapse;font-size:.9em}
.wb-table td,.wb-table th{padding:2px 8px;border-bottom:1px solid #eee}
</style>
"""


def number(value: float | None, language: str, decimals: int = 1) -> str:
    """A number the way readers of the language write it; ``x`` for a hidden value.

    >>> number(1234.56, "da"), number(1234.56, "en"), number(None, "da")
    ('1.234,6', '1,234.6', 'x')
    """
    if value is None or pd.isna(value):
        return "x"
    text = f"{value:,.{decimals}f}"
    if language == "da":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return text


def _t(key: str, language: str, **values: object) -> str:
    text = glossary().label("ui", key, language)
    return text.format(**values) if values else text


def header(page: Page) -> str:
    lang = page.choices.language
    links = " ".join(f'<a href="{html.escape(u)}" target="_top">{html.escape(text)}</a>'
                     for text, u in page.links)
    nav = f'<div class="wb-links wb-nav">{links}</div>' if links else ""
    return (f'{CSS}<div class="wb-page"><p class="wb-sub" data-kind="{page.kind}">'
            f'<b>{html.escape(page.title)}</b> · {html.escape(page.subtitle)}</p>{nav}'
            f'<p class="wb-note">{html.escape(_t("suppression_note", lang))}</p></div>')


def key_figure(figure: KeyFigure, language: str) -> str:
    decimals = 0 if figure.measure in ("patients", "listed") else 1
    value = number(figure.value, language, decimals)
    compared = " · ".join(f"{html.escape(name)}: {number(v, language, decimals)}"
                          for name, v in figure.comparisons)
    change = ""
    if figure.previous:
        pct = "x" if figure.change is None else f"{figure.change * 100:+.0f} %"
        change = _t("change_since", language, change=pct, previous=figure.previous)
    unit = glossary().label("measures", figure.measure, language)
    unit_line = f'<div class="l">{html.escape(unit)}</div>' if unit != figure.label else ""
    return (f'<div class="wb-kf" data-key="{html.escape(figure.key)}">'
            f'<div class="l">{html.escape(figure.label)}</div>'
            f'<div class="v">{value}</div>{unit_line}'
            f'<div class="c">{compared}</div><div class="d">{html.escape(change)}</div></div>')


def key_figures(page: Page) -> str:
    lang = page.choices.language
    cards = "".join(key_figure(f, lang) for f in page.key_figures)
    csv = ""
    if page.key_table is not None:
        csv = _csv_link(page.key_table, f"{page.kind}_key_figures.csv", lang)
    return (f'<div class="wb-page"><h3>{html.escape(_t("key_figures", lang))}</h3>'
            f'<p class="wb-sentence">{html.escape(_t("key_figures_sentence", lang))}</p>'
            f'<div class="wb-kfs">{cards}</div>{csv}</div>')


def section(sec: Section, page: Page) -> str:
    lang = page.choices.language
    parts = [f'<section class="wb-section wb-page" data-section="{sec.id}">',
             f"<h3>{html.escape(sec.title)}</h3>"]
    if sec.note:
        parts.append(f'<p class="wb-note">{html.escape(_t("not_available", lang))}</p>')
        parts.append(f"<!-- {html.escape(sec.note)} -->")
    if sec.sentence:
        parts.append(f'<p class="wb-sentence">{html.escape(sec.sentence)}</p>')
    if sec.figure is not None:
        parts.append(f'<figure class="wb-figure"><img alt="{html.escape(sec.title)}" '
                     f'src="data:image/png;base64,{png(sec.figure)}"></figure>')
    if sec.ranking is not None:
        parts.append(sec.ranking.to_html(index=False, classes="wb-table", border=0,
                                         na_rep="x"))
    if sec.links:
        items = "".join(f'<li><a href="{html.escape(u)}" target="_top">{html.escape(t)}</a></li>'
                        for t, u in sec.links)
        parts.append(f'<details class="wb-links"><summary>{html.escape(_t("drill_down", lang))}'
                     f"</summary><ul>{items}</ul></details>")
    if sec.table is not None:
        parts.append(_csv_link(sec.table, f"{page.kind}_{sec.id}.csv", lang))
    parts.append("</section>")
    return "".join(parts)


def page_html(page: Page) -> str:
    """The whole page as one HTML fragment (for a batch report or a test)."""
    return header(page) + key_figures(page) + "".join(section(s, page) for s in page.sections)


def png(figure: Figure) -> str:
    """The figure as base64 PNG; cached on the figure, since a page may be shown twice."""
    cached = getattr(figure, "_wb_png", None)
    if cached is None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        cached = base64.b64encode(buffer.getvalue()).decode("ascii")
        figure._wb_png = cached  # type: ignore[attr-defined]
    return cached


def _csv_link(table: pd.DataFrame, name: str, language: str) -> str:
    data = base64.b64encode(table.to_csv(index=False).encode("utf-8")).decode("ascii")
    return (f'<a class="wb-csv" download="{html.escape(name)}" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">'
            f'{html.escape(_t("download_csv", language))}</a>')
