"""The scenario step under Ctrl-C: load clients that end first (a pipe broken under a
write) are a cancel once the engine marks it, not a failure; without a cancel, a failure."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Cancelled
from engine.graph.step import Action, Step
from engine.runtimes.contracts import DeployResult, ReplicaRecord, ServedModel
from engine.spec.model import Scenario
from engine.steps.base import ApplyRequest, Context
from engine.steps.scenario import ScenarioStep


class ClientsKilledByCtrlC:
    """A runtime whose load clients die of the terminal's SIGINT: the engine's write to
    one breaks its pipe."""

    probes_here = True  # the Runtime class attribute the scenario step reads

    async def run_load_clients(self, plans: Any, on_progress: Any) -> Any:
        raise ConnectionResetError("Connection lost")


def request() -> ApplyRequest:
    scenario = Scenario("load", "benchmark", duration_s=1, concurrency=1)
    deployed = DeployResult(
        (ReplicaRecord(0, "http://127.0.0.1:9", "k"),), (ServedModel("m", "feature-extraction", 1),)
    )
    step = Step("scenario/load", "scenario", scenario.to_json(), ("deploy/web",), "fp", "s")
    return ApplyRequest(step, Action.CREATE, None, {"deploy/web": deployed.to_json()})


def test_clients_ended_by_ctrl_c_are_a_cancel(tmp_path: Path) -> None:
    ctx = Context(tmp_path, ClientsKilledByCtrlC())  # type: ignore[arg-type]
    threading.Timer(0.2, ctx.cancel.set).start()  # the engine's handler runs a moment later
    with pytest.raises(Cancelled):
        ScenarioStep().apply(request(), ctx, lambda line: None)


def test_clients_that_fail_without_a_cancel_are_a_failure(tmp_path: Path) -> None:
    ctx = Context(tmp_path, ClientsKilledByCtrlC())  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        ScenarioStep().apply(request(), ctx, lambda line: None)
