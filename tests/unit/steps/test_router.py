"""The router step: its table names each copy where the router reaches it from where it
runs (a replica's peer URL: a container's name on its network, or its own URL), is a
content-addressed bundle any container user can read, and goes to the runtime's
deploy_router with the fleet's deployed devices."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.errors import StepFailed
from engine.graph.step import Action, Step
from engine.runtimes.contracts import DeployResult, ReplicaRecord, ServedModel
from engine.steps.base import ApplyRequest, Context
from engine.steps.router import RouterStep

ROUTES = {
    "a": [
        {"server": "fleet-n0-0", "instance": "a-0", "weight": 3.0},
        {"server": "fleet-n1-0", "instance": "a-0", "weight": 1.0},
    ],
    "b": [{"server": "fleet-n1-0", "instance": "b-0", "weight": 2.0}],
}


class RecordingRuntime:
    """Records what the step asks of a runtime's deploy_router."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Path, list[DeployResult]]] = []

    def deploy_router(
        self,
        inputs: dict[str, Any],
        bundle: Path,
        devices: Sequence[DeployResult],
        log: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        self.calls.append((inputs, bundle, list(devices)))
        return DeployResult((ReplicaRecord(0, "http://127.0.0.1:7000", "k"),), ())


def device(name: str, replicas: int, internal: bool) -> dict[str, Any]:
    """A device's deploy outputs: docker's records carry the name on the network."""
    records = tuple(
        ReplicaRecord(
            i,
            f"http://127.0.0.1:{9000 + i}",
            "k",
            {},
            f"http://{name}-{i}:8080" if internal else None,
        )
        for i in range(replicas)
    )
    return DeployResult(records, (ServedModel("a", "feature-extraction", 1),)).to_json()


def request(upstream: dict[str, dict[str, Any]]) -> ApplyRequest:
    inputs = {"spec": "s", "environment": "default", "server": "fleet", "routes": ROUTES}
    step = Step("router/fleet", "router", inputs, tuple(upstream), "fp", "route fleet")
    return ApplyRequest(step, Action.CREATE, None, upstream)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_table_names_each_replica_at_its_peer_url(tmp_path: Path, strict_umask: None) -> None:
    runtime = RecordingRuntime()
    ctx = Context(tmp_path, runtime)  # type: ignore[arg-type]
    upstream = {
        "deploy/fleet-n0-0": device("fleet-n0-0", 1, internal=True),
        "deploy/fleet-n1-0": device("fleet-n1-0", 2, internal=True),
    }
    RouterStep().apply(request(upstream), ctx, lambda line: None)
    ((inputs, bundle, devices),) = runtime.calls
    assert inputs["routes"] == ROUTES
    table = json.loads((bundle / "router.json").read_text())
    assert table == {
        "models": {
            "a": [
                {"url": "http://fleet-n0-0-0:8080", "instance": "a-0", "weight": 3.0},
                {"url": "http://fleet-n1-0-0:8080", "instance": "a-0", "weight": 1.0},
                {"url": "http://fleet-n1-0-1:8080", "instance": "a-0", "weight": 1.0},
            ],
            "b": [
                {"url": "http://fleet-n1-0-0:8080", "instance": "b-0", "weight": 2.0},
                {"url": "http://fleet-n1-0-1:8080", "instance": "b-0", "weight": 2.0},
            ],
        }
    }
    # the devices in name order (a runtime runs the router from the first one's image)
    assert [d.replicas[0].peer_url for d in devices] == [
        "http://fleet-n0-0-0:8080",
        "http://fleet-n1-0-0:8080",
    ]
    # a container's user (not this one) reads it, whatever the umask
    assert stat.S_IMODE((bundle / "router.json").stat().st_mode) == 0o644

    # the same table, the same bundle: the runtime keeps its replica
    RouterStep().apply(request(upstream), ctx, lambda line: None)
    assert runtime.calls[1][1] == bundle
    # local replicas have no internal URL: the router reaches them at their own
    local = {k: device(k.split("/")[1], 1, internal=False) for k in upstream}
    RouterStep().apply(request(local), ctx, lambda line: None)
    other = runtime.calls[2][1]
    assert other != bundle and other.parent == bundle.parent
    urls = {c["url"] for c in json.loads((other / "router.json").read_text())["models"]["a"]}
    assert urls == {"http://127.0.0.1:9000"}


def test_a_device_not_deployed_fails_the_step(tmp_path: Path) -> None:
    ctx = Context(tmp_path, RecordingRuntime())  # type: ignore[arg-type]
    upstream = {"deploy/fleet-n0-0": device("fleet-n0-0", 1, internal=True)}
    with pytest.raises(StepFailed, match="deploy/fleet-n1-0 has not been applied"):
        RouterStep().apply(request(upstream), ctx, lambda line: None)
