"""Cluster insight (*klyngeindblik*): every group for one cluster against the nation, with the
groups ranked as potential intervention areas, their trend, and the cluster's practices."""

from __future__ import annotations

from workbench.pages import sections
from workbench.pages.base import Context, Page
from workbench.pages.links import url


def build(ctx: Context) -> Page:
    c = ctx.choices
    groups = ctx.catalog.definitions.groups_of(c.theme)
    table = sections.key_table(ctx, groups)
    figures = [sections.listed_figure(ctx, table), *sections.key_figures(ctx, table, groups)]
    page_sections = [
        sections.groups_section(ctx, table, groups),
        sections.ranking_section(ctx, table, groups),
        sections.trend_section(ctx, groups),
        sections.practices_section(ctx, c.unit, link_kind="practice_insight"),
    ]
    links = [(ctx.t("back_overview"), url("overview", c))]
    return Page("cluster_insight", c, ctx.label("pages", "cluster_insight"),
                ctx.t("subtitle_unit", unit=ctx.unit_name("cluster", c.unit),
                      theme=ctx.label("themes", c.theme), period=ctx.period),
                figures, table, page_sections, links)
