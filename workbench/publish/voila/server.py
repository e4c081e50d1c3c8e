"""Standalone Voilà for viewers, with nothing a viewer does not need.

``workbench serve`` runs ``python -m workbench.publish.voila.server`` instead of ``voila``: the
same standalone Voilà (a viewer's ``execute_request`` is not among the kernel messages it lets
through; sources stripped; configuration in ``voila.json``) with these changes:

* **less surface**: the directory tree (``/``, ``/voila/tree``), Voilà's contents API
  (``/voila/api/contents``) and its file server (``/voila/files``) are removed; ``/`` is a
  plain index of the pages the profile serves. Standalone Voilà has no Jupyter contents,
  sessions, terminals or kernel-listing API to begin with; the tests check all of them.
* **refusal, not a page**: a page the profile does not serve (the practice pages under
  ``public``) answers 403 with a short explanation, and the refusal is audited;
* **headers**: the index and the refusal answer with ``nosniff`` and ``frame-ancestors 'none'``
  like Voilà's own pages; the identity provider's ``/logout`` (a 500 without a login) is gone;
* **a limit on kernels**: a view is admitted only while fewer than ``--WorkbenchVoila.max_kernels``
  kernels serve viewers and fewer than ``max_kernels_per_client`` serve its client; past either
  it gets 503 with a polite "busy, try again" page and an audit line
  (:class:`~workbench.publish.voila.guards.Capacity`). A ``theme`` or ``template`` in the URL is
  ignored (overrides are off), so it can no longer skip the preheated kernel for a cold start;
* **no tracebacks over the websocket**: kernel errors and stderr reach a viewer as one generic
  line (:class:`~workbench.publish.voila.guards.ViewerConnection`);
* **kernels end with their page**: Voilà's page never asks for an XSRF cookie, so the beacon a
  browser sends on leaving a page ("shut my kernel down") was refused with 403 and every closed
  tab kept its kernel (hundreds of MiB) until culled; the page handler now sets the cookie.

The profile comes from the environment ``workbench serve`` sets (:func:`current_profile`).
"""

from __future__ import annotations

import html
from typing import Any

import tornado.web
from jupyter_server.utils import url_path_join
from traitlets import Integer, default
from voila.app import Voila
from voila.tornado.contentshandler import VoilaContentsHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.treehandler import TornadoVoilaTreeHandler

from workbench import audit
from workbench.glossary import glossary
from workbench.profiles import PAGES, Profile, current_profile
from workbench.publish.voila import DEFAULT_PER_CLIENT, DEFAULT_TOTAL
from workbench.publish.voila.guards import Attributing, Capacity, ViewerConnection

THEMES = ("psychotropics", "analgesics")


