"""A small HTTP/1.1 client for load generation: GET, or POST of a prebuilt JSON body, over
keep-alive connections, nothing more.

Why not aiohttp: on one core it sustained about 3,500-4,400 requests/s against a trivial
endpoint here, while this client, which sends prebuilt request bytes and parses only the
status line and the framing headers, sustains about twice that. The load generator must not
be the bottleneck. Anything beyond GET or POST with a Content-Length or chunked answer is out
of scope.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client understands it."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    received_at: float = 0.0  # perf_counter when the last byte arrived (before the loop
    # hands it to the waiting task, which takes another turn of the loop)


def request_bytes(host: str, port: int, path: str, body: bytes | None = None) -> bytes:
    """A complete request: a GET, or with a body a POST of JSON; `path` includes the
    already-encoded query string."""
    head = (
        f"{'GET' if body is None else 'POST'} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"User-Agent: doinfer-bench\r\nAccept: */*\r\n"
    )
    if body is None:
        return (head + "\r\n").encode("latin-1")
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One TCP connection; at most one request in flight (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[Response, bool]] | None = None
        self.closed = False
        self.received = False  # any byte of the current answer arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = _parse(self.buffer, eof=False)
        except ProtocolError as exc:
            self.waiter.set_exception(exc)
            return
        if parsed is not None:
            response, keep_alive, used = parsed
            del self.buffer[:used]
            arrived = dataclasses.replace(response, received_at=time.perf_counter())
            self.waiter.set_result((arrived, keep_alive))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = _parse(self.buffer, eof=True) if self.buffer else None
        except ProtocolError as error:
            self.waiter.set_exception(error)
            return
        if parsed is not None:
            arrived = dataclasses.replace(parsed[0], received_at=time.perf_counter())
            self.waiter.set_result((arrived, False))
        else:
            self.waiter.set_exception(exc or ConnectionResetError("connection closed by server"))

    def send(self, data: bytes) -> asyncio.Future[tuple[Response, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.received = False
        self.buffer.clear()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections per (host, port), opened on demand and reused when idle."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.idle: dict[tuple[str, int], list[_Connection]] = defaultdict(list)
        self.busy: set[_Connection] = set()

    async def get(self, host: str, port: int, data: bytes) -> Response:
        """Send prebuilt request bytes; raise OSError, TimeoutError or ProtocolError."""
        idle = self.idle[(host, port)]
        while idle:
            connection = idle.pop()
            if not connection.closed:
                try:
                    return await self._exchange(host, port, connection, data)
                except ConnectionError:
                    if connection.received:
                        raise
                    # the server closed an idle keep-alive connection as we reused it:
                    # nothing was answered, so a fresh connection may retry the request
                    # (an inference changes nothing)
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(_Connection, host, port), self.timeout_s
        )
        return await self._exchange(host, port, connection, data)

    async def _exchange(
        self, host: str, port: int, connection: _Connection, data: bytes
    ) -> Response:
        waiter = connection.send(data)
        timer = asyncio.get_running_loop().call_later(self.timeout_s, _expire, waiter)
        self.busy.add(connection)
        try:
            response, keep_alive = await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()
            self.busy.discard(connection)
        if keep_alive and not connection.closed:
            self.idle[(host, port)].append(connection)
        else:
            connection.close()
        return response

    def close(self) -> None:
        for connections in self.idle.values():
            for connection in connections:
                connection.close()
        for connection in self.busy:
            connection.close()
        self.idle.clear()
        self.busy.clear()


def _expire(waiter: asyncio.Future[tuple[Response, bool]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no complete answer in time"))


def _parse(buffer: bytearray, eof: bool) -> tuple[Response, bool, int] | None:
    """(response, keep-alive, bytes used) once a whole answer is in `buffer`, else None."""
    try:
        return _parse_response(buffer, eof)
    except ValueError as exc:  # a length or chunk size that is not a number
        raise ProtocolError(f"malformed response: {exc}") from None


def _parse_response(buffer: bytearray, eof: bool) -> tuple[Response, bool, int] | None:
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if eof:
            raise ProtocolError("connection closed inside the response head")
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    version, _, rest = head[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {head[0][:80]!r}")
    status = int(rest[:3])
    length: int | None = None
    chunked = False
    keep_alive = version == "HTTP/1.1"
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            token = value.strip().lower()
            keep_alive = token == "keep-alive" or (keep_alive and token != "close")
    start = end + 4
    if status < 200 or status in (204, 304):
        return Response(status, b""), keep_alive, start
    if chunked:
        return _dechunk(buffer, start, status, keep_alive, eof)
    if length is None:  # the body runs to the end of the connection
        return (Response(status, bytes(buffer[start:])), False, len(buffer)) if eof else None
    if len(buffer) - start < length:
        if eof:
            raise ProtocolError("connection closed inside the response body")
        return None
    return Response(status, bytes(buffer[start : start + length])), keep_alive, start + length


def _dechunk(
    buffer: bytearray, start: int, status: int, keep_alive: bool, eof: bool
) -> tuple[Response, bool, int] | None:
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            break
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)  # after any trailers
            if trailer_end < 0:
                break
            return Response(status, bytes(body)), keep_alive, trailer_end + 4
        if len(buffer) < line_end + 2 + size + 2:
            break
        body += buffer[line_end + 2 : line_end + 2 + size]
        position = line_end + 2 + size + 2
    if eof:
        raise ProtocolError("connection closed inside a chunked body")
    return None
