"""Load clients inside a runtime: what they are sent, and how their results merge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.bench.client import Sample
from engine.bench.scenarios import ScenarioResult
from engine.errors import StepFailed
from engine.runtimes import load_client
from engine.runtimes.load_client import run_scenario_in_runtime
from engine.spec.model import Scenario, Slo

DEPLOYS = {
    "deploy/web": {
        "replicas": [
            {"index": i, "url": f"http://127.0.0.1:900{i}", "internal_url": f"http://web-{i}:8080"}
            for i in range(2)
        ],
        "models": [{"name": "tiny", "task": "feature-extraction", "instances": 1}],
    }
}


class Clients:
    """A runtime whose clients answer with canned results, one per client."""

    runs_clients = True

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[list[str], int]] = []

    def run_clients(self, deploys: Any, argv: list[str], count: int, log: Any) -> list[str]:
        self.calls.append((argv, count))
        return self.outputs[:count]


def result(client: int, latencies: list[float]) -> str:
    samples = [Sample(f"web/{client}/tiny-0", i * 0.1, ms, 200) for i, ms in enumerate(latencies)]
    done = ScenarioResult("load", "benchmark", samples, 1.0, 2.0)
    return "log line\n" + json.dumps(done.to_dict())


def test_clients_reach_the_servers_by_name_and_their_samples_are_pooled() -> None:
    runtime = Clients([result(0, [10.0, 20.0]), result(1, [30.0, 40.0, 50.0])])
    scenario = Scenario("load", "benchmark", duration_s=2, clients=2, concurrency=4, slo=Slo(1))
    merged = run_scenario_in_runtime(runtime, scenario, DEPLOYS, lambda _: None)  # type: ignore[arg-type]

    ((argv, count),) = runtime.calls
    assert count == 2 and argv[:2] == ["-m", "engine.runtimes.load_client"]
    job = json.loads(argv[2])
    assert [t["url"] for t in job["targets"]] == ["http://web-0:8080", "http://web-1:8080"]
    assert job["scenario"]["clients"] == 1 and job["scenario"]["concurrency"] == 4
    assert job["scenario"]["slo"] is None  # the engine judges SLOs on the merged result
    assert sorted(s.latency_ms for s in merged.samples) == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert merged.summary().throughput == pytest.approx(5 / 2.0)
    assert merged.notes == ["sent from 2 client container(s) on the servers' network"]


def test_a_probe_scenario_runs_from_one_client() -> None:
    runtime = Clients([result(0, [5.0]), result(1, [6.0])])
    merged = run_scenario_in_runtime(
        runtime,  # type: ignore[arg-type]
        Scenario("smoke", "sequential", clients=3),
        DEPLOYS,
        lambda _: None,
    )
    assert runtime.calls[0][1] == 1 and len(merged.samples) == 1


def test_a_client_without_a_result_is_a_clear_failure() -> None:
    runtime = Clients(["Traceback...\nConnectionError: boom"])
    with pytest.raises(StepFailed, match="load client 0 of scenario smoke printed no result"):
        run_scenario_in_runtime(
            runtime,  # type: ignore[arg-type]
            Scenario("smoke", "sequential"),
            DEPLOYS,
            lambda _: None,
        )


def test_the_worker_waits_for_the_common_start_and_prints_its_result(monkeypatch, capsys) -> None:
    seen: dict[str, Any] = {}

    async def fake_run(scenario: Scenario, targets: list[Any]) -> ScenarioResult:
        seen["scenario"], seen["targets"] = scenario, targets
        return ScenarioResult(scenario.name, scenario.kind, [], 0.0, 1.0)

    slept: list[float] = []
    monkeypatch.setattr("engine.bench.scenarios.run_scenario", fake_run)
    monkeypatch.setattr(load_client.time, "sleep", slept.append)
    monkeypatch.setattr(load_client.time, "time", lambda: 100.0)
    job = {
        "scenario": {"name": "smoke", "kind": "sequential"},
        "targets": [
            {
                "url": "http://web-0:8080",
                "server": "web",
                "replica": 0,
                "instance": "tiny-0",
                "model": "tiny",
                "task": "feature-extraction",
            }
        ],
        "start_at": 102.5,
    }
    assert load_client.main([json.dumps(job)]) == 0
    assert slept == [2.5]
    assert seen["targets"][0].url == "http://web-0:8080"
    assert json.loads(capsys.readouterr().out)["name"] == "smoke"
