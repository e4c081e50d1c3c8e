"""HTML for a built page: header, key-figure cards, sections with figure, sentence and CSV.

The same HTML is shown by a batch run (Papermill output, converted to a report) and inside the
dashboard's widgets, so both look alike. Figures are inline SVG images; a CSV link is a data URL
of the section's published table. Class names (``wb-kf``, ``wb-figure``, ``wb-section``) are a
contract with the browser tests.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from workbench.glossary import glossary
from workbench.pages.base import KeyFigure, Page, Section
from workbench.pages.style import number

# A figure's SVG: its texts stay text (the reader's sans-serif draws them, and a scan of the
# page can read them), and the same figure gives the same bytes (no date, fixed ids).
SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "workbench"}
SVG_BACKEND = "module://workbench.pages.fonts"  # matplotlib's SVG, text measured once

CSS = """
<style>
.wb-page{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
  max-width:1100px}
.wb-title{font-size:1.7em;font-weight:600;margin:.2em 0 .1em}
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
.wb-profile{display:inline-block;background:#FFF3CD;border:1px solid #E0B000;border-radius:4px;
  padding:3px 8px;margin:0 0 .6em;font-weight:600}
</style>
"""


# A dashboard while it rebuilds after a filter change (``wb-updating`` on each block's widget,
# :class:`~workbench.pages.view.PageView`): the old content dimmed and not clickable, and at the
# block's top right, clear of its title, the glossary's "updating" label with a spinner. Only
# live dashboards use it (the batch's static pages never update).
UPDATING = "wb-updating"
LIVE_CSS = """
.wb-updating{position:relative}
.wb-updating>.widget-html-content{opacity:.35;transition:opacity .15s;pointer-events:none}
.wb-updating::before{content:"";position:absolute;z-index:2;top:10px;right:15px;width:14px;
  height:14px;box-sizing:border-box;border:3px solid #ddd;border-top-color:#D55E00;
  border-radius:50%;animation:wb-spin .8s linear infinite}
.wb-updating::after{content:var(--wb-updating-label);position:absolute;z-index:1;top:4px;
  right:4px;padding:4px 32px 4px 12px;border:1px solid #ddd;border-radius:14px;
  background:rgba(255,255,255,.92);color:#333;font:600 .9em system-ui,-apple-system,
  "Segoe UI",Roboto,sans-serif;box-shadow:0 1px 3px rgba(0,0,0,.12)}
@keyframes wb-spin{to{transform:rotate(360deg)}}
@media (prefers-reduced-motion:reduce){.wb-updating::before{animation:none}
  .wb-updating>.widget-html-content{transition:none}}
