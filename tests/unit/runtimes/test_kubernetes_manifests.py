"""The Kubernetes objects doinfer renders and applies, for cpu, gpu and inf servers.

Every object is checked against the official OpenAPI schemas of Kubernetes 1.33
(`kubernetes-validate`, strict: unknown fields fail), and for what those schemas cannot
say: selectors match pod labels, Services reach the container port, resources and
tolerations follow the processor. Golden files pin the whole output; regenerate them
with `pytest tests/unit/runtimes/test_kubernetes_manifests.py --regen-golden`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from engine.graph.build import build_steps
from engine.runtimes import kubernetes_manifests as k8s
from engine.runtimes.image_names import registry_reference, server_tag
from engine.runtimes.kubernetes import KubernetesRuntime, rendered_router, service_url
from engine.serving.routing import routing_table, table_text
from engine.spec import load_spec
from engine.yaml_out import to_yaml

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).with_name("golden")
SPECS = {
    "cpu": GOLDEN / "eks-cpu.yaml",
    "gpu": REPO / "specs" / "examples" / "eks-gpu.yaml",
    "inf": REPO / "specs" / "examples" / "eks-inf.yaml",
}
PACK_FP = "0123456789abcdef" * 4  # stand-ins: real ones move with every code change
DEPLOY_FP = "fedcba9876543210" * 4


def rendered(processor: str) -> list[dict[str, Any]]:
    spec = load_spec(SPECS[processor])
    workloads = []
    for server in spec.servers:
        tag = server_tag(spec.name, spec.environment, server.name, PACK_FP)
        assert spec.runtime.registry
        workloads.append(
            k8s.workload(
                k8s.deploy_settings(spec, server),
                registry_reference(spec.runtime.registry, tag),
                tag.split(":")[1],
                DEPLOY_FP,
            )
        )
    return k8s.manifests(workloads)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("processor", sorted(SPECS))
def test_every_object_is_valid_for_kubernetes_1_33(processor: str) -> None:
    objects = rendered(processor)
    assert {o["kind"] for o in objects} == {"Namespace", "Deployment", "Service"}
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)


def test_the_validator_would_catch_a_wrong_field() -> None:
    """The schema check above can fail: an unknown field in a container is refused."""
    deployment = by_kind(rendered("cpu"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.33", strict=True)


@pytest.mark.parametrize("processor", sorted(SPECS))
def test_selectors_match_pods_and_services_reach_the_container(processor: str) -> None:
    objects = rendered(processor)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    services = by_kind(objects, "Service")
    assert len(services) == len(deployments) >= 1
    for service in services:
        deployment = deployments[service["metadata"]["name"]]
        template = deployment["spec"]["template"]
        pod_labels = template["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert service["spec"]["selector"].items() <= pod_labels.items()
        # no other server's pods match this Service
        for other in deployments.values():
            if other is not deployment:
                other_labels = other["spec"]["template"]["metadata"]["labels"]
                assert not service["spec"]["selector"].items() <= other_labels.items()
        (container,) = template["spec"]["containers"]
        (port,) = service["spec"]["ports"]
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port["targetPort"] in named
        assert container["args"][:2] == ["--port", str(named[port["targetPort"]])]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] in named
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def containers(processor: str) -> list[dict[str, Any]]:
    return [
        d["spec"]["template"]["spec"]["containers"][0]
        for d in by_kind(rendered(processor), "Deployment")
    ]


def pod_specs(processor: str) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in by_kind(rendered(processor), "Deployment")]


def test_resources_follow_the_processor() -> None:
    cpu = [c["resources"] for c in containers("cpu")]
    assert cpu == [
        {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        {"requests": {"cpu": "4", "memory": "6Gi"}, "limits": {"cpu": "4", "memory": "6Gi"}},
    ]
    (gpu,) = containers("gpu")
    assert gpu["resources"]["limits"] == {"cpu": "3", "memory": "10Gi", "nvidia.com/gpu": 1}
    assert "nvidia.com/gpu" not in gpu["resources"]["requests"]
    (inf,) = containers("inf")
    assert inf["resources"]["limits"] == {"cpu": "5", "memory": "10Gi", "aws.amazon.com/neuron": 1}


def test_threads_are_the_whole_cores_of_the_request() -> None:
    assert [c["args"][2:4] for c in containers("cpu")] == [["--threads", "1"], ["--threads", "4"]]
    assert [k8s.threads_for(q) for q in ("500m", "1", "1.5", "2500m", "16")] == [1, 1, 1, 2, 16]


def test_neuron_cores_instead_of_devices() -> None:
    assert k8s.accelerators("inf", None, None, 6) == {"aws.amazon.com/neuroncore": 6}
    assert k8s.accelerators("inf", None, 2, None) == {"aws.amazon.com/neuron": 2}
    assert k8s.accelerators("gpu", 2, None, None) == {"nvidia.com/gpu": 2}
    assert k8s.accelerators("cpu", None, None, None) == {}


def test_tolerations_and_node_selectors() -> None:
    cpu = pod_specs("cpu")
    assert [p.get("tolerations") for p in cpu] == [None, None]
    # the second server's own node_selector replaces the runtime's
    assert [p["nodeSelector"] for p in cpu] == [
        {"node.kubernetes.io/instance-type": "m7i.xlarge"},
        {"karpenter.k8s.aws/instance-family": "c7i"},
    ]
    (gpu,) = pod_specs("gpu")
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert gpu["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.xlarge"}
    (inf,) = pod_specs("inf")
    assert inf["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]


@pytest.mark.parametrize("processor", sorted(SPECS))
def test_pods_run_unprivileged_and_drain_on_rolling_updates(processor: str) -> None:
    for deployment in by_kind(rendered(processor), "Deployment"):
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        }
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["privileged"] is False
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep"
        # the Service stops routing during the sleep; then the server drains, all within
        # the grace period
        drain = container["args"][container["args"].index("--drain-timeout-s") + 1]
        assert int(sleep[1]) + float(drain) < pod["terminationGracePeriodSeconds"]
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_labels_and_fingerprint() -> None:
    objects = rendered("cpu")
    namespace, deployment, service = objects[0], objects[1], objects[2]
    assert namespace["metadata"]["name"] == "embeddings"
    assert deployment["metadata"]["name"] == "minilm-staging-embed"
    assert deployment["metadata"]["labels"] == {
        "app.kubernetes.io/name": "doinfer-server",
        "app.kubernetes.io/instance": "minilm-staging-embed",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "minilm",
        "app.kubernetes.io/version": "staging-0123456789ab",
        "app.kubernetes.io/managed-by": "doinfer",
        "doinfer.dev/spec": "minilm",
        "doinfer.dev/environment": "staging",
        "doinfer.dev/server": "embed",
    }
    assert service["metadata"]["labels"] == deployment["metadata"]["labels"]
    assert deployment["metadata"]["annotations"] == {"doinfer.dev/fingerprint": DEPLOY_FP}
    # the fingerprint (which moves with replicas) stays off the pod template: scaling
    # must not roll the pods
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == (
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/ml/doinfer-minilm-embed:staging-0123456789ab"
    )


def test_names_kubernetes_cannot_take() -> None:
    assert k8s.name_error("qa", "default", "bert") is None
    assert k8s.object_name("qa", "default", "bert") == "qa-bert"
    assert k8s.object_name("qa", "prod", "bert") == "qa-prod-bert"
    long = k8s.name_error("a" * 30, "production", "b" * 30)
    assert long is not None and "63" in long and "72 characters" in long
    digit = k8s.name_error("7qa", "default", "bert")
    assert digit is not None and "start with a letter" in digit


def assert_golden(text: str, golden: Path, regen: bool) -> None:
    """`text` is the golden file's (written anew with --regen-golden)."""
    if regen:
        golden.write_text(text)
    assert golden.exists(), f"no {golden}: run with --regen-golden to write it"
    assert text == golden.read_text(), (
        f"the rendered objects differ from {golden.name}; if the change is intended, "
        f"regenerate with --regen-golden and review the diff"
    )


