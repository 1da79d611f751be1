"""A server told to stop (SIGTERM) while a client holds an idle keep-alive connection: the
client's next request on it is answered, with `Connection: close`, instead of finding
the connection closed under it. And a server started on a socket handed over by another
serves from the same accept queue.

A real server process on a tiny model (engine/serving/handover.py).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.serving.handover import take_listener
from tests.integration.serving.test_server_process import REPO, wait_ready

pytestmark = pytest.mark.integration
PATH = "/predictions/cls-0?seq_0=the+model+was+good"


def start(bundle: Path, sock: socket.socket, handover: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.serving", "--bundle", str(bundle), "--fd",
         str(sock.fileno()), "--threads", "1", "--handover", str(handover)],
        pass_fds=(sock.fileno(),),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_listening(bundle: Path, handover: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """A server on a new listening socket of 127.0.0.1: (process, host, port)."""
    sock = socket.create_server(("127.0.0.1", 0))
    host, port = sock.getsockname()
    proc = start(bundle, sock, handover)
    sock.close()  # the server holds it now
    return proc, host, port


def test_an_idle_connection_gets_its_next_answer_then_close(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    proc, host, port = start_listening(tiny_classifier, tmp_path / "a.sock")
    try:
        wait_ready(f"http://{host}:{port}", proc)
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.request("GET", PATH)
        assert connection.getresponse().read()  # kept alive, now idle
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the server is shutting down; the connection idles meanwhile
        connection.request("GET", PATH)
        response = connection.getresponse()
        assert response.status == 200 and response.read()
        assert response.getheader("connection") == "close"
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()


def test_a_handed_over_socket_serves_on_in_the_next_server(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    first, host, port = start_listening(tiny_classifier, tmp_path / "a.sock")
    second = None
    try:
        wait_ready(f"http://{host}:{port}", first)
        taken = take_listener(tmp_path / "a.sock")
        assert taken is not None and taken.getsockname() == (host, port)
        second = start(tiny_classifier, taken, tmp_path / "b.sock")
        taken.close()
        deadline = time.monotonic() + 120
        while not (tmp_path / "b.sock").exists():  # made once the second one serves
            assert second.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) in (0, -signal.SIGTERM)
        assert not (tmp_path / "a.sock").exists()
        for _ in range(5):  # new connections: the second server, on the same port
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("GET", PATH)
            assert connection.getresponse().status == 200
            connection.close()
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
