"""One interface for every place servers run: local processes, Docker, Kubernetes.

A runtime is one class with two faces:

- What it needs of a plan, asked of the class at plan time (no instance, no engine
  connection): class attributes `kind`, `registry_use`, `serves_here`, `probes_here`;
  classmethods `spec_errors`, `pack_inputs`, `deploy_inputs` (and `image_inputs` for an
  ImageRuntime), and `render` for a runtime whose objects can be written out. Subclassing
  ImageRuntime says "my replicas run images": the graph then adds an image step per
  processor and a push step per server when the spec names a registry.
- What it does at apply: the pack and deploy steps (and image and push for an
  ImageRuntime) call only the instance methods below. What a bundle or a replica is
  (a directory and a process, an image and a container, a Deployment) is the runtime's
  business. Runtimes label what they create so that `observe` finds it again after the
  CLI restarts, without trusting the state file alone.

Values decided where the servers run (threads "auto") are resolved by the instance at
apply, never by the class at plan time: a plan does not depend on the machine making it.
Register a new runtime with one line in engine/runtimes/__init__.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from engine.bench.plan import ClientPlan, ClientResult
    from engine.graph.step import Step
    from engine.spec.model import Runtime as RuntimeSettings
    from engine.spec.model import Server, Spec

from engine import system
from engine.errors import DoinferError
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    ImageResult,
    PackRequest,
    PackResult,
    PushResult,
)

Log = Callable[[str], None]
RegistryUse = Literal["none", "optional", "required"]
AUTO = "auto"  # a deploy input the runtime resolves at apply (threads)


@dataclass(frozen=True)
class ReplicaStatus:
    server: str
    index: int
    state: str  # "running" | "dead" | "missing" | "changed" | "extra"
    url: str | None = None
    detail: str = ""  # pid, container id, pod name...
    key: str | None = None  # identity of what runs (bundle + settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "replica": self.index,
            "state": self.state,
            "url": self.url,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RuntimeOptions:
    """What a runtime instance is told beyond its class: the spec's runtime section, and
    the command line's overrides. Each runtime reads what concerns it."""

    settings: RuntimeSettings | None = None  # the spec's `runtime`
    context: str | None = None  # --context: the kubeconfig context (kubernetes)
    force_conflicts: bool = False  # --force-conflicts: take fields other managers own