@pytest.mark.parametrize("processor", sorted(SPECS))
def test_golden_manifests(processor: str, regen_golden: bool) -> None:
    text = to_yaml(rendered(processor))
    assert_golden(text, GOLDEN / f"{processor}.yaml", regen_golden)
    assert list(yaml.safe_load_all(text)) == rendered(processor)


def test_the_load_client_job_is_valid_indexed_and_spread() -> None:
    job = k8s.load_job(
        "qa-bench-load-1a2b3c",
        "ml",
        "qa",
        "default",
        "ecr/doinfer-qa-bert@sha256:" + "0" * 64,
        '[{"client": 0}, {"client": 1}, {"client": 2}]',
        3,
        {"node.kubernetes.io/instance-type": "c7i.2xlarge"},
        130.5,
    )
    kubernetes_validate.validate(job, "1.33", strict=True)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 131
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "c7i.2xlarge"}
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (container,) = pod["containers"]
    assert container["command"][-2:] == ["--plans-env", "DOINFER_CLIENT_PLANS"]
    assert container["env"] == [
        {"name": "DOINFER_CLIENT_PLANS", "value": '[{"client": 0}, {"client": 1}, {"client": 2}]'}
    ]
    assert job["metadata"]["labels"]["doinfer.dev/spec"] == "qa"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_spec_s_server_limits_reach_the_server_and_a_long_drain_lengthens_the_grace() -> None:
    spec = load_spec(SPECS["cpu"])
    settings = k8s.deploy_settings(spec, spec.servers[0])
    settings["limits"] = {"drain_timeout_s": 120.0, "max_body_bytes": 1024}
    deployment = k8s.deployment(k8s.workload(settings, "img", "v", "fp"))
    kubernetes_validate.validate(deployment, "1.33", strict=True)
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[4:] == ["--drain-timeout-s", "120.0", "--max-body-bytes", "1024"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 120 + 5  # sleep, drain, margin


# -- a fleet: its devices on nodes of their types, its router -----------------------------

FLEET = GOLDEN / "eks-fleet.yaml"


def rendered_fleet(cache: Path) -> list[dict[str, Any]]:
    """The fleet's objects as render makes them, with stand-in images as above."""
    spec = load_spec(FLEET)
    assert spec.runtime.registry
    workloads: list[k8s.Workload] = []
    devices: dict[str, k8s.Workload] = {}
    for step in build_steps(spec, cache):
        if step.kind == "deploy":
            tag = server_tag(spec.name, spec.environment, step.inputs["server"], PACK_FP)
            image = registry_reference(spec.runtime.registry, tag)
            device = k8s.workload(step.inputs, image, tag.split(":")[1], DEPLOY_FP)
            devices[device.server] = device
            workloads.append(device)
        elif step.kind == "router":
            workloads.append(rendered_router(step.inputs, devices))
    return k8s.manifests(workloads)


def test_fleet_devices_run_on_their_node_type_and_the_router_on_its_table(
    tmp_path: Path,
) -> None:
    objects = rendered_fleet(tmp_path)
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33", strict=True)
    deployments = {
        d["metadata"]["labels"]["doinfer.dev/server"]: d for d in by_kind(objects, "Deployment")
    }
    router = deployments.pop("fleet")
    steps = build_steps(load_spec(FLEET), tmp_path)
    node_types = {s.inputs["server"]: s.inputs["node_type"] for s in steps if s.kind == "deploy"}
    assert node_types.keys() == deployments.keys()
    kinds = set()
    for name, deployment in deployments.items():
        node_type = node_types[name]
        kinds.add(node_type)
        pod = deployment["spec"]["template"]["spec"]
        # the packing's node type, merged with the runtime's own selector
        assert pod["nodeSelector"] == {
            "karpenter.sh/capacity-type": "on-demand",
            "node.kubernetes.io/instance-type": node_type,
        }
        limits = pod["containers"][0]["resources"]["limits"]
        if node_type.startswith("inf2."):  # one device: one Inferentia chip
            assert limits == {"cpu": "2", "memory": "4Gi", "aws.amazon.com/neuron": 1}
            assert pod["tolerations"] == [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]
        else:
            assert limits == {"cpu": "2", "memory": "4Gi"} and "tolerations" not in pod
    assert kinds == {"inf2.xlarge", "c7i.xlarge"}

    # the router: a ConfigMap with its table, mounted where its pods read it
    (config,) = by_kind(objects, "ConfigMap")
    assert config["metadata"]["name"] == router["metadata"]["name"] == "shop-fleet"
    table = json.loads(config["data"]["router.json"])
    assert sorted(table["models"]) == ["search-embed", "spam-filter", "support-qa"]
    for copies in table["models"].values():
        for copy in copies:  # each device's Service, as the router's pod reaches it
            server = copy["url"].removeprefix("http://shop-").split(".")[0]
            assert copy["url"] == f"http://shop-{server}.shop.svc:8080"
            assert server in deployments and copy["weight"] > 0
    pod = router["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "router"
    assert (
        pod["metadata"]["labels"]["app.kubernetes.io/version"]
        == hashlib.sha256(config["data"]["router.json"].encode()).hexdigest()[:16]
    )  # a new table rolls the router's pods
    (container,) = pod["spec"]["containers"]
    assert container["args"][-2:] == ["--bundle", "/etc/doinfer/router"]
    assert container["volumeMounts"] == [
        {"name": "routes", "mountPath": "/etc/doinfer/router", "readOnly": True}
    ]
    assert pod["spec"]["volumes"] == [{"name": "routes", "configMap": {"name": "shop-fleet"}}]
    # it computes nothing: no accelerator, the runtime's selector, any node
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert pod["spec"]["nodeSelector"] == {"karpenter.sh/capacity-type": "on-demand"}
    assert "tolerations" not in pod["spec"]
    first = min(deployments)
    assert (
        container["image"]
        == (deployments[first]["spec"]["template"]["spec"]["containers"][0]["image"])
    )
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    selector = services["shop-fleet"]["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    for deployment in deployments.values():  # no device's pod is the router's
        assert not selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_render_writes_the_router_apply_runs(tmp_path: Path) -> None:
    """`doinfer render` shows the router's objects; its table names each device where
    apply records it (its Service), so the two agree."""
    steps = build_steps(load_spec(FLEET), tmp_path)
    objects = KubernetesRuntime.render(steps, {})
    (config,) = by_kind(objects, "ConfigMap")
    router = next(s for s in steps if s.kind == "router")
    recorded = {
        s.inputs["server"]: [
            service_url(k8s.object_name("shop", "default", s.inputs["server"]), "shop", 8080)
        ]
        for s in steps
        if s.kind == "deploy"
    }
    table = table_text(routing_table(router.inputs["routes"], recorded))
    assert config["data"]["router.json"] == table
    assert {o["metadata"]["name"] for o in objects if o["kind"] != "Namespace"} >= {"shop-fleet"}


def test_golden_fleet_manifests(tmp_path: Path, regen_golden: bool) -> None:
    text = to_yaml(rendered_fleet(tmp_path))
    assert_golden(text, GOLDEN / "fleet.yaml", regen_golden)