"""


def live_css(language: str) -> str:
    """The style of a live dashboard's updating state, its label in ``language``.

    >>> '--wb-updating-label:"Updating\\\\2026 "' in live_css("en")
    True
    """
    label = _css_string(_t("updating", language))
    return f"<style>:root{{--wb-updating-label:{label}}}{LIVE_CSS}</style>"


def _css_string(text: str) -> str:
    """``text`` as a quoted CSS string: anything but letters, digits and spaces as a CSS escape,
    so no quote, backslash or ``</style>`` in a label can end the string or the style."""
    return '"' + "".join(c if c.isascii() and (c.isalnum() or c == " ") else f"\\{ord(c):x} "
                         for c in text) + '"'


def _t(key: str, language: str, **values: object) -> str:
    text = glossary().label("ui", key, language)
    return text.format(**values) if values else text


def header(page: Page) -> str:
    lang = page.choices.language
    links = " ".join(f'<a href="{html.escape(u)}" target="_top">{html.escape(text)}</a>'
                     for text, u in page.links)
    nav = f'<div class="wb-links wb-nav">{links}</div>' if links else ""
    notice = (f'<p class="wb-profile">{html.escape(page.notice)}</p>' if page.notice else "")
    return (f'{CSS}<div class="wb-page"><div class="wb-head" data-kind="{page.kind}">'
            f'<h1 class="wb-title">{html.escape(page.title)}</h1>'
            f'<p class="wb-sub">{html.escape(page.subtitle)}</p></div>{notice}{nav}'
            f'<p class="wb-note">{html.escape(_t("suppression_note", lang))}</p></div>')


def refusal(kind: str, language: str) -> str:
    """What a page the viewing profile does not allow shows instead: a title and one sentence,
    nothing of the unit asked for."""
    title = glossary().label("pages", kind, language)
    return (f'{CSS}<div class="wb-page wb-refused"><div class="wb-head" data-kind="{kind}">'
            f'<h1 class="wb-title">{html.escape(title)}</h1></div>'
            f'<p class="wb-note">{html.escape(_t("refused_page", language))}</p></div>')


def key_figure(figure: KeyFigure, language: str) -> str:
    decimals = 0 if figure.measure in ("patients", "listed") else 1
    value = number(figure.value, language, decimals)
    compared = "".join(f'<div class="c">{html.escape(name)}: {number(v, language, decimals)}'
                       "</div>" for name, v in figure.comparisons)
    change = ""
    if figure.previous:
        pct = "x" if figure.change is None else f"{figure.change * 100:+.0f} %"
        change = _t("change_since", language, change=pct, previous=figure.previous)
    unit = glossary().label("measures", figure.measure, language)
    unit_line = f'<div class="l">{html.escape(unit)}</div>' if unit != figure.label else ""
    return (f'<div class="wb-kf" data-key="{html.escape(figure.key)}">'
            f'<div class="l">{html.escape(figure.label)}</div>'
            f'<div class="v">{value}</div>{unit_line}'
            f'{compared}<div class="d">{html.escape(change)}</div></div>')


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
                     f'src="data:image/svg+xml;base64,{svg(sec.figure)}"></figure>')
    if sec.ranking is not None:
        parts.append(table(sec.ranking, lang))
    if sec.links:
        items = "".join(f'<li><a href="{html.escape(u)}" target="_top">{html.escape(t)}</a></li>'
                        for t, u in sec.links)
        parts.append(f'<details class="wb-links"><summary>{html.escape(_t("drill_down", lang))}'
                     f"</summary><ul>{items}</ul></details>")
    if sec.table is not None:
        parts.append(_csv_link(sec.table, f"{page.kind}_{sec.id}.csv", lang))
    parts.append("</section>")
    return "".join(parts)


def table(df: pd.DataFrame, language: str) -> str:
    """A published table as HTML, its numbers written the language's way (whole numbers for
    integer columns, one decimal otherwise, ``x`` for a hidden value). Only what is shown is
    localised: the CSV beside it keeps machine-readable numbers.

    >>> df = pd.DataFrame({"g": ["a"], "v": [1234.56], "n": pd.array([7], dtype="Int64")})
    >>> "<td>1.234,6</td>" in table(df, "da") and "<td>1,234.6</td>" in table(df, "en")
    True
    """
    shown = df.copy()
    for column in df.columns:
        kind = df[column].dtype.kind
        if kind in "iuf":
            decimals = 0 if kind in "iu" else 1
            shown[column] = [number(v, language, decimals) for v in df[column]]
    return shown.to_html(index=False, classes="wb-table", border=0, na_rep="x")


def page_html(page: Page) -> str:
    """The whole page as one HTML fragment (for a batch report or a test)."""
    return header(page) + key_figures(page) + "".join(section(s, page) for s in page.sections)


def svg(figure: Figure) -> str:
    """The figure as base64 SVG; cached on the figure, since a page may be shown twice.

    SVG, not PNG: no pixels to rasterise and compress, so a page's figures take about a third
    less time (most of a batch page's time is its figures); the files are smaller; they stay
    sharp when zoomed or printed; and their words are text a screen reader and the output scan
    can read."""
    cached = getattr(figure, "_wb_svg", None)
    if cached is None:
        engine = figure.get_layout_engine()
        if engine is not None:
            # Laid out here, once: with a layout engine set, savefig draws the whole figure
            # twice (a dry run for the engine, then the real one); without, once.
            engine.execute(figure)
            figure.set_layout_engine(None)
        buffer = io.BytesIO()
        with matplotlib.rc_context(SVG_RC):
            figure.savefig(buffer, format="svg", metadata={"Date": None}, backend=SVG_BACKEND)
        cached = base64.b64encode(buffer.getvalue()).decode("ascii")
        figure._wb_svg = cached  # type: ignore[attr-defined]
    return cached


def _csv_link(table: pd.DataFrame, name: str, language: str) -> str:
    data = base64.b64encode(table.to_csv(index=False).encode("utf-8")).decode("ascii")
    return (f'<a class="wb-csv" download="{html.escape(name)}" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">'
            f'{html.escape(_t("download_csv", language))}</a>')
