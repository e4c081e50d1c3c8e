"""Text measured once per process: matplotlib renderers that keep what they learn about fonts.

Matplotlib measures a text every time it lays it out, and it lays a text out several times per
figure (the layout, the tick labels' boxes, the drawing). Two of its measurements are not
kept beyond one renderer, and the SVG backend makes a new renderer per figure:

* the font's line metrics (ascent, descent, line gap): read afresh from the font file's tables
  for every layout of every text, about a third of the time matplotlib spends laying out text;
* the SVG renderer's size of a string: kept per renderer only, so a figure's tick numbers and
  labels, which recur on every page, are measured again in every figure.

Both depend only on the string, the font properties and the resolution, so a kept copy gives
the same numbers, and the same bytes (``tests/test_pages_fonts.py`` compares them with
matplotlib's own SVG). Together they take about 30 % off drawing a page's figures. The line
metrics go through ``_get_font_height_metrics``, the hook matplotlib's text layout asks a
renderer for first; should a later matplotlib stop asking, it measures as before.

This module is also the matplotlib backend a figure is saved with
(``savefig(..., backend="module://workbench.pages.fonts")``): :class:`FigureCanvas`.
"""

from __future__ import annotations

import codecs

from matplotlib import cbook
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.backends.backend_mixed import MixedModeRenderer
from matplotlib.backends.backend_svg import FigureCanvasSVG, RendererSVG
from matplotlib.font_manager import FontProperties, fontManager, get_font

KEPT_TEXTS = 20_000  # strings' sizes kept before starting over (a kernel's pages reuse few)

# per font: (line gap, ascent, descent, units per em), or None for a font without the tables
_line_metrics: dict[FontProperties, tuple[float, float, float, float] | None] = {}
_svg_sizes: dict[tuple[str, FontProperties, object], tuple[float, float, float]] = {}


def _font_line_metrics(prop: FontProperties) -> tuple[float, float, float, float] | None:
    """The font's own line metrics, in font units, as matplotlib's text layout reads them."""
    key = prop.copy()  # a FontProperties is mutable: key on a copy, as matplotlib does
    if key not in _line_metrics:
        font = get_font(fontManager._find_fonts_by_props(prop))
        found = None
        for table_name, gap, ascent, descent in (
            ("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
            ("hhea", "lineGap", "ascent", "descent"),
        ):
            table = font.get_sfnt_table(table_name)
            if table is not None:
                found = (table[gap], table[ascent], table[descent],
                         font.get_sfnt_table("head")["unitsPerEm"])
                break
        _line_metrics[key] = found
    return _line_metrics[key]


def line_metrics(prop: FontProperties, dpi: float) -> tuple[float | None, ...]:
    """``(ascent, descent, line gap)`` in pixels at ``dpi``, computed exactly as matplotlib's
    ``Text._get_layout`` does (same operations in the same order, so the same floats)."""
    found = _font_line_metrics(prop)
    if found is None:
        return None, None, None  # matplotlib then measures "lp" itself
    gap, ascent, descent, units_per_em = found
    scale = 1 / units_per_em * prop.get_size_in_points() * dpi / 72
    return ascent * scale, -descent * scale, gap * scale


class MeasuringRendererAgg(RendererAgg):
    """The layout's Agg renderer (:mod:`workbench.pages.layout`), with kept line metrics."""

    def _get_font_height_metrics(self, prop: FontProperties) -> tuple[float | None, ...]:
        return line_metrics(prop, self.dpi)


class KeptRendererSVG(RendererSVG):
    """matplotlib's SVG renderer, with kept line metrics and string sizes.

    An SVG is drawn at 72 dpi (``print_svg`` sets the figure's resolution to 72 while it draws),
    and the renderer measures a string at 72 dpi whatever the figure's: the sizes do not depend
    on the renderer, so one dict serves every figure."""

    def _get_font_height_metrics(self, prop: FontProperties) -> tuple[float | None, ...]:
        return line_metrics(prop, 72.0)

    def get_text_width_height_descent(self, s: str, prop: FontProperties,
                                      ismath: object) -> tuple[float, float, float]:
        key = (s, prop.copy(), ismath)
        found = _svg_sizes.get(key)
        if found is None:
            if len(_svg_sizes) >= KEPT_TEXTS:
                _svg_sizes.clear()
            found = _svg_sizes[key] = super().get_text_width_height_descent(s, prop, ismath)
        return found


class FigureCanvas(FigureCanvasSVG):
    """matplotlib's SVG canvas drawing with :class:`KeptRendererSVG`.

    The body is matplotlib 3.11's ``FigureCanvasSVG.print_svg`` with the renderer's class
    changed; the page tests compare its bytes with matplotlib's own."""

    def print_svg(self, filename: object, *, bbox_inches_restore: object = None,
                  metadata: dict | None = None, **ignored: object) -> None:
        # ``ignored``: what ``savefig`` passes every canvas (dpi, facecolor, ...); matplotlib
        # drops them for its own canvases, whose ``print_svg`` does not use them either
        with cbook.open_file_cm(filename, "w", encoding="utf-8") as fh:
            if not cbook.file_requires_unicode(fh):
                fh = codecs.getwriter("utf-8")(fh)
            dpi = self.figure.dpi
            self.figure.dpi = 72
            width, height = self.figure.get_size_inches()
            w, h = width * 72, height * 72
            renderer = MixedModeRenderer(
                self.figure, width, height, dpi,
                KeptRendererSVG(w, h, fh, image_dpi=dpi, metadata=metadata),
                bbox_inches_restore=bbox_inches_restore)
            self.figure.draw(renderer)
            renderer.finalize()
