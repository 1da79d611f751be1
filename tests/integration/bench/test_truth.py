"""Do the numbers tell the truth? A real server with a known service time and stalls.

The server (tests/stall_server.py, its own process) answers every request in 20 ms, and
during the last second of every 4 s it stalls: a request arriving then waits for the end
of the stall. So the true latency of a request sent at time t is known: 20 ms, plus the
rest of the stall if t falls in one, plus the network round trip, which a plain blocking
socket measures meanwhile (on the machine as busy as the scenario finds it) with requests
that are never stalled. An open loop, latency counted from each request's intended send
time, must report that truth within 5% at every percentile; a closed loop, which sends
nothing while the server stalls, reports a tail that is not there.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from engine.bench.results import ScenarioResult
from engine.bench.scenarios import run_scenario
from engine.bench.targets import Target
from engine.spec.model import Scenario
from tests.stall_server import Stalls

from .conftest import stall_server

pytestmark = pytest.mark.integration

SERVICE_MS, STALL_MS, PERIOD_S = 20.0, 1000.0, 4.0
PERCENTILES = (50, 90, 95, 99, 99.9, 100)


@dataclass(frozen=True)
class StallServer:
    stalls: Stalls
    port: int

    def send_times(self, result: ScenarioResult) -> list[float]:
        return [result.started_at + s.start for s in result.samples]

    def truth_ms(self, result: ScenarioResult, round_trip_ms: float) -> np.ndarray:
        """The true latency of every request the scenario sent, from its send time."""
        truth = [self.stalls.truth_ms(t) for t in self.send_times(result)]
        return np.array(truth) + round_trip_ms

    def stalled(self, result: ScenarioResult) -> float:
        """The fraction of the scenario's requests sent while the server stalled."""
        return float(np.mean([self.stalls.wait_s(t) > 0 for t in self.send_times(result)]))

    def targets(self) -> list[Target]:
        url = f"http://127.0.0.1:{self.port}"
        return [Target(url, "web", r, "m-0", "m", "feature-extraction") for r in range(2)]


@pytest.fixture(scope="module")
def server() -> Iterator[StallServer]:
    with stall_server(SERVICE_MS, STALL_MS, PERIOD_S) as (stalls, port):
        yield StallServer(stalls, port)


class RoundTrip:
    """A plain blocking socket sending never-stalled requests while a scenario runs; the
    round trip is their median latency less the service time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._measure, daemon=True)

    def __enter__(self) -> RoundTrip:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def ms(self) -> float:
        return statistics.median(self.times[3:]) - SERVICE_MS

    def _measure(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self.stop.wait(0.03):
                started = time.perf_counter()
                sock.sendall(b"GET /calibrate HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while not answer.endswith(b"}"):
                    answer += sock.recv(4096)
                self.times.append((time.perf_counter() - started) * 1000)


def run(scenario: Scenario, server: StallServer, seed: int) -> tuple[ScenarioResult, float]:
    """The scenario's result, and the round trip a plain client saw meanwhile."""
    with RoundTrip(server.port) as round_trip:
        result = asyncio.run(run_scenario(scenario, server.targets(), seed=seed))
    return result, round_trip.ms


def steady_run(scenario: Scenario, server: StallServer) -> tuple[ScenarioResult, float]:
    """A run whose clients say they were held up (requests left late: this machine, shared
    with other work, was busy, not the server) cannot show how accurate the client is:
    such a run is repeated, at most twice. The last run is judged whatever it says."""
    for seed in (4, 5, 6):
        result, round_trip = run(scenario, server, seed)
        if not result.notes:
            break
    return result, round_trip


def test_open_loop_percentiles_match_the_truth_stalls_included(server: StallServer) -> None:
    scenario = Scenario("open", "benchmark", duration_s=8, rate=25, clients=2)
    result, round_trip = steady_run(scenario, server)
    measured = np.array([s.latency_ms for s in result.samples])
    assert result.ok and len(result.samples) > 300
    assert not [n for n in result.notes if "could not keep" in n]  # the clients kept up
    assert 0.18 < server.stalled(result) < 0.32  # sent on schedule, stalled or not
    s = result.summary()
    reported = [s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms]
    assert reported == list(np.percentile(measured, PERCENTILES))
    truth = np.percentile(server.truth_ms(result, round_trip), PERCENTILES)
    errors = [abs(r - t) / t for r, t in zip(reported, truth, strict=True)]
    assert max(errors) < 0.05, (reported, list(truth), round_trip)
    assert truth[1] > 300 and truth[3] > 800  # the stalls own the tail


def test_closed_loop_hides_the_stalls(server: StallServer) -> None:
    scenario = Scenario("closed", "benchmark", duration_s=4, concurrency=4)
    result, round_trip = run(scenario, server, seed=5)
    s = result.summary()
    truth = np.percentile(server.truth_ms(result, round_trip), (90, 95))
    true_open = 20 + (1 - (1 - 0.90) / 0.25) * STALL_MS  # an open loop's p90: about 620 ms
    assert result.ok and s.requests > 300
    assert server.stalled(result) < 0.03  # it sent (nearly) nothing while the server stalled
    assert s.max_ms > 400  # the few requests caught in a stall did wait
    assert s.p90_ms < SERVICE_MS * 1.5 and s.p95_ms < SERVICE_MS * 1.5  # and look fine
    assert max(truth) < SERVICE_MS * 1.5  # by its own samples' send times, too
    assert true_open > 10 * s.p90_ms  # what the same server does to traffic that keeps coming
