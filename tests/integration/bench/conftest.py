from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.stall_server import Stalls

SERVER = Path(__file__).resolve().parents[2] / "stall_server.py"


@contextlib.contextmanager
def stall_server(
    service_ms: float, stall_ms: float = 0.0, period_s: float = 4.0
) -> Iterator[tuple[Stalls, int]]:
    """tests/stall_server.py as its own process: (its stall schedule, its port)."""
    command = [sys.executable, str(SERVER), "--service-ms", str(service_ms)]
    command += ["--stall-ms", str(stall_ms), "--period-s", str(period_s)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        yield Stalls(service_ms, stall_ms, period_s, info["epoch"]), info["port"]
    finally:
        process.kill()
        process.wait()
