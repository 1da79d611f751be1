"""A fleet on Docker answers every model through its router's one address.

Three tiny models packed onto a test node type: one model's demand needs two devices, so
two server containers hold its copies, and one model is pinned to one copy. The router (a
container of a device's image on the spec's network, its table mounted read-only)
reaches the servers by their names there. With one server stopped, the model it shares
is answered from its other copy, and a model whose only copy it held is a 503 that says
so.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.docker.conftest import (
    BASE_IMAGE,
    docker,
    doinfer,
    remove_everything_of,
    requires_engine,
)
from tests.integration.test_fleet_local import fleet_spec
from tests.tiny_models import build_tiny_model

pytestmark = [pytest.mark.integration, requires_engine]

NAME = "dockerfleet"
MODELS = ["m0", "m1", "m2"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(state dir, spec path); whatever happens, nothing of the spec is left running."""
    build_tiny_model(tmp_path / "models" / "tiny", "feature-extraction")
    runtime = f'{{kind: docker, base_images: {{cpu: "{BASE_IMAGE}"}}}}'
    path = fleet_spec(tmp_path, MODELS, NAME, runtime)
    # one copy of m2, pinned: a model only one server holds
    path.write_text(path.read_text().replace("{model: m2, rate: 1}", "{model: m2, instances: 1}"))
    spec = str(path)
    yield tmp_path / "state", spec
    doinfer(tmp_path / "state", "destroy", spec, "--yes", check=False)
    remove_everything_of(NAME)


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def infer(url: str, model: str) -> tuple[int, dict]:
    inputs = [{"name": "seq_0", "shape": [1], "datatype": "BYTES", "data": ["a model"]}]
    return call(f"{url}/v2/models/{model}/infer", {"inputs": inputs})


def test_a_docker_fleet_answers_every_model_through_its_router(
    env: tuple[Path, str], tmp_path: Path
) -> None:
    state, spec = env
    plan = json.loads(doinfer(state, "plan", spec, "--format", "json").stdout)
    nodes = plan["packing"]["fleet"]["nodes"]
    holders = {  # model -> the device servers holding a copy
        m: [
            f"fleet-{n['name']}-{i}"
            for n in nodes
            for i, d in enumerate(n["devices"])
            if any(c["model"] == m for c in d["copies"])
        ]
        for m in MODELS
    }
    assert len(holders["m0"]) == 2 and len(holders["m2"]) == 1, holders

    applied = doinfer(state, "apply", spec, "--yes")
    assert "Apply complete" in applied.stdout
    replicas = json.loads(doinfer(state, "status", spec, "--format", "json").stdout)["replicas"]
    assert {r["server"] for r in replicas} == {"fleet", *holders["m0"], *holders["m1"]}
    router = next(r for r in replicas if r["server"] == "fleet")
    url = router["url"]
    assert url.startswith("http://127.0.0.1:")

    assert call(f"{url}/v2/models") == (200, {"models": MODELS})
    for name in MODELS:
        status, answer = infer(url, name)
        assert status == 200 and answer["model_name"] == f"{name}-0", answer
        status, answer = call(f"{url}/predictions/{name}-0?seq_0=a+model")
        assert status == 200 and len(answer["embedding"]) == 32

    # doinfer bench sends to the one address: one request per model, all answered
    report = tmp_path / "bench.json"
    doinfer(state, "bench", spec, "smoke", "--json", str(report))
    (smoke,) = json.loads(report.read_text())["scenarios"]
    assert smoke["targets"] == 3 and set(smoke["by_replica"]) == {"fleet/0"}
    assert (smoke["summary"]["requests"], smoke["summary"]["errors"]) == (3, 0)

    # nothing changed: the router (and every container) is kept
    ids = docker("ps", "-q", "--filter", f"label=io.doinfer.spec={NAME}").split()
    assert "No changes." in doinfer(state, "apply", spec, "--yes").stdout
    assert docker("ps", "-q", "--filter", f"label=io.doinfer.spec={NAME}").split() == ids

    # one server of m0 stopped: its other copy answers; the models only it held are a 503
    (victim,) = holders["m2"]
    assert victim in holders["m0"], holders
    alone = [m for m, h in holders.items() if h == [victim]]  # m2, and m1 if it is there only
    docker("stop", "--time", "1", f"doinfer-{NAME}-default-{victim}-0")
    for _ in range(6):  # whichever copy the router draws first
        status, answer = infer(url, "m0")
        assert status == 200 and answer["model_name"] == "m0-0", answer
    for name in alone:
        status, answer = infer(url, name)
        assert status == 503, answer
        assert answer["error"] == f"no copy of {name} answered: every server holding it is down"
        assert answer["tried"] == [f"http://{victim}-0:8080: ConnectError"]
