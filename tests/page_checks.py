"""Checks shared by the page tests: what a reader would see wrong in a chart, found by drawing it.

A chart is drawn with the Agg renderer (as the PNG a page shows is) and every visible text is
measured: nothing may reach past the edge of the image (a title or label cut off), and the tick
labels of an axis may not overlap each other (group names run into one another).
"""

from __future__ import annotations

import itertools

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

import workbench.pages as pages


def _visible_ticks(axis: object) -> list[Text]:
    """Tick labels whose tick lies inside the axis's view (matplotlib keeps others undrawn)."""
    low, high = sorted(axis.get_view_interval())  # type: ignore[attr-defined]
    span = (high - low) * 1e-9
    return [label for label, at in zip(axis.get_ticklabels(),  # type: ignore[attr-defined]
                                       axis.get_majorticklocs(), strict=True)  # type: ignore[attr-defined]
            if label.get_text() and low - span <= at <= high + span]


def layout_problems(figure: Figure) -> list[str]:
    """Texts cut off at the image's edge, and overlapping tick labels, of one drawn figure."""
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    width, height = figure.bbox.width, figure.bbox.height
    hidden_ticks = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            shown = {id(t) for t in _visible_ticks(axis)}
            hidden_ticks |= {id(t) for t in axis.get_ticklabels() if id(t) not in shown}
    problems = []
    for text in figure.findobj(Text):
        if not text.get_text() or not text.get_visible() or id(text) in hidden_ticks:
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            problems.append(f"cut off: {text.get_text()!r}")
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in _visible_ticks(axis) if not t.get_rotation()]
            boxed = [(t, t.get_window_extent(renderer)) for t in labels]
            for (a, box_a), (b, box_b) in itertools.combinations(boxed, 2):
                if box_a.overlaps(box_b):
                    problems.append(f"overlap: {a.get_text()!r} / {b.get_text()!r}")
    return problems


def page_layout_problems(page: pages.Page) -> list[str]:
    """:func:`layout_problems` of every figure of a page, named by section."""
    return [f"{page.kind}/{section.id}: {problem}" for section in page.sections
            if section.figure is not None for problem in layout_problems(section.figure)]
