"""The MiniLM server under more load than it can take, and clients that give up.

A real server process (uvicorn, the packaged MiniLM model traced at 128 tokens) on
127.0.0.1; every load here is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.integration.serving.conftest import serve
from tests.unit.serving.conftest import pack

pytestmark = pytest.mark.integration
PASSAGE = (
    "Database migrations between major versions are done by creating a replica on the new "
    "version, letting it catch up through logical replication, pausing writes for a few "
    "seconds, switching the application's connection string and retiring the old primary."
)
TEXTS = [
    "How do I rotate the credentials of a service account?",
    "Why does my container restart every few minutes?",
    PASSAGE,
    "What is the maximum size of a single file upload?",
]


def metric(url: str, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def serve_minilm(minilm: Path, state_dir: Path, **batching: float) -> Iterator[str]:
    """A server of one MiniLM instance with these batching settings, until the generator
    is closed: yields its URL once it is ready."""
    bundle = pack(state_dir, {"feature-extraction": minilm}, instances=1, batching=batching)
    for url, _ in serve(bundle):
        yield url


@pytest.fixture
def small_queue_server(minilm: Path, tmp_path: Path) -> Iterator[str]:
    yield from serve_minilm(minilm, tmp_path, max_batch_size=8, max_queue=16)


async def _get(http: aiohttp.ClientSession, url: str, text: str) -> tuple[int, str | None]:
    query = urllib.parse.urlencode({"seq_0": text})
    async with http.get(f"{url}/predictions/fe-0?{query}") as response:
        await response.read()
        return response.status, response.headers.get("Retry-After")


async def _capacity(url: str, seconds: float) -> float:
    """Requests/s answered by a closed loop of 16 clients."""
    answered = 0
    async with aiohttp.ClientSession() as http:
        deadline = time.perf_counter() + seconds

        async def client(i: int) -> None:
            nonlocal answered
            while time.perf_counter() < deadline:
                status, _ = await _get(http, url, TEXTS[i % len(TEXTS)])
                answered += status == 200

        start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(16)))
        return answered / (time.perf_counter() - start)


async def _open_loop(url: str, rate: float, seconds: float) -> tuple[Counter[str], list, list]:
    """Poisson arrivals at `rate` for `seconds`: statuses, latencies of the answered ones
    (from the intended send time), and the Retry-After of each 503."""
    rng = random.Random(7)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    retry_after: list[str | None] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
    ) as http:

        async def one(text: str, intended: float) -> None:
            try:
                status, retry = await _get(http, url, text)
            except (aiohttp.ClientError, OSError) as exc:
                statuses[type(exc).__name__] += 1
                return
            statuses[str(status)] += 1
            if status == 200:
                latencies.append(time.perf_counter() - intended)
            elif status == 503:
                retry_after.append(retry)

        tasks = []
        start = intended = time.perf_counter()
        while intended < start + seconds:
            await asyncio.sleep(max(0.0, intended - time.perf_counter()))
            tasks.append(asyncio.create_task(one(rng.choice(TEXTS), intended)))
            intended += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    return statuses, latencies, retry_after


def test_at_twice_its_capacity_the_server_sheds_the_excess_and_keeps_answering(
    small_queue_server: str,
) -> None:
    url = small_queue_server
    capacity = asyncio.run(_capacity(url, 2.0))
    statuses, latencies, retry_after = asyncio.run(_open_loop(url, 2 * capacity, 3.0))
    assert set(statuses) <= {"200", "503"}, statuses  # no 500, no reset, no timeout
    assert statuses["503"] > 0 and statuses["200"] > 0, statuses
    assert all(r is not None and int(r) >= 1 for r in retry_after)
    # 16 queued requests drain in 16 / capacity seconds: an accepted request waits about
    # that, plus its own batch; nothing like the seconds an unbounded queue would reach.
    p99 = float(np.percentile(latencies, 99))
    assert p99 < 16 / capacity + 1.0, (p99, capacity)
    assert metric(url, "doinfer_requests_total", model="fe-0", code="503") == statuses["503"]
    with urllib.request.urlopen(f"{url}/predictions/fe-0?seq_0=still+here", timeout=10) as r:
        assert len(__import__("json").loads(r.read())["embedding"]) == 384


def test_requests_of_clients_that_hang_up_are_dropped_from_the_queue(
    minilm: Path, tmp_path: Path
) -> None:
    """Twenty requests queue behind a model that takes one at a time; the clients of the
    last ten hang up at once. Those ten are never computed."""
    for url in serve_minilm(minilm, tmp_path, max_batch_size=1, max_queue=64):
        host, port = url.removeprefix("http://").split(":")
        query = urllib.parse.urlencode({"seq_0": PASSAGE})
        raw = f"GET /predictions/fe-0?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        connections = []
        for _ in range(20):
            connection = socket.create_connection((host, int(port)))
            connection.sendall(raw)
            connections.append(connection)
        for connection in connections[10:]:
            connection.close()
        for connection in connections[:10]:
            connection.settimeout(30)
            assert connection.recv(64).startswith(b"HTTP/1.1 200")
            connection.close()
        deadline = time.monotonic() + 10
        while metric(url, "doinfer_requests_total", model="fe-0", code="499") < 10:
            assert time.monotonic() < deadline, "the hang-ups were not noticed"
            time.sleep(0.05)
        assert metric(url, "doinfer_dropped_requests_total", queue="fe") == 10
        assert metric(url, "doinfer_batch_size_sum", queue="fe") == 10  # only the 10 kept
