"""Checks shared by the page tests: what a reader would see wrong in a chart, found by drawing it.

A chart is drawn with the Agg renderer (as the PNG a page shows is) and every visible text is
measured: nothing may reach past the edge of the image (a title or label cut off), the tick
labels of an axis may not overlap each other (group names run into one another), and the
figure's title, its legend and each panel with its labels keep clear of one another (the layout
of :mod:`workbench.pages.layout` is computed, so this is where a wrong margin would show).
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
    problems += _collisions(figure, renderer)
    return problems


def _panel_boxes(ax: object, renderer: object) -> list[tuple[str, object]]:
    """A panel and the texts that belong to it, each with its box."""
    boxes = [("panel", ax.get_window_extent(renderer))]  # type: ignore[attr-defined]
    for axis in (ax.xaxis, ax.yaxis):  # type: ignore[attr-defined]
        boxes += [(repr(t.get_text()), t.get_window_extent(renderer))
                  for t in _visible_ticks(axis)]
        if axis.label.get_text():
            boxes.append((repr(axis.label.get_text()), axis.label.get_window_extent(renderer)))
    if ax.title.get_text():  # type: ignore[attr-defined]
        boxes.append((repr(ax.title.get_text()), ax.title.get_window_extent(renderer)))  # type: ignore[attr-defined]
    return boxes


def _collisions(figure: Figure, renderer: object) -> list[str]:
    """The title or the legend running into a panel or its labels, or two panels' texts."""
    outer = [(f"legend {i}", legend.get_window_extent(renderer))
             for i, legend in enumerate(figure.legends)]
    title = getattr(figure, "_suptitle", None)
    if title is not None and title.get_text():
        outer.append(("title", title.get_window_extent(renderer)))
    panels = [_panel_boxes(ax, renderer) for ax in figure.axes if ax.get_visible()]
    problems = [f"collision: {a} / {b}" for (a, box_a), (b, box_b)
                in itertools.combinations(outer, 2) if box_a.overlaps(box_b)]
    for i, panel in enumerate(panels):
        problems += [f"collision: {name} / panel {i} {what}" for name, box in outer
                     for what, other in panel if box.overlaps(other)]
        for j in range(i + 1, len(panels)):
            problems += [f"collision: panel {i} {a} / panel {j} {b}"
                         for a, box_a in panel for b, box_b in panels[j]
                         if box_a.overlaps(box_b)]
    return problems


def page_layout_problems(page: pages.Page) -> list[str]:
    """:func:`layout_problems` of every figure of a page, named by section."""
    return [f"{page.kind}/{section.id}: {problem}" for section in page.sections
            if section.figure is not None for problem in layout_problems(section.figure)]


def leave(page: object) -> None:
    """Close a browser page the way a viewer leaves it: Voilà's unload beacon ends its kernel
    (``page.close()`` alone sends none, and the kernel would hold a slot of the server's kernel
    limits until culled)."""
    page.goto("about:blank")  # type: ignore[attr-defined]
    page.close()  # type: ignore[attr-defined]
