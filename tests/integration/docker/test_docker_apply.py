"""The Docker runtime against a real engine, as a user drives it.

One spec (specs/examples/docker.yaml: the packaged MiniLM, 2 replicas with 2 instances
each, pushed to a local registry) goes through its whole life: apply, real embeddings from
every container, a no-change plan and a no-change apply that touches nothing, a container
removed by hand and seen as drift, a re-apply that replaces only it, status, logs and exec,
a benchmark sent from client containers on the servers' network, and a destroy that leaves
nothing behind.
The tests run in order and share the deployment.
"""

from __future__ import annotations

import calendar
import json
import re
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.docker.conftest import (
    BASE_IMAGE,
    REGISTRY,
    REPO,
    dangling,
    docker,
    doinfer,
    events,
    ours,
    remove_everything_of,
    requires_engine,
)
from tests.minilm import reference_embedding

pytestmark = [pytest.mark.integration, requires_engine]

NAME = "dockertest"
TEXT = "Inference servers packed densely onto few machines cost less."
EXAMPLE = REPO / "specs" / "examples" / "docker.yaml"


def not_health_checks(found: list[dict]) -> list[dict]:
    """Events less the engine's runs of the image's HEALTHCHECK (not doinfer's doing): an
    exec whose command asks /v2/health/ready, a health status, and an exec's end unless its
    exec was created in the window by something else."""

    def exec_id(event: dict) -> str:
        return event.get("Actor", {}).get("Attributes", {}).get("execID", "")

    def health(event: dict) -> bool:
        return event.get("Action", "").startswith("health_status") or (
            "/v2/health/ready" in event.get("Action", "")
        )

    others = {exec_id(e) for e in found if e.get("Action", "").startswith("exec_create")}
    others -= {exec_id(e) for e in found if health(e)}
    return [
        e
        for e in found
        if not health(e) and (e.get("Action") != "exec_die" or exec_id(e) in others)
    ]


def free_port_pair() -> int:
    """A port P with P and P + 1 free (the example publishes its 2 replicas on fixed ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise AssertionError("no two consecutive free ports")


def overlay(port: int) -> str:
    """specs/examples/docker.yaml, with this machine's base image and registry, free ports
    and a short benchmark: the example itself is what runs."""
    return f"""\
extends: {EXAMPLE}
name: {NAME}
servers:
  - {{name: minilm, port: {port}, threads: 1}}
runtime:
  registry: {REGISTRY}/doinfer-tests/
  base_images: {{cpu: "{BASE_IMAGE}"}}
