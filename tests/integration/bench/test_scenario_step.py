"""The scenario step of apply: benchmarks through the runtime's load clients, a missed SLO
failing the step, and an interrupt stopping a long benchmark and its clients at once."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Cancelled, StepFailed
from engine.graph.step import Action, Step
from engine.runtimes.local import LocalRuntime
from engine.steps.base import ApplyRequest, Context
from engine.steps.scenario import ScenarioStep, load_result

from .conftest import stall_server

pytestmark = pytest.mark.integration


def request(port: int, scenario: dict[str, Any]) -> ApplyRequest:
    step = Step(f"scenario/{scenario['name']}", "scenario", scenario, ("deploy/web",), "f", "s")
    deploy = {
        "replicas": [{"index": 0, "url": f"http://127.0.0.1:{port}"}],
        "models": [{"name": "m", "task": "feature-extraction", "instances": 2}],
    }
    return ApplyRequest(step, Action.CREATE, None, {"deploy/web": deploy})


def workers() -> list[int]:
    """Load-client processes this test process started that still run."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if b"engine.bench.worker" in cmdline and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(proc.name))
    return found


def test_a_benchmark_step_runs_clients_and_records_its_result(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=LocalRuntime(tmp_path))
    scenario = {"name": "load", "kind": "benchmark", "duration_s": 1, "rate": 50, "clients": 2}
    with stall_server(service_ms=2) as (_, port):
        outputs = ScenarioStep().apply(request(port, scenario), ctx, lambda line: None)
    result = load_result(outputs["result_file"])
    assert outputs["summary"]["requests"] == len(result.samples) > 60
    assert len(result.clients) == 2 and result.ok


def test_a_missed_slo_fails_the_step_and_says_which(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=LocalRuntime(tmp_path))
    scenario = {
        "name": "load",
        "kind": "benchmark",
        "duration_s": 0.5,
        "concurrency": 1,
        "slo": {"p50_ms": 1.0},
    }
    with stall_server(service_ms=20) as (_, port), pytest.raises(StepFailed) as failed:
        ScenarioStep().apply(request(port, scenario), ctx, lambda line: None)
    assert str(failed.value) == "scenario load missed its objectives"
    assert "load: SLO missed: p50 2" in failed.value.detail


def test_an_interrupt_stops_a_long_benchmark_and_its_clients(tmp_path: Path) -> None:
    ctx = Context(state_dir=tmp_path, runtime=LocalRuntime(tmp_path))
    scenario = {"name": "long", "kind": "benchmark", "duration_s": 600, "rate": 20}
    running: list[int] = []

    def interrupt() -> None:
        running.extend(workers())
        ctx.cancel.set()

    threading.Timer(2.0, interrupt).start()
    started = time.monotonic()
    with stall_server(service_ms=2) as (_, port), pytest.raises(Cancelled):
        ScenarioStep().apply(request(port, scenario), ctx, lambda line: None)
    assert time.monotonic() - started < 4.0
    assert len(running) == 1 and workers() == []  # its client ran, and is gone
