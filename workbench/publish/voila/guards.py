"""What keeps a crowd of viewers, or one curious viewer, from hurting the dashboards' server.

* :class:`Capacity` — every page view holds a kernel (a few hundred MiB) until the viewer leaves
  or it idles out; without a limit about thirty views every two minutes exhausted the machine.
  A view is admitted only while fewer than ``total`` kernels serve viewers and fewer than
  ``per_client`` serve this client (its remote address); past either the viewer gets a polite
  "busy, try again" page. The preheated pool is not counted: it is bounded by Voilà's pool size.
* :class:`Attributing` — the page handler's view of Voilà's kernel manager that tells
  :class:`Capacity` which kernel a view got, from the preheated pool or started cold.
* :class:`ViewerConnection` — the kernel websocket as a viewer sees it: whatever a kernel writes
  to stderr and every error (a malformed comm message made the kernel send a traceback with the
  server's paths) reaches the viewer as one generic line; the server's log keeps the original.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from jupyter_server.utils import ensure_async

from workbench.glossary import glossary
from workbench.publish.voila import DEFAULT_PER_CLIENT, DEFAULT_TOTAL


@dataclass
class Capacity:
    """Kernels serving viewers, per client and overall (see the module's docstring).

    A slot is taken when a view is admitted (so a burst can't slip in before its kernels
    exist), bound to the kernel the view gets, and freed when that kernel is gone (the viewer
    left, or culling ended it) or when the view failed before it got one."""

    total: int = DEFAULT_TOTAL
    per_client: int = DEFAULT_PER_CLIENT
    _slots: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.total < 1 or self.per_client < 1:
            raise ValueError(f"kernel limits must be at least 1 (total {self.total}, "
                             f"per client {self.per_client})")

    def admit(self, client: str, live: Iterable[str]) -> str | None:
        """A slot for a view of ``client`` (``None``: refused), given the live kernel ids."""
        alive = set(live)
        with self._lock:
            self._slots = {token: (who, kernel) for token, (who, kernel) in self._slots.items()
                           if kernel is None or kernel in alive}
            if len(self._slots) >= self.total:
                return None
            if sum(who == client for who, _ in self._slots.values()) >= self.per_client:
                return None
            token = uuid.uuid4().hex
            self._slots[token] = (client, None)
            return token

    def bind(self, token: str, kernel: str) -> None:
        with self._lock:
            if token in self._slots:
                self._slots[token] = (self._slots[token][0], kernel)

    def release(self, token: str) -> None:
        """End a view's claim if it never got a kernel (a bound slot ends with its kernel)."""
        with self._lock:
            if token in self._slots and self._slots[token][1] is None:
                del self._slots[token]

    def in_use(self, client: str | None = None) -> int:
        with self._lock:
            return sum(client is None or who == client for who, _ in self._slots.values())


class Attributing:
    """Voilà's kernel manager for one page view: the kernel the view gets is reported to
    ``on_kernel``; everything else is the manager's own."""

    def __init__(self, manager: Any, on_kernel: Callable[[str], None]) -> None:
        self._manager, self._on_kernel = manager, on_kernel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)

    async def get_rendered_notebook(self, *args: Any, **kwargs: Any) -> Any:
        task, cache, kernel = await self._manager.get_rendered_notebook(*args, **kwargs)
        self._on_kernel(kernel)
        return task, cache, kernel

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:
        kernel = await ensure_async(self._manager.start_kernel(*args, **kwargs))
        self._on_kernel(kernel)
        return kernel


def hidden(msg_type: str, content: dict) -> bool:
    """A kernel message a viewer never reads as written: an error, or anything on stderr."""
    return msg_type == "error" or (msg_type == "stream" and content.get("name") == "stderr")


class ViewerConnection(ZMQChannelsWebsocketConnection):
    """The kernel websocket with errors and stderr replaced by a generic line (see above)."""

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        _, parts = self.session.feed_identities(outgoing_msg)
        try:
            msg = self.session.deserialize(parts, content=False)
            msg_type = msg["header"]["msg_type"]
            content = self.session.unpack(msg["content"]) if msg_type in ("stream",
                                                                           "error") else {}
        except Exception:  # let Jupyter's own handling report a malformed message
            return super().handle_outgoing_message(stream, outgoing_msg)
        if hidden(msg_type, content):
            self.log.warning("kernel %s wrote to a viewer (withheld): %s", self.kernel_id,
                             content.get("text") or content.get("evalue") or msg_type)
            self.write_stderr(glossary().label("ui", "kernel_error", "da"),
                              msg["parent_header"])
            return
        super().handle_outgoing_message(stream, outgoing_msg)
