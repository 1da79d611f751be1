"""Clients that try to hold the server: slow headers, huge headers, too many connections.

A real server process (uvicorn with httptools, a tiny traced model) on 127.0.0.1 and real
sockets; each test takes a few seconds.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving.conftest import serve

pytestmark = pytest.mark.integration
READ_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def server(tiny_classifier: Path) -> Iterator[tuple[str, int]]:
    bundle = tiny_classifier
    flags = ("--read-timeout-s", str(READ_TIMEOUT_S), "--max-connections", "400")
    for url, _ in serve(bundle, threads=1, flags=flags):
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def answered(address: tuple[str, int]) -> int:
    url = "http://{}:{}/predictions/cls-0?seq_0=still+served".format(*address)
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    """What the server answers to `request` before it closes the connection."""
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_slow_header_clients_are_cut_off_and_others_still_served(
    server: tuple[str, int],
) -> None:
    """200 clients send a header line every 0.3 s and never finish (slowloris). Each is
    answered 408 and closed once its request is READ_TIMEOUT_S old; a normal client is
    served meanwhile. (On main they were held for as long as they kept sending.)"""
    selector = selectors.DefaultSelector()
    opened = time.monotonic()
    for _ in range(200):
        connection = socket.create_connection(server, timeout=5)
        connection.sendall(b"GET /predictions/cls-0?seq_0=slow HTTP/1.1\r\nHost: x\r\n")
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    assert answered(server) == 200
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    deadline = opened + READ_TIMEOUT_S + 5
    next_line = time.monotonic()
    while len(closed) < 200 and time.monotonic() < deadline:
        if time.monotonic() >= next_line:
            next_line += 0.3
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):  # closed by the server: read below
                    key.fileobj.send(b"X-Slow: 1\r\n")  # type: ignore[union-attr]
        for key, _ in selector.select(timeout=0.05):
            connection = key.fileobj
            try:
                data = connection.recv(4096)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if not data or data.endswith(b"\r\n\r\n"):
                closed[connection] = (time.monotonic() - opened, data)  # type: ignore[index]
                selector.unregister(connection)
                connection.close()  # type: ignore[union-attr]
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    assert len(closed) == 200, f"{200 - len(closed)} slow clients still held"
    assert min(t for t, _ in closed.values()) >= READ_TIMEOUT_S - 0.1
    assert sum(data.startswith(b"HTTP/1.1 408") for _, data in closed.values()) >= 190
    assert answered(server) == 200


def test_headers_larger_than_the_limit_are_a_431(server: tuple[str, int]) -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert exchange(server, big).startswith(b"HTTP/1.1 431")
    many = b"GET / HTTP/1.1\r\n" + b"X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 1000 + b"\r\n"
    assert exchange(server, many).startswith(b"HTTP/1.1 431")
    # a header line that never ends: httptools would buffer it without limit
    endless = b"GET / HTTP/1.1\r\nX-Endless: " + b"a" * 100_000
    assert exchange(server, endless).startswith(b"HTTP/1.1 431")
    normal = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert exchange(server, normal).startswith(b"HTTP/1.1 200")


def test_past_max_connections_new_requests_answer_503_until_some_close(
    server: tuple[str, int],
) -> None:
    idle = [socket.create_connection(server, timeout=5) for _ in range(400)]
    try:
        request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        assert exchange(server, request).startswith(b"HTTP/1.1 503")
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.3)
    assert answered(server) == 200


def test_the_limits_are_per_request_on_a_keep_alive_connection(server: tuple[str, int]) -> None:
    """Two pipelined requests with 10 KiB of headers each (16 KiB is the limit) are both
    answered; a connection idle between requests for longer than the read timeout (but
    not uvicorn's 5 s keep-alive) still serves the next one."""
    header = b"X-Padding: " + b"p" * 10_000 + b"\r\n"
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n"
    with socket.create_connection(server, timeout=10) as connection:
        connection.sendall(request + request)
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or received.count(b'{"live":true}') < 2:
            chunk = connection.recv(65536)  # both answers whole: a body may come apart
            assert chunk, received
            received += chunk
        time.sleep(READ_TIMEOUT_S + 0.5)
        connection.sendall(request)
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
