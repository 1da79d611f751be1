"""The Kubernetes runtime: each server is a Deployment and a Service (kr8s), its load
clients an Indexed Job.

The objects are kubernetes_manifests' (what `doinfer render` prints), applied server-side
under the field manager `doinfer`: fields other managers own (an annotation added by hand,
a replica count an autoscaler set where the spec sets none) stay theirs. Everything doinfer
makes carries the spec's and environment's labels; observe, status and destroy find
objects by them and touch nothing else. Images are built with the local Docker engine as
the docker runtime builds them (docker_builds) and pushed to `runtime.registry`, where
the nodes pull them from, pinned by digest.

kr8s is asynchronous; the runtime's interface is not (steps run in threads). Each runtime
instance keeps one event loop in a thread of its own, and one API client on it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from engine.errors import Cancelled, DoinferError, StepFailed
from engine.runtimes import kubernetes_manifests as k8s
from engine.runtimes.base import ImageRuntime, Log, ReplicaStatus, RuntimeOptions
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    PushResult,
    ReplicaRecord,
    served_models,
)
from engine.runtimes.docker_builds import DockerBuilds
from engine.runtimes.image_names import registry_reference, server_tag
from engine.runtimes.kubernetes_rollout import (
    FAIL_FAST,
    crashing,
    deadline_exceeded,
    pod_problems,
    rollout_done,
    unavailable,
    waiting_reasons,
)
from engine.serving.routing import ROUTER_FILE, routing_table, table_digest, table_text

if TYPE_CHECKING:  # kr8s and the Docker client load when first used, not to plan
    from python_on_whales import DockerClient

    from engine.bench.plan import ClientPlan, ClientResult
    from engine.graph.step import Step
    from engine.runtimes.kubernetes_api import KubeClient
    from engine.spec.model import Server, Spec

T = TypeVar("T")
POLL_S = 1.0
CLIENT_START_S = 300.0  # a load-client pod's scheduling and image pull, on top of its plan
# a benchmark's clients start together this long after their Job is created: time for the
# pods to be scheduled and started (a pod later than that starts at once, and says so)
CLIENT_SYNC_S = 20.0
CONFIG_MAP_BYTES = 1024 * 1024  # what one ConfigMap (a router's table) may hold


class KubernetesRuntime(DockerBuilds, ImageRuntime):
    kind = "kubernetes"
    registry_use = "required"  # nodes pull the server images from it
    probes_here = False  # the servers' Services are reached from inside the cluster only
    rollout = "roll"  # maxUnavailable 0: a new pod is ready before an old one goes

    def __init__(self, state_dir: Path, options: RuntimeOptions | None = None) -> None:
        super().__init__(state_dir, options)
        settings = self.options.settings
        self.namespace = (settings.namespace if settings else None) or "default"
        self.client_node_selector = dict(settings.client_node_selector) if settings else {}
        self.context = self.options.context or (settings.context if settings else None)
        self._client: KubeClient | None = None
        self._docker: DockerClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> KubeClient:
        """The cluster's API (kubeconfig context from --context or runtime.context)."""
        if self._client is None:
            from engine.runtimes.kubernetes_api import KubeClient

            self._client = KubeClient(self.context)
        return self._client

    @property
    def docker(self) -> DockerClient:
        """The local Docker engine, which builds and pushes the images (docker_builds)."""
        if self._docker is None:
            from engine.runtimes.docker_engine import client

            self._docker = client()
        return self._docker

    @classmethod
    def deploy_inputs(cls, spec: Spec, server: Server) -> dict[str, Any]:
        """Everything the server's objects are made of (see kubernetes_manifests), and how
        long a rollout may take. Threads follow the CPU request, not this machine."""
        return k8s.deploy_settings(spec, server) | {
            "rollout_timeout_s": spec.runtime.rollout_timeout_s
        }

    @classmethod
    def spec_errors(cls, doc: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        """Server names that make object names Kubernetes cannot take."""
        errors: list[tuple[tuple[str | int, ...], str]] = []
        environment = doc.get("environment", "default")
        for i, server in enumerate(doc.get("servers", [])):
            problem = k8s.name_error(doc["name"], environment, server["name"])
            if not problem and server.get("packing") == "auto":
                # its devices run as servers <server>-<node>-<device>: n0001-0 and up
                device = k8s.name_error(doc["name"], environment, f"{server['name']}-n0000-00")
                problem = device and f"the servers of this fleet's devices: {device}"
            if problem:
                errors.append((("servers", i, "name"), problem))
        return errors

    @classmethod
    def render(cls, steps: list[Step], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The objects apply would send: images already pushed (recorded with the pushed
        step's fingerprint) by digest, the others by the content tag they will have."""
        by_id = {s.id: s for s in steps}
        workloads: list[k8s.Workload] = []
        servers: dict[str, k8s.Workload] = {}
        for step in steps:
            if step.kind == "router":  # after its devices (the steps are in order)
                workloads.append(rendered_router(step.inputs, servers))
            if step.kind != "deploy":
                continue
            inputs = step.inputs
            push = by_id[f"push/{inputs['server']}"]
            pack = by_id[f"pack/{inputs['server']}"]
            tag = server_tag(
                inputs["spec"], inputs["environment"], inputs["server"], pack.fingerprint
            )
            image = registry_reference(push.inputs["registry"], tag)
            record = records.get(push.id)
            if record is not None and record.get("fingerprint") == push.fingerprint:
                image = PushResult.from_json(record["outputs"]).digest
            workload = k8s.workload(inputs, image, tag.rsplit(":", 1)[1], deploy_key(inputs, image))
            servers[workload.server] = workload
            workloads.append(workload)
        return k8s.manifests(workloads)

    def check(self) -> None:
        self._run(self.client.connect())

    # -- deploy ---------------------------------------------------------------------------

    def deploy(
        self, inputs: dict[str, Any], source: DeployInput, log: Log, cancelled: Callable[[], bool]
    ) -> DeployResult:
        if source.push is None:
            raise StepFailed(
                f"server {inputs['server']}: the kubernetes runtime runs images its nodes pull "
                f"from runtime.registry, and this server's image was not pushed"
            )
        image = source.push.digest  # REPOSITORY@sha256:...: what runs is what was pushed
        workload = k8s.workload(
            inputs, image, source.push.reference.rsplit(":", 1)[-1], deploy_key(inputs, image)
        )
        return self._roll_out(workload, inputs, log, cancelled)

    def deploy_router(
        self,
        inputs: dict[str, Any],
        bundle: Path,
        devices: Sequence[DeployResult],
        log: Log,
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        """The router as a Deployment and Service named after the fleet, running a device's
        pushed image (it holds the engine) on the table of a ConfigMap of the same name."""
        image = devices[0].extra["image"]  # REPOSITORY@sha256:..., as the device runs it
        workload = router_workload(inputs, image, (bundle / ROUTER_FILE).read_text())
        return self._roll_out(workload, inputs, log, cancelled)

    def _roll_out(
        self,
        workload: k8s.Workload,
        inputs: dict[str, Any],
        log: Log,
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        """Apply a server's objects, wait for its rollout; its one record is its Service."""
        self._run(self._deploy(workload, inputs["rollout_timeout_s"], log, cancelled))
        record = ReplicaRecord(
            0,
            service_url(workload.name, workload.namespace, workload.port),
            workload.fingerprint,
            {"service": workload.name, "namespace": workload.namespace},
        )
        return DeployResult(
            (record,),
            served_models(inputs),
            workload.threads,
            {"deployment": workload.name, "namespace": workload.namespace, "image": workload.image},
        )

    async def _deploy(
        self, w: k8s.Workload, timeout_s: float, log: Log, cancelled: Callable[[], bool]
    ) -> None:
        await self._ensure_namespace(w, log)
        for obj in k8s.objects(w):
            await self.client.apply(obj, force=self.options.force_conflicts)
            log(f"applied {obj['kind']} {w.namespace}/{w.name}")
        await self._wait_rollout(w, timeout_s, log, cancelled)

    async def _ensure_namespace(self, w: k8s.Workload, log: Log) -> None:
        """Create the namespace when missing; an existing one is left as it is."""
        from engine.runtimes.kubernetes_api import KubeError

        if await self.client.get("Namespace", w.namespace) is not None:
            return
        try:
            await self.client.apply(k8s.namespace(w.namespace, w.spec, w.environment))
        except KubeError as exc:
            raise KubeError(
                f"namespace {w.namespace} does not exist and doinfer may not create it: {exc}. "
                f"Create it (kubectl create namespace {w.namespace}) or name another in "
                f"runtime.namespace",
                exc.code,
                exc.reason,
            ) from None
        log(f"created namespace {w.namespace}")

    async def _wait_rollout(
        self, w: k8s.Workload, timeout_s: float, log: Log, cancelled: Callable[[], bool]
    ) -> None:
        """Until every replica is updated and available; a pod that cannot start (image
        pull, crash loop) fails it at once, anything else at the timeout or the
        Deployment's progress deadline, with the pods' own reasons."""
        deadline = time.monotonic() + timeout_s
        shown = ""
        while True:
            if cancelled():
                raise Cancelled("interrupted while waiting for the rollout")
            deployment = await self.client.get("Deployment", w.name, w.namespace)
            if deployment is None:
                raise StepFailed(f"Deployment {w.namespace}/{w.name} vanished during its rollout")
            if rollout_done(deployment):
                log(f"Deployment {w.namespace}/{w.name}: {w.replicas} replica(s) available")
                return
            status = deployment.get("status", {})
            progress = (
                f"{status.get('updatedReplicas', 0)} of {w.replicas} updated, "
                f"{status.get('availableReplicas', 0)} available"
            )
            if progress != shown:
                log(f"Deployment {w.namespace}/{w.name}: {progress}")
                shown = progress
            pods = await self._pods(w.namespace, k8s.selector(w.spec, w.environment, w.server))
            stuck = any(set(waiting_reasons(p)) & set(FAIL_FAST) for p in pods)
            expired = deadline_exceeded(deployment)
            if stuck or expired or time.monotonic() > deadline:
                why = expired or (
                    "a pod cannot start" if stuck else f"not done after {timeout_s:.0f} s"
                )
                raise StepFailed(
                    f"the rollout of Deployment {w.namespace}/{w.name} failed ({why}); its "
                    f"old replicas, if any, keep serving:",
                    "\n".join(await self._problems(w.namespace, pods)) or f"({progress})",
                )
            await asyncio.sleep(POLL_S)

    async def _problems(self, namespace: str, pods: list[dict[str, Any]]) -> list[str]:
        from engine.runtimes.kubernetes_api import KubeError

        names = [p["metadata"]["name"] for p in pods]
        events = {n: await self.client.events(namespace, n) for n in names}
        logs = {}
        for pod in pods:
            if crashing(pod):
                name = pod["metadata"]["name"]
                try:
                    logs[name] = await self.client.log(name, namespace, tail=50)
                except KubeError as exc:
                    logs[name] = f"(no log: {exc})"
        return pod_problems(pods, events, logs)

    # -- what runs ------------------------------------------------------------------------

    def replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        return self._run(self._replicas(spec, environment, server))

    async def _replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        name = k8s.object_name(spec, environment, server)
        pods = await self._pods(self.namespace, k8s.selector(spec, environment, server))
        deployment = await self.client.get("Deployment", name, self.namespace)
        key = None
        url = None
        if deployment is not None:
            key = deployment["metadata"].get("annotations", {}).get(k8s.FINGERPRINT_ANNOTATION)
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            url = service_url(name, self.namespace, container["ports"][0]["containerPort"])
        return [
            ReplicaStatus(server, index, pod_state(pod), url, pod_detail(pod), key)
            for index, pod in enumerate(pods)
        ]

    def deploy_drift(self, inputs: dict[str, Any], deployed: DeployResult) -> list[str]:
        """The Deployment or Service gone, changed by another hand (its fingerprint
        annotation), or not serving all its replicas."""
        key = deployed.replicas[0].key if deployed.replicas else None
        return self._run(self._drift(inputs, key))

    async def _drift(self, inputs: dict[str, Any], key: str | None) -> list[str]:
        name = k8s.object_name(inputs["spec"], inputs["environment"], inputs["server"])
        namespace = inputs["namespace"]
        drift = []
        deployment = await self.client.get("Deployment", name, namespace)
        if deployment is None:
            drift.append(f"Deployment {namespace}/{name} is gone")
        else:
            found = deployment["metadata"].get("annotations", {}).get(k8s.FINGERPRINT_ANNOTATION)
            if found != key:
                drift.append(f"Deployment {namespace}/{name} was changed (fingerprint {found})")
            elif problem := unavailable(deployment):
                drift.append(f"Deployment {namespace}/{name}: {problem}")
        if await self.client.get("Service", name, namespace) is None:
            drift.append(f"Service {namespace}/{name} is gone")
        if "routes" in inputs and await self.client.get("ConfigMap", name, namespace) is None:
            drift.append(f"ConfigMap {namespace}/{name} (the router's table) is gone")
        return drift

    def undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        self._run(self._undeploy(spec, environment, server, log))

    async def _undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        """Delete the server's objects, found by doinfer's labels: nothing else."""
        labels = k8s.selector(spec, environment, server)
        for kind in ("Service", "Deployment", "ConfigMap"):
            for obj in await self.client.list(kind, self.namespace, labels):
                name = obj["metadata"]["name"]
                if await self.client.delete(kind, name, self.namespace):
                    log(f"deleted {kind} {self.namespace}/{name}")

    def logs(self, spec: str, environment: str, server: str, index: int, tail: int) -> str:
        return self._run(self._logs(spec, environment, server, index, tail))

    async def _logs(self, spec: str, environment: str, server: str, index: int, tail: int) -> str:
        pod = await self._pod(spec, environment, server, index)
        return "" if pod is None else (await self.client.log(pod, self.namespace, tail)).rstrip()

    def exec(
        self, spec: str, environment: str, server: str, index: int, command: list[str], tty: bool
    ) -> int:
        """Run a command in a pod's server container (not interactively: kr8s has no
        terminal support; `kubectl exec -it` has)."""
        return self._run(self._exec(spec, environment, server, index, command, tty))

    async def _exec(
        self, spec: str, environment: str, server: str, index: int, command: list[str], tty: bool
    ) -> int:
        import kr8s.asyncio.objects

        pod = await self._pod(spec, environment, server, index)
        if pod is None:
            raise DoinferError(f"replica {index} of {server} has no pod")
        if tty and command == ["sh"]:
            raise DoinferError(
                f"an interactive shell needs a terminal session, which doinfer does not open "
                f"on Kubernetes: kubectl exec -it -n {self.namespace} {pod} -c server -- sh"
            )
        await self.client.connect()
        try:
            found = await kr8s.asyncio.objects.Pod.get(
                pod, namespace=self.namespace, api=self.client.api
            )
            result = await found.exec(command, container=k8s.CONTAINER, check=False)
        except Exception as exc:  # kr8s raises websocket and protocol errors of several kinds
            raise DoinferError(f"exec in pod {self.namespace}/{pod} failed: {exc}") from None
        sys.stdout.write(result.stdout.decode(errors="replace"))
        sys.stderr.write(result.stderr.decode(errors="replace"))
        return int(result.returncode)

    # -- load clients ---------------------------------------------------------------------

    async def run_load_clients(
        self, plans: list[ClientPlan], on_progress: Callable[[int, int], None]
    ) -> list[ClientResult]:
        """Run the clients as pods of an Indexed Job next to the servers (one pod each,
        reaching them through their Services), read each pod's JSON result from its log."""
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                self._load_clients(plans, on_progress), self._started()
            )
        )

    async def _load_clients(
        self, plans: list[ClientPlan], on_progress: Callable[[int, int], None]
    ) -> list[ClientResult]:
        from engine.bench.launch import GRACE_S
        from engine.bench.plan import ClientResult

        host = urlsplit(plans[0].targets[0].url).hostname or ""
        service, _, namespace = host.partition(".")
        namespace = namespace.removesuffix(".svc")
        deployment = await self.client.get("Deployment", service, namespace)
        if deployment is None:
            raise DoinferError(
                f"{plans[0].targets[0].url} is no Service of doinfer's: apply the spec first"
            )
        labels = deployment["metadata"]["labels"]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        limit = max(p.warmup_s + p.duration_s for p in plans) + CLIENT_START_S + GRACE_S
        name = f"{service}-bench-{secrets.token_hex(3)}"[-63:].lstrip("-")
        if plans[0].start_at is not None:  # one start for all, once their pods can be up
            start_at = time.time() + CLIENT_SYNC_S
            plans = [dataclasses.replace(p, start_at=start_at) for p in plans]
        job = k8s.load_job(
            name,
            namespace,
            labels[k8s.SPEC_LABEL],
            labels[k8s.ENVIRONMENT_LABEL],
            image,
            json.dumps([p.to_dict() for p in plans], separators=(",", ":")),
            len(plans),
            self.client_node_selector,
            limit,
        )
        await self.client.apply(job)
        try:
            async with asyncio.timeout(limit):
                logs = await self._wait_job(name, namespace, len(plans), on_progress)
        except TimeoutError:
            raise DoinferError(
                f"the load clients of Job {namespace}/{name} did not finish in time"
            ) from None
        finally:
            await self.client.delete("Job", name, namespace)
        results = [
            ClientResult.from_dict(result_of(logs[i], f"{namespace}/{name} pod {i}"))
            for i in range(len(plans))
        ]
        results[0].notes.append(
            f"{len(plans)} load client(s) ran as pods of Job {namespace}/{name}"
        )
        return results

    async def _wait_job(
        self, name: str, namespace: str, clients: int, on_progress: Callable[[int, int], None]
    ) -> dict[int, str]:
        """Until the Job completes: each pod's progress as it runs, then its whole log."""
        selector = {k8s.RUN_LABEL: name}
        counts: dict[int, tuple[int, int]] = {}
        while True:
            job = await self.client.get("Job", name, namespace)
            pods = await self._pods(namespace, selector)
            conditions = {
                c["type"]: c
                for c in (job or {}).get("status", {}).get("conditions", [])
                if c.get("status") == "True"
            }
            if "Failed" in conditions:
                details = []
                for pod in pods:
                    tail = await self.client.log(pod["metadata"]["name"], namespace, tail=20)
                    details.append(
                        f"pod {pod['metadata']['name']}: {pod_state(pod)}\n{tail.rstrip()}"
                    )
                raise DoinferError(
                    f"load-client Job {namespace}/{name} failed "
                    f"({conditions['Failed'].get('reason', '?')}): " + "\n".join(details)
                )
            for pod in pods:
                index = completion_index(pod)
                if index is not None and pod.get("status", {}).get("phase") == "Running":
                    counts[index] = await self._progress(pod, namespace, counts.get(index, (0, 0)))
            on_progress(sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values()))
            if "Complete" in conditions:
                logs = {}
                for pod in pods:
                    index = completion_index(pod)
                    if index is not None and pod.get("status", {}).get("phase") == "Succeeded":
                        logs[index] = await self.client.log(pod["metadata"]["name"], namespace)
                missing = [i for i in range(clients) if i not in logs]
                if missing:
                    raise DoinferError(
                        f"load-client Job {namespace}/{name} left no result of client(s) {missing}"
                    )
                return logs
            await asyncio.sleep(POLL_S)

    async def _progress(
        self, pod: dict[str, Any], namespace: str, previous: tuple[int, int]
    ) -> tuple[int, int]:
        """A running client's last progress line; its log may not be there yet."""
        from engine.runtimes.kubernetes_api import KubeError

        try:
            log = await self.client.log(pod["metadata"]["name"], namespace, tail=3)
        except KubeError:  # 400 while its container is still being created
            return previous
        return last_progress(log, previous)

    # -- internals --------------------------------------------------------------------------

    async def _pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        pods = await self.client.list("Pod", namespace, selector)
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    async def _pod(self, spec: str, environment: str, server: str, index: int) -> str | None:
        pods = await self._pods(self.namespace, k8s.selector(spec, environment, server))
        return pods[index]["metadata"]["name"] if 0 <= index < len(pods) else None

    def _started(self) -> asyncio.AbstractEventLoop:
        """This runtime's event loop, started on first use in a daemon thread."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="doinfer-kubernetes", daemon=True
                ).start()
                self._loop = loop
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._started()).result()


def deploy_key(inputs: dict[str, Any], image: str) -> str:
    """What a server's Deployment is made of: its inputs and its image. The fingerprint
    annotation; another value on the cluster means another hand changed it."""
    text = json.dumps([inputs, image], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def router_workload(inputs: dict[str, Any], image: str, table: str) -> k8s.Workload:
    """A fleet's router: a device's image on its routing table (ConfigMap), labelled with
    the table's digest, so that a new table rolls its pods and the same one keeps them."""
    if len(table.encode()) > CONFIG_MAP_BYTES:
        raise StepFailed(
            f"the routing table of {inputs['server']} is {len(table.encode()):,} bytes, more "
            f"than a ConfigMap holds ({CONFIG_MAP_BYTES:,}): split the fleet into smaller ones"
        )
    version = table_digest(table)
    key = deploy_key(inputs | {"table": version}, image)
    return k8s.workload(inputs, image, version, key, routes=table)


def rendered_router(inputs: dict[str, Any], devices: dict[str, k8s.Workload]) -> k8s.Workload:
    """The router apply would run after its devices (rendered before it): each device is
    its Service's cluster DNS name, the image the first device's, as deploy_router does."""
    names = sorted({c["server"] for copies in inputs["routes"].values() for c in copies})
    urls = {n: [service_url(devices[n].name, devices[n].namespace, devices[n].port)] for n in names}
    table = table_text(routing_table(inputs["routes"], urls))
    return router_workload(inputs, devices[names[0]].image, table)


def service_url(name: str, namespace: str, port: int) -> str:
    """A server as pods reach it: its Service's cluster DNS name."""
    return f"http://{name}.{namespace}.svc:{port}"


def pod_state(pod: dict[str, Any]) -> str:
    """running (ready), a container's waiting reason, or the pod's phase."""
    status = pod.get("status", {})
    if any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    ):
        return "running"
    reasons = waiting_reasons(pod)
    return reasons[0] if reasons else status.get("phase", "Unknown").lower()


def pod_detail(pod: dict[str, Any]) -> str:
    node = pod.get("spec", {}).get("nodeName")
    return f"pod {pod['metadata']['name']}" + (f" on {node}" if node else "")


def completion_index(pod: dict[str, Any]) -> int | None:
    value = pod["metadata"].get("annotations", {}).get("batch.kubernetes.io/job-completion-index")
    return int(value) if value is not None else None


def last_progress(log: str, previous: tuple[int, int]) -> tuple[int, int]:
    """A client's last `doinfer-bench-progress ANSWERED ERRORS` line in its log."""
    from engine.bench.worker import PROGRESS_PREFIX

    for line in reversed(log.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == PROGRESS_PREFIX:
            return int(parts[1]), int(parts[2])
    return previous


def result_of(log: str, where: str) -> dict[str, Any]:
    """The JSON result a client printed last in its log."""
    for line in reversed(log.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = "\n".join(log.splitlines()[-10:])
    raise DoinferError(f"load client {where} printed no result; its log ends:\n{tail}")
