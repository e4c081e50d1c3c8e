"""A page in a notebook: static HTML in a batch run, live widgets in a Voilà dashboard.

The notebook calls ``view.header()``, ``view.controls()``, ``view.key_figures()`` and
``view.section(id)`` in its cells. In a batch run (Papermill) each call displays the HTML of the
page built from the parameters. In Voilà each call displays a widget; moving a filter rebuilds the
page (after validating the widget values like any untrusted input) and replaces the widgets'
content in place, so the layout of the notebook stays the layout of the dashboard.

While a page rebuilds, its blocks say so (dimmed, a spinner and "updating", the filters disabled;
the class is sent to the browser before the rebuild starts). After a rebuild the browser's address
becomes the page's shareable URL for the new choices (``history.replaceState``, from a
``application/javascript`` output of a hidden Output widget, which Voilà's page runs), so a
reload or a copied address opens the same view.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from workbench import audit
from workbench.engine import Workbench
from workbench.glossary import glossary
from workbench.pages import render
from workbench.pages.base import Context, Page
from workbench.pages.choices import (
    BREAKDOWN_CHOICES,
    MEASURE_CHOICES,
    PAGE_KINDS,
    UNIT_LEVEL,
    Catalog,
    ChoiceError,
    Choices,
    NotAllowed,
    url_fields,
)
from workbench.pages.links import url

INTERVENTION = ("cluster_intervention", "practice_intervention")
SAFE_QUERY = re.compile(r"[A-Za-z0-9_.~%=&+-]*")  # what urlencode writes, nothing else


def in_voila() -> bool:
    """Whether this kernel serves a Voilà dashboard (the only place widgets are live)."""
    return bool(os.environ.get("VOILA_KERNEL_ID")) or os.environ.get(
        "VOILA_PREHEAT", "False") != "False"


def build(session: Workbench, catalog: Catalog, choices: Choices) -> Page:
    """Build the page ``choices.kind`` asks for."""
    from workbench.pages import (
        cluster_insight,
        cluster_intervention,
        overview,
        practice_insight,
        practice_intervention,
    )

    builders: dict[str, Callable[[Context], Page]] = {
        "overview": overview.build,
        "cluster_insight": cluster_insight.build,
        "cluster_intervention": cluster_intervention.build,
        "practice_insight": practice_insight.build,
        "practice_intervention": practice_intervention.build,
    }
    if not catalog.allows(choices.kind, choices.unit):  # validated choices come from resolve
        raise NotAllowed(f"{choices.kind} {choices.unit} is not available to this profile")
    page = builders[choices.kind](Context(session, catalog, choices))
    allowed = partial(_allowed_link, catalog)
    page.links = [link for link in page.links if allowed(link[1])]
    for section in page.sections:
        section.links = [link for link in section.links if allowed(link[1])]
    banner = catalog.profile.banner()
    if banner:
        page.notice = glossary().label("ui", banner, choices.language).format(
            practice=catalog.profile.practice)
    return page


def _allowed_link(catalog: Catalog, link: str) -> bool:
    """Whether a drill-down link leads to a page the profile allows: every link a page makes
    passes here, so no page offers a way to a practice the viewer may not see."""
    kind, _, query = link.partition(".ipynb?")
    if kind not in PAGE_KINDS:
        return False
    unit = url_fields(query).get("unit", "") or catalog.default_unit(UNIT_LEVEL[kind])
    return kind in catalog.profile.pages and catalog.allows(kind, unit)


def audit_event(event: str, catalog: Catalog, kind: str, unit: str,
                parameters: dict[str, str], **details: object) -> None:
    """One line of the audit log for a dashboard event (a view, a filter change, a refusal)."""
    audit.record(event, profile=catalog.profile.spec(), page=kind, unit=unit,
                 parameters=parameters, **details)


class RefusedView:
    """What a notebook shows for a page the profile does not allow: the refusal, once."""

    def __init__(self, kind: str, language: str = "da") -> None:
        self.kind, self.language = kind, language

    def header(self) -> None:
        from IPython.display import HTML, display

        display(HTML(render.refusal(self.kind, self.language)))

    def controls(self) -> None:
        """Nothing to filter."""

    def key_figures(self) -> None:
        """Nothing to show."""

    def section(self, section_id: str) -> None:
        """Nothing to show."""


class PageView:
    """One page of a notebook; ``interactive`` makes its blocks widgets that filters update."""

    def __init__(self, session: Workbench, catalog: Catalog, choices: Choices, *,
                 interactive: bool = False, error: str = "") -> None:
        self.session, self.catalog, self.choices = session, catalog, choices
        self.interactive = interactive
        self.error = error
        started = time.perf_counter()
        self.page = build(session, catalog, choices)
        self.seconds = time.perf_counter() - started
        self._blocks: dict[str, object] = {}
        self._inputs: dict[str, object] = {}
        self._address: object | None = None  # the Output widget that sets the browser's URL

    # --- the cells' calls ---------------------------------------------------------------------
    def header(self) -> None:
        self._show("header")

    def controls(self) -> None:
        if not self.interactive:
            return
        import ipywidgets as w
        from IPython.display import display

        if not self._inputs:
            self._inputs = self._make_inputs()
            self._address = w.Output(layout=w.Layout(display="none"))
            self._address.add_class("wb-address")
        style = w.HTML(render.live_css(self.choices.language),
                       layout=w.Layout(display="none"))
        bar = w.HBox([*self._inputs.values(), style, self._address],
                     layout=w.Layout(flex_flow="row wrap"))
        bar.add_class("wb-filters")
        display(bar)

    def key_figures(self) -> None:
        self._show("key_figures")

    def section(self, section_id: str) -> None:
        self.page.section(section_id)  # a wrong id fails here, in the batch run too
        self._show(section_id)

    # --- rendering ----------------------------------------------------------------------------
    def html(self, block: str) -> str:
        if block == "header":
            text = render.header(self.page)
            if self.interactive:
                share = url(self.page.kind, self.choices)
                label = glossary().label("ui", "share_link", self.choices.language)
                text += f'<p class="wb-share"><a href="{share}" target="_top">{label}</a></p>'
            if self.error:  # what was wrong goes to the audit log; the page never echoes it
                note = glossary().label("ui", "choice_ignored", self.choices.language)
                text += f'<p class="wb-note wb-error-choice">{html.escape(note)}</p>'
            return text
        if block == "key_figures":
            return render.key_figures(self.page)
        return render.section(self.page.section(block), self.page)

    def _show(self, block: str) -> None:
        from IPython.display import HTML, display

        if not self.interactive:
            display(HTML(self.html(block)))
            return
        import ipywidgets as w

        widget = w.HTML(self.html(block))
        self._blocks[block] = widget
        display(widget)

    # --- filters ------------------------------------------------------------------------------
    def _make_inputs(self) -> dict[str, object]:
        import ipywidgets as w

        lang = self.choices.language
        g = glossary()
        c = self.choices
        defs = self.catalog.definitions
        inputs = {
            "period": w.Dropdown(description=g.label("breakdowns", "period", lang),
                                 options=self.catalog.periods, value=c.period),
            "group": w.Dropdown(description=g.label("breakdowns", "group", lang),
                                options=[(g.label("groups", x, lang), x)
                                         for x in defs.groups_of(c.theme)], value=c.group),
            "measure": w.Dropdown(description=g.label("ui", "measure", lang),
                                  options=[(g.label("measures", m, lang), m)
                                           for m in MEASURE_CHOICES], value=c.measure),
        }
        if c.kind in INTERVENTION:
            inputs["drug"] = w.Dropdown(description=g.label("breakdowns", "drug", lang),
                                        options=self._drug_options(c.group), value=c.drug)
            inputs["breakdown"] = w.Dropdown(
                description=g.label("ui", "breakdown", lang),
                options=[(g.label("breakdowns", b, lang), b) for b in BREAKDOWN_CHOICES],
                value=c.breakdown)
        for name, widget in inputs.items():
            widget.layout = w.Layout(width="auto")
            widget.style = {"description_width": "initial"}
            widget.add_class(f"wb-filter-{name}")
            widget.observe(self._changed, names="value")
        return inputs

    def _drug_options(self, group: str) -> list[tuple[str, str]]:
        everything = glossary().label("ui", "all_drugs", self.choices.language)
        return [(everything, ""), *((f"{n} ({c})", c)
                                    for c, n in self.catalog.drugs_of(
                                        group, self.choices.language).items())]

    def _changed(self, change: dict) -> None:
        """A filter moved: show the page is updating, validate every filter's value, rebuild.

        The updating state goes out before anything slow happens and is cleared however the
        change ends: the new page shown, a forged value refused, or a failed rebuild (then the
        filters go back to the choices of the page still shown, and the error propagates to
        the kernel's log)."""
        self._set_updating(True)
        try:
            self._apply(change)
        except Exception:
            self._show_choices()
            raise
        finally:
            self._set_updating(False)

    def _apply(self, change: dict) -> None:
        values = {name: widget.value for name, widget in self._inputs.items()}
        if "drug" in self._inputs and change["owner"] is self._inputs.get("group"):
            drug = self._inputs["drug"]
            with drug.hold_trait_notifications():
                drug.unobserve(self._changed, names="value")
                drug.options = self._drug_options(values["group"])
                drug.value = ""
                drug.observe(self._changed, names="value")
            values["drug"] = ""
        try:
            choices = self.catalog.resolve(self.choices.kind, **{
                **{k: v for k, v in self.choices.as_query().items()}, **values})
        except ChoiceError as exc:  # a forged widget state: keep the page as it is
            self.error = str(exc)
            audit_event("refused", self.catalog, self.choices.kind, self.choices.unit,
                        {k: str(v) for k, v in values.items()}, reason=str(exc))
            self._refresh(["header"])
            return
        self.update(choices)
        audit_event("filter", self.catalog, choices.kind, choices.unit, choices.as_query())

    def update(self, choices: Choices) -> None:
        """Rebuild the page for new (validated) choices, refresh every block in place and point
        the browser's address at the new view. A failed build leaves the page and its choices
        as they were."""
        started = time.perf_counter()
        page = build(self.session, self.catalog, choices)
        self.choices, self.error, self.page = choices, "", page
        self.seconds = time.perf_counter() - started
        self._refresh(list(self._blocks))
        self._follow_address()

    def _refresh(self, blocks: list[str]) -> None:
        for block in blocks:
            widget = self._blocks.get(block)
            if widget is not None:
                widget.value = self.html(block)  # type: ignore[attr-defined]

    # --- the live state in the browser -------------------------------------------------------
    def _set_updating(self, on: bool) -> None:
        """Mark every block as updating (or not) and disable the filters meanwhile. Each change
        is a widget message sent when it is set, so the browser dims the old page while the
        kernel is still rebuilding."""
        blocks: dict[str, Any] = self._blocks
        for widget in blocks.values():
            if on:
                widget.add_class(render.UPDATING)
            else:
                widget.remove_class(render.UPDATING)
        inputs: dict[str, Any] = self._inputs
        for widget in inputs.values():
            widget.disabled = on

    def _show_choices(self) -> None:
        """Set the filters back to the choices of the page shown, without a rebuild."""
        inputs: dict[str, Any] = self._inputs
        for widget in inputs.values():
            widget.unobserve(self._changed, names="value")
        try:
            if "drug" in inputs:
                inputs["drug"].options = self._drug_options(self.choices.group)
            for name, widget in inputs.items():
                widget.value = getattr(self.choices, name)
        finally:
            for widget in inputs.values():
                widget.observe(self._changed, names="value")

    def _follow_address(self) -> None:
        """Make the browser's address the page's shareable URL (:func:`links.url`, the share
        link's query string) by a one-line script in the hidden address widget.

        The query is built from the validated choices alone and URL-encoded; it is checked to
        hold nothing but URL-safe characters and written as a JSON string, so no value can
        become script. The path stays the browser's own (wherever Voilà is served from)."""
        if self._address is None:
            return
        query = url(self.page.kind, self.choices).partition("?")[2]
        if not SAFE_QUERY.fullmatch(query):
            raise ValueError(f"not a safe query string: {query[:80]!r}")
        script = ("(function(){var u=new URL(window.location.href);"
                  f"u.search={json.dumps(query)};"
                  "window.history.replaceState(window.history.state,'',u.href);})();")
        output = {"output_type": "display_data", "metadata": {},
                  "data": {"application/javascript": script, "text/plain": ""}}
        address: Any = self._address
        address.outputs = ()  # cleared first, so the same script runs again when set again
        address.outputs = (output,)
