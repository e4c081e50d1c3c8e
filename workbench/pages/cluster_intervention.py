"""Cluster intervention area (*klyngeindsatsområde*): one group in one cluster: its practices in
a funnel plot against the national limits (the ones beyond 99.8 % named); the area over time;
the breakdowns and the drugs that explain it."""

from __future__ import annotations

from workbench.pages import findings, sections
from workbench.pages.base import Context, Page
from workbench.pages.links import url


def build(ctx: Context) -> Page:
    c = ctx.choices
    table = sections.key_table(ctx, [c.group])
    figures = [sections.listed_figure(ctx, table), *sections.key_figures(ctx, table, [c.group])]
    page_sections = [
        findings.cluster_funnel_section(ctx, c.unit, link_kind="practice_intervention"),
        sections.trend_section(ctx, [c.group], deciles=True),
        sections.breakdown_section(ctx),
        sections.drugs_section(ctx),
    ]
    links = [(ctx.t("back_cluster"), url("cluster_insight", c)),
             (ctx.t("back_overview"), url("overview", c))]
    return Page("cluster_intervention", c, ctx.label("pages", "cluster_intervention"),
                ctx.t("subtitle_area", unit=ctx.unit_name("cluster", c.unit),
                      group=ctx.focus_label, period=ctx.period),
                figures, table, page_sections, links)