scenarios:
  - {{name: load, duration_s: 3, warmup_s: 0, clients: 2, concurrency: 2, slo: {{p99_ms: 10000}}}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(state dir, spec path); whatever happens, nothing of the spec is left running."""
    directory = tmp_path_factory.mktemp("docker")
    spec = directory / "spec.yaml"
    spec.write_text(overlay(free_port_pair()))
    dangling_before = dangling()
    yield directory / "state", str(spec)
    doinfer(directory / "state", "destroy", str(spec), "--yes", check=False)
    remove_everything_of(NAME)
    assert dangling() <= dangling_before


@pytest.fixture(scope="module")
def reference() -> list[float]:
    """The untraced model's sentence embedding of TEXT."""
    return reference_embedding(TEXT)


def status(env: tuple[Path, str]) -> list[dict]:
    out = doinfer(env[0], "status", env[1], "--format", "json").stdout
    return json.loads(out)["replicas"]


def container_ids() -> dict[str, str]:
    out = docker(
        "ps", "-a", "--filter", f"label=io.doinfer.spec={NAME}", "--format", "{{.Names}} {{.ID}}"
    )
    return dict(line.split() for line in out.splitlines())


def embedding(url: str, instance: str) -> list[float]:
    query = urllib.parse.urlencode({"seq_0": TEXT})
    with urllib.request.urlopen(f"{url}/predictions/{instance}?{query}", timeout=30) as response:
        return json.loads(response.read())["embedding"]


def test_apply_builds_pushes_and_serves_real_embeddings(env, reference) -> None:
    result = doinfer(env[0], "apply", env[1], "--yes")
    assert "Plan: 7 to create" in result.stdout
    assert "image_id: (known after apply)" in result.stdout
    assert "digest: (known after apply)" in result.stdout
    assert "Apply complete" in result.stdout
    network = f"doinfer-{NAME}-default"
    assert f"2 load client(s) ran as containers on the network {network}" in result.stdout

    replicas = status(env)
    assert [(r["replica"], r["state"]) for r in replicas] == [(0, "running"), (1, "running")]
    assert len(container_ids()) == 2
    ports = [int(r["url"].rsplit(":", 1)[1]) for r in replicas]
    assert ports[1] == ports[0] + 1  # servers[].port, one per replica, on loopback only
    for replica in replicas:
        assert replica["url"].startswith("http://127.0.0.1:")
        for instance in ("minilm-0", "minilm-1"):
            vector = embedding(replica["url"], instance)
            assert len(vector) == 384
            assert max(abs(a - b) for a, b in zip(vector, reference, strict=True)) < 1e-5


def test_containers_run_the_image_pushed_to_the_registry(env) -> None:
    state = json.loads((env[0] / "state" / NAME / "default.json").read_text())
    pushed = state["steps"]["push/minilm"]["outputs"]
    repository, tag = pushed["reference"].rsplit(":", 1)
    assert repository == f"{REGISTRY}/doinfer-tests/doinfer-{NAME}-minilm"
    path = repository.split("/", 1)[1]
    with urllib.request.urlopen(f"http://{REGISTRY}/v2/{path}/tags/list", timeout=10) as r:
        assert tag in json.loads(r.read())["tags"]
    for name in container_ids():
        assert docker("inspect", "--format", "{{.Config.Image}}", name) == pushed["reference"]
        labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", name))
        assert labels["io.doinfer.step"] == "deploy/minilm"
        assert labels["io.doinfer.environment"] == "default"
        assert len(labels["io.doinfer.fingerprint"]) == 16


def test_the_server_image_runs_as_a_user_with_labels_and_a_health_check(env) -> None:
    """Not root; OCI and Kubernetes labels; Docker's health check asks /v2/health/ready."""
    state = json.loads((env[0] / "state" / NAME / "default.json").read_text())
    image = json.loads(
        docker("image", "inspect", state["steps"]["pack/minilm"]["outputs"]["image"])
    )
    config = image[0]["Config"]
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"]
    created = labels["org.opencontainers.image.created"]
    assert abs(time.time() - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))) < 3600
    assert labels["app.kubernetes.io/managed-by"] == "doinfer"
    assert labels["app.kubernetes.io/name"] == "minilm"
    assert labels["app.kubernetes.io/part-of"] == NAME
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    name = f"doinfer-{NAME}-default-minilm-0"
    assert docker("exec", name, "id", "-u") == "10001"
    deadline = time.monotonic() + 180  # the first check runs after the start period
    health = ""
    while health != "healthy" and time.monotonic() < deadline:
        health = docker("inspect", "--format", "{{.State.Health.Status}}", name)
        time.sleep(1)
    assert health == "healthy"


def test_nothing_changed_plans_no_change_and_applies_without_touching_the_engine(env) -> None:
    plan = doinfer(env[0], "plan", env[1], "--detailed-exitcode")
    assert plan.returncode == 0 and "No changes." in plan.stdout
    before = container_ids()
    since = time.time()
    second = doinfer(env[0], "apply", env[1], "--yes")
    until = time.time() + 0.5
    time.sleep(1)
    assert "No changes." in second.stdout and "Apply complete" not in second.stdout
    # no build, no container touched, nothing at all (but the engine's own health checks)
    assert not_health_checks(events(since, until)) == []
    assert container_ids() == before


