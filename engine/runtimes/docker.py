"""The Docker runtime: each replica is a container of the server's image.

Containers carry labels (spec, environment, server, replica, step, and the fingerprint of
what they run), so observe() finds them after the CLI restarts, whatever the state file
says; a stopped, missing or changed container is drift. They run with `--init` (they stop
at once), a restart policy, on a network of their own per spec and environment (load
clients join it), and are published on 127.0.0.1 unless the spec says otherwise.

A changed replica is replaced one at a time, keeping its published port: the old
container gets SIGTERM and drains, the new one takes the port and must be ready before
the next replica is replaced, so the other replicas serve meanwhile. Docker cannot publish
one host port from two containers, so a replica's own URL refuses connections from the
moment its old container stops until its new one is ready: with one replica, an update
is an outage (the local runtime has none: its servers hand their socket over).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import hashlib
import json
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Cancelled, DoinferError, StepFailed
from engine.runtimes import docker_images as images
from engine.runtimes.base import ImageRuntime, Log, ReplicaStatus, RuntimeOptions
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    ReplicaRecord,
    served_models,
)
from engine.runtimes.docker_builds import DockerBuilds, image_id, image_tag
from engine.runtimes.docker_engine import (
    ENVIRONMENT,
    FINGERPRINT,
    REPLICA,
    ROLE,
    SERVER,
    SPEC,
    STEP,
    check_daemon,
    client,
    docker_command,
    docker_errors,
    labels_filter,
    reason,
    whales_errors,
)
from engine.serving.limits import limit_flags, stop_timeout_s
from engine.serving.routing import ROUTER_FILE

if TYPE_CHECKING:
    from python_on_whales import Container, DockerClient

    from engine.bench.plan import ClientPlan, ClientResult
    from engine.spec.model import Server, Spec

READY_TIMEOUT_S = 180.0
ROUTER_DIR = "/router"  # where a router's container finds its table's file
LOG_TAIL_LINES = 30
CLIENT_START_S = 30.0  # a client container's start, on top of its plan's time


def container_name(spec: str, environment: str, server: str, index: int) -> str:
    return f"doinfer-{spec}-{environment}-{server}-{index}"


def network_name(spec: str, environment: str) -> str:
    return f"doinfer-{spec}-{environment}"


def replica_key(
    inputs: dict[str, Any], image_id: str, index: int, table: Path | None = None
) -> str:
    """What a replica runs: while this is unchanged, a running container is kept as it is.
    Threads as the spec says ("auto" or a number), not as resolved (see local's). A
    router's `table` is its bundle, named by the table's digest."""
    port = inputs["port"] + index if inputs["port"] else None
    what = [
        image_id,
        inputs["threads"],
        inputs["bind_address"],
        port,
        inputs["container_port"],
        inputs["restart"],
        inputs["processor"],
    ]
    if inputs.get("limits"):  # (a key made before limits existed stays the same)
        what.append(inputs["limits"])
    if table is not None:
        what.append(table.name)
    text = json.dumps(what, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def device_options(processor: str, server: str) -> dict[str, Any]:
    """What a processor needs of the host: all GPUs, or the Neuron devices; no privileges."""
    if processor == "gpu":
        return {"gpus": "all"}
    if processor == "inf":
        devices = sorted(glob.glob("/dev/neuron*"))
        if not devices:
            raise StepFailed(
                f"server {server} runs on inf, and this host has no /dev/neuron* device "
                f"(is the Neuron driver installed?)"
            )
        return {"devices": devices}
    return {}


def run_options(
    inputs: dict[str, Any],
    image: str,
    index: int,
    key: str,
    network: str,
    table: Path | None = None,
) -> dict[str, Any]:
    """The `docker run` of one replica, as python-on-whales keyword arguments. A fleet's
    router (`table`: its bundle) runs its table's file, mounted read-only, instead of the
    image's bundle (the last --bundle wins)."""
    spec, env, server = inputs["spec"], inputs["environment"], inputs["server"]
    host_port = str(inputs["port"] + index) if inputs["port"] else ""
    router = table is not None
    return {
        "image": image,
        "command": [
            "--port",
            str(inputs["container_port"]),
            "--threads",
            str(inputs["threads"]),
            *limit_flags(inputs.get("limits", {})),
            *(["--bundle", ROUTER_DIR] if router else []),
        ],
        "name": container_name(spec, env, server, index),
        "detach": True,
        "init": True,
        "restart": inputs["restart"],
        # `docker stop` waits for the drain (docs/SECURITY.md) before it kills
        "stop_timeout": math.ceil(stop_timeout_s(inputs.get("limits", {}))),
        "networks": [network],
        "network_aliases": [f"{server}-{index}"],
        "publish": [(f"{inputs['bind_address']}:{host_port}", inputs["container_port"])],
        "labels": {
            SPEC: spec,
            ENVIRONMENT: env,
            SERVER: server,
            REPLICA: str(index),
            STEP: f"{'router' if router else 'deploy'}/{server}",
            FINGERPRINT: key,
        },
        **(
            {"volumes": [(str(table / ROUTER_FILE), f"{ROUTER_DIR}/{ROUTER_FILE}", "ro")]}
            if table is not None
            else {}
        ),
        **device_options(inputs["processor"], server),
    }


@dataclass(frozen=True)
class Route:
    """How a load client container reaches a server container."""

    url: str  # on the network: http://<server>-<replica>:<port>
    network: str
    image: str
    labels: dict[str, str]  # spec and environment, for the client containers too


class DockerRuntime(DockerBuilds, ImageRuntime):
    kind = "docker"
    registry_use = "optional"  # without one, containers run the image built here

    def __init__(
        self,
        state_dir: Path,
        options: RuntimeOptions | None = None,
        docker: DockerClient | None = None,
    ) -> None:
        super().__init__(state_dir, options)
        self._docker = docker
        # deploys run in parallel, and Docker lets two networks share a name: one creates
        self._network_lock = threading.Lock()

    @property
    def docker(self) -> DockerClient:
        """The engine's client, made on first use (a plan of a fresh state needs none)."""
        if self._docker is None:
            self._docker = client()
        return self._docker

    @classmethod
    def deploy_inputs(cls, spec: Spec, server: Server) -> dict[str, Any]:
        """The server listens on runtime.port inside its container; servers[].port is
        the host port it is published on."""
        return {
            "processor": server.processor,
            "container_port": spec.runtime.port,
            "restart": spec.runtime.restart,
        }

    def check(self) -> None:
        check_daemon(self.docker)

    # -- replicas -----------------------------------------------------------------------

    def deploy(
        self, inputs: dict[str, Any], source: DeployInput, log: Log, cancelled: Callable[[], bool]
    ) -> DeployResult:
        image = source.image or image_tag(source.pack)
        return self._deploy(inputs, image, image_id(source.pack), None, log, cancelled)

    def deploy_router(
        self,
        inputs: dict[str, Any],
        bundle: Path,
        devices: Sequence[DeployResult],
        log: Log,
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        """The router as a container of a device's image (it holds the engine) on the
        spec's network, where it reaches the devices by their names, its table the
        bundle's file mounted read-only: no image to build or push."""
        device = devices[0].extra
        return self._deploy(inputs, device["image"], device["image_id"], bundle, log, cancelled)

    def _deploy(
        self,
        inputs: dict[str, Any],
        image: str,
        built: str,
        table: Path | None,
        log: Log,
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        """Run `image` (its id `built`) as the server's replicas, keeping the right ones."""
        threads = self.resolve_threads(inputs)  # "auto" decided here, for replicas started now
        spec, env, server = inputs["spec"], inputs["environment"], inputs["server"]
        existing = dict(self._containers(spec, env, server))
        keys = [replica_key(inputs, built, i, table) for i in range(inputs["replicas"])]
        kept = {
            i
            for i, key in enumerate(keys)
            if i in existing
            and existing[i].config.labels.get(FINGERPRINT) == key
            and existing[i].state.status == "running"
        }
        self._check_ports(inputs, [i for i in range(inputs["replicas"]) if i not in existing])
        network = self._ensure_network(spec, env, log)
        started: list[Container] = []
        replicas: list[Container] = []
        ready: dict[int, ReplicaRecord] = {}
        drain_s = math.ceil(stop_timeout_s(inputs.get("limits", {})))
        try:
            for index, key in enumerate(keys):
                old = existing.pop(index, None)
                if index in kept and old is not None:
                    log(f"replica {index} ({old.name}) already runs this image: kept")
                    replicas.append(old)
                    continue
                if old is not None:  # its port is free only once it is gone: it drains first
                    self._retire(old, log, drain_s)
                options = run_options(
                    inputs | {"threads": threads}, image, index, key, network, table
                )
                container = self._start(options, log)
                started.append(container)
                replicas.append(container)
                if old is not None:  # one replica at a time: the others serve meanwhile
                    ready[index] = self._wait_ready(container, inputs, log, cancelled)
            for old in existing.values():
                self._retire(old, log, drain_s)
            records = [
                ready.get(i) or self._wait_ready(c, inputs, log, cancelled)
                for i, c in enumerate(replicas)
            ]
        except Cancelled:
            raise  # what started is labelled: the next apply adopts or replaces it
        except BaseException:
            for container in started:
                with contextlib.suppress(whales_errors().DockerException):
                    self.docker.container.remove(container, force=True)
            raise
        images.prune_server_images(self.docker, spec, env, server, {built}, log)
        return DeployResult(
            tuple(records),
            served_models(inputs),
            threads,
            {
                "spec": spec,
                "environment": env,
                "image": image,
                "image_id": built,
                "network": network,
            },
        )

    def replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        statuses = []
        for index, container in self._containers(spec, environment, server):
            state = container.state
            status = {"running": "running", "restarting": "restarting", "paused": "paused"}.get(
                state.status or "", "stopped"
            )
            detail = f"container {container.name}"
            if status == "stopped":
                detail += f", exit code {state.exit_code}"
            statuses.append(
                ReplicaStatus(
                    server,
                    index,
                    status,
                    _host_url(container),
                    detail,
                    container.config.labels.get(FINGERPRINT),
                )
            )
        return statuses

    def undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        for _, container in self._containers(spec, environment, server):
            self._remove(container, log)
        self._remove_network_if_unused(spec, environment, log)

    def logs(self, spec: str, environment: str, server: str, index: int, tail: int) -> str:
        name = container_name(spec, environment, server, index)
        try:
            return str(self.docker.container.logs(name, tail=tail)).rstrip()
        except whales_errors().NoSuchContainer:
            return ""
        except whales_errors().DockerException as exc:
            with docker_errors(f"reading the log of {name}"):
                raise exc
        return ""

    def exec(
        self, spec: str, environment: str, server: str, index: int, command: list[str], tty: bool
    ) -> int:
        name = container_name(spec, environment, server, index)
        try:
            output = self.docker.container.execute(
                name, command, interactive=tty, tty=tty, stream=False
            )
        except whales_errors().NoSuchContainer:
            raise DoinferError(f"replica {index} of {server} ({name}) does not exist") from None
        except whales_errors().DockerException as exc:
            if exc.return_code in (126, 127) or "is not running" in reason(exc):
                with docker_errors(f"exec in {name}"):
                    raise exc
            if exc.stdout:
                print(exc.stdout, end="")
            return exc.return_code
        if output:
            print(output)
        return 0

    # -- load clients -------------------------------------------------------------------

    async def run_load_clients(
        self, plans: list[ClientPlan], on_progress: Callable[[int, int], None]
    ) -> list[ClientResult]:
        """Run each client (`python -m engine.bench.worker`) in a container of a server's
        image on the servers' network, so it reaches them by name and not through the
        ports published on the host; collect the JSON results it writes."""
        from engine.bench.launch import GRACE_S
        from engine.bench.launch import _collect as collect  # one client's output and progress

        routes = await asyncio.to_thread(self._routes)
        route = routes.get(plans[0].targets[0].url)
        if route is None:
            raise DoinferError(
                f"{plans[0].targets[0].url} is no container of doinfer's: apply the spec first"
            )
        plans = [_routed(plan, routes) for plan in plans]
        names = [f"{route.network}-client-{plan.client}-{os.getpid()}" for plan in plans]
        counts = [(0, 0)] * len(plans)

        def relay(index: int, answered: int, errors: int) -> None:
            counts[index] = (answered, errors)
            on_progress(sum(c[0] for c in counts), sum(c[1] for c in counts))

        processes = []
        try:
            for name in names:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        *self._client_command(name, route),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                    )
                )
            limit = max(p.warmup_s + p.duration_s for p in plans) + CLIENT_START_S + GRACE_S
            async with asyncio.timeout(limit):
                results = await asyncio.gather(
                    *(
                        collect(process, plan, lambda a, e, i=i: relay(i, a, e))
                        for i, (process, plan) in enumerate(zip(processes, plans, strict=True))
                    )
                )
        except TimeoutError:
            raise DoinferError(
                f"load client containers of {plans[0].scenario} did not finish in time"
            ) from None
        finally:
            for process in processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            # the docker command's end does not stop its container: remove what is left
            await asyncio.to_thread(self._remove_clients, names)
        results[0].notes.append(
            f"{len(plans)} load client(s) ran as containers on the network {route.network}"
        )
        return list(results)

    def _client_command(self, name: str, route: Route) -> list[str]:
        """`docker run` of a load client container on the servers' network, labelled like
        them, reading its plan from stdin."""
        return [
            *docker_command(self.docker),
            "run",
            "--interactive",
            "--rm",
            "--name",
            name,
            "--network",
            route.network,
            "--label",
            f"{ROLE}=load-client",
            *[a for k, v in route.labels.items() for a in ("--label", f"{k}={v}")],
            "--entrypoint",
            "python",
            route.image,
            *["-m", "engine.bench.worker", "--plan", "-"],
        ]

    def _routes(self) -> dict[str, Route]:
        """doinfer's running server containers by published URL: how a client container
        on their network reaches each, and which image and labels it takes."""
        with docker_errors("listing containers"):
            found = self.docker.container.list(filters=[("label", STEP)])
        routes = {}
        for container in found:
            labels = container.config.labels
            url = _host_url(container)
            if url is None or REPLICA not in labels:
                continue
            port = next(iter(container.network_settings.ports or {"8080/tcp": None})).split("/")[0]
            routes[url] = Route(
                f"http://{labels[SERVER]}-{labels[REPLICA]}:{port}",
                network_name(labels[SPEC], labels[ENVIRONMENT]),
                container.config.image,
                {SPEC: labels[SPEC], ENVIRONMENT: labels[ENVIRONMENT]},
            )
        return routes

    def _remove_clients(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(whales_errors().DockerException):
                self.docker.container.remove(name, force=True)

    # -- internals ----------------------------------------------------------------------

    def _containers(self, spec: str, environment: str, server: str) -> list[tuple[int, Container]]:
        with docker_errors("listing containers"):
            found = self.docker.container.list(
                all=True,
                filters=labels_filter(**{SPEC: spec, ENVIRONMENT: environment, SERVER: server}),
            )
        return sorted(
            ((int(c.config.labels.get(REPLICA, "-1")), c) for c in found), key=lambda p: p[0]
        )

    def _check_ports(self, inputs: dict[str, Any], indexes: list[int]) -> None:
        """Fail before changing anything when a fixed port of a new replica is taken."""
        if not inputs["port"]:
            return
        for index in indexes:
            port = inputs["port"] + index
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # as docker-proxy binds: a closed connection's TIME_WAIT is no owner
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((inputs["bind_address"], port))
                except OSError as exc:
                    raise StepFailed(
                        f"cannot publish replica {index} of {inputs['server']} on "
                        f"{inputs['bind_address']}:{port}: {exc.strerror} (another process "
                        f"or container holds the port; change servers[].port or free it)"
                    ) from None

    def _ensure_network(self, spec: str, environment: str, log: Log) -> str:
        name = network_name(spec, environment)
        with self._network_lock, docker_errors(f"creating the network {name}"):
            if not self.docker.network.exists(name):
                self.docker.network.create(
                    name, labels={SPEC: spec, ENVIRONMENT: environment, ROLE: "network"}
                )
                log(f"created network {name}")
        return name

    def _remove_network_if_unused(self, spec: str, environment: str, log: Log) -> None:
        name = network_name(spec, environment)
        with docker_errors("listing containers"):
            left = self.docker.container.list(
                all=True, filters=labels_filter(**{SPEC: spec, ENVIRONMENT: environment})
            )
        if left:
            return
        with docker_errors(f"removing the network {name}"):
            if self.docker.network.exists(name):
                self.docker.network.remove(name)
                log(f"removed network {name}")

    def _start(self, options: dict[str, Any], log: Log) -> Container:
        name = options["name"]
        try:
            container = self.docker.run(**options)
        except whales_errors().DockerException as exc:
            with contextlib.suppress(whales_errors().DockerException):
                self.docker.container.remove(name, force=True)  # created, but not started
            detail = reason(exc)
            if "address already in use" in detail or "port is already allocated" in detail:
                raise StepFailed(
                    f"cannot publish {name} on {options['publish'][0][0]}: the port is taken "
                    f"({detail})"
                ) from None
            with docker_errors(f"starting {name}"):
                raise exc
        assert not isinstance(container, str | list)  # run() detached: one Container
        log(f"started {name} ({container.id[:12]})")
        return container

    def _retire(self, container: Container, log: Log, timeout_s: int) -> None:
        """Stop a replica gracefully (SIGTERM: it answers what it holds within `timeout_s`,
        its drain), then remove it."""
        name = container.name
        gone = whales_errors().NoSuchContainer
        with docker_errors(f"stopping {name}"), contextlib.suppress(gone):
            self.docker.container.stop(name, time=timeout_s)
        self._remove(container, log)

    def _remove(self, container: Container, log: Log) -> None:
        name = container.name  # read before: the object inspects lazily
        gone = whales_errors().NoSuchContainer
        with docker_errors(f"removing {name}"), contextlib.suppress(gone):
            self.docker.container.remove(name, force=True)
        log(f"removed {name}")

    def _wait_ready(
        self, container: Container, inputs: dict[str, Any], log: Log, cancelled: Callable[[], bool]
    ) -> ReplicaRecord:
        deadline = time.monotonic() + READY_TIMEOUT_S
        index = int(container.config.labels[REPLICA])
        while time.monotonic() < deadline:
            if cancelled():
                raise Cancelled("interrupted while waiting for containers")
            with docker_errors(f"inspecting {container.name}"):
                container.reload()
            state = container.state
            if state.status not in ("running", "created") or (container.restart_count or 0) > 0:
                raise StepFailed(
                    f"container {container.name} exited (code {state.exit_code}) before it "
                    f"was ready; its log ends:",
                    self._tail(container),
                )
            url = _host_url(container)
            if url and _ready(url):
                log(f"replica {index} ready on {url}")
                internal_url = f"http://{inputs['server']}-{index}:{inputs['container_port']}"
                return ReplicaRecord(
                    index,
                    url,
                    container.config.labels[FINGERPRINT],
                    {"container": container.name, "id": container.id},
                    internal_url,
                )
            time.sleep(0.3)
        raise StepFailed(
            f"container {container.name} not ready after {READY_TIMEOUT_S:.0f} s; its log ends:",
            self._tail(container),
        )

    def _tail(self, container: Container) -> str:
        try:
            return str(self.docker.container.logs(container, tail=LOG_TAIL_LINES))
        except whales_errors().DockerException:
            return "(no log)"


def _host_url(container: Container) -> str | None:
    """The published address of a running container's server port."""
    for bindings in (container.network_settings.ports or {}).values():
        for binding in bindings or []:
            host = binding.get("HostIp") or "127.0.0.1"
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            if binding.get("HostPort"):
                return f"http://{host}:{binding['HostPort']}"
    return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _routed(plan: ClientPlan, routes: dict[str, Route]) -> ClientPlan:
    """The plan with each target's published URL replaced by the address a container on
    the servers' network reaches it at."""
    return dataclasses.replace(
        plan,
        targets=[
            dataclasses.replace(t, url=routes[t.url].url if t.url in routes else t.url)
            for t in plan.targets
        ],
    )
