"""Practice insight (*yderindblik*): every group for one practice against its cluster and the
nation, groups and risky combinations ranked as potential intervention areas (standardised, in
the national funnel), followed over time, and the risks against cluster and nation."""

from __future__ import annotations

from workbench.pages import findings, sections
from workbench.pages.base import Context, Page
from workbench.pages.links import url


def build(ctx: Context) -> Page:
    c = ctx.choices
    groups = ctx.catalog.definitions.groups_of(c.theme)
    table = sections.key_table(ctx, groups)
    figures = [sections.listed_figure(ctx, table), *sections.key_figures(ctx, table, groups)]
    page_sections = [
        sections.groups_section(ctx, table, groups),
        findings.areas_section(ctx, groups),
        sections.trend_section(ctx, groups),
        findings.risks_section(ctx),
    ]
    cluster = ctx.catalog.practices[c.unit].cluster
    links = [(ctx.t("back_cluster"), url("cluster_insight", c, unit=cluster)),
             (ctx.t("back_overview"), url("overview", c))]
    return Page("practice_insight", c, ctx.label("pages", "practice_insight"),
                ctx.t("subtitle_unit", unit=ctx.unit_name("practice", c.unit),
                      theme=ctx.label("themes", c.theme), period=ctx.period),
                figures, table, page_sections, links)
