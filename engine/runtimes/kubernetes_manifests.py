"""The Kubernetes objects of a spec's servers, as plain data: no cluster, no client.

Per server a Deployment and a Service in the spec's namespace (a fleet's router also a
ConfigMap holding its routing table, mounted where the router reads it). `doinfer render`
prints these for GitOps, and the kubernetes runtime applies exactly these, so what a user
commits and what doinfer applies are the same objects. Every object carries the
recommended `app.kubernetes.io/*` labels and doinfer's own spec, environment and server
labels: the runtime finds (and only ever touches) what carries them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.serving.limits import STOP_MARGIN_S, limit_flags, stop_timeout_s
from engine.serving.routing import ROUTER_FILE

if TYPE_CHECKING:
    from engine.spec.model import Server, Spec

MANAGER = "doinfer"  # app.kubernetes.io/managed-by and the server-side apply field manager
SPEC_LABEL = "doinfer.dev/spec"
ENVIRONMENT_LABEL = "doinfer.dev/environment"
SERVER_LABEL = "doinfer.dev/server"
FINGERPRINT_ANNOTATION = "doinfer.dev/fingerprint"
RUN_LABEL = "doinfer.dev/bench-run"  # the pods of one benchmark's load-client Job
PLANS_ENV = "DOINFER_CLIENT_PLANS"
CONTAINER = "server"
PORT_NAME = "http"
RUN_AS = 10001  # the server image's user (runtime_images/server/Dockerfile)
PRESTOP_SLEEP_S = 5  # a stopping pod keeps serving while endpoints drop it from the Service
PROBE_PERIOD_S = 5
GPU = "nvidia.com/gpu"
NEURON = "aws.amazon.com/neuron"
NEURON_CORE = "aws.amazon.com/neuroncore"
TAINTS = {"gpu": GPU, "inf": NEURON}  # the taints accelerator node groups commonly carry
INSTANCE_TYPE = "node.kubernetes.io/instance-type"  # the well-known label EKS nodes carry
ROUTER_DIR = "/etc/doinfer/router"  # where a router's pod mounts its table's ConfigMap
ROUTES_VOLUME = "routes"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Workload:
    """One server as Kubernetes runs it: what its Deployment and Service are made of."""

    spec: str
    environment: str
    server: str
    namespace: str
    processor: str
    image: str
    version: str  # what the image holds (its content tag): app.kubernetes.io/version
    fingerprint: str  # the deploy step's: a different one on the cluster is drift
    port: int
    replicas: int
    threads: int
    cpu: str
    memory: str
    accelerators: Mapping[str, int] = field(default_factory=dict)  # extended resource -> count
    node_selector: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 600.0
    termination_grace_s: int = 60
    limits: Mapping[str, float] = field(default_factory=dict)  # the spec's server limits
    routes: str | None = None  # a fleet's router: its routing table (ROUTER_FILE's text)

    @property
    def name(self) -> str:
        return object_name(self.spec, self.environment, self.server)

    @property
    def component(self) -> str:
        return "router" if self.routes is not None else "model-server"


def deploy_settings(spec: Spec, server: Server) -> dict[str, Any]:
    """What a server's objects are made of, as JSON (the deploy step's inputs): fixed by
    the spec alone, so every machine plans and renders the same objects."""
    r = server.resources
    node_selector = (
        spec.runtime.node_selector if server.node_selector is None else server.node_selector
    )
    return {
        "spec": spec.name,
        "environment": spec.environment,
        "server": server.name,
        "namespace": spec.runtime.namespace or "default",
        "processor": server.processor,
        "replicas": server.replicas,
        "container_port": spec.runtime.port,
        "threads": server.threads or threads_for(r.cpu),
        "cpu": r.cpu,
        "memory": r.memory,
        "accelerators": accelerators(server.processor, r.gpus, r.neuron_devices, r.neuron_cores),
        "node_selector": dict(node_selector),
        "startup_timeout_s": spec.runtime.startup_timeout_s,
        "termination_grace_s": spec.runtime.termination_grace_s,
    }


def workload(
    settings: Mapping[str, Any],
    image: str,
    version: str,
    fingerprint: str,
    routes: str | None = None,
) -> Workload:
    """A server's Workload from its deploy settings and the image it runs (a fleet's
    router: with its routing table). A fleet's device (its settings name the `node_type`
    its packing chose) runs on a node of that type: the instance type joins the server's
    node selector, and wins over an instance type the selector names."""
    given = ("image", "version", "fingerprint", "port", "node_selector", "routes")
    fields = {
        k: settings[k] for k in Workload.__dataclass_fields__ if k in settings and k not in given
    }
    node_selector = dict(settings["node_selector"])
    if settings.get("node_type"):
        node_selector[INSTANCE_TYPE] = settings["node_type"]
    return Workload(
        **fields,
        port=settings["container_port"],  # the container's, not the host's
        node_selector=node_selector,
        image=image,
        version=version,
        fingerprint=fingerprint,
        routes=routes,
    )


def object_name(spec: str, environment: str, server: str) -> str:
    """The Deployment's and Service's name: unique per spec, environment and server in a
    namespace (the default environment is left out, to keep names short)."""
    parts = [spec] if environment == "default" else [spec, environment]
    return "-".join([*parts, server])


def name_error(spec: str, environment: str, server: str) -> str | None:
    """Why a server's object name cannot be a Service name (RFC 1035 label), or None."""
    name = object_name(spec, environment, server)
    if len(name) > 63:
        return (
            f"the Kubernetes name {name!r} (spec name, environment unless default, server "
            f"name) is {len(name)} characters; Kubernetes allows 63: shorten the names"
        )
    if not DNS_1035.match(name):
        return (
            f"the Kubernetes name {name!r} must start with a letter (a Service name is an "
            f"RFC 1035 label)"
        )
    return None


