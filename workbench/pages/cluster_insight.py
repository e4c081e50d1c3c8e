"""Cluster insight (*klyngeindblik*): every group for one cluster against the nation, with the
groups and risky combinations ranked as potential intervention areas (standardised, in the
national funnel), their trend, the cluster's practices, and the risks against the nation."""

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
        sections.practices_section(ctx, c.unit, link_kind="practice_insight"),
        findings.risks_section(ctx),
    ]
    links = [(ctx.t("back_overview"), url("overview", c))]
    return Page("cluster_insight", c, ctx.label("pages", "cluster_insight"),
                ctx.t("subtitle_unit", unit=ctx.unit_name("cluster", c.unit),
                      theme=ctx.label("themes", c.theme), period=ctx.period),
                figures, table, page_sections, links)
