"""Practice intervention area (*yderindsatsområde*): one group in one practice in the funnel of
the nation's practices; over time against the national deciles; broken down; and what became of
its new users, against its cluster and the nation."""

from __future__ import annotations

from workbench.pages import findings, sections
from workbench.pages.base import Context, Page
from workbench.pages.links import url


def build(ctx: Context) -> Page:
    c = ctx.choices
    table = sections.key_table(ctx, [c.group])
    figures = [sections.listed_figure(ctx, table), *sections.key_figures(ctx, table, [c.group])]
    page_sections = [
        findings.practice_funnel_section(ctx),
        findings.decile_trend_section(ctx),
        sections.breakdown_section(ctx),
        sections.drugs_section(ctx),
        findings.journeys_section(ctx),
    ]
    cluster = ctx.catalog.practices[c.unit].cluster
    links = [(ctx.t("back_practice"), url("practice_insight", c)),
             (ctx.t("back_cluster_area"), url("cluster_intervention", c, unit=cluster)),
             (ctx.t("back_overview"), url("overview", c))]
    return Page("practice_intervention", c, ctx.label("pages", "practice_intervention"),
                ctx.t("subtitle_area", unit=ctx.unit_name("practice", c.unit),
                      group=ctx.focus_label, period=ctx.period),
                figures, table, page_sections, links)
