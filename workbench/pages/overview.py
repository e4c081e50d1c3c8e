"""Overview (*overblik*): national figures per drug group, the spread across regions and
clusters, and the trend; links drill down to every cluster."""

from __future__ import annotations

from workbench.pages import sections
from workbench.pages.base import Context, Page


def build(ctx: Context) -> Page:
    groups = ctx.catalog.definitions.groups_of(ctx.choices.theme)
    table = sections.key_table(ctx, groups)
    figures = [sections.listed_figure(ctx, table), *sections.key_figures(ctx, table, groups)]
    page_sections = [
        sections.groups_section(ctx, table, groups),
        sections.spread_section(ctx, "region", "regions"),
        sections.spread_section(ctx, "cluster", "clusters", link_kind="cluster_insight"),
        sections.trend_section(ctx, groups),
    ]
    return Page("overview", ctx.choices, ctx.label("pages", "overview"),
                ctx.t("subtitle_nation", theme=ctx.label("themes", ctx.choices.theme),
                      period=ctx.period),
                figures, table, page_sections, links=[])
