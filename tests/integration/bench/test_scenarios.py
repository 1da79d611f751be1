"""Scenarios against a real HTTP server on 127.0.0.1 with a known service time."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from engine.bench.load import Client
from engine.bench.plan import START_DELAY_S, ClientPlan, ClientResult, client_plans
from engine.bench.scenarios import Tick, run_scenario
from engine.bench.targets import Target
from engine.bench.worker import PROGRESS_PREFIX
from engine.errors import DoinferError
from engine.spec.model import Scenario

from .conftest import stall_server

REPO = Path(__file__).resolve().parents[3]

DELAY_S = 0.005
pytestmark = pytest.mark.integration


class StandInServer:
    """A model-server stand-in: 5 ms per request, 404 for unknown names, 500 for 'boom'."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.texts: Counter[tuple[str | None, str | None]] = Counter()  # (seq_0, seq_1)
        self.pairs: Counter[tuple[str, str | None]] = Counter()  # (name, seq_0)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def predictions(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        self.texts[request.query.get("seq_0"), request.query.get("seq_1")] += 1
        self.pairs[name, request.query.get("seq_0")] += 1
        await asyncio.sleep(DELAY_S)
        if "boom" in name:
            return web.json_response({"error": "exploded"}, status=500)
        if not name.startswith("m-"):
            return web.json_response({"error": "no model"}, status=404)
        return web.json_response({"model": name, "seq_0": request.query.get("seq_0")})

    async def v2_infer(self, request: web.Request) -> web.Response:
        """OIP v2: counted apart (`v2:NAME`), texts from the BYTES inputs."""
        name = request.match_info["name"]
        inputs = {i["name"]: i["data"][0] for i in (await request.json())["inputs"]}
        self.hits[f"v2:{name}"] += 1
        self.texts[inputs.get("seq_0"), inputs.get("seq_1")] += 1
        await asyncio.sleep(DELAY_S)
        return web.json_response({"model_name": name, "outputs": []})

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/predictions/{name}", self.predictions)
        app.router.add_post("/v2/models/{name}/infer", self.v2_infer)
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


def test_a_v2_scenario_posts_its_corpus_texts(server: StandInServer) -> None:
    corpus = (("first", None), ("second text", None), ("third", "a context"))
    scenario = Scenario("v2", "random", requests=30, protocol="v2", texts=corpus)
    result = asyncio.run(run_scenario(scenario, targets(server.port, ["m-0", "m-1"]), seed=1))
    assert result.ok and len(result.samples) == 30
    assert set(server.hits) == {"v2:m-0", "v2:m-1"}  # never GET /predictions
    assert set(server.texts) == set(corpus)  # the feature-extraction model: no default seq_1


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


def test_a_corpus_of_texts_is_drawn_from_at_random_and_by_seed(server: StandInServer) -> None:
    """What benchmarks/serving.py relies on: requests of varied length, reproducibly."""
    corpus: list[list[str | None]] = [["short"], ["a longer question", "its context"], ["é & ?"]]
    plan = ClientPlan("mix", "random", targets(server.port, ["m-0"]), texts=corpus, requests=300)
    result = asyncio.run(Client(plan).run())
    assert len(result.samples) == 300
    assert set(server.texts) == {
        ("short", None),
        ("a longer question", "its context"),
        ("é & ?", None),
    }
    assert min(server.texts.values()) > 60  # about 100 each
    first = server.texts.copy()
    server.texts.clear()
    asyncio.run(Client(plan).run())
    assert server.texts == first


def test_an_open_loop_draws_the_same_targets_and_texts_from_the_same_seed(
    server: StandInServer,
) -> None:
    """Requests are sent by tasks that start when the event loop gets to them; the draws
    happen where requests are scheduled, so the timing of those tasks changes nothing."""
    corpus: list[list[str | None]] = [[f"text {i}"] for i in range(3)]
    plan = ClientPlan(
        "mix", "open", targets(server.port, ["m-0", "m-1"]), texts=corpus,
        rate=200, arrivals="constant", duration_s=0.5, seed=7,
    )  # fmt: skip
    asyncio.run(Client(plan).run())
    first = server.pairs.copy()
    assert sum(first.values()) == 100
    assert len(first) == 6  # every target got every text
    server.pairs.clear()
    asyncio.run(Client(plan).run())
    assert server.pairs == first


