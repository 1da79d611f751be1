"""SIGTERM drains the server: what is in flight is answered, then the process exits 0.

The runtimes stop (and replace) a replica with SIGTERM. A real server process with the
packaged MiniLM on one thread, so that a queue of long texts takes a while to compute.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from tests.integration.serving.test_overload import PASSAGE, metric
from tests.integration.serving.test_server_process import REPO, get, wait_ready
from tests.unit.serving.conftest import pack

pytestmark = pytest.mark.integration
DRAIN_TIMEOUT_S = 30


def test_sigterm_answers_the_requests_in_flight_refuses_new_ones_and_exits_0(
    minilm: Path, tmp_path: Path
) -> None:
    bundle = pack(
        tmp_path,
        {"feature-extraction": minilm},
        instances=1,
        batching={"max_batch_size": 2, "max_queue": 64},
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.serving", "--bundle", str(bundle), "--port", str(port),
         "--threads", "1", "--drain-timeout-s", str(DRAIN_TIMEOUT_S)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        query = urllib.parse.urlencode({"seq_0": PASSAGE * 2})
        request = f"GET /predictions/fe-0?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        in_flight = []
        for _ in range(30):
            connection = socket.create_connection(("127.0.0.1", port), timeout=60)
            connection.sendall(request)
            in_flight.append(connection)
        deadline = time.monotonic() + 30
        while (queued := metric(url, "doinfer_queue_depth", queue="fe")) < 10:
            assert time.monotonic() < deadline, "the requests did not queue"
            time.sleep(0.02)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 5
        while True:  # the listener closes at once: new connections are refused
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.05)
        assert process.poll() is None, "exited before its requests were answered"

        closed_by_answer = 0
        for connection in in_flight:
            answer = b""
            while chunk := connection.recv(65536):  # ends: the server closes every one
                answer += chunk
            connection.close()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            closed_by_answer += b"connection: close" in answer.lower()
        # Those answered before the signal kept their connection alive (and were closed
        # idle); every request still queued at the signal is answered after it, and says
        # so. One batch (max_batch_size 2) may leave the queue between its read and the signal.
        assert closed_by_answer >= queued - 2, (closed_by_answer, queued)
        assert process.wait(timeout=DRAIN_TIMEOUT_S) == 0
        assert time.monotonic() - signalled < DRAIN_TIMEOUT_S
        assert process.stderr is not None
        log = process.stderr.read().decode()
        assert "Traceback" not in log and "ERROR" not in log, log
    finally:
        process.kill()
        process.wait()


def test_with_a_drain_delay_it_serves_on_not_ready_then_closes(tiny_classifier: Path) -> None:
    """--drain-delay-s: after SIGTERM the server answers requests but reports not ready
    (a load balancer that routes by readiness stops sending), then closes and exits 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.serving", "--bundle", str(tiny_classifier),
         "--port", str(port), "--threads", "1", "--drain-delay-s", "3"],
        cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + 2
        while get(f"{url}/v2/health/ready") != (503, {"ready": False}):
            assert time.monotonic() < deadline, "still ready after SIGTERM"
            time.sleep(0.05)
        status, body = get(f"{url}/predictions/cls-0?seq_0=still+answered")
        assert status == 200 and "label" in body
        assert time.monotonic() - signalled < 3, "the machine was too slow to see the delay"
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - signalled >= 3
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        process.kill()
        process.wait()
