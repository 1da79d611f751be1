"""Replacing a server without a failed request: hand over its socket, close idly.

A runtime replaces a replica on the same address by starting the new server on the *same*
listening socket, not on a second one bound with SO_REUSEPORT: each SO_REUSEPORT socket
has its own accept queue, and the connections waiting in the old one's when it closes are
reset. So a server started with `--handover PATH` offers its listening socket on a Unix
socket at PATH, made only once it serves (which makes PATH a readiness signal too): whoever
connects receives the listening socket (SCM_RIGHTS) and can start the next server on it.

When the old server then gets SIGTERM, uvicorn closes its copy of the listener (the
socket stays open in the new server, its queue intact) and closes idle keep-alive
connections at once; a client may have sent its next request on one just then, and would
see the connection closed under it. GracefulClose waits instead: an idle connection's next
request is answered with `Connection: close`; one still idle after `idle_grace_s` is
closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

IDLE_GRACE_S = 1.0  # far longer than a client takes between one answer and its next request


class GracefulClose:
    """A mixin for uvicorn's HttpToolsProtocol: on shutdown, idle connections are closed
    after their next answer (`Connection: close`), or after idle_grace_s without one."""

    idle_grace_s = IDLE_GRACE_S
    _closing_after_next = False

    def shutdown(self) -> None:
        proto: Any = self
        if proto.cycle is None or proto.cycle.response_complete:
            self._closing_after_next = True
            proto.loop.call_later(self.idle_grace_s, self._close_if_idle)
        else:
            proto.cycle.keep_alive = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # type: ignore[misc]
        proto: Any = self
        if self._closing_after_next and proto.cycle is not None:
            proto.cycle.keep_alive = False  # the answer says Connection: close, then closes

    def _close_if_idle(self) -> None:
        proto: Any = self
        if proto.cycle is None or proto.cycle.response_complete:
            proto.transport.close()


def graceful(protocol: type[HttpToolsProtocol] = HttpToolsProtocol) -> type[HttpToolsProtocol]:
    """`protocol` with GracefulClose: what to give uvicorn.Config(http=...)."""
    return type(f"Graceful{protocol.__name__}", (GracefulClose, protocol), {})


def offer_listener(
    path: Path, listener: socket.socket, serving: Callable[[], bool], stopping: Callable[[], bool]
) -> None:
    """Once `serving()`, give `listener` to every client of a Unix socket at `path` (mode
    0600), from a daemon thread, until `stopping()`: then `path` is removed."""

    def offer() -> None:
        while not serving():
            if stopping():
                return
            time.sleep(0.05)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        server.bind(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)  # appears whole, and only once serving
        server.listen(8)
        server.settimeout(0.1)
        try:
            while not stopping():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                with client, contextlib.suppress(OSError):  # a client gone: the next one
                    if listener.fileno() >= 0:  # -1 once closed by a drain
                        socket.send_fds(client, [b"L"], [listener.fileno()])
        finally:
            server.close()
            path.unlink(missing_ok=True)

    threading.Thread(target=offer, name="handover", daemon=True).start()


def take_listener(path: Path, timeout_s: float = 5.0) -> socket.socket | None:
    """The listening socket a server offers at `path` (waiting up to `timeout_s` for a
    server that is just starting to offer it); None when none is offered there."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(max(deadline - time.monotonic(), 0.1))
            client.connect(str(path))
            _, fds, _, _ = socket.recv_fds(client, 1, 1)
    except OSError:
        return None
    if not fds:
        return None
    return socket.socket(fileno=fds[0])