def spec_labels(spec: str, environment: str) -> dict[str, str]:
    """What every object of one spec's environment carries: how observe lists them."""
    return {
        "app.kubernetes.io/managed-by": MANAGER,
        SPEC_LABEL: spec,
        ENVIRONMENT_LABEL: environment,
    }


def selector(spec: str, environment: str, server: str) -> dict[str, str]:
    """The pods of one server: fixed for the Deployment's life (a selector is immutable)."""
    return {SPEC_LABEL: spec, ENVIRONMENT_LABEL: environment, SERVER_LABEL: server}


def labels(w: Workload, component: str = "model-server") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "doinfer-server",
        "app.kubernetes.io/instance": w.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": w.spec,
        "app.kubernetes.io/version": w.version,
        **spec_labels(w.spec, w.environment),
        SERVER_LABEL: w.server,
    }


def accelerators(
    processor: str, gpus: int | None, devices: int | None, cores: int | None
) -> dict[str, int]:
    """The extended resources a replica of a processor asks for (limits only: Kubernetes
    sets their requests to the limits)."""
    if processor == "gpu":
        return {GPU: gpus or 1}
    if processor == "inf":
        return {NEURON_CORE: cores} if cores else {NEURON: devices or 1}
    return {}


def threads_for(cpu: str) -> int:
    """Intra-op threads of a replica: its whole CPU cores, at least one."""
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.floor(cores))


def drain_timeout_s(grace_s: int) -> int:
    """How long a stopping server may finish its requests: the grace period less the
    preStop sleep and a margin for the process to exit before Kubernetes kills it."""
    return max(1, grace_s - PRESTOP_SLEEP_S - math.ceil(STOP_MARGIN_S))


def server_limits(w: Workload) -> dict[str, float]:
    """The server's limits: the spec's, and unless it sets one, a drain timeout that fits
    the grace period after the preStop sleep."""
    return {"drain_timeout_s": drain_timeout_s(w.termination_grace_s), **w.limits}


def grace_period_s(w: Workload) -> int:
    """terminationGracePeriodSeconds: the spec's, or longer where the server's own drain
    (the preStop sleep, its drain delay and timeout) needs it."""
    return max(w.termination_grace_s, math.ceil(PRESTOP_SLEEP_S + stop_timeout_s(server_limits(w))))


def namespace(name: str, spec: str, environment: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": spec_labels(spec, environment)},
    }


def deployment(w: Workload) -> dict[str, Any]:
    pod_labels = labels(w, w.component)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": w.name,
            "namespace": w.namespace,
            "labels": pod_labels,
            "annotations": {FINGERPRINT_ANNOTATION: w.fingerprint},
        },
        "spec": {
            "replicas": w.replicas,
            "selector": {"matchLabels": selector(w.spec, w.environment, w.server)},
            "strategy": {
                "type": "RollingUpdate",
                # a new replica is ready before an old one goes: changing a model never
                # takes a server away
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": math.ceil(w.startup_timeout_s) + 60,
            "template": {"metadata": {"labels": pod_labels}, "spec": _pod_spec(w)},
        },
    }


def service(w: Workload) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels(w, w.component)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(w.spec, w.environment, w.server),
            "ports": [
                {"name": PORT_NAME, "port": w.port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def config_map(w: Workload) -> dict[str, Any]:
    """A router's routing table, as the file its pods mount (`ROUTER_FILE` in ROUTER_DIR).
    Its pods read it once, at start: the table's digest is the pod template's version
    label, so a new table rolls them."""
    assert w.routes is not None, f"{w.name} is no router"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels(w, w.component)},
        "data": {ROUTER_FILE: w.routes},
    }


