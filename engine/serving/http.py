"""The server's HTTP layer: uvicorn with the limits httptools lacks, and drain on SIGTERM.

uvicorn bounds open connections (`limit_concurrency`: past it, a 503) but, with the
httptools parser the server uses for speed, neither the size of a request's headers nor
the time a client may take to send them (`h11_max_incomplete_event_size` applies to h11
only): a few hundred clients that send a header line every few seconds would hold the
server for ever. GuardedHttpProtocol adds both: headers past `max_header_bytes` are a
431, and a request not whole `read_timeout_s` after its first byte (or after the
connection opened) is a 408 if its headers are incomplete, else a closed connection.

On SIGTERM (or SIGINT) DrainingServer marks the app draining (readiness answers 503),
serves on for `drain_delay_s` (default 0), closes the listening socket, finishes the
requests in flight and the batches they wait for, within `drain_timeout_s`, and the
process exits 0: the runtimes stop replicas so.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import httptools
import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from engine.serving.limits import ServerLimits


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a header size limit and a request read timeout.

    A subclass per server sets the two limits (guarded_protocol()).
    """

    max_header_bytes = ServerLimits.max_header_bytes
    read_timeout_s = ServerLimits.read_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # until the request's headers are complete
        self._header_bytes = 0  # request line and headers as parsed
        self._raw_bytes = 0  # bytes received since the last request's headers were complete
        self._clock: asyncio.TimerHandle | None = None  # runs while a request arrives

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()  # a client that connects and says nothing is timed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_headers:
            self._raw_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no websockets here
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._refuse(431)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # headers that never end: httptools buffers a header until its line is complete
        if self._in_headers and self._raw_bytes > self.max_header_bytes:
            self._refuse(431)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        if self._clock is None:  # the first byte of a keep-alive connection's next request
            self._start_clock()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._raw_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_clock()
        super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _HeadersTooLarge()

    def _start_clock(self) -> None:
        self._stop_clock()
        self._clock = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _timed_out(self) -> None:
        self._clock = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(408)
        else:  # the app has the request and may answer: cut the connection, not the answer
            self.transport.close()

    def _refuse(self, status: int) -> None:
        """Answer `status` and close, for a request the app never saw."""
        self._stop_clock()
        if self.transport.is_closing():
            return
        default_headers = b"".join(
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        )
        ending = b"content-length: 0\r\nconnection: close\r\n\r\n"
        self.transport.write(STATUS_LINE[status] + default_headers + ending)
        self.transport.close()


def guarded_protocol(limits: ServerLimits) -> type[GuardedHttpProtocol]:
    """A GuardedHttpProtocol class with these limits (uvicorn instantiates it itself)."""
    return type(
        "GuardedHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "max_header_bytes": limits.max_header_bytes,
            "read_timeout_s": limits.read_timeout_s,
        },
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM marks the app draining and exits 0 once drained.

    uvicorn itself closes the listener, lets in-flight requests finish (up to the config's
    timeout_graceful_shutdown) and then runs the app's shutdown (the batchers stop); but
    after it, it re-raises the signal, and the process would die of SIGTERM.

    With a `drain_delay_s`, the server first goes on serving that long while readiness
    answers 503: a load balancer (a Kubernetes Service) that routes by readiness stops
    sending before the listener closes. A second signal ends the delay.
    """

    def __init__(self, config: uvicorn.Config, app: Litestar, drain_delay_s: float = 0) -> None:
        super().__init__(config)
        self.app = app
        self.drain_delay_s = drain_delay_s
        self._stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._stop_at is None and self.drain_delay_s > 0:
            self.app.state.draining = True
            self._stop_at = time.monotonic() + self.drain_delay_s
            return
        self.app.state.draining = True
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
