"""The kubernetes runtime end to end through the CLI, against the test API server.

What is real: the CLI, the plan and the executor, the trace of a tiny model, the runtime's
Kubernetes half (kr8s, server-side apply, rollout waits, drift, destroy by labels, the
load-client Job) and the load clients themselves (`python -m engine.bench.worker`, started
from the Job's own container command). Stand-ins, since no cluster and no multi-minute
image build fit here: the test API server in tests/kube/ (REST semantics written from the
Kubernetes API documentation, a simulated controller; pods do not run), the runtime's
Docker half (prebuilt.py: image names without builds), and the servers behind the
Services (tests/stall_server.py, a real HTTP server the Job's clients are pointed at, as
cluster DNS would point them at the pods).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from engine.cli import main
from engine.runtimes import RUNTIMES
from engine.state import StateStore
from tests.integration.bench.conftest import stall_server
from tests.kube.handle import KubeApi
from tests.tiny_models import build_tiny_model

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MERGE = {"Content-Type": "application/merge-patch+json"}
SPEC = """\
apiVersion: doinfer/v1
name: {name}
models:
  - name: tiny
    source: path:{model}
    task: feature-extraction
    trace: {{sequence_length: 16}}
servers:
  - name: web
    processor: cpu
    models: [{{model: tiny, instances: 1}}]
    replicas: {replicas}
    resources: {{cpu: 2, memory: 1Gi}}
runtime:
  kind: kubernetes
  context: {context}
  registry: registry.test/ml/
  namespace: {namespace}
  rollout_timeout_s: {rollout_timeout_s}
scenarios:
  - {{name: smoke, kind: sequential}}
  - {{name: load, kind: benchmark, clients: 2, rate: 20, duration_s: 1}}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One state directory (so the tiny model is traced once) and the model."""
    root = tmp_path_factory.mktemp("kubernetes")
    return root / "state", build_tiny_model(root / "tiny", "feature-extraction")


class Env:
    """One test's spec on the test API server, and the CLI to drive it."""

    def __init__(self, kube: KubeApi, state_dir: Path, model: Path, name: str, spec: Path):
        self.kube = kube
        self.state_dir = state_dir
        self.model = model
        self.name = name
        self.spec = spec
        self.namespace = kube.namespace(name)
        self.object = f"{name}-web"
        self.write()

    def write(self, replicas: int = 2, rollout_timeout_s: float = 30) -> None:
        self.spec.write_text(
            SPEC.format(
                name=self.name,
                model=self.model,
                replicas=replicas,
                context=self.kube.context,
                namespace=self.namespace,
                rollout_timeout_s=rollout_timeout_s,
            )
        )

    def doinfer(self, capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
        """Run the CLI in this process (where the stand-in runtime is registered)."""
        code = main([args[0], str(self.spec), *args[1:]])  # state: $DOINFER_STATE_DIR
        out = capfd.readouterr()
        return code, out.out + out.err

    def state(self) -> dict[str, Any]:
        return StateStore(self.state_dir, self.name, "default").load().steps

    def call(
        self, method: str, url: str, body: Any = None, version: str = "", **kwargs: Any
    ) -> tuple[int, Any]:
        """A request to the API server as another client would make it (kubectl)."""

        async def request() -> tuple[int, Any]:
            api = await kr8s.asyncio.api(kubeconfig=str(self.kube.kubeconfig))
            api_version = version or ("v1" if url.startswith(("services", "pods")) else "apps/v1")
            if body is not None:
                kwargs["content"] = json.dumps(body)
            async with api.call_api(
                method,
                version=api_version,
                namespace=self.namespace,
                url=url,
                raise_for_status=False,
                **kwargs,
            ) as response:
                return response.status_code, response.json()

        return asyncio.run(request())

    def get(self, kind: str) -> dict[str, Any] | None:
        status, body = self.call("GET", f"{kind}/{self.object}")
        return body if status == 200 else None


@pytest.fixture
def env(
    kube_api: KubeApi,
    shared: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Env]:
    if not kube_api.simulated_cluster:
        pytest.skip("the server images are stand-ins that a real cluster cannot pull")
    monkeypatch.setitem(
        RUNTIMES, "kubernetes", "tests.integration.kubernetes.prebuilt:PrebuiltImagesRuntime"
    )
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig))  # honoured, as kubectl does
    monkeypatch.setenv("DOINFER_STATE_DIR", str(shared[0]))
    # the test server's pods start at once (their worker's imports take a second or two):
    # no need to wait as long as for real pods to be scheduled and pull an image
    monkeypatch.setattr("engine.runtimes.kubernetes.CLIENT_SYNC_S", 6.0)
    name = request.node.name.removeprefix("test_kubernetes_")[:20].strip("_").replace("_", "-")
    with stall_server(service_ms=2) as (_, port):
        kube_api.set_job_runner(run_clients_against(f"http://127.0.0.1:{port}"))
        yield Env(kube_api, shared[0], shared[1], name, tmp_path / "spec.yaml")


