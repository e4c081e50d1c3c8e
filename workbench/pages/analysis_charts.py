"""Charts of the analysis (:mod:`workbench.analysis`): funnel plots, observed/expected ratios
with their intervals, and a unit's series against the national deciles.

Like :mod:`workbench.pages.charts`, each function draws one published (suppressed) table in the
house style: the unit of the page in :data:`~workbench.pages.style.HIGHLIGHT`, peers muted, a
hidden value never drawn as a point. A funnel or ratio chart carries its own reference lines
(the limits, the target), so a reader can judge a point without reading the method.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.pages.charts import _finish, _wrap, aligned
from workbench.pages.style import (
    CLUSTER,
    DECILES,
    HIGHLIGHT,
    NATION,
    PEER,
    LocalFormatter,
    house_style,
    new_figure,
    unit_colour,
)

LIMIT_998 = "#A3A3A3"  # the 99.8 % control limits: solid, wide
LIMIT_95 = "#7A7A7A"  # the 95 % limits: dashed
WARN = "#E69F00"  # beyond 95 % only (Okabe-Ito orange), beside HIGHLIGHT for beyond 99.8 %
DECILE_LINE = "#4C72B0"  # OpenPrescribing draws the deciles as blue dashes
LABEL_CHARS = 30  # a point's label is cut to this many characters


def _floats(values: pd.Series) -> np.ndarray:
    return pd.Series(values).astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def short_label(text: str, width: int = LABEL_CHARS) -> str:
    """A point's label as drawn: cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def funnel(
    points: pd.DataFrame,
    lines: pd.DataFrame,
    *,
    x: str,
    y: str,
    role: str,
    flag: str,
    label: str,
    names: Mapping[str, str],
    limit_labels: tuple[str, str, str],
    ring_label: str,
    title: str,
    xlabel: str,
    ylabel: str,
    references: Mapping[str, float | None] | None = None,
    language: str = "en",
) -> Figure:
    """Units as points (``x`` the exposure, ``y`` the indicator) inside the funnel ``lines``
    (columns ``exposure, target, lower_95, upper_95, lower_998, upper_998``).

    ``role``: ``unit`` (highlighted), ``cluster`` (its cluster's) or ``peer``; ``names`` maps
    a role to its legend entry.
    ``flag``: non-empty where a point lies beyond the 99.8 % limits; such points are ringed
    (legend ``ring_label``) and labelled with ``label`` (empty labels stay unnamed, e.g. other
    practices). ``limit_labels``: the legend entries of the target, the 95 % and the 99.8 %
    limits. ``references``: horizontal lines, e.g. the cluster's own ratio. Points without a
    value (hidden) are not drawn: the caller says how many in the section's sentence.
    """
    with house_style():
        fig, (ax,) = new_figure(height=4.8)
        xs, ys = _floats(points[x]), _floats(points[y])
        shown = ~np.isnan(xs) & ~np.isnan(ys)
        ordered = lines.sort_values("exposure")
        # the lines span the reference units' range, the axis the points shown
        span = xs[shown] if shown.any() else ordered["exposure"].to_numpy(float)
        low_x, high_x = (float(span.min()) * 0.85, float(span.max()) * 1.08) if len(span) \
            else (0.0, 1.0)
        inside = ordered[(ordered["exposure"] >= low_x * 0.98)
                         & (ordered["exposure"] <= high_x * 1.02)]
        target_label, label_95, label_998 = limit_labels
        ex = inside["exposure"].to_numpy(float)
        ax.plot(ex, inside["target"].to_numpy(float), color="#222222", lw=1.0,
                label=target_label)
        for column, style, colour, width, name in (("95", "--", LIMIT_95, 1.3, label_95),
                                                   ("998", "-", LIMIT_998, 2.0, label_998)):
            ax.plot(ex, inside[f"upper_{column}"].to_numpy(float), ls=style, color=colour,
                    lw=width, label=name)
            ax.plot(ex, inside[f"lower_{column}"].to_numpy(float), ls=style, color=colour,
                    lw=width)
        for i, (name, value) in enumerate((references or {}).items()):
            if value is not None and not np.isnan(value):
                ax.axhline(value, color=CLUSTER, ls=(0, (1, 2 + i)), lw=1.4, label=name)
        roles = points[role].to_numpy(str)
        flagged = points[flag].fillna("").astype(str).to_numpy() != ""
        for r in ("peer", "cluster", "unit"):
            mine = shown & (roles == r)
            if not mine.any():
                continue
            big = r != "peer"
            ax.scatter(xs[mine], ys[mine], s=42 if big else 16, color=unit_colour(r),
                       alpha=1.0 if big else 0.75, zorder=3 if big else 2,
                       edgecolors="white" if big else "none", linewidths=0.6,
                       label=names.get(r, r))
        ringed = shown & flagged
        if ringed.any():
            ax.scatter(xs[ringed], ys[ringed], s=110, facecolors="none", edgecolors="#111111",
                       linewidths=1.4, zorder=4)
        finite = ys[shown]
        top = max(float(finite.max()) if finite.size else 1.0,
                  float(np.nanmax(inside["target"])) if len(inside) else 1.0)
        # the limits explode at tiny exposures: the axis follows the points, not the limits
        ax.set_ylim(0, top * 1.18 + 0.05)
        ax.set_xlim(low_x, high_x)
        labels = points[label].fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(ringed & (labels != "")):
            right = xs[i] > high_x * 0.6
            ax.annotate(short_label(labels[i]), (xs[i], ys[i]), xytext=(-8 if right else 8, 6),
                        textcoords="offset points", ha="right" if right else "left",
                        va="bottom", fontsize=9, zorder=5,
                        annotation_clip=True)
        if ringed.any():
            ax.plot([], [], ls="none", marker="o", ms=9, mfc="none", mec="#111111",
                    label=ring_label)
        ax.xaxis.set_major_formatter(LocalFormatter(language))
        ax.yaxis.set_major_formatter(LocalFormatter(language))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", color="#EEEEEE")
        _finish(fig, ax, title)
        return fig


