"""Typed, validated view of a spec: what the rest of the engine reads.

The loader builds these from the YAML document only after the schema and the semantic
checks passed, so every field here is already known to be well-formed. They are frozen:
the planner derives everything else from them and never mutates the user's intent.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from engine.canonical import canonical_json
from engine.packing.catalog import NodeType
from engine.packing.fleet import Profile

if TYPE_CHECKING:  # errors.py needs Mark from here
    from engine.spec.errors import Diagnostic

Processor = Literal["cpu", "gpu", "inf"]
Task = Literal["question-answering", "feature-extraction", "text-classification"]
RuntimeKind = Literal["local", "docker", "kubernetes"]
ScenarioKind = Literal["sequential", "random", "benchmark"]
Precision = Literal["fp32", "bf16", "fp16", "int8", "auto"]


class Mark(NamedTuple):
    """Where a node of the spec came from: file, 1-based line and column. A tuple: a spec
    of thousands of models makes one per value, and a tuple is made fastest."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class TraceParams:
    """Example-input shape used to trace (and, on inf, to compile) the model, the number
    format it computes in, and the agreement with fp32 it must reach."""

    sequence_length: int = 128
    batch_size: int = 1
    pipeline_cores: int = 1
    precision: Precision = "fp32"
    accuracy_floor: float | None = None  # None: the task's default (engine/steps/trace_job.py)


@dataclass(frozen=True)
class Model:
    name: str
    source: str  # "hf:<id>" | "path:<dir>" | "package:<python package>"
    task: Task
    trace: TraceParams = TraceParams()
    profiles: dict[str, Profile] = field(default_factory=dict)  # processor -> declared profile


@dataclass(frozen=True)
class Host:
    """An accelerator host reached over SSH, used to trace gpu/inf models."""

    name: str
    address: str
    processor: Processor
    user: str | None = None
    port: int = 22
    identity: str | None = None
    known_hosts: str | None = None
    python: str = "python3"
    max_parallel: int = 1
    connect_timeout_s: float = 10.0
    connect_attempts: int = 3
    trace_timeout_s: float = 3600.0


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 8
    max_delay_ms: float = 2.0
    max_queue: int = 256
    max_padding: float = 1.25


@dataclass(frozen=True)
class ServerModel:
    """One model packed into a server, `instances` times (the packing density); in a
    packing: auto server, its demand (`rate`), or its copies pinned (`pinned`)."""

    model: str
    instances: int = 1
    rate: float | None = None  # requests/s
    pinned: bool = False  # instances was given: with packing: auto, the copies are pinned


@dataclass(frozen=True)
class Resources:
    """What one replica asks of its node (kubernetes): requests equal limits."""

    cpu: str = "1"  # a Kubernetes quantity: "2", "500m"
    memory: str = "2Gi"
    gpus: int | None = None  # gpu servers: default 1
    neuron_devices: int | None = None  # inf servers: default 1 unless neuron_cores is set
    neuron_cores: int | None = None


@dataclass(frozen=True)
class Server:
    name: str
    processor: Processor | None  # None only with packing: auto (the packing chooses)
    models: tuple[ServerModel, ...]
    replicas: int = 1
    batching: Batching = Batching()
    port: int | None = None  # first replica's port; replica i gets port + i. None: any free port
    threads: int | None = None  # intra-op threads per replica; None: derived from cores/replicas
    share_weights: bool = True
    resources: Resources = Resources()
    node_selector: dict[str, str] | None = None  # None: runtime.node_selector
    packing: Literal["manual", "auto"] = "manual"
    max_utilization: float = 0.75  # packing: auto: of each device's cores
    node_types: tuple[str, ...] = ()  # packing: auto: catalog names or patterns; () all
    # the model server's limits the spec sets (engine.serving.limits.ServerLimits field
    # names), completed from the schema's defaults; {} when it gives none: the server's own
    limits: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Runtime:
    kind: RuntimeKind = "local"
    registry: str | None = None
    namespace: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    port: int = 8080  # the port a server listens on inside a container/pod
    bind_address: str = "127.0.0.1"
    base_images: dict[str, str] = field(default_factory=dict)  # processor -> image (docker)
    restart: Literal["no", "on-failure", "unless-stopped", "always"] = "unless-stopped"
    context: str | None = None  # kubeconfig context; None: the current one
    client_node_selector: dict[str, str] = field(default_factory=dict)
    rollout_timeout_s: float = 600.0
    startup_timeout_s: float = 600.0
    termination_grace_s: int = 60


@dataclass(frozen=True)
class Slo:
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    min_throughput: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: ScenarioKind
    requests: int = 10  # random
    interval_ms: float = 0.0  # random
    duration_s: float = 10.0  # benchmark
    warmup_s: float = 0.0  # benchmark
    clients: int = 1  # benchmark
    concurrency: int | None = None  # benchmark, closed loop
    rate: float | None = None  # benchmark, open loop (requests/s)
    arrivals: Literal["poisson", "constant"] = "poisson"
    weights: dict[str, float] | None = None  # random, benchmark: weight per target key pattern
    seq_0: str | None = None  # request text; None: a default per task
    seq_1: str | None = None
    texts: tuple[tuple[str, str | None], ...] | None = None  # a corpus, (seq_0, seq_1) each
    slo: Slo | None = None
    protocol: Literal["predictions", "v2"] = "predictions"  # how requests are sent

    def to_json(self) -> dict[str, Any]:
        """The whole scenario, corpus included, as JSON values (lists, not tuples): a
        scenario step's inputs, which the step turns back into a Scenario."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        if self.protocol == "predictions":  # the default: steps planned before it stay as they were
            del data["protocol"]
        if self.texts is not None:
            data["texts"] = [list(text) for text in self.texts]
        return data

    def settings(self) -> dict[str, Any]:
        """The scenario as reports show it: a corpus as its size and digest, the digest a
        plan's diff shows for it (both hash its canonical JSON)."""
        data = self.to_json()
        if self.texts is not None:
            digest = hashlib.sha256(canonical_json(data["texts"]).encode()).hexdigest()[:12]
            data["texts"] = f"{len(self.texts)} texts, sha256 {digest}"
        return data


@dataclass(frozen=True)
class Profiling:
    """How profile steps measure (the spec's `profiling`)."""

    seconds: float = 5.0  # each closed-loop load step


@dataclass(frozen=True)
class Spec:
    api_version: str
    name: str
    environment: str
    models: tuple[Model, ...]
    hosts: tuple[Host, ...]
    servers: tuple[Server, ...]
    runtime: Runtime
    scenarios: tuple[Scenario, ...]
    path: Path  # the top-level spec file
    document: dict[str, Any]  # the resolved document (overlays applied), JSON-compatible
    catalog: dict[str, NodeType] = field(default_factory=dict)  # built-in + the spec's
    profiling: Profiling = Profiling()
    warnings: tuple[Diagnostic, ...] = ()  # severity "warning": valid, but worth knowing

    def model(self, name: str) -> Model:
        return self._models_by_name[name]

    @functools.cached_property
    def _models_by_name(self) -> dict[str, Model]:
        return {m.name: m for m in self.models}

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)
