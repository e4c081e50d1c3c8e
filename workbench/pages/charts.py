"""Plotting functions: each draws one published (suppressed) table in the house style.

They take the exact table that is offered as the figure's CSV, with a ``role`` column where it
matters (``unit``, ``cluster``, ``nation``, ``peer``), so what a reader sees and what they
download never differ. Hidden values (NA) are drawn as a gap marked ``x``, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.pages.style import (
    DECILES,
    HIGHLIGHT,
    RC,
    SERIES,
    LocalFormatter,
    house_style,
    new_figure,
    unit_colour,
)

# Average glyph widths (inches) of the house fonts, to lay text out before it is drawn: a title
# (13 pt bold) and tick or legend text (10 pt). Generous, so an estimate never overflows.
TITLE_CHAR_IN = 13 * 0.64 / 72
TEXT_CHAR_IN = 10 * 0.60 / 72


def grouped_bars(
    df: pd.DataFrame,
    *,
    category: str,
    value: str,
    series: str,
    colours: Mapping[str, str],
    title: str,
    ylabel: str,
    xlabel: str = "",
    language: str = "en",
) -> Figure:
    """Bars per ``category``, one bar per ``series`` value side by side (unit, cluster, nation;
    or this period and the previous one)."""
    with house_style():
        fig, (ax,) = new_figure()
        categories = list(dict.fromkeys(df[category]))
        names = list(dict.fromkeys(df[series]))
        width = 0.8 / max(len(names), 1)
        x = np.arange(len(categories))
        for i, (name, part) in enumerate(df.groupby(series, sort=False, observed=True)):
            heights = aligned(part, category, categories, value)
            pos = x - 0.4 + width * (i + 0.5)
            ax.bar(pos, np.nan_to_num(heights), width, label=str(name),
                   color=colours.get(name, SERIES[i % len(SERIES)]))
            _mark_hidden(ax, pos, heights)
        wrapped = [_wrap(str(c)) for c in categories]
        widest = max((len(line) for c in wrapped for line in c.split("\n")), default=0)
        slot = (fig.get_figwidth() - 0.9) / max(len(categories), 1)
        rotate = len(categories) > 5 or widest * TEXT_CHAR_IN > 0.9 * slot
        ax.set_xticks(x, [str(c) for c in categories] if rotate else wrapped,
                      rotation=35 if rotate else 0, ha="right" if rotate else "center",
                      rotation_mode="anchor" if rotate else "default")
        ax.yaxis.set_major_formatter(LocalFormatter(language))
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        _finish(fig, ax, title)
        return fig


def ranked_bars(
    df: pd.DataFrame,
    *,
    label: str,
    value: str,
    role: str,
    title: str,
    xlabel: str,
    references: Mapping[str, float] | None = None,
    band: tuple[float, float] | None = None,
    band_label: str = "",
    language: str = "en",
) -> Figure:
    """Horizontal bars sorted by ``value`` (hidden last); each bar coloured by its ``role``;
    vertical reference lines (e.g. the nation) and an optional band (national deciles 10-90)."""
    with house_style():
        ordered = df.assign(_v=df[value].astype("Float64")).sort_values(
            "_v", ascending=True, na_position="first"
        )
        # Roomy bars up to 9 inches; beyond that (the nation's 118 clusters) 0.2 inches a
        # bar, the least that keeps every label apart: a long figure, never an unreadable one.
        height = min(max(2.5, 0.32 * len(ordered) + 1.2), max(9.0, 0.2 * len(ordered) + 1.2))
        fig, (ax,) = new_figure(height=height)
        y = np.arange(len(ordered))
        values = ordered["_v"].to_numpy(dtype=float, na_value=np.nan)
        ax.barh(y, np.nan_to_num(values), color=[unit_colour(r) for r in ordered[role]])
        for pos, v in zip(y, values, strict=True):
            if np.isnan(v):
                ax.text(0, pos, " x", va="center", ha="left", fontsize=9)
        ax.set_yticks(y, [str(v) for v in ordered[label]])
        ax.grid(axis="x", color="#E5E5E5")
        ax.grid(axis="y", visible=False)
        if band is not None and not any(np.isnan(band)):
            ax.axvspan(band[0], band[1], color=DECILES, alpha=0.35, label=band_label, lw=0)
        styles = ["--", ":", "-."]
        for i, (name, ref) in enumerate((references or {}).items()):
            if ref is not None and not np.isnan(ref):
                ax.axvline(ref, color="#222222", ls=styles[i % 3], lw=1.3, label=name)
        ax.xaxis.set_major_formatter(LocalFormatter(language))
        ax.set_xlabel(xlabel)
        _finish(fig, ax, title)
        return fig


def trend(
    df: pd.DataFrame,
    *,
    period: str,
    value: str,
    series: str,
    colours: Mapping[str, str],
    title: str,
    ylabel: str,
    xlabel: str,
    facet: str | None = None,
    band: pd.DataFrame | None = None,
    band_label: str = "",
    language: str = "en",
) -> Figure:
    """Lines over periods, one per ``series`` value; optionally small multiples per ``facet``
    and a shaded band (columns ``period``, ``low``, ``high``: national deciles 10-90)."""
    parts = dict(list(df.groupby(facet, sort=False, observed=True))) if facet else {None: df}
    facets = list(parts)
    with house_style():
        ncols = len(facets)
        fig, axes = new_figure(width=max(8.0, 2.6 * ncols), height=3.8 if ncols > 1 else 4.2,
                               ncols=ncols)
        # how many tick labels fit under one panel, at about 0.5 in a label
        fits = max(2, int((fig.get_figwidth() - 0.8) / ncols / 0.5))
        periods = list(dict.fromkeys(df[period]))
        x = np.arange(len(periods))
        low = high = None
        if band is not None and len(band):
            low, high = (aligned(band, period, periods, c) for c in ("low", "high"))
        for ax, name in zip(axes, facets, strict=True):
            if low is not None:
                ax.fill_between(x, low, high, color=DECILES, alpha=0.35, lw=0,
                                label=band_label)
            for i, (s, line) in enumerate(parts[name].groupby(series, sort=False,
                                                              observed=True)):
                ys = aligned(line, period, periods, value)
                colour = colours.get(s, SERIES[i % len(SERIES)])
                ax.plot(x, ys, marker="o", ms=3, lw=2.4 if colour == HIGHLIGHT else 1.8,
                        color=colour, label=str(s))
            ticks = [i for i, p in enumerate(periods) if str(p).endswith("Q1")]
            if len(ticks) >= 2:  # quarters: a tick at the first quarter of (every nth) year
                ticks = ticks[::math.ceil(len(ticks) / fits)]
                ax.set_xticks(x[ticks], [str(periods[i])[:4] for i in ticks])
            else:
                step = math.ceil(len(periods) / (fits // 2))  # other periods: longer labels
                ax.set_xticks(x[::step], [str(p) for p in periods[::step]])
            ax.yaxis.set_major_formatter(LocalFormatter(language))
            ax.set_xlabel(xlabel)
            ax.set_ylim(bottom=0)
            if name is not None:
                ax.set_title(_wrap(str(name), 24), fontsize=11)
        axes[0].set_ylabel(ylabel)
        _finish(fig, axes[-1], title)
        return fig


def aligned(df: pd.DataFrame, key: str, order: list, value: str) -> np.ndarray:
    """``df[value]`` as floats in the order of ``order`` (matched on ``df[key]``), NaN where a
    key has no row or its value is hidden: a series laid on the chart's categories or periods.
    (An index lookup, not ``set_index().reindex()``: pages draw dozens of lines, and pandas'
    reindexing was a tenth of a page's time.)"""
    values = df[value].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    out = np.full(len(order), np.nan)
    at = pd.Index(order).get_indexer(df[key])
    out[at[at >= 0]] = values[at >= 0]
    return out


def _finish(fig: Figure, ax: object, title: str) -> None:
    """The title, left-aligned over the whole figure and wrapped to its width, and the legend
    in rows under the plot: a long unit name or title never pushes the plot aside or runs off
    the edge of the image."""
    width = fig.get_figwidth()
    fig.suptitle(_wrap(title, int((width - 0.3) / TITLE_CHAR_IN)), x=0.01, ha="left",
                 fontweight="bold", fontsize=RC["axes.titlesize"])
    handles, labels = ax.get_legend_handles_labels()  # type: ignore[attr-defined]
    if not handles:
        return
    entries = sorted((0.55 + TEXT_CHAR_IN * len(label) for label in labels), reverse=True)
    ncols = max(n for n in range(1, len(entries) + 1) if sum(entries[:n]) <= width - 0.3
                or n == 1)
    fig.legend(handles, labels, loc="lower left", ncols=ncols)  # placed by the layout


def _mark_hidden(ax: object, positions: np.ndarray, heights: np.ndarray) -> None:
    for pos, h in zip(positions, heights, strict=True):
        if np.isnan(h):
            ax.text(pos, 0, "x", ha="center", va="bottom", fontsize=9)  # type: ignore[attr-defined]


def _wrap(text: str, width: int = 16) -> str:
    """Break long category labels over lines so ticks do not overlap."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)
