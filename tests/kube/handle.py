"""What a test holds: a cluster to talk to through a kubeconfig and context, and the knobs.

`KubeApi.simulated()` starts the test API server and writes a kubeconfig for it;
`KubeApi.real(path, context)` points at a real cluster (kind, EKS) instead, where the
simulation-only knobs skip the test that asks for them, saying why.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.controller import Controller, ExecRunner, Failure, JobRunner
from tests.kube.server import KubeApiServer

CONTEXT = "doinfer-test"
UNREACHABLE_CONTEXT = "doinfer-test-unreachable"


def write_kubeconfig(path: Path, url: str, token: str, unreachable_url: str) -> Path:
    """A kubeconfig with our context (current) and one whose server nobody listens on."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": "doinfer-test", "cluster": {"server": url}},
            {"name": "doinfer-test-unreachable", "cluster": {"server": unreachable_url}},
        ],
        "users": [{"name": "doinfer-test-deployer", "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": "doinfer-test", "user": "doinfer-test-deployer"},
            },
            {
                "name": UNREACHABLE_CONTEXT,
                "context": {"cluster": "doinfer-test-unreachable", "user": "doinfer-test-deployer"},
            },
        ],
        "current-context": CONTEXT,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class KubeApi:
    """The `kube_api` fixture's value. Stable interface for the kubernetes runtime's tests:
    url, kubeconfig, context, unreachable_context, simulated, namespace(name), server, and the
    knobs below (each skips the test against a real cluster)."""

    def __init__(
        self,
        url: str,
        kubeconfig: Path,
        context: str,
        prefix: str,
        server: KubeApiServer | None = None,
    ) -> None:
        self.url = url
        self.kubeconfig = kubeconfig
        self.context = context
        self.unreachable_context = UNREACHABLE_CONTEXT
        self.prefix = prefix
        self.server = server
        self.namespaces: list[str] = []

    @classmethod
    def simulated(cls, directory: Path) -> KubeApi:
        server = KubeApiServer().start()
        kubeconfig = write_kubeconfig(
            directory / "kubeconfig", server.url, server.cluster.token, closed_port_url()
        )
        return cls(server.url, kubeconfig, CONTEXT, "doinfer-test-", server)

    @classmethod
    def real(cls, kubeconfig: Path, context: str | None) -> KubeApi:
        config = yaml.safe_load(kubeconfig.read_text())
        name = context or config.get("current-context")
        entry = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == entry["cluster"])
        prefix = os.environ.get("DOINFER_TEST_NAMESPACE_PREFIX", "doinfer-test-")
        return cls(cluster["server"], kubeconfig, name, f"{prefix}{secrets.token_hex(3)}-")

    @property
    def simulated_cluster(self) -> bool:
        return self.server is not None

    def namespace(self, name: str) -> str:
        """A namespace name of this test run (prefixed; deleted at teardown on a real cluster)."""
        full = f"{self.prefix}{name}"
        self.namespaces.append(full)
        return full

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _sim(self, what: str) -> KubeApiServer:
        if self.server is None:
            pytest.skip(f"{what} is a knob of the test API server; a real cluster has none")
        return self.server

    # ---- knobs (simulation only)

    @property
    def controller(self) -> Controller:
        return self._sim("the simulated controller").controller

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every (method, path?query) the server answered, oldest first."""
        return self._sim("the request log").requests

    def forbid(self, verb: str, resource: str, namespace: str | None = None) -> None:
        """RBAC refuses `verb` on `resource` ("deployments", "pods/log", "*") in `namespace`
        (None: everywhere) with the real 403 text."""
        self._sim("RBAC refusal").cluster.forbidden.add((verb, resource, namespace))

    def set_unauthorized(self, value: bool = True) -> None:
        """Every authenticated request answers 401 (an expired or wrong token)."""
        self._sim("a rejected token").cluster.unauthorized = value

    def exceed_quota(
        self, resource: str, namespace: str | None = None, quota: str = "compute-resources"
    ) -> None:
        """Creating `resource` in `namespace` answers 403 "exceeded quota"; for "pods", the
        Deployment's ReplicaSet cannot make its pods (condition ReplicaFailure)."""
        self._sim("a resource quota").cluster.quotas[(resource, namespace)] = quota

    def fail_rollout(self, workload: str, reason: str, log: str = "", message: str = "") -> None:
        """The pods of Deployment or Job `workload` fail: ImagePullBackOff, Unschedulable or
        CrashLoopBackOff (with `log` as the crashed container's output)."""
        self.controller.failures[workload] = Failure(reason, log=log, message=message)

    def set_job_runner(self, runner: JobRunner | None) -> None:
        """`runner(job, index, env) -> (exit_code, log)` is what each Job pod "runs", in a
        thread of its own; env["HOSTNAME"] is the pod's name, for `append_log` (progress the
        pod prints while it runs); the returned log follows what was appended."""
        self.controller.job_runner = runner

    def set_exec_runner(self, runner: ExecRunner | None) -> None:
        """`runner(pod, container, command) -> (exit_code, stdout, stderr)` answers pods/exec."""
        self.controller.exec_runner = runner

    def append_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        """The container prints `text` (what `logs -f` then streams)."""
        cluster = self._sim("a container's output").cluster
        with cluster.lock:
            key = (namespace, pod, container)
            cluster.logs[key] = cluster.logs.get(key, "") + text

    def set_pod_log(self, log: Callable[[dict[str, Any]], str]) -> None:
        """What a healthy Deployment pod's container prints (from the pod object)."""
        self.controller.pod_log = log
