"""The kubernetes keys of a spec: resources, node selectors, namespace, timeouts."""

from __future__ import annotations

from engine.spec.model import Resources, Runtime

from .conftest import VALID, errors_of, valid

KUBE = VALID.replace(
    "runtime: {kind: local}",
    "runtime:\n"
    "  kind: kubernetes\n"
    "  registry: 123456789012.dkr.ecr.us-west-2.amazonaws.com/\n"
    "  namespace: ml\n"
    "  context: prod-eks\n"
    "  node_selector: {node.kubernetes.io/instance-type: m7i.xlarge}\n"
    "  client_node_selector: {doinfer.dev/role: load}\n"
    "  rollout_timeout_s: 300\n",
)


def test_kubernetes_keys_reach_the_typed_spec(write) -> None:
    text = KUBE.replace(
        "models: [{model: tiny, instances: 2}]",
        "models: [{model: tiny, instances: 2}]\n"
        "    resources: {cpu: 2, memory: 3Gi}\n"
        "    node_selector: {karpenter.k8s.aws/instance-family: c7i}",
    )
    spec = valid(write("spec.yaml", text))
    runtime = spec.runtime
    assert (runtime.namespace, runtime.context, runtime.rollout_timeout_s) == (
        "ml",
        "prod-eks",
        300,
    )
    assert runtime.node_selector == {"node.kubernetes.io/instance-type": "m7i.xlarge"}
    assert runtime.client_node_selector == {"doinfer.dev/role": "load"}
    server = spec.servers[0]
    assert server.resources == Resources(cpu="2", memory="3Gi")  # a number becomes a quantity
    assert server.node_selector == {"karpenter.k8s.aws/instance-family": "c7i"}
    assert Runtime().termination_grace_s == 60 and Runtime().startup_timeout_s == 600
    assert valid(write("plain.yaml", KUBE)).servers[0].node_selector is None


def test_accelerators_must_be_the_servers_processor(write) -> None:
    text = KUBE.replace(
        "models: [{model: tiny, instances: 2}]",
        "models: [{model: tiny, instances: 2}]\n    resources: {gpus: 1, neuron_cores: 2}",
    )
    path = write("spec.yaml", text)
    assert errors_of(path) == [
        f"{path}:11:17: error: servers[0].resources.gpus: only gpu servers use gpus; this "
        f"server's processor is cpu",
        f"{path}:11:26: error: servers[0].resources.neuron_cores: only inf servers use "
        f"neuron_cores; this server's processor is cpu",
    ]


def test_neuron_devices_or_cores_not_both(write) -> None:
    text = (
        KUBE.replace("processor: cpu", "processor: inf").replace(
            "models: [{model: tiny, instances: 2}]",
            "models: [{model: tiny, instances: 2}]\n"
            "    resources: {neuron_devices: 1, neuron_cores: 2}",
        )
        + "hosts:\n  - {name: i, address: 10.0.0.1, processor: inf}\n"
    )
    (error,) = errors_of(write("spec.yaml", text))
    assert "servers[0].resources: give neuron_devices (whole devices) or neuron_cores" in error


def test_quantities_namespaces_and_labels_are_checked(write) -> None:
    bad = (
        KUBE.replace("namespace: ml", "namespace: ML_team")
        .replace("{doinfer.dev/role: load}", "{doinfer.dev/role: 'not a label value'}")
        .replace(
            "models: [{model: tiny, instances: 2}]",
            "models: [{model: tiny, instances: 2}]\n    resources: {cpu: two, memory: 2GB}",
        )
    )
    errors = errors_of(write("spec.yaml", bad))
    assert len(errors) == 4, errors
    text = "\n".join(errors)
    for key in (
        "servers[0].resources.cpu",
        "servers[0].resources.memory",
        "runtime.namespace",
        "runtime.client_node_selector.doinfer.dev/role",
    ):
        assert key in text
