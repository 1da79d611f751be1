"""The model server as the runtimes run it: a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.unit.serving.conftest import tiny_classifier_bundle

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited"
        try:
            if get(f"{url}/v2/health/ready")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server not ready")


def keep_alive_latencies_ms(url: str, count: int) -> list[float]:
    """Sorted latencies of requests sent one after another on one keep-alive connection.

    Not a speed measurement: a tiny model answers in about a millisecond, but a server
    socket without TCP_NODELAY holds every response's last segment for the client's delayed
    ACK, 40 ms on Linux. Each request here would then take over 40 ms.
    """
    import http.client

    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", "/predictions/cls-0?seq_0=the+model+was+good")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        latencies.append((time.perf_counter() - start) * 1000)
    connection.close()
    return sorted(latencies)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_classifier_bundle(tmp_path_factory.mktemp("proc"), instances=3)


def test_serves_on_an_inherited_socket_and_stops_on_sigterm(bundle: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.serving",
            "--bundle",
            str(bundle),
            "--fd",
            str(sock.fileno()),
            "--threads",
            "1",
        ],
        pass_fds=(sock.fileno(),),
        env=env,
        stderr=subprocess.PIPE,
    )
    sock.close()
    try:
        wait_ready(url, proc)
        assert get(f"{url}/")[1]["models"] == ["cls-0", "cls-1", "cls-2"]
        status, body = get(f"{url}/predictions/cls-2?seq_0=the+server+came+up+quickly")
        assert status == 200 and body["label"] in {"negative", "neutral", "positive"}
        assert keep_alive_latencies_ms(url, 8)[-1] < 35, "Nagle meets delayed ACK: no NODELAY"
        status, body = get(f"{url}/predictions/cls-3?seq_0=x")
        assert status == 404 and body["models"] == ["cls-0", "cls-1", "cls-2"]
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
        assert "3 model instance(s) loaded" in log
        assert "Application shutdown complete" in log
    finally:
        proc.kill()
        proc.wait()


def test_a_broken_bundle_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text("{broken")
    result = subprocess.run(
        [sys.executable, "-m", "engine.serving", "--bundle", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "server.json" in result.stderr
    assert "Traceback" not in result.stderr
