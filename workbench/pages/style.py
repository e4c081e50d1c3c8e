"""The house style of every figure: one look across pages, readable and colour-blind safe.

A reader who has seen one page should read the next without a legend hunt: the unit the page is
about is always drawn in :data:`HIGHLIGHT`, its cluster in :data:`CLUSTER`, the nation in
:data:`NATION`, national deciles as a grey band. Colours come from the Okabe-Ito palette (safe for
the common colour-vision deficiencies); fonts are large enough for a projector; every axis label
names the measure and its unit, every title the period.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # pages render to images in kernels and tests alike; no GUI backend

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from workbench.pages.layout import MarginLayout  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000")
HIGHLIGHT = "#D55E00"  # the unit of the page (vermillion)
CLUSTER = "#0072B2"  # its cluster (blue)
NATION = "#444444"  # the nation (near black)
PEER = "#9BB8CF"  # other units (muted blue-grey)
DECILES = "#BBBBBB"  # national decile band
PREVIOUS = "#A6A6A6"  # the previous period
SERIES = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#F0E442")

RC = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#E5E5E5",
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.facecolor": "white",
}
FIGSIZE = (8.0, 4.2)


@contextmanager
def house_style() -> Iterator[None]:
    """Draw inside the house style without changing the caller's global matplotlib settings."""
    with sns.axes_style("white"), plt.rc_context(RC):
        yield


def new_figure(width: float = FIGSIZE[0], height: float = FIGSIZE[1],
               ncols: int = 1) -> tuple[Figure, list]:
    """A figure that is not registered with pyplot (no leak across re-renders in a kernel)."""
    fig = Figure(figsize=(width, height), layout=MarginLayout())
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def unit_colour(role: str) -> str:
    """The colour of a comparison role: ``unit``, ``cluster``, ``nation`` or ``peer``."""
    return {"unit": HIGHLIGHT, "cluster": CLUSTER, "nation": NATION}.get(role, PEER)


def number(value: float | None, language: str, decimals: int = 1) -> str:
    """A number the way readers of the language write it; ``x`` for a hidden value.

    Danish swaps the separators (decimal comma, thousands dot), so a Danish page never shows
    ``45.8`` where its text says ``45,8``.

    >>> number(1234.56, "da"), number(1234.56, "en"), number(None, "da"), number(0.5, "da", 2)
    ('1.234,6', '1,234.6', 'x', '0,50')
    """
    if value is None or pd.isna(value):
        return "x"
    text = f"{value:,.{decimals}f}"
    if language == "da":
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return text


class LocalFormatter(ScalarFormatter):
    """Matplotlib's tick numbers with the page language's separators (``0,5`` and ``1.000``
    on a Danish page); the tick positions and precision stay matplotlib's choice."""

    def __init__(self, language: str) -> None:
        super().__init__(useOffset=False)
        self.set_scientific(False)
        self.language = language

    def __call__(self, x: float, pos: int | None = None) -> str:
        text = super().__call__(x, pos).replace("\N{MINUS SIGN}", "-")
        if not text:
            return text
        decimals = len(text.split(".", 1)[1]) if "." in text else 0
        return number(x, self.language, decimals)
