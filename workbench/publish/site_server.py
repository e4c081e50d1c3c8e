"""The report site's file server: Python's, minus what a site folder must not publish.

Run by path (``python site_server.py SITE PORT``, see :func:`workbench.publish.serve.serve_site`)
so it imports the standard library only and answers in a moment. It serves on 127.0.0.1 the
pages, tables, notebooks, manifests and images of a site folder, and nothing else: no hidden
path (temporary files; the ``.cache/`` an older batch kept its results in), no other kind of file
(a database, an archive), no folder listing, nothing reached through a symbolic link (a link
in a site folder could lead anywhere on the machine). Every answer says the browser may not
guess its type nor show it inside another site's frame.
"""

from __future__ import annotations

import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

SITE_SUFFIXES = frozenset({".html", ".csv", ".ipynb", ".json", ".png", ".svg", ".css"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SiteHandler(SimpleHTTPRequestHandler):
    """Python's file server for the files a site publishes (see the module's docstring)."""

    def send_head(self):  # type: ignore[no-untyped-def]
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        suffix = Path(parts[-1]).suffix.lower() if parts else ""
        hidden = any(p.startswith(".") for p in parts)
        folder = not parts or path.endswith("/")
        listing = folder and not Path(self.translate_path(path), "index.html").is_file()
        if (hidden or listing or (not folder and suffix not in SITE_SUFFIXES)
                or self._linked(parts)):
            self.send_error(404)
            return None
        return super().send_head()

    def _linked(self, parts: list[str]) -> bool:
        """Whether the path passes through a symbolic link (or leaves the site)."""
        root = Path(self.directory)
        at = root
        for part in parts:
            at = at / part
            if at.is_symlink():
                return True
        return not Path(self.translate_path("/".join(parts))).resolve().is_relative_to(
            root.resolve())

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: ``workbench serve`` prints where the site is."""


def main(site: str, port: str) -> None:
    handler = partial(SiteHandler, directory=site)
    with ThreadingHTTPServer(("127.0.0.1", int(port)), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