def test_a_container_removed_by_hand_is_drift_and_reapply_replaces_only_it(env) -> None:
    before = container_ids()
    docker("rm", "-f", f"doinfer-{NAME}-default-minilm-1")
    plan = doinfer(env[0], "plan", env[1], "--detailed-exitcode", check=False)
    assert plan.returncode == 2
    assert "~ deploy/minilm" in plan.stdout and "drift: replica 1 is gone" in plan.stdout
    assert "image/cpu" not in plan.stdout and "pack/minilm" not in plan.stdout

    result = doinfer(env[0], "apply", env[1], "--yes")
    assert "Apply complete" in result.stdout
    after = container_ids()
    name0, name1 = (f"doinfer-{NAME}-default-minilm-{i}" for i in (0, 1))
    assert after[name0] == before[name0]  # kept
    assert name1 in after and after[name1] != before[name1]  # replaced
    assert doinfer(env[0], "plan", env[1], "--detailed-exitcode").returncode == 0


def test_status_logs_and_exec_reach_the_containers(env) -> None:
    replicas = status(env)
    assert [r["detail"] for r in replicas] == [
        f"container doinfer-{NAME}-default-minilm-{i}" for i in (0, 1)
    ]
    logs = doinfer(env[0], "logs", env[1], "minilm", "--replica", "1").stdout
    assert "server minilm: 2 model instance(s) loaded" in logs
    out = doinfer(env[0], "exec", env[1], "minilm", "--", "python", "-c", "import torch; print(1)")
    assert out.stdout.strip() == "1"
    failed = doinfer(env[0], "exec", env[1], "minilm", "--replica", "1", "--", "false", check=False)
    assert failed.returncode == 1


def test_bench_runs_its_clients_as_containers_and_merges_them(env, tmp_path: Path) -> None:
    since = time.time()
    result = doinfer(env[0], "bench", env[1], "load", "--json", str(tmp_path / "load.json"))
    until = time.time() + 0.5
    time.sleep(1)
    (load,) = json.loads((tmp_path / "load.json").read_text())["scenarios"]
    assert load["summary"]["requests"] > 10 and load["summary"]["errors"] == 0
    network = f"doinfer-{NAME}-default"
    assert f"2 load client(s) ran as containers on the network {network}" in load["notes"]
    assert len(load["clients"]) == 2
    targets = {s[0] for s in load["samples"]}  # every replica and instance was reached
    assert targets == {f"minilm/{r}/minilm-{i}" for r in (0, 1) for i in (0, 1)}
    started = events(since, until, "label=io.doinfer.role=load-client", "event=start")
    assert len(started) == 2
    assert "load" in result.stdout
    assert ours("container", NAME) and len(container_ids()) == 2  # clients removed themselves


def test_bench_sends_v2_posts_from_a_corpus_file(env, tmp_path: Path) -> None:
    """A v2 scenario with a corpus file (next to the overlay that names it), from client
    containers: every request a POST the real servers answer."""
    (tmp_path / "corpus.txt").write_text("".join(f"text {i} {'word ' * i}\n" for i in range(12)))
    overlay = tmp_path / "v2.yaml"
    overlay.write_text(
        f"extends: {env[1]}\nscenarios:\n  - {{name: v2, kind: benchmark, protocol: v2, "
        f"corpus: corpus.txt, clients: 1, concurrency: 2, warmup_s: 0, duration_s: 2}}\n"
    )
    doinfer(env[0], "bench", str(overlay), "v2", "--json", str(tmp_path / "v2.json"))
    (v2,) = json.loads((tmp_path / "v2.json").read_text())["scenarios"]
    assert v2["summary"]["requests"] > 5 and v2["summary"]["errors"] == 0
    assert v2["settings"]["protocol"] == "v2"
    assert v2["settings"]["texts"].startswith("12 texts, sha256 ")


def test_destroy_leaves_no_container_network_or_image_of_its_own(env) -> None:
    dangling_before = dangling()
    result = doinfer(env[0], "destroy", env[1], "--yes")
    assert "Apply complete" in result.stdout
    assert ours("container", NAME) == []
    assert ours("network", NAME) == []
    assert ours("image", NAME) == []  # server images; the shared base image stays
    assert docker("network", "ls", "-q", "--filter", f"name=doinfer-{NAME}") == ""
    assert dangling() <= dangling_before
    assert "kept base image doinfer-base:cpu-" in result.stderr