class PageHandler(TornadoVoilaHandler):
    """Voilà's page handler: the XSRF cookie the unload beacon needs, no theme or template
    from the URL, and a view only while :class:`Capacity` admits it."""

    def initialize(self, capacity: Capacity, profile: Profile, **kwargs: object) -> None:
        super().initialize(**kwargs)
        self.capacity, self.profile = capacity, profile

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        self.xsrf_token  # noqa: B018  (reading it sets the _xsrf cookie)
        for name in ("theme", "template"):  # Voilà would start a cold kernel for either
            self.request.arguments.pop(name, None)
            self.request.query_arguments.pop(name, None)

    async def get(self, path: str | None = None) -> None:  # type: ignore[override]
        client = self.request.remote_ip or ""
        token = self.capacity.admit(client, self.kernel_manager.list_kernel_ids())
        if token is None:
            self.busy(path or "")
            return
        self.slot = token
        try:
            await super().get(path)
        finally:
            self.capacity.release(token)

    @property
    def kernel_manager(self) -> Any:  # type: ignore[override]
        """Voilà's kernel manager, telling :class:`Capacity` the kernel this view gets."""
        manager = self.settings["kernel_manager"]
        token = getattr(self, "slot", None)
        if token is None:
            return manager
        return Attributing(manager, lambda kernel: self.capacity.bind(token, kernel))

    def busy(self, path: str) -> None:
        self.set_header("Retry-After", "30")
        refuse(self, self.profile, path.removesuffix(".ipynb"), 503, "server busy", "busy_page")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class PlainHandler(tornado.web.RequestHandler):
    """A handler of ours (not Jupyter's): the security headers Jupyter's handlers send."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class IndexHandler(PlainHandler):
    """``/``: links to the overview of each theme (instead of a listing of the folder)."""

    def initialize(self, profile: Profile, base: str) -> None:
        self.profile, self.base = profile, base

    def get(self) -> None:
        g = glossary()
        items = "".join(
            f'<li><a href="{html.escape(self.base)}voila/render/overview.ipynb?topic={theme}">'
            f'{html.escape(g.label("pages", "overview", "da"))} · '
            f'{html.escape(g.label("themes", theme, "da"))}</a></li>' for theme in THEMES)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(f"<!doctype html><meta charset='utf-8'><title>workbench</title>"
                    f"<ul>{items}</ul>")


class RefusedHandler(PlainHandler):
    """A page the profile does not serve: 403 and an audit line, never the page."""

    def initialize(self, profile: Profile) -> None:
        self.profile = profile

    def get(self, page: str) -> None:
        refuse(self, self.profile, page, 403, "page not served", "refused_page")


def refuse(handler: tornado.web.RequestHandler, profile: Profile, page: str, status: int,
           reason: str, label: str) -> None:
    """Answer a view not served with the glossary's line ``ui.<label>`` (never the page) and
    an audit line naming what was asked (the page's own parameters only)."""
    asked = {k: v[-1].decode("utf-8", "replace")
             for k, v in handler.request.query_arguments.items()}
    asked = {k: v for k, v in asked.items() if k in ("topic", "unit", "period", "group")}
    audit.record("refused", profile=profile.spec(), page=page, unit=asked.get("unit", ""),
                 parameters=asked, reason=reason)
    handler.set_status(status)
    for name, value in SECURITY_HEADERS.items():
        handler.set_header(name, value)
    handler.set_header("Content-Type", "text/html; charset=utf-8")
    text = glossary().label("ui", label, "da")
    handler.finish(f"<!doctype html><meta charset='utf-8'><title>{status}</title>"
                   f"<p>{html.escape(text)}</p>")


class WorkbenchVoila(Voila):
    """Voilà with the handlers above (see the module's docstring)."""

    max_kernels = Integer(DEFAULT_TOTAL, config=True,
                          help="Kernels serving viewers at once, at most (a view past it: 503).")
    max_kernels_per_client = Integer(DEFAULT_PER_CLIENT, config=True,
                                     help="Kernels serving one client (remote address), at most.")

    @default("kernel_websocket_connection_class")
    def _viewer_connection(self) -> type:
        return ViewerConnection

    def init_handlers(self) -> list:
        profile = current_profile()
        capacity = Capacity(self.max_kernels, self.max_kernels_per_client)
        handlers = []
        for spec in super().init_handlers():
            pattern, handler = spec[0], spec[1]
            if handler in (TornadoVoilaTreeHandler, VoilaContentsHandler):
                continue
            if "/voila/files/" in pattern or pattern.rstrip("/$").endswith("/logout"):
                continue
            if handler is TornadoVoilaHandler:
                spec = (pattern, PageHandler, {**(spec[2] if len(spec) > 2 else {}),
                                               "capacity": capacity, "profile": profile})
            handlers.append(spec)
        refused = [p for p in PAGES if p not in profile.pages]
        first = [(self.server_url, IndexHandler, {"profile": profile, "base": self.server_url})]
        if refused:
            first.append((url_path_join(self.server_url,
                                        rf"/voila/render/({'|'.join(refused)})\.ipynb"),
                          RefusedHandler, {"profile": profile}))
        return [*first, *handlers]


main = WorkbenchVoila.launch_instance

if __name__ == "__main__":
    main()
