"""A live page's widgets without a browser: the updating state around a filter change, and the
script that points the browser's address at the new view.

The widgets are real ipywidgets without a kernel; every message a widget would send to the
browser is recorded (``Widget._send``), so the tests see what the browser would see, in order.
The browser itself is tested in ``tests/test_dashboards.py``.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import pytest
from ipywidgets import Widget

import workbench.pages as pages
import workbench.pages.view as view_module
from workbench import audit
from workbench.engine import connect
from workbench.pages import render
from workbench.pages.links import url
from workbench.profiles import Profile

pytestmark = pytest.mark.slow
KIND = "cluster_intervention"  # every filter: period, group, measure, drug, breakdown
SECTIONS = ("practices", "trend", "breakdown", "drugs")


@pytest.fixture(scope="module")
def session(pages_dataset):
    return connect(pages_dataset.database)


@pytest.fixture(scope="module")
def catalog(session):
    return pages.Catalog(session, Profile("analyst"))


@pytest.fixture
def sent(monkeypatch) -> list[tuple[Widget, dict]]:
    """Every message a widget sends to the browser, in order."""
    messages: list[tuple[Widget, dict]] = []
    monkeypatch.setattr(Widget, "_send", lambda self, msg, buffers=None:
                        messages.append((self, msg)))
    return messages


@pytest.fixture
def live(session, catalog, monkeypatch, tmp_path, capsys):
    """A live page as a dashboard shows it: header, filters, key figures and sections."""
    monkeypatch.setenv(audit.AUDIT_ENV, str(tmp_path / "audit.log"))
    view = pages.PageView(session, catalog, catalog.resolve(KIND, theme="analgesics"),
                          interactive=True)
    view.header()
    view.controls()
    view.key_figures()
    for section in SECTIONS:
        view.section(section)
    capsys.readouterr()  # display() without a kernel prints the widgets' reprs
    return view


def _updating(view) -> list[bool]:
    return [render.UPDATING in w._dom_classes for w in view._blocks.values()]


def _disabled(view) -> list[bool]:
    return [w.disabled for w in view._inputs.values()]


def _watch_builds(monkeypatch, sent, fail: int = 0) -> list[dict]:
    """Record, at each page build, its choices and how many messages had been sent (the first
    ``fail`` builds fail)."""
    builds: list[dict] = []
    real = view_module.build

    def build(session, catalog, choices):
        builds.append({"sent": len(sent), "choices": choices})
        if len(builds) <= fail:
            raise RuntimeError("the database went away")
        return real(session, catalog, choices)

    monkeypatch.setattr(view_module, "build", build)
    return builds


def _class_messages(sent, view, on: bool) -> list[int]:
    """Where in ``sent`` each block was told to add (``on``) or drop the updating class."""
    blocks = list(view._blocks.values())
    return [i for i, (widget, msg) in enumerate(sent)
            if widget in blocks and "_dom_classes" in msg.get("state", {})
            and (render.UPDATING in msg["state"]["_dom_classes"]) is on]


def _script(view) -> str:
    outputs = view._address.outputs
    assert len(outputs) == 1
    return outputs[0]["data"]["application/javascript"]


def test_the_page_says_it_is_updating_before_it_rebuilds(live, catalog, sent,
                                                         monkeypatch) -> None:
    builds = _watch_builds(monkeypatch, sent)
    old_figure = live._blocks["trend"].value
    assert not any(_updating(live)) and not any(_disabled(live))
    live._inputs["period"].value = catalog.periods[1]  # what a viewer's dropdown does
    assert len(builds) == 1 and builds[0]["choices"].period == catalog.periods[1]
    dimmed = _class_messages(sent, live, on=True)
    # every block was dimmed, and each message had left before the build started
    assert len(dimmed) == len(live._blocks) == 2 + len(SECTIONS)
    assert max(dimmed) < builds[0]["sent"]
    disabled = [i for i, (widget, msg) in enumerate(sent)
                if widget in live._inputs.values() and msg.get("state", {}).get("disabled")]
    assert len(disabled) == len(live._inputs) and max(disabled) < builds[0]["sent"]
    # the new content went out first, then the dimming was taken off
    contents = [i for i, (widget, msg) in enumerate(sent)
                if widget is live._blocks["trend"] and "value" in msg.get("state", {})]
    assert contents and max(contents) < min(_class_messages(sent, live, on=False))
    assert live._blocks["trend"].value != old_figure
    assert not any(_updating(live)) and not any(_disabled(live))
    assert live.choices.period == catalog.periods[1] and not live.error


def test_the_address_follows_the_filters(live, catalog, sent) -> None:
    assert live._address.outputs == ()  # the first address is the viewer's own
    live._inputs["measure"].value = "ddd_per_1000_per_day"
    script = _script(live)
    query = json.loads(re.search(r"u\.search=(\"[^\"]*\")", script).group(1))
    assert query == url(KIND, live.choices).partition("?")[2]  # the share link's query
    fields = parse_qs(query)
    assert fields["measure"] == ["ddd_per_1000_per_day"]
    assert fields["topic"] == ["analgesics"] and "theme" not in fields  # Voilà's own field
    assert fields["unit"] == [live.choices.unit]
    assert "history.replaceState" in script and "<" not in script
    assert catalog.resolve_query(KIND, query) == live.choices  # it opens the same view
    # a second change writes the script again (cleared in between, so it runs again)
    live._inputs["group"].value = "nsaids"
    assert parse_qs(json.loads(re.search(r"u\.search=(\"[^\"]*\")", _script(live)).group(1))
                    )["group"] == ["nsaids"]
    scripts = [msg["state"]["outputs"] for widget, msg in sent
               if widget is live._address and "outputs" in msg.get("state", {})]
    assert [len(s) for s in scripts] == [1, 0, 1]


def test_a_refused_value_clears_the_updating_state(live, monkeypatch, sent) -> None:
    builds = _watch_builds(monkeypatch, sent)
    before = {name: live._blocks[name].value for name in live._blocks if name != "header"}
    monkeypatch.setattr(live.catalog, "resolve", _refuse)
    live._inputs["measure"].value = "patients"
    assert not builds and live.error
    assert _class_messages(sent, live, on=True) and _class_messages(sent, live, on=False)
    assert not any(_updating(live)) and not any(_disabled(live))
    assert {name: live._blocks[name].value for name in before} == before
    assert live._address.outputs == ()  # the address stays the page's


def _refuse(kind, **raw):
    raise pages.ChoiceError("forged")


def test_a_failed_rebuild_clears_the_state_and_keeps_the_page(live, catalog, monkeypatch,
                                                              sent) -> None:
    choices, page = live.choices, live.page
    html = {name: widget.value for name, widget in live._blocks.items()}
    builds = _watch_builds(monkeypatch, sent, fail=1)
    with pytest.raises(RuntimeError, match="database"):  # to the kernel's log
        live._inputs["period"].value = catalog.periods[1]
    assert len(builds) == 1
    assert not any(_updating(live)) and not any(_disabled(live))
    assert live.choices == choices and live.page is page
    assert {name: widget.value for name, widget in live._blocks.items()} == html
    # the filters show the choices of the page still shown, and did not rebuild again
    assert live._inputs["period"].value == choices.period and len(builds) == 1
    assert live._address.outputs == ()
    # the next change works as ever
    live._inputs["period"].value = catalog.periods[1]
    assert len(builds) == 2 and live.choices.period == catalog.periods[1]
    assert live._blocks["trend"].value != html["trend"] and "period=" in _script(live)
    assert not any(_updating(live)) and not any(_disabled(live))


def test_the_updating_label_is_the_glossarys_and_cannot_end_the_style() -> None:
    assert '"Opdaterer\\2026 "' in render.live_css("da")
    assert '"Updating\\2026 "' in render.live_css("en")
    hostile = render._css_string('x"}</style><script>alert(1)</script>\\')
    assert hostile.count('"') == 2 and "<" not in hostile and "\\\\" not in hostile
    assert view_module.SAFE_QUERY.fullmatch(url(KIND, pages.Choices(
        KIND, "analgesics", "K001", "2024", "opioids")).partition("?")[2])
    for bad in ('a"b', "a<b", "a b", "a\\b", "a'b", "a;b"):
        assert not view_module.SAFE_QUERY.fullmatch(bad)