class Runtime(ABC):
    kind: ClassVar[str]  # the spec's runtime.kind, as registered in RUNTIMES
    # Whether runtime.registry is unused (an error to give), optional (push when given)
    # or required (replicas pull their image from it).
    registry_use: ClassVar[RegistryUse] = "none"
    # Replicas run on this machine: its devices must serve the servers' processors.
    serves_here: ClassVar[bool] = False
    # The servers answer this machine: probes (sequential, random) are sent from here;
    # otherwise they go through `run_load_clients` too, next to the servers.
    probes_here: ClassVar[bool] = True
    # How a deploy replaces running replicas, as a plan tells reviewers: "restart" stops
    # each and starts it again (it serves nothing meanwhile), "roll" starts each successor
    # and waits until it is ready before stopping its predecessor.
    rollout: ClassVar[Literal["restart", "roll"]] = "restart"

    def __init__(self, state_dir: Path, options: RuntimeOptions | None = None) -> None:
        self.state_dir = state_dir
        self.options = options or RuntimeOptions()

    @classmethod
    def spec_errors(cls, doc: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
        """What this runtime cannot take in a schema-valid spec document: (path, message)
        pairs, e.g. names too long for its objects."""
        return []

    @classmethod
    def render(cls, steps: list[Step], records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The objects this runtime would create for the desired steps, as data (with what
        the records know, e.g. pushed digests), without reaching the runtime."""
        raise DoinferError(
            f"the {cls.kind} runtime creates no objects to render; render writes the "
            f"Kubernetes objects of a spec with runtime.kind: kubernetes"
        )

    def resolve_threads(self, inputs: dict[str, Any]) -> int:
        """A replica's intra-op threads: the spec's number, or for "auto" the cores this
        process may use (its affinity, not the machine's count) shared among the spec's
        replicas (`cores_shared_by`). A runtime whose replicas run elsewhere overrides it
        (kubernetes: from the CPU request)."""
        threads = inputs["threads"]
        if threads != AUTO:
            return int(threads)
        return max(1, system.usable_cpus() // max(1, inputs.get("cores_shared_by", 1)))

    @classmethod
    def pack_inputs(cls, spec: Spec, server: Server) -> dict[str, Any]:
        """Inputs this runtime adds to a server's pack step (beyond models and code)."""
        return {}

    @classmethod
    def deploy_inputs(cls, spec: Spec, server: Server) -> dict[str, Any]:
        """Inputs this runtime adds to a server's deploy step: where the server listens
        inside a replica, restart policy, namespace, node selector, resources..."""
        return {}

    def check(self) -> None:  # noqa: B027 (most runtimes have nothing to check)
        """Raise a DoinferError when the runtime cannot be reached (before any change)."""

    @abstractmethod
    def pack(
        self, request: PackRequest, log: Log, cancelled: Callable[[], bool] = lambda: False
    ) -> PackResult:
        """Assemble a server's models into what a replica runs (a bundle, an image)."""

    @abstractmethod
    def pack_drift(self, pack: PackResult) -> list[str]:
        """Why a recorded pack no longer exists as recorded ([] when it does)."""

    @abstractmethod
    def unpack(self, pack: PackResult, log: Log) -> None:
        """Remove what `pack` made."""

    @abstractmethod
    def deploy(
        self, inputs: dict[str, Any], source: DeployInput, log: Log, cancelled: Callable[[], bool]
    ) -> DeployResult:
        """Make the replicas run the pack (or its pushed image), keeping those already
        right; wait until ready. Resolve "auto" inputs here (`resolve_threads`)."""

    def deploy_router(
        self,
        inputs: dict[str, Any],
        bundle: Path,
        devices: Sequence[DeployResult],
        log: Log,
        cancelled: Callable[[], bool],
    ) -> DeployResult:
        """Run a fleet's router: `bundle` is a directory holding its routing table
        (serving/routing.py, named by the table's digest: while it is the same, keep the
        replica), `devices` the fleet's deployed servers (the table names them at their
        `peer_url`). By default the router is one more replica of a bundle, as `deploy`
        runs any; an image runtime runs it from a device's image, which holds the engine."""
        return self.deploy(inputs, DeployInput(PackResult(bundle=str(bundle))), log, cancelled)

    @abstractmethod
    def replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        """Every replica of a server found on the runtime, by its labels."""

    @abstractmethod
    def undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        """Stop and remove every replica of a server."""

    @abstractmethod
    def logs(self, spec: str, environment: str, server: str, index: int, tail: int) -> str: ...

    def exec(
        self, spec: str, environment: str, server: str, index: int, command: list[str], tty: bool
    ) -> int:
        """Run a command in a replica (a shell by default); its exit code."""
        raise DoinferError(
            f"exec needs a container runtime; the {self.kind} runtime runs replicas as "
            f"processes on this machine (see `doinfer status` for their pids)"
        )

    async def run_load_clients(
        self, plans: list[ClientPlan], on_progress: Callable[[int, int], None]
    ) -> list[ClientResult]:
        """Run a benchmark's load clients and return their results.

        By default they are processes on this machine. A runtime whose servers live
        elsewhere runs the same client (`python -m engine.bench.worker`) next to them,
        in a container or a Job, and collects the JSON it writes.
        """
        from engine.bench.launch import run_local_clients

        return await run_local_clients(plans, on_progress)

    def deploy_drift(self, inputs: dict[str, Any], deployed: DeployResult) -> list[str]:
        """Replicas missing, dead, changed or extra compared with the recorded deploy."""
        found = {
            r.index: r
            for r in self.replicas(inputs["spec"], inputs["environment"], inputs["server"])
        }
        drift = []
        for recorded in deployed.replicas:
            index = recorded.index
            status = found.pop(index, None)
            if status is None:
                drift.append(f"replica {index} is gone")
            elif status.state != "running":
                drift.append(f"replica {index} ({status.detail}) is {status.state}")
            elif status.key != recorded.key:
                drift.append(f"replica {index} ({status.detail}) runs something else")
        drift += [f"replica {i} ({r.detail}) is not in the spec" for i, r in sorted(found.items())]
        return drift


class ImageRuntime(Runtime):
    """A runtime whose replicas run server images (docker, kubernetes): the image and push
    steps need it. Its pack builds a server image on the processor's base image."""

    @classmethod
    def image_inputs(cls, spec: Spec, processor: str) -> dict[str, Any]:
        """What a base image is made of: its Dockerfile, the image it starts from, and the
        pinned requirements of its wheelhouse. Names nothing of the spec: specs share it."""
        from engine.runtimes import image_names, wheelhouse

        return {
            "processor": processor,
            "base_image": spec.runtime.base_images.get(processor)
            or image_names.DEFAULT_BASE_IMAGES[processor],
            "dockerfile": image_names.dockerfile_digest(processor),
            "requirements": wheelhouse.server_requirements(processor),
            "pip_index": wheelhouse.pip_index_args(processor),
        }

    @abstractmethod
    def build_base(
        self, inputs: dict[str, Any], fingerprint: str, log: Log, cancelled: Callable[[], bool]
    ) -> ImageResult:
        """Build (or find) the base image of a processor, named after its fingerprint."""

    @abstractmethod
    def image_drift(self, image: ImageResult) -> list[str]:
        """Why a recorded image no longer exists as recorded ([] when it does)."""

    @abstractmethod
    def push(self, inputs: dict[str, Any], pack: PackResult, log: Log) -> PushResult:
        """Push a server image to the registry; its reference and digest."""

    @abstractmethod
    def push_drift(self, pushed: PushResult) -> list[str]:
        """Why a pushed image is no longer in the registry ([] when it is)."""

    @abstractmethod
    def unpush(self, pushed: PushResult, log: Log) -> None:
        """Undo what `push` left on this machine."""