def ratios(
    df: pd.DataFrame,
    *,
    label: str,
    value: str,
    lower: str,
    upper: str,
    tier: str,
    title: str,
    xlabel: str,
    reference_label: str,
    tier_labels: Mapping[int, str],
    marker: str | None = None,
    language: str = "en",
) -> Figure:
    """Observed/expected ratios with their intervals, one row per item in the table's order
    (the first at the top), a vertical line at 1. ``tier``: 2 beyond the 99.8 % limits in the
    worse direction, 1 beyond 95 %, 0 otherwise (colours, explained by ``tier_labels``).
    ``marker``: a column of matplotlib markers per row (e.g. groups round, risks diamonds)."""
    with house_style():
        n = len(df)
        wrapped = [_wrap(str(t), 40) for t in df[label]]
        lines_per_row = max((w.count("\n") + 1 for w in wrapped), default=1)
        fig, (ax,) = new_figure(height=min(max(2.8, (0.22 + 0.17 * lines_per_row) * n + 1.5),
                                           10.0))
        pos = np.arange(n)[::-1]
        v, lo, hi = _floats(df[value]), _floats(df[lower]), _floats(df[upper])
        tiers = pd.Series(df[tier]).fillna(0).astype(int).to_numpy()
        colours = np.where(tiers == 2, HIGHLIGHT, np.where(tiers == 1, WARN, PEER))
        right = np.nanmax(np.concatenate([v, hi, [1.5]]))
        right = min(right, max(3.0, 1.4 * np.nanmax(np.concatenate([v, [1.0]]))))
        markers = ["o"] * n if marker is None else list(df[marker])
        for y, val, a, b, colour, m in zip(pos, v, lo, hi, colours, markers, strict=True):
            if np.isnan(val):
                ax.text(0.02, y, "x", va="center", ha="left", fontsize=9,
                        transform=ax.get_yaxis_transform())
                continue
            ax.plot([a, min(b, right * 1.05)], [y, y], color=colour, lw=2.2,
                    solid_capstyle="butt")
            ax.plot([val], [y], marker=m, ms=7, color=colour, zorder=3)
        ax.axvline(1.0, color=NATION, ls="--", lw=1.2, label=reference_label)
        for t in sorted(tier_labels, reverse=True):
            if (tiers == t).any():
                ax.plot([], [], marker="o", ls="-", color={2: HIGHLIGHT, 1: WARN}.get(t, PEER),
                        label=tier_labels[t])
        ax.set_yticks(pos, wrapped)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlim(0, right * 1.08)
        ax.grid(axis="x", color="#E5E5E5")
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(LocalFormatter(language))
        ax.set_xlabel(xlabel)
        _finish(fig, ax, title)
        return fig


def decile_trend(
    series: pd.DataFrame,
    deciles: pd.DataFrame | None,
    *,
    period: str,
    value: str,
    name: str,
    colours: Mapping[str, str],
    title: str,
    ylabel: str,
    xlabel: str,
    decile_label: str,
    median_label: str,
    language: str = "en",
) -> Figure:
    """Lines over periods (one per ``name`` value) over the national deciles of the peers,
    OpenPrescribing's way: the 10th … 90th percentiles as thin dashed lines, the median
    heavier, each period on its own. ``deciles``: columns ``period, decile_10 … decile_90``."""
    with house_style():
        fig, (ax,) = new_figure(height=4.4)
        periods = list(dict.fromkeys(series[period]))
        x = np.arange(len(periods))
        if deciles is not None and len(deciles):
            for k in range(10, 100, 10):
                median = k == 50
                ax.plot(x, aligned(deciles, period, periods, f"decile_{k}"), ls="--",
                        color=DECILE_LINE,
                        lw=1.6 if median else 0.8, alpha=0.9 if median else 0.55,
                        label=median_label if median else (decile_label if k == 10 else None))
        for s, line in series.groupby(name, sort=False, observed=True):
            colour = colours.get(s, DECILES)
            ax.plot(x, aligned(line, period, periods, value), marker="o", ms=3,
                    lw=2.6 if colour == HIGHLIGHT else 1.6, color=colour, label=str(s),
                    zorder=3 if colour == HIGHLIGHT else 2)
        ticks = [i for i, p in enumerate(periods) if str(p).endswith("Q1")]
        if len(ticks) >= 2:
            ax.set_xticks(x[ticks], [str(periods[i])[:4] for i in ticks])
        else:
            step = max(1, int(np.ceil(len(periods) / 8)))
            ax.set_xticks(x[::step], [str(p) for p in periods[::step]])
        ax.yaxis.set_major_formatter(LocalFormatter(language))
        ax.set_ylim(bottom=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _finish(fig, ax, title)
        return fig

