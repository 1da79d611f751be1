"""The load client's HTTP/1.1: framing, keep-alive, and what it does when servers misbehave.

Parsing is checked on bytes; the pool against real sockets on 127.0.0.1 (a raw asyncio
server that answers exactly the bytes a test gives it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from engine.bench.http import Pool, ProtocolError, Response, _parse, request_bytes

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def parse(data: bytes, eof: bool = False) -> tuple[Response, bool, int] | None:
    return _parse(bytearray(data), eof)


def test_content_length_body_waits_until_complete() -> None:
    assert parse(OK[:-2]) is None
    assert parse(OK) == (Response(200, b"hello"), True, len(OK))
    assert parse(OK + b"HTTP/1.1")[2] == len(OK)  # what follows is the next answer's


def test_chunked_body_with_extensions_and_trailers() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    assert parse(head + body[:-3]) is None
    assert parse(head + body) == (Response(200, b"hello world"), True, len(head + body))
    with pytest.raises(ProtocolError, match="chunked"):
        parse(head + body[:10], eof=True)


def test_connection_close_http_1_0_and_body_to_eof() -> None:
    closing = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    assert parse(closing) == (Response(503, b""), False, len(closing))
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert parse(old)[:2] == (Response(200, b"ok"), False)
    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    assert parse(kept)[1] is True
    unframed = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    assert parse(unframed) is None
    assert parse(unframed, eof=True)[:2] == (Response(200, b"all of it"), False)
    assert parse(b"HTTP/1.1 204 No Content\r\n\r\n")[0] == Response(204, b"")


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_answers_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(data)


def test_request_bytes() -> None:
    assert request_bytes("127.0.0.1", 8080, "/predictions/m-0?seq_0=a+b") == (
        b"GET /predictions/m-0?seq_0=a+b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"User-Agent: doinfer-bench\r\nAccept: */*\r\n\r\n"
    )


# the request's number on its connection -> (bytes to answer, close the connection after)
Reply = Callable[[int], tuple[bytes, bool]]


async def serve(reply: Reply) -> tuple[asyncio.Server, list[int]]:
    """A raw server; `connections` counts requests per accepted connection."""
    connections: list[int] = []

    class Handler(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport, self.index, self.buffer = transport, len(connections), b""
            connections.append(0)

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
                answer, close = reply(connections[self.index])
                connections[self.index] += 1
                self.transport.write(answer)
                if close:
                    self.transport.close()
                    return

    server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", 0)
    return server, connections


def run(reply: Reply, body: Callable[[Pool, int], object], timeout_s: float = 5.0) -> list[int]:
    async def main() -> list[int]:
        server, connections = await serve(reply)
        port = server.sockets[0].getsockname()[1]
        pool = Pool(timeout_s)
        try:
            await body(pool, port)  # type: ignore[misc]
        finally:
            pool.close()
            server.close()
        return connections

    return asyncio.run(main())


def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    async def body(pool: Pool, port: int) -> None:
        for _ in range(20):
            sent = time.perf_counter()
            answer = await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")
            assert (answer.status, answer.body) == (200, b"hello")
            assert sent < answer.received_at <= time.perf_counter()  # when its last byte came

    assert run(lambda n: (OK, False), body) == [20]


def test_concurrent_requests_open_connections_and_keep_them() -> None:
    async def body(pool: Pool, port: int) -> None:
        for _ in range(3):
            await asyncio.gather(
                *(pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n") for _ in range(4))
            )

    assert run(lambda n: (OK, False), body) == [3, 3, 3, 3]


def test_a_closed_keep_alive_connection_is_retried_on_a_new_one() -> None:
    """The server closes an idle connection (its keep-alive timeout) as the client reuses it."""

    async def body(pool: Pool, port: int) -> None:
        for _ in range(3):
            assert (await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")).status == 200

    # each connection answers once, then closes on the next request without answering
    assert run(lambda n: (OK, False) if n == 0 else (b"", True), body) == [2, 2, 1]


def test_connection_close_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def body(pool: Pool, port: int) -> None:
        for _ in range(3):
            answer = await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")
            assert (answer.status, answer.body) == (200, b"ok")

    assert run(lambda n: (closing, False), body) == [1, 1, 1]


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    async def body(pool: Pool, port: int) -> None:
        with pytest.raises(TimeoutError):
            await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")
        assert not pool.idle[("127.0.0.1", port)]

    run(lambda n: (b"", False), body, timeout_s=0.2)


def test_a_connection_closed_mid_answer_is_an_error_not_a_retry() -> None:
    async def body(pool: Pool, port: int) -> None:
        with pytest.raises(ProtocolError, match="inside the response body"):
            await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")

    assert run(lambda n: (OK[:-3], True), body) == [1]  # half an answer, then gone


def test_refused_connection_raises_oserror() -> None:
    async def main() -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        pool = Pool(2.0)
        with pytest.raises(OSError):
            await pool.get("127.0.0.1", port, b"GET / HTTP/1.1\r\n\r\n")

    asyncio.run(main())


def test_request_bytes_with_a_body_are_a_post() -> None:
    assert request_bytes("127.0.0.1", 8080, "/v2/models/m-0/infer", b'{"a": 1}') == (
        b"POST /v2/models/m-0/infer HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        b"User-Agent: doinfer-bench\r\nAccept: */*\r\n"
        b'Content-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    )
