"""Scenarios against a real HTTP server on 127.0.0.1 with a known service time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from aiohttp import web

from engine.bench.plan import START_DELAY_S
from engine.bench.scenarios import Tick, run_scenario
from engine.bench.targets import Target
from engine.spec.model import Scenario

DELAY_S = 0.005
pytestmark = pytest.mark.integration


class StandInServer:
    """A model-server stand-in: 5 ms per request, 404 for unknown names, 500 for 'boom'."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def predictions(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        await asyncio.sleep(DELAY_S)
        if "boom" in name:
            return web.json_response({"error": "exploded"}, status=500)
        if not name.startswith("m-"):
            return web.json_response({"error": "no model"}, status=404)
        return web.json_response({"model": name, "seq_0": request.query.get("seq_0")})

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/predictions/{name}", self.predictions)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())


@pytest.fixture
def server() -> Iterator[StandInServer]:
    stand_in = StandInServer()
    thread = threading.Thread(target=stand_in.run, daemon=True)
    thread.start()
    stand_in.ready.wait(5)
    yield stand_in
    stand_in.loop.call_soon_threadsafe(stand_in.loop.stop)
    thread.join(5)


def targets(port: int, names: list[str], replica: int = 0) -> list[Target]:
    return [
        Target(f"http://127.0.0.1:{port}", "web", replica, n, "m", "feature-extraction")
        for n in names
    ]


def test_sequential_hits_every_target_once(server: StandInServer) -> None:
    names = ["m-0", "m-1", "m-2"]
    result = asyncio.run(run_scenario(Scenario("smoke", "sequential"), targets(server.port, names)))
    assert server.hits == Counter({"m-0": 1, "m-1": 1, "m-2": 1})
    assert result.ok and len(result.samples) == 3
    assert all(s.latency_ms >= DELAY_S * 1000 for s in result.samples)


def test_random_sends_exactly_n_spread_by_seed(server: StandInServer) -> None:
    names = ["m-0", "m-1", "m-2", "m-3"]
    ticks: list[Tick] = []
    scenario = Scenario("random", "random", requests=40, interval_ms=1)
    result = asyncio.run(
        run_scenario(scenario, targets(server.port, names), on_tick=ticks.append, seed=3)
    )
    assert sum(server.hits.values()) == 40 and len(result.samples) == 40
    assert len(server.hits) == 4  # spread over every target
    assert [(t.answered, t.expected_requests, t.done) for t in ticks[-2:]] == [
        (40, 40, False),
        (40, 40, True),
    ]
    first_order = [s.target for s in result.samples]
    repeat = asyncio.run(run_scenario(scenario, targets(server.port, names), seed=3))
    assert [s.target for s in repeat.samples] == first_order


def test_errors_are_counted_and_a_refused_target_does_not_crash(server: StandInServer) -> None:
    refused = socket_port_nobody_listens_on()
    all_targets = [
        *targets(server.port, ["m-0", "unknown", "boom"]),
        Target(f"http://127.0.0.1:{refused}", "web", 1, "m-0", "m", "x"),
    ]
    result = asyncio.run(run_scenario(Scenario("smoke", "sequential"), all_targets))
    summary = result.summary()
    assert summary.errors_by_status == {"0": 1, "404": 1, "500": 1}
    assert not result.ok


def test_benchmark_closed_loop_stops_on_time(server: StandInServer) -> None:
    scenario = Scenario("load", "benchmark", duration_s=0.5, concurrency=4)
    started = time.monotonic()
    result = asyncio.run(run_scenario(scenario, targets(server.port, ["m-0", "m-1"])))
    assert time.monotonic() - started < START_DELAY_S + 0.5 + 1.0  # clients start, then 0.5 s
    assert result.ok and len(result.samples) > 20
    assert result.summary().throughput > 20


def socket_port_nobody_listens_on() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