def objects(w: Workload) -> list[dict[str, Any]]:
    """A server's objects in the order they are applied: a router's table first."""
    return [
        *([config_map(w)] if w.routes is not None else []),
        deployment(w),
        service(w),
    ]


def manifests(workloads: list[Workload]) -> list[dict[str, Any]]:
    """The namespace(s), then each server's objects, in spec order."""
    found: list[dict[str, Any]] = []
    for ns in dict.fromkeys(w.namespace for w in workloads):
        first = next(w for w in workloads if w.namespace == ns)
        found.append(namespace(ns, first.spec, first.environment))
    for w in workloads:
        found += objects(w)
    return found


def load_job(
    name: str,
    namespace: str,
    spec: str,
    environment: str,
    image: str,
    plans: str,
    clients: int,
    node_selector: Mapping[str, str],
    deadline_s: float,
) -> dict[str, Any]:
    """A benchmark's load clients as an Indexed Job: one pod per client (spread over nodes
    where it can be), each running `python -m engine.bench.worker` with its plan, item
    $JOB_COMPLETION_INDEX of the JSON list `plans`, and printing its result as JSON."""
    pod_labels = {
        "app.kubernetes.io/name": "doinfer-load-client",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "load-client",
        "app.kubernetes.io/part-of": spec,
        **spec_labels(spec, environment),
        RUN_LABEL: name,
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "affinity": _spread_over_nodes({RUN_LABEL: name}),
        "containers": [_load_client(image, plans)],
    }
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": clients,
            "parallelism": clients,
            "backoffLimit": 0,  # a failed client fails the run: its numbers are incomplete
            "activeDeadlineSeconds": math.ceil(deadline_s),
            "ttlSecondsAfterFinished": 3600,  # gone even if doinfer is not there to delete it
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    }


def _load_client(image: str, plans: str) -> dict[str, Any]:
    """The container of a load client: the worker, taking its plan from the JSON list."""
    return {
        "name": "client",
        "image": image,
        "command": ["python", "-m", "engine.bench.worker", "--plans-env", PLANS_ENV],
        "env": [{"name": PLANS_ENV, "value": plans}],
        # one event loop: a core each, so that clients measure the servers, not
        # their own contention
        "resources": {
            "requests": {"cpu": "1", "memory": "512Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": _container_security(),
    }


def _spread_over_nodes(labels: dict[str, str]) -> dict[str, Any]:
    """An affinity that prefers pods with these labels each on its own node."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": labels},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def _pod_security() -> dict[str, Any]:
    """Every pod of doinfer's runs as the server image's non-root user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> dict[str, Any]:
    """No container of doinfer's needs a privilege."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_spec(w: Workload) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the server never talks to the API
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace_period_s(w),
        "securityContext": _pod_security(),
        "containers": [_container(w)],
    }
    if w.node_selector:
        pod["nodeSelector"] = dict(w.node_selector)
    if w.processor in TAINTS:
        pod["tolerations"] = [{"key": TAINTS[w.processor], "operator": "Exists"}]
    if w.routes is not None:
        pod["volumes"] = [{"name": ROUTES_VOLUME, "configMap": {"name": w.name}}]
    return pod


def _container(w: Workload) -> dict[str, Any]:
    def probe(path: str, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": PORT_NAME},
            "periodSeconds": PROBE_PERIOD_S,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    requests = {"cpu": w.cpu, "memory": w.memory}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": w.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "--port",
            str(w.port),
            "--threads",
            str(w.threads),
            *limit_flags(server_limits(w)),
            # a router runs its table, not the image's bundle (the last --bundle wins)
            *(["--bundle", ROUTER_DIR] if w.routes is not None else []),
        ],
        "ports": [{"name": PORT_NAME, "containerPort": w.port, "protocol": "TCP"}],
        # the server listens only once every model is loaded: until then the startup
        # probe holds the others off, for as long as a slow (Neuron) load may take
        "startupProbe": probe(
            "/v2/health/live", max(1, math.ceil(w.startup_timeout_s / PROBE_PERIOD_S))
        ),
        "readinessProbe": probe("/v2/health/ready", 2),
        "livenessProbe": probe("/v2/health/live", 6),
        "resources": {"requests": requests, "limits": {**requests, **w.accelerators}},
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SLEEP_S)]}}},
        "securityContext": _container_security(),
    }
    if w.routes is not None:
        container["volumeMounts"] = [
            {"name": ROUTES_VOLUME, "mountPath": ROUTER_DIR, "readOnly": True}
        ]
    return container
