"""The report site's file server: Python's, minus what a site folder must not publish.

Run by path (``python site_server.py SITE PORT``, see :func:`workbench.publish.serve.serve_site`)
so it imports the standard library only and answers in a moment. It serves on 127.0.0.1 the
pages, tables, notebooks, manifests and images of a site folder, and nothing else: no hidden
path (temporary files; the ``.cache/`` an older batch kept its results in), no other kind of file
(a database, an archive), no folder listing.
"""

from __future__ import annotations

import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

SITE_SUFFIXES = frozenset({".html", ".csv", ".ipynb", ".json", ".png", ".svg", ".css"})


class SiteHandler(SimpleHTTPRequestHandler):
    """Python's file server for the files a site publishes (see the module's docstring)."""

    def send_head(self):  # type: ignore[no-untyped-def]
        path = unquote(urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        suffix = Path(parts[-1]).suffix.lower() if parts else ""
        hidden = any(p.startswith(".") for p in parts)
        folder = not parts or path.endswith("/")
        listing = folder and not Path(self.translate_path(path), "index.html").is_file()
        if hidden or listing or (not folder and suffix not in SITE_SUFFIXES):
            self.send_error(404)
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: ``workbench serve`` prints where the site is."""


def main(site: str, port: str) -> None:
    handler = partial(SiteHandler, directory=site)
    with ThreadingHTTPServer(("127.0.0.1", int(port)), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
