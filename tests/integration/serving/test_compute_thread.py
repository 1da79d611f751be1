"""On cpu, a server's models all compute on one thread, so that OpenMP keeps spinning.

libgomp spins between parallel regions only while the process has no more OpenMP threads
than cores; a second thread running torch ops starts a second team, and from then on every
parallel region ends in a futex sleep and a wake-up. Measured on MiniLM: ~100 context
switches and +23% per batch-1 call. The test counts the server's context switches.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.serving.conftest import serve
from tests.unit.serving.conftest import pack

pytestmark = pytest.mark.integration

REQUESTS = 40
MAX_SWITCHES_PER_REQUEST = 30  # measured, voluntary: 5 on one team, 91 with a team per runner
TEXT = urllib.parse.quote("how many servers does one node hold when packed densely")


def context_switches(pid: int) -> int:
    """The process's voluntary switches (sleeps: the futex waits counted here); preemptions
    by whatever else the machine runs are left out."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                total += int(line.split()[1])
    return total


def ask(url: str, model: str) -> None:
    with urllib.request.urlopen(f"{url}/predictions/{model}?seq_0={TEXT}") as response:
        assert response.status == 200


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: no OpenMP team to keep")
def test_two_models_share_one_compute_thread_and_openmp_does_not_sleep(
    minilm: Path, tmp_path: Path
) -> None:
    """Two separately loaded copies (two runners) on 2 threads, answered alternately: with a
    thread per runner (or warm-up on the main thread) this measured 91 per request."""
    bundle = pack(tmp_path, {"feature-extraction": minilm}, instances=2, share_weights=False)
    for url, pid in serve(bundle, threads=2):
        for i in range(4):
            ask(url, f"fe-{i % 2}")
        before = context_switches(pid)
        for i in range(REQUESTS):
            ask(url, f"fe-{i % 2}")
        per_request = (context_switches(pid) - before) / REQUESTS
        assert per_request < MAX_SWITCHES_PER_REQUEST, per_request
