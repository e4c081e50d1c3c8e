"""The house layout of a figure: margins measured once from the texts around each panel.

Why not matplotlib's constrained layout: before a figure is drawn it measures every axis's
tight box twice, and each measurement re-creates the ticks and re-lays out every label and its
neighbours'. That was about 40 % of a page figure's time, and figures are most of a batch page's
time. The figures here are simple: a row of panels, a title over all of them, tick labels, axis
labels, maybe a panel title, and one legend under everything. So this engine measures what has
a size of its own — the tick labels (their size does not depend on where the panel sits), the
axis labels, the titles, the legend — adds matplotlib's own paddings, and places the panels.
Then it looks once more, at that size: the ticks an axis gets depend on its length, and a tick
label that reaches past its panel's side (a rotated category name, the last number of an axis)
widens that margin; the panels are placed again. Texts inside a panel (marks, annotations)
stay inside it, as before.

The page tests draw every figure of every page kind and check that no text is cut off at the
image's edge, no tick labels overlap, and no title, legend or axis label runs into a panel's
ticks (:mod:`tests.page_checks`).
"""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.layout_engine import LayoutEngine
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from workbench.pages.fonts import MeasuringRendererAgg

PAD_INCHES = 0.06  # from the image's edge to the outermost text
GAP_INCHES = 0.10  # between the legend, the title and the panels, and between two panels
TITLE_PAD_POINTS = 6.0  # matplotlib's axes.titlepad


def _ticklabels(axis: object) -> list[Text]:
    """The tick labels matplotlib will draw: those with text whose tick is inside the view."""
    labels = axis.get_majorticklabels()  # type: ignore[attr-defined]  # updates the ticks
    locs = axis.get_majorticklocs()  # type: ignore[attr-defined]
    low, high = sorted(axis.get_view_interval())  # type: ignore[attr-defined]
    slack = (high - low) * 1e-9
    return [label for label, at in zip(labels, locs, strict=False)
            if label.get_text() and label.get_visible() and low - slack <= at <= high + slack]


def _tick_offset(axis: object, points_to_px: float) -> float:
    """Pixels from the spine to the near side of a tick label (tick length + label pad)."""
    ticks = axis.get_major_ticks()  # type: ignore[attr-defined]
    if not ticks:
        return 0.0
    tick = ticks[0]
    return (tick.get_tick_padding() + tick.get_pad()) * points_to_px


def _extent(text: Text | None, renderer: object) -> Bbox | None:
    if text is None or not text.get_visible() or not text.get_text():
        return None
    return text.get_window_extent(renderer)


class _Panel:
    """What one panel needs around it, in pixels."""

    def __init__(self, ax: Axes) -> None:
        self.ax = ax
        self.left = self.bottom = self.top = 0.0
        self.reach = {"left": 0.0, "right": 0.0}  # tick labels past the panel's sides

    def measure(self, renderer: object, points_to_px: float) -> None:
        """The margins the panel's texts need, with the ticks it has at its current size, and
        how far its tick labels, where they now fall, reach past its sides beyond that."""
        ax = self.ax
        yticks, xticks = _ticklabels(ax.yaxis), _ticklabels(ax.xaxis)
        ylabels = [t.get_window_extent(renderer) for t in yticks]
        xlabels = [t.get_window_extent(renderer) for t in xticks]
        ylabel = _extent(ax.yaxis.label, renderer)
        xlabel = _extent(ax.xaxis.label, renderer)
        title = _extent(ax.title, renderer)
        self.left = (max(b.width for b in ylabels) + _tick_offset(ax.yaxis, points_to_px)
                     if ylabels else 0.0)
        if ylabel is not None:
            self.left += ylabel.width + ax.yaxis.labelpad * points_to_px
        self.bottom = (max(b.height for b in xlabels) + _tick_offset(ax.xaxis, points_to_px)
                       if xlabels else 0.0)
        if xlabel is not None:
            self.bottom += xlabel.height + ax.xaxis.labelpad * points_to_px
        # the end y tick labels are centred on the panel's edges: half of each stands out
        half = max((b.height / 2 for b in ylabels), default=0.0)
        self.bottom = max(self.bottom, half)
        self.top = half
        if title is not None:
            self.top = max(self.top, title.height + TITLE_PAD_POINTS * points_to_px)
        boxes = ylabels + xlabels
        if boxes:
            box = ax.get_window_extent(renderer)
            self.reach["left"] = max(0.0, box.x0 - min(b.x0 for b in boxes) - self.left)
            self.reach["right"] = max(0.0, max(b.x1 for b in boxes) - box.x1)


_renderers: dict[float, MeasuringRendererAgg] = {}


def _measuring_renderer(dpi: float) -> MeasuringRendererAgg:
    """One Agg renderer per resolution, kept: matplotlib caches a text's size per renderer, and
    most texts (tick numbers, axis labels, legend entries) recur from figure to figure, so a
    kept renderer measures each once per kernel rather than once per figure. The figure itself
    is drawn by the renderer of its format; only the layout is measured here."""
    renderer = _renderers.get(dpi)
    if renderer is None:
        renderer = _renderers[dpi] = MeasuringRendererAgg(1, 1, dpi)
    return renderer


class MarginLayout(LayoutEngine):
    """Panels in one row, their margins measured from their texts (see the module's note)."""

    _adjust_compatible = False
    _colorbar_gridspec = False

    def execute(self, fig: Figure) -> None:
        renderer = _measuring_renderer(fig.dpi)
        width, height = fig.bbox.width, fig.bbox.height
        points_to_px = fig.dpi / 72.0
        pad, gap = PAD_INCHES * fig.dpi, GAP_INCHES * fig.dpi
        axes = [ax for ax in fig.axes if ax.get_visible()]
        if not axes:
            return
        top = pad
        suptitle = _extent(getattr(fig, "_suptitle", None), renderer)
        if suptitle is not None:
            top = max(top, height - suptitle.y0 + gap)
        bottom = pad
        for legend in fig.legends:
            legend.set_loc("lower left")
            legend.set_bbox_to_anchor((pad / width, pad / height), transform=fig.transFigure)
            bottom += legend.get_window_extent(renderer).height + gap
        panels = [_Panel(ax) for ax in axes]
        # Twice: the ticks an axis gets depend on its length, so the second look sees the
        # ticks, and where their labels fall, at (almost exactly) the final size.
        for _ in range(2):
            for panel in panels:
                panel.measure(renderer, points_to_px)
            self._place(panels, width, height, top, bottom, pad, gap)

    @staticmethod
    def _place(panels: list[_Panel], width: float, height: float, top: float, bottom: float,
               pad: float, gap: float) -> None:
        """Set the panels' positions: equal widths, the row's margins the widest needed."""
        lefts = [p.left + p.reach["left"] for p in panels]
        rights = [p.reach["right"] for p in panels]
        spaces = [pad + lefts[0]] + [rights[i - 1] + gap + lefts[i]
                                      for i in range(1, len(panels))]
        free = width - sum(spaces) - max(pad, rights[-1] + pad)
        panel_width = max(free / len(panels), 0.25 * width / len(panels))
        below = bottom + max(p.bottom for p in panels)
        above = top + max(p.top for p in panels)
        panel_height = max(height - below - above, 0.25 * height)
        x = 0.0
        for panel, space in zip(panels, spaces, strict=True):
            x += space
            panel.ax.set_position([x / width, below / height, panel_width / width,
                                   panel_height / height])
            x += panel_width
