"""A fleet of 20 models packed onto the local runtime answers every model through its router.

The node type is a test one (a small cpu device), so the packing spreads the models over a
few local server processes; one model's demand needs two copies, and the router still
answers it when the server of one copy is killed.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_local_apply import doinfer, server_pids
from tests.tiny_models import build_tiny_model

pytestmark = pytest.mark.integration

MODELS = [f"m{i:02d}" for i in range(20)]


def fleet_spec(
    directory: Path,
    models: list[str] = MODELS,
    name: str = "fleet-test",
    runtime: str = "{kind: local}",
) -> Path:
    """A fleet of tiny models on a small test node type; the first model's demand needs
    two devices, the others' one copy each (the other runtimes' fleet tests take it too)."""
    lines = [
        "apiVersion: doinfer/v1",
        f"name: {name}",
        "catalog:",
        "  - {name: test-cpu, processor: cpu, devices: 1, cores_per_device: 2,",
        "     memory_per_device_gib: 1, price_per_hour: 0.1}",
        "models:",
    ]
    for model in models:
        lines += [
            f"  - name: {model}",
            "    source: path:models/tiny",
            "    task: feature-extraction",
            "    trace: {sequence_length: 16}",
            "    profiles: {cpu: {memory_mib: 100, rate_per_core: 10}}",
        ]
    lines += [
        "servers:",
        "  - name: fleet",
        "    packing: auto",
        "    node_types: [test-cpu]",
        "    threads: 1",
        "    models:",
        f"      - {{model: {models[0]}, rate: 25}}",  # more than one device's 1.5 cores x 10/s
        *(f"      - {{model: {model}, rate: 1}}" for model in models[1:]),
        f"runtime: {runtime}",
        "scenarios:",
        "  - {name: smoke, kind: sequential}",
    ]
    path = directory / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def infer(url: str, model: str) -> dict:
    body = json.dumps(
        {"inputs": [{"name": "seq_0", "shape": [1], "datatype": "BYTES", "data": ["a model"]}]}
    ).encode()
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/infer", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_fleet_of_twenty_models_answers_every_model_through_its_router(tmp_path: Path) -> None:
    build_tiny_model(tmp_path / "models" / "tiny", "feature-extraction")
    spec = fleet_spec(tmp_path)
    state = tmp_path / "state"
    try:
        plan = json.loads(doinfer(state, "plan", str(spec), "--format", "json").stdout)
        packing = plan["packing"]["fleet"]
        devices = [d for n in packing["nodes"] for d in n["devices"] if d["copies"]]
        assert len(devices) >= 3
        copies = [c["model"] for d in devices for c in d["copies"]]
        assert sorted(set(copies)) == MODELS and copies.count("m00") >= 2

        applied = doinfer(state, "apply", str(spec), "--yes")
        assert "Apply complete" in applied.stdout
        replicas = json.loads(doinfer(state, "status", str(spec), "--format", "json").stdout)
        router = next(r for r in replicas["replicas"] if r["server"] == "fleet")
        url = router["url"]
        assert len(replicas["replicas"]) == len(devices) + 1

        assert get(f"{url}/v2/models") == (200, {"models": MODELS})
        for name in MODELS:
            answer = infer(url, name)
            assert answer["model_name"] == f"{name}-0"
            status, body = get(f"{url}/predictions/{name}-0?seq_0=a+model")
            assert status == 200 and len(body["embedding"]) == 32

        # doinfer bench targets the router: one request per model, all answered
        report = tmp_path / "bench.json"
        doinfer(state, "bench", str(spec), "smoke", "--json", str(report))
        (smoke,) = json.loads(report.read_text())["scenarios"]
        assert smoke["targets"] == 20 and set(smoke["by_replica"]) == {"fleet/0"}
        assert (smoke["summary"]["requests"], smoke["summary"]["errors"]) == (20, 0)
        # one copy of m00 down: the router tries its other copy
        holders = [
            f"fleet-{n['name']}-{i}"
            for n in packing["nodes"]
            for i, d in enumerate(n["devices"])
            if any(c["model"] == "m00" for c in d["copies"])
        ]
        victim = next(r for r in replicas["replicas"] if r["server"] == holders[0])
        os.kill(int(victim["detail"].split()[-1]), signal.SIGKILL)
        for _ in range(6):  # whichever copy the router draws first, it answers
            assert infer(url, "m00")["model_name"] == "m00-0"

    finally:
        doinfer(state, "destroy", str(spec), "--yes", check=False)
    assert server_pids(state) == set()