def run_clients_against(url: str) -> Any:
    """A Job pod's run: its container's own command, with the servers' cluster DNS names
    pointed at `url` (a stand-in for the pods behind the Services)."""

    def run(job: dict[str, Any], index: int, env: dict[str, str]) -> tuple[int, str]:
        container = job["spec"]["template"]["spec"]["containers"][0]
        command = [sys.executable if c == "python" else c for c in container["command"]]
        plans = json.loads(env["DOINFER_CLIENT_PLANS"])
        for plan in plans:
            for target in plan["targets"]:
                assert ".svc:" in target["url"], target["url"]  # a Service's DNS name
                target["url"] = url
        environment = {**os.environ, **env, "DOINFER_CLIENT_PLANS": json.dumps(plans)}
        environment["PYTHONPATH"] = str(REPO)
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
        return done.returncode, done.stderr + done.stdout  # one log, as kubelet keeps it

    return run


def test_kubernetes_apply_replan_drift_restore_hand_edits_and_destroy(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 0, out
    deployment = env.get("deployments")
    assert deployment is not None
    assert deployment["status"]["availableReplicas"] == 2
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(f"registry.test/ml/doinfer-{env.name}-web@sha256:")
    assert env.get("services") is not None
    assert "scenario/smoke: create done" in out and "scenario/load: create done" in out

    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out

    # hand edits doinfer does not own: an annotation and a label by other managers
    for url, patch, manager in (
        (
            f"deployments/{env.object}",
            {"metadata": {"annotations": {"owner": "alice"}}},
            "kubectl-annotate",
        ),
        (f"services/{env.object}", {"metadata": {"labels": {"team": "search"}}}, "kubectl-label"),
    ):
        status, _ = env.call("PATCH", url, patch, headers=MERGE, params={"fieldManager": manager})
        assert status == 200
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 0, out  # what others own is no drift

    # scaling is an update doinfer applies server-side: the hand edits survive it
    env.write(replicas=3)
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 0, out
    deployment = env.get("deployments")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["annotations"]["owner"] == "alice"
    service = env.get("services")
    assert service is not None and service["metadata"]["labels"]["team"] == "search"

    # a Deployment deleted by hand is drift, and apply restores it
    assert env.call("DELETE", f"deployments/{env.object}")[0] == 200
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 2, out
    assert f"drift: Deployment {env.namespace}/{env.object} is gone" in out
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 0, out
    restored = env.get("deployments")
    assert restored is not None and restored["status"]["availableReplicas"] == 3
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 0, out

    # status and logs reach the pods
    code, out = env.doinfer(capfd, "status", "--format", "json")
    replicas = json.loads(out)["replicas"]
    assert [r["state"] for r in replicas] == ["running"] * 3
    assert all(r["url"] == f"http://{env.object}.{env.namespace}.svc:8080" for r in replicas)

    # destroy deletes doinfer's objects and nothing else
    bystander = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bystander", "namespace": env.namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "bystander"}},
            "template": {
                "metadata": {"labels": {"app": "bystander"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    assert env.call("POST", "deployments", bystander)[0] == 201
    code, out = env.doinfer(capfd, "destroy", "--yes")
    assert code == 0, out
    assert env.get("deployments") is None and env.get("services") is None
    assert env.call("GET", "deployments/bystander")[0] == 200
    assert env.state() == {}


def test_kubernetes_a_server_removed_from_the_spec_is_deleted(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    one_server = env.spec.read_text()
    env.spec.write_text(
        one_server.replace(
            "runtime:\n",
            "  - name: api\n    processor: cpu\n    models: [{model: tiny}]\nruntime:\n",
        )
    )
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    api = f"{env.name}-api"
    assert env.call("GET", f"deployments/{api}")[0] == 200
    env.spec.write_text(one_server)
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 2 and "deploy/api" in out and "no longer in the spec" in out, out
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    assert env.call("GET", f"deployments/{api}")[0] == 404
    assert env.call("GET", f"services/{api}")[0] == 404
    assert env.get("deployments") is not None  # the server still in the spec stays


def test_kubernetes_a_deployment_not_available_is_drift(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    # a pod dies and its replacement crashes: the Deployment no longer serves all replicas
    env.kube.fail_rollout(env.object, "CrashLoopBackOff", log="out of memory\n")
    status, pods = env.call("GET", "pods", version="v1")
    assert status == 200
    assert (
        env.call("DELETE", f"pods/{pods['items'][0]['metadata']['name']}", version="v1")[0] == 200
    )
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 2, out
    assert f"drift: Deployment {env.namespace}/{env.object}: 1 of 2 replica(s) available" in out


def test_kubernetes_conflict_without_and_with_force(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    status, _ = env.call(
        "PATCH",
        f"deployments/{env.object}",
        {"spec": {"replicas": 5}},
        headers=MERGE,
        params={"fieldManager": "kubectl-scale"},
    )
    assert status == 200
    env.write(replicas=3)
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 1
    assert ".spec.replicas (owned by kubectl-scale)" in out
    assert "--force-conflicts" in out
    assert env.state()["deploy/web"]["inputs"]["replicas"] == 2  # nothing recorded
    deployment = env.get("deployments")
    assert deployment is not None and deployment["spec"]["replicas"] == 5

    code, out = env.doinfer(capfd, "apply", "--yes", "--force-conflicts")
    assert code == 0, out
    deployment = env.get("deployments")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    assert env.state()["deploy/web"]["inputs"]["replicas"] == 3


@pytest.mark.parametrize(
    ("reason", "log", "expected"),
    [
        ("ImagePullBackOff", "", "ImagePullBackOff"),
        ("CrashLoopBackOff", "loading\nBundleError: no server.json in /bundle\n", "BundleError"),
        ("Unschedulable", "", "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu"),
    ],
)
def test_kubernetes_failed_rollout_says_why(
    env: Env, capfd: pytest.CaptureFixture[str], reason: str, log: str, expected: str
) -> None:
    env.write(rollout_timeout_s=3)  # Unschedulable waits for a node until the timeout
    env.kube.fail_rollout(env.object, reason, log=log)
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 1
    assert f"the rollout of Deployment {env.namespace}/{env.object} failed" in out
    assert expected in out, out
    if reason == "ImagePullBackOff":
        assert f"registry.test/ml/doinfer-{env.name}-web@sha256:" in out
    assert "deploy/web" not in env.state()


def test_kubernetes_bench_runs_clients_as_a_job_and_merges_them(
    env: Env, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    code, out = env.doinfer(capfd, "bench", "load", "--json", str(tmp_path / "run.json"))
    assert code == 0, out
    (result,) = json.loads((tmp_path / "run.json").read_text())["scenarios"]
    assert result["name"] == "load"
    assert any("2 load client(s) ran as pods of Job" in n for n in result["notes"]), result
    assert len(result["clients"]) == 2  # both pods' results, merged
    assert not any(" late; its samples" in n for n in result["notes"]), result["notes"]
    summary = result["summary"]
    assert summary["requests"] >= 30 and summary["errors"] == 0  # 2 clients x 20/s x 1 s
    status, jobs = env.call("GET", "jobs", version="batch/v1")
    assert status == 200 and jobs["items"] == []  # the Job is deleted after the run


def test_kubernetes_logs_and_exec_reach_a_pod(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    env.kube.set_pod_log(
        lambda pod: f"server {pod['metadata']['name']}: 1 model instance(s) loaded\n"
    )
    ran: list[tuple[str, str, list[str]]] = []

    def exec_runner(
        pod: dict[str, Any], container: str, command: list[str]
    ) -> tuple[int, str, str]:
        ran.append((pod["metadata"]["name"], container, command))
        return 3, "2.13.0\n", "a warning\n"

    env.kube.set_exec_runner(exec_runner)
    env.write(replicas=1)
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    code, out = env.doinfer(capfd, "logs", "web", "--tail", "5")
    assert code == 0
    assert f"server {env.object}-" in out and "1 model instance(s) loaded" in out
    code, out = env.doinfer(capfd, "exec", "web", "--", "python", "-c", "print(1)")
    assert code == 3  # the command's own exit code
    assert "2.13.0" in out and "a warning" in out
    ((pod, container, command),) = ran
    assert pod.startswith(f"{env.object}-") and container == "server"
    assert command == ["python", "-c", "print(1)"]
    code, out = env.doinfer(capfd, "logs", "web", "--replica", "4")
    assert code == 1 and "no log for replica 4 of web" in out


def test_kubernetes_rbac_refusal_and_unreachable_cluster_change_nothing(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    env.kube.forbid("patch", "deployments", env.namespace)
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 1
    assert f"RBAC does not allow doinfer to apply Deployment {env.namespace}/{env.object}" in out
    assert 'cannot patch resource "deployments"' in out
    assert "deploy/web" not in env.state()

    env.kube.server.cluster.forbidden.clear()
    env.kube.exceed_quota("services", env.namespace)
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 1
    assert f"a ResourceQuota refused to apply Service {env.namespace}/{env.object}" in out
    assert "exceeded quota: compute-resources" in out
    assert "deploy/web" not in env.state()

    serial = StateStore(env.state_dir, env.name, "default").load().serial
    code, out = env.doinfer(capfd, "apply", "--yes", "--context", env.kube.unreachable_context)
    assert code == 1
    assert (
        f"cannot reach the Kubernetes API server of context {env.kube.unreachable_context}" in out
    )
    assert StateStore(env.state_dir, env.name, "default").load().serial == serial


def test_kubernetes_namespace_doinfer_may_not_create(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    env.kube.forbid("create", "namespaces")
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 1
    assert f"namespace {env.namespace} does not exist and doinfer may not create it" in out
    assert f"kubectl create namespace {env.namespace}" in out
    assert "deploy/web" not in env.state()


def test_kubernetes_spec_names_too_long_are_a_validation_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            SPEC.format(
                name="a" * 40,
                model=tmp_path,
                replicas=1,
                context="x",
                namespace="ns",
                rollout_timeout_s=1,
            )
        ).replace("- name: web", "- name: " + "w" * 30)
    )
    result = subprocess.run(
        [sys.executable, "-m", "engine", "validate", str(spec)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert f"{spec}:9:11: error: servers[0].name: the Kubernetes name" in result.stderr
    assert "71 characters; Kubernetes allows 63" in result.stderr


FLEET = """\
apiVersion: doinfer/v1
name: {name}
catalog:
  - {{name: test-cpu, processor: cpu, devices: 1, cores_per_device: 2,
     memory_per_device_gib: 1, price_per_hour: 0.1}}
models:
{models}
servers:
  - name: fleet
    packing: auto
    node_types: [test-cpu]
    models:
      - {{model: m0, rate: 25}}
      - {{model: m1, rate: 1}}
      - {{model: m2, rate: 1}}
runtime:
  kind: kubernetes
  context: {context}
  registry: registry.test/ml/
  namespace: {namespace}
  rollout_timeout_s: 30
scenarios:
  - {{name: smoke, kind: sequential}}
"""


def test_kubernetes_fleet_runs_its_router_on_its_table(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    """A fleet of 3 models: each device a Deployment on a node of its type, the router a
    Deployment and Service named after the fleet running a ConfigMap's table of the
    devices' Services; the scenario goes through the router; a re-apply changes nothing."""
    models = "\n".join(
        f"  - {{name: m{i}, source: 'path:{env.model}', task: feature-extraction,\n"
        f"     trace: {{sequence_length: 16}},\n"
        f"     profiles: {{cpu: {{memory_mib: 100, rate_per_core: 10}}}}}}"
        for i in range(3)
    )
    env.spec.write_text(
        FLEET.format(
            name=env.name, models=models, context=env.kube.context, namespace=env.namespace
        )
    )
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 0, out
    assert "router/fleet: create done" in out and "scenario/smoke: create done" in out
    router = f"{env.name}-fleet"

    def objects() -> dict[tuple[str, str], dict[str, Any]]:
        found = {}
        for kind, version in (("configmaps", "v1"), ("services", "v1"), ("deployments", "")):
            status, listing = env.call(
                "GET",
                kind,
                version=version,
                params={"labelSelector": f"doinfer.dev/spec={env.name}"},
            )
            assert status == 200
            found |= {(kind, o["metadata"]["name"]): o for o in listing["items"]}
        return found

    found = objects()
    devices = {
        name: d
        for (kind, name), d in found.items()
        if kind == "deployments" and name.startswith(f"{router}-")
    }
    assert len(devices) >= 2  # m0's demand needs two devices' cores
    for deployment in devices.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "test-cpu"}
    table = json.loads(found[("configmaps", router)]["data"]["router.json"])
    assert sorted(table["models"]) == ["m0", "m1", "m2"]
    urls = {c["url"] for copies in table["models"].values() for c in copies}
    assert urls == {f"http://{name}.{env.namespace}.svc:8080" for name in devices}
    assert len(table["models"]["m0"]) >= 2
    deployment = found[("deployments", router)]
    assert deployment["status"]["availableReplicas"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "routes", "configMap": {"name": router}}]
    assert (
        pod["containers"][0]["image"]
        == (devices[min(devices)]["spec"]["template"]["spec"]["containers"][0]["image"])
    )
    assert ("services", router) in found
    state = env.state()
    assert state["router/fleet"]["outputs"]["replicas"][0]["url"] == (
        f"http://{router}.{env.namespace}.svc:8080"
    )

    # the same spec again: nothing to do, and not one object written
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out
    code, out = env.doinfer(capfd, "apply", "--yes")
    assert code == 0, out
    versions = {k: o["metadata"]["resourceVersion"] for k, o in found.items()}
    assert {k: o["metadata"]["resourceVersion"] for k, o in objects().items()} == versions

    # the table deleted by hand is drift of the router, which apply restores
    assert env.call("DELETE", f"configmaps/{router}", version="v1")[0] == 200
    code, out = env.doinfer(capfd, "plan", "--detailed-exitcode")
    assert code == 2 and f"ConfigMap {env.namespace}/{router} (the router's table) is gone" in out
    assert env.doinfer(capfd, "apply", "--yes")[0] == 0
    assert ("configmaps", router) in objects()

    code, out = env.doinfer(capfd, "destroy", "--yes")
    assert code == 0, out
    assert objects() == {}
