"""The typed values steps and runtimes exchange keep the JSON form states were recorded
in before they existed: an old state loads, and writes back byte for byte the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    ImageResult,
    PackResult,
    PushResult,
    ReplicaRecord,
)
from engine.steps.deploy import deploy_input

# outputs as the code before these types recorded them (local and docker)
LOCAL_DEPLOY = {
    "bundle": "/s/bundles/demo/default/web/0123456789abcdef",
    "replicas": [
        {"index": 0, "pid": 41, "port": 8000, "url": "http://127.0.0.1:8000", "key": "k0"},
        {"index": 1, "pid": 42, "port": 8001, "url": "http://127.0.0.1:8001", "key": "k1"},
    ],
    "models": [{"name": "tiny", "task": "feature-extraction", "instances": 2}],
}
DOCKER_DEPLOY = {
    "spec": "demo",
    "environment": "default",
    "image": "localhost:5000/doinfer-demo-web:default-0123",
    "image_id": "sha256:abc",
    "network": "doinfer-demo-default",
    "replicas": [
        {
            "index": 0,
            "container": "doinfer-demo-default-web-0",
            "id": "c0ffee",
            "url": "http://127.0.0.1:32768",
            "internal_url": "http://web-0:8080",
            "key": "k0",
        }
    ],
    "models": [{"name": "tiny", "task": "feature-extraction", "instances": 1}],
}
RECORDED: list[tuple[type[Any], dict[str, Any]]] = [
    (ImageResult, {"image": "doinfer-base:cpu-01", "image_id": "sha256:1", "python": "3.11"}),
    (ImageResult, {"image": "doinfer-base:cpu-01", "image_id": "sha256:1"}),
    (PackResult, {"bundle": "/s/bundles/demo/default/web/0123"}),
    (PackResult, {"image": "doinfer-demo-web:default-0123", "image_id": "sha256:2"}),
    (
        PushResult,
        {
            "reference": "r.io/doinfer-demo-web:x",
            "digest": "r.io/d@sha256:3",
            "image_id": "sha256:2",
        },
    ),
    (DeployResult, LOCAL_DEPLOY),
    (DeployResult, DOCKER_DEPLOY),
    (DeployResult, {**LOCAL_DEPLOY, "threads": 2}),
]


@pytest.mark.parametrize(("kind", "recorded"), RECORDED)
def test_a_recorded_output_loads_and_writes_back_the_same(
    kind: type[Any], recorded: dict[str, Any]
) -> None:
    value = kind.from_json(json.loads(json.dumps(recorded)))
    assert value.to_json() == recorded
    assert kind.from_json(value.to_json()) == value  # frozen values compare by content


def test_the_common_fields_of_a_deploy_are_typed() -> None:
    deployed = DeployResult.from_json(DOCKER_DEPLOY)
    (replica,) = deployed.replicas
    assert replica == ReplicaRecord(
        0,
        "http://127.0.0.1:32768",
        "k0",
        {"container": "doinfer-demo-default-web-0", "id": "c0ffee"},
        "http://web-0:8080",
    )
    # a peer (a fleet's router container) reaches it by its name on the network; a local
    # replica, whose record has no internal URL, at its own URL
    assert replica.peer_url == "http://web-0:8080"
    local = DeployResult.from_json(LOCAL_DEPLOY).replicas[0]
    assert local.internal_url is None and local.peer_url == "http://127.0.0.1:8000"
    assert [(m.name, m.instances) for m in deployed.models] == [("tiny", 1)]
    assert deployed.threads is None  # recorded before threads were resolved at apply


def test_a_deploy_runs_the_pushed_image_when_there_is_one() -> None:
    pack = {"image": "doinfer-demo-web:default-0123", "image_id": "sha256:2"}
    push = {"reference": "r.io/doinfer-demo-web:x", "digest": "d", "image_id": "sha256:2"}
    pushed = deploy_input({"pack/web": pack, "push/web": push})
    assert pushed == DeployInput(PackResult.from_json(pack), PushResult.from_json(push))
    assert pushed.image == "r.io/doinfer-demo-web:x"
    assert deploy_input({"pack/web": pack}).image == "doinfer-demo-web:default-0123"
    assert deploy_input({"pack/web": {"bundle": "/b"}}).image is None