def test_weights_decide_where_requests_go(server: StandInServer) -> None:
    names = ["m-0", "m-1", "m-2"]
    scenario = Scenario("mix", "random", requests=400, weights={"web/0/m-0": 3, "web/0/m-1": 1})
    result = asyncio.run(run_scenario(scenario, targets(server.port, names), seed=1))
    assert result.ok and "m-2" not in server.hits
    assert 2.4 < server.hits["m-0"] / server.hits["m-1"] < 3.6  # 3:1, 400 draws


def test_closed_loop_warm_up_is_sent_but_not_recorded(server: StandInServer) -> None:
    scenario = Scenario("load", "benchmark", warmup_s=0.5, duration_s=0.5, concurrency=2)
    result = asyncio.run(run_scenario(scenario, targets(server.port, ["m-0"])))
    assert result.ok and min(s.start for s in result.samples) >= 0
    assert max(s.start for s in result.samples) < 0.5
    sent = sum(server.hits.values())
    assert sent > len(result.samples) * 1.5  # about as many again during the warm-up


def test_constant_arrivals_of_two_clients_interleave(server: StandInServer) -> None:
    scenario = Scenario(
        "even", "benchmark", duration_s=1.0, rate=100, clients=2, arrivals="constant"
    )
    result = asyncio.run(run_scenario(scenario, targets(server.port, ["m-0"])))
    starts = sorted(s.start for s in result.samples)
    assert result.ok and len(starts) == 200
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(abs(gap - 0.005) for gap in gaps) < 1e-5  # 200 requests/s, evenly spaced


def test_an_open_loop_that_cannot_keep_its_rate_says_so_and_stops_on_time() -> None:
    with stall_server(service_ms=1) as (_, port):
        scenario = Scenario("flood", "benchmark", duration_s=1.0, rate=50_000)
        started = time.monotonic()
        result = asyncio.run(run_scenario(scenario, targets(port, ["m-0"])))
        took = time.monotonic() - started
    assert took < START_DELAY_S + 1.0 + 5.0  # the window, then what was in flight
    (note,) = result.notes
    assert note.startswith("client 0 could not keep 50000 requests/s: ")
    assert "scheduled requests were never sent before the window ended" in note
    assert result.clients[0]["lag"]["p99_ms"] > 5


def test_a_failing_client_process_is_a_clear_error() -> None:
    broken = Target("http://127.0.0.1:notaport", "web", 0, "m-0", "m", "feature-extraction")
    scenario = Scenario("load", "benchmark", duration_s=0.2, concurrency=1)
    with pytest.raises(DoinferError, match=r"load client 0 of load exited 1:\n(.|\n)*ValueError"):
        asyncio.run(run_scenario(scenario, [broken]))


def test_the_client_process_reads_a_plan_file_and_writes_its_result(
    server: StandInServer, tmp_path: Path
) -> None:
    """What a Docker or Kubernetes runtime runs: a plan in, a result JSON out."""
    (plan,) = client_plans(
        Scenario("load", "benchmark", duration_s=1.0, concurrency=2), targets(server.port, ["m-0"])
    )
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_dict()))
    finished = subprocess.run(
        [sys.executable, "-m", "engine.bench.worker", "--plan", "plan.json", "--out", "out.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    result = ClientResult.from_dict(json.loads((tmp_path / "out.json").read_text()))
    assert result.targets == ["web/0/m-0"] and result.sent == len(result.samples) > 50
    progress = [line for line in finished.stderr.splitlines() if line.startswith(PROGRESS_PREFIX)]
    assert len(progress) >= 3  # a few times a second
    assert int(progress[-1].split()[1]) <= result.sent

    (tmp_path / "bad.json").write_text('{"scenario": "x"}')
    bad = subprocess.run(
        [sys.executable, "-m", "engine.bench.worker", "--plan", "bad.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "error: not a valid client plan" in bad.stderr
    assert "Traceback" not in bad.stderr
