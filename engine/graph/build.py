"""Compile a spec into the steps that realise it: trace -> pack -> deploy -> scenario.

Pure with respect to the runtime: it reads the spec and the model sources' identities,
and never looks at what is deployed. Inputs hold everything a step needs to apply, so a
saved plan can be applied without the spec file.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import engine
from engine.calibration import calibration_texts
from engine.gc_pause import gc_paused
from engine.graph.fingerprint import fingerprint
from engine.graph.fleets import (
    PackedFleet,
    WaitingFleet,
    expand,
    instance_name,
    kept_steps,
    packing_id,
)
from engine.graph.profiles import (
    ProfileNeed,
    profile_needs,
    waiting_packing_inputs,
    waiting_summary,
)
from engine.graph.step import Step
from engine.runtimes import image_names, runtime_class
from engine.runtimes.base import AUTO, ImageRuntime, Runtime
from engine.sources import ResolvedSource, resolve_source
from engine.spec.model import Host, Server, Spec
from engine.versions import library_versions

SHOWN_MODELS = 6  # a pack step's summary names this many of its models


def trace_id(model: str, processor: str) -> str:
    return f"trace/{model}@{processor}"


def image_id(processor: str) -> str:
    return f"image/{processor}"


@gc_paused
def build_steps(
    spec: Spec, cache_dir: Path, recorded: Mapping[str, Mapping[str, Any]] | None = None
) -> list[Step]:
    """All desired steps of a spec, each with its fingerprint, in topological order.
    `recorded` (the state's step records) lets a fleet re-pack from its last packing."""
    graph = _Graph(spec, cache_dir)
    profiles = profile_needs(spec, graph.add_trace, cache_dir)  # what the fleets measure
    servers, fleets, waiting = expand(spec, recorded, profiles)
    graph.add_traces(servers)
    graph.add_profiles(profiles)
    graph.add_images(servers)
    node_types = {name: t for f in fleets for name, t in f.node_types.items()}
    total_replicas = sum(s.replicas for s in servers)
    deploys = [graph.add_server(s, node_types.get(s.name), total_replicas) for s in servers]
    fleet_deploys = {f"deploy/{d.name}" for f in fleets for d in f.devices}
    scenario_needs = [d for d in deploys if d not in fleet_deploys]
    for packed_fleet in fleets:
        scenario_needs += graph.add_fleet(packed_fleet)
    for waiting_fleet in waiting:
        scenario_needs.append(graph.add_waiting_fleet(waiting_fleet, recorded or {}))
    graph.add_scenarios(scenario_needs)
    steps = graph.steps
    order = TopologicalSorter({s.id: s.needs for s in steps.values()}).static_order()
    return [steps[i] for i in order]


class _Graph:
    """The steps of one spec as they are added, each fingerprinted over its inputs and
    the fingerprints of the steps it needs (so those are added first)."""

    def __init__(self, spec: Spec, cache_dir: Path) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self.runtime = runtime_class(spec.runtime.kind)
        self.images = issubclass(self.runtime, ImageRuntime)  # its replicas run images
        self.steps: dict[str, Step] = {}
        self._place = trace_placer(spec)
        self._versions = library_versions()
        self._sources: dict[str, ResolvedSource] = {}
        # the same texts for every model of a task and precision (thousands in a fleet)
        self._calibration = functools.cache(functools.partial(calibration_texts, spec))

    def add(
        self,
        step_id: str,
        kind: str,
        inputs: dict[str, Any],
        needs: list[str],
        summary: str | Callable[[str], str],  # or made from the fingerprint (image names)
        updatable: frozenset[str] = frozenset(),
        follows_upstream: bool = False,
        exclusive: bool = False,
        after_apply: tuple[str, ...] = (),
        host: Host | None = None,
    ) -> Step:
        upstream = {n: self.steps[n].fingerprint for n in needs}
        digest = fingerprint(inputs, upstream)
        step = Step(
            step_id,
            kind,
            inputs,
            tuple(needs),
            digest,
            summary(digest) if callable(summary) else summary,
            updatable,
            follows_upstream,
            exclusive,
            after_apply=after_apply,
            runs_on=host_settings(host, self.spec.path.parent) if host else None,
            pool=f"host/{host.name}" if host else None,
            pool_limit=host.max_parallel if host else 1,
        )
        self.steps[step_id] = step
        return step

    def add_traces(self, servers: list[Server]) -> None:
        """One trace per (model, processor) the servers hold."""
        for server in servers:
            for packed in server.models:
                self.add_trace(packed.model, server.processor)

    def add_trace(self, name: str, processor: str) -> Step:
        """A model's trace for a processor (once), placed on a host where the processor
        is not here."""
        tid = trace_id(name, processor)
        if tid in self.steps:
            return self.steps[tid]
        spec = self.spec
        model = spec.model(name)
        if model.source not in self._sources:
            self._sources[model.source] = resolve_source(
                model.source, spec.path.parent, self.cache_dir
            )
        source = self._sources[model.source]
        trace = asdict(model.trace)
        return self.add(
            tid,
            "trace",
            {
                "model": model.name,
                "source": source.identity,
                "job_source": source.job_source,
                "task": model.task,
                "processor": processor,
                "trace": trace,
                "calibration": self._calibration(model.task, trace["precision"]),
                "versions": self._versions,
            },
            [],
            f"trace {model.name} ({model.source}, {model.task}) on {processor}, "
            f"{trace['batch_size']}x{trace['sequence_length']}, {trace['precision']}",
            after_apply=("precision", "accuracy"),
            host=self._place(processor),
        )

    def add_profiles(self, profiles: list[ProfileNeed]) -> None:
        """The profiles the fleets measure, each after its trace; exclusive: a
        measurement runs alone."""
        for need in profiles:
            self.add(
                need.id,
                "profile",
                need.inputs,
                [need.trace],
                need.summary,
                exclusive=True,
                after_apply=("memory_mib", "rate_per_core"),
            )

    def add_images(self, servers: list[Server]) -> None:
        """A base image per processor, where the runtime runs images."""
        if not self.images:
            return
        for processor in sorted({s.processor for s in servers}):
            inputs = self.runtime.image_inputs(self.spec, processor)
            self.add(
                image_id(processor),
                "image",
                inputs,
                [],
                lambda fp, p=processor, base=inputs["base_image"]: (
                    f"base image {image_names.base_tag(p, fp)} from {base}"
                ),
                after_apply=("image_id",),
            )

    def add_server(self, server: Server, node_type: str | None, total_replicas: int) -> str:
        """A server's pack, push (to a registry, where the runtime uses one) and deploy;
        the deploy's id."""
        spec, runtime, images = self.spec, self.runtime, self.images
        models = ", ".join(f"{m.model} x{m.instances}" for m in server.models[:SHOWN_MODELS])
        if len(server.models) > SHOWN_MODELS:
            models += f", ... ({len(server.models)} models)"
        pack_needs = [trace_id(m.model, server.processor) for m in server.models]
        if images:
            pack_needs.append(image_id(server.processor))
        pack = self.add(
            f"pack/{server.name}",
            "pack",
            self.pack_inputs(server),
            pack_needs,
            (
                lambda fp, name=server.name, models=models: (
                    f"pack {name}: {models} into "
                    f"{image_names.server_tag(spec.name, spec.environment, name, fp)}"
                )
            )
            if images
            else f"pack {server.name}: {models}",
            after_apply=("image_id",) if images else (),
        )
        deploy_needs = [pack.id]
        if images and runtime.registry_use != "none" and spec.runtime.registry:
            push = self.add(
                f"push/{server.name}",
                "push",
                {
                    "spec": spec.name,
                    "environment": spec.environment,
                    "server": server.name,
                    "registry": spec.runtime.registry,
                },
                [pack.id],
                f"push {server.name}'s image to {spec.runtime.registry}",
                after_apply=("digest",),
            )
            deploy_needs.append(push.id)
        inputs = _deploy_inputs(spec, server, runtime, pack, node_type, total_replicas)
        deploy = self.add(
            f"deploy/{server.name}",
            "deploy",
            inputs,
            deploy_needs,
            f"deploy {server.name}: {server.replicas} replica(s) on {spec.runtime.kind}",
            # a replica count changed here or on another server changes cores_shared_by
            # too: running replicas keep their threads, new ones resolve "auto" anew
            updatable=frozenset({"replicas", "cores_shared_by"}),
            after_apply=("threads",) if inputs["threads"] == AUTO else (),
        )
        return deploy.id

    def pack_inputs(self, server: Server) -> dict[str, Any]:
        spec = self.spec
        batching = asdict(server.batching)  # the server's, for each of its models
        inputs = {
            "spec": spec.name,
            "environment": spec.environment,
            "server": server.name,
            "runtime": spec.runtime.kind,
            "processor": server.processor,
            "share_weights": server.share_weights,
            "server_code": server_code_digest(),
            "models": [
                {
                    "name": m.model,
                    "task": spec.model(m.model).task,
                    "instances": m.instances,
                    "trace": trace_id(m.model, server.processor),
                    **batching,
                }
                for m in server.models
            ],
        }
        if self.images:  # the image carries all of doinfer's code
            inputs |= {"image": image_id(server.processor), "engine_code": package_digest()}
        return inputs | self.runtime.pack_inputs(spec, server)

    def add_fleet(self, packed_fleet: PackedFleet) -> list[str]:
        """A fleet's packing record and its router; the steps its scenarios need."""
        self.add(
            packing_id(packed_fleet.server.name),
            "packing",
            packing_inputs(packed_fleet),
            sorted(packed_fleet.measured),  # measured, then packed
            packing_summary(packed_fleet),
            # a record: updated in place
            updatable=frozenset({"packing", "bill", "fleet", "measured"}),
        )
        devices = [f"deploy/{d.name}" for d in packed_fleet.devices]
        name = packed_fleet.server.name
        router = self.add(
            f"router/{name}",
            "router",
            router_inputs(self.spec, packed_fleet, self.runtime),
            devices,
            f"route {name}: one address for {len(packed_fleet.fleet.demands)} models on "
            f"{len(devices)} servers",
            follows_upstream=True,  # a device's new address is a new routing table
        )
        return [router.id]

    def add_waiting_fleet(
        self, fleet: WaitingFleet, recorded: Mapping[str, Mapping[str, Any]]
    ) -> str:
        """A fleet packed when its profiles are measured (apply plans it then): its
        packing step, which waits for them; what runs of it runs on, as it is."""
        name, waits_for = fleet.server.name, list(fleet.waits_for)
        inputs = waiting_packing_inputs(name, waits_for)
        step = self.add(packing_id(name), "packing", inputs, waits_for, waiting_summary(inputs))
        self.steps |= {s.id: s for s in kept_steps(fleet, recorded, self.steps)}
        return step.id

    def add_scenarios(self, needs: list[str]) -> None:
        for scenario in self.spec.scenarios:
            self.add(
                f"scenario/{scenario.name}",
                "scenario",
                scenario.to_json(),
                needs,
                f"scenario {scenario.name} ({scenario.kind})",
                follows_upstream=True,
                exclusive=True,
            )


def _deploy_inputs(
    spec: Spec,
    server: Server,
    runtime: type[Runtime],
    pack: Step,
    node_type: str | None,
    total_replicas: int,
) -> dict[str, Any]:
    inputs = {
        "spec": spec.name,
        "environment": spec.environment,
        "server": server.name,
        "runtime": spec.runtime.kind,
        "replicas": server.replicas,
        "port": server.port,
        "bind_address": spec.runtime.bind_address,
        # decided where the servers run (the runtime resolves "auto" at apply):
        # a plan does not depend on the cores of the machine making it
        "threads": server.threads or AUTO,
        "models": pack.inputs["models"],
    }
    inputs |= runtime.deploy_inputs(spec, server)  # it may decide threads itself
    if inputs["threads"] == AUTO:
        inputs["cores_shared_by"] = total_replicas  # every replica of the spec
    if node_type is not None:  # a fleet's device: on a node of the chosen type
        inputs["node_type"] = node_type
    if server.limits:  # the server's defaults otherwise
        inputs["limits"] = server.limits
    return inputs


def packing_inputs(packed: PackedFleet) -> dict[str, Any]:
    """A fleet's packing as its step records it: the packing (what a re-pack starts
    from, what `plan --format json` shows), its bill, and the digest of the fleet it was
    packed for (while that is the same, the next plan keeps the packing as it is)."""
    inputs = {
        "server": packed.server.name,
        "packing": packed.packing.to_json(),
        "bill": packed.summary.to_json(),
        "fleet": packed.digest,
    }
    if packed.measured:  # the profiles it rests on that were measured, not declared
        inputs["measured"] = {i: p.to_json() for i, p in sorted(packed.measured.items())}
    return inputs


def router_server(packed: PackedFleet) -> Server:
    """The router as the runtime sees a server: the fleet's name, port, resources and
    node selector; one replica with one thread, on any node (it routes, it computes
    nothing: no accelerator)."""
    fleet = packed.server
    return Server(
        name=fleet.name,
        processor="cpu",
        models=(),
        port=fleet.port,
        threads=1,
        resources=fleet.resources,
        node_selector=fleet.node_selector,
    )


def router_inputs(spec: Spec, packed: PackedFleet, runtime: type[Runtime]) -> dict[str, Any]:
    """The router replica's deploy inputs: it runs under the fleet server's own name (and
    port, if the spec fixes one), and serves every model of the fleet as `<model>-0`;
    with what the runtime adds to any server's (where it listens, its objects)."""
    routes: dict[str, list[dict[str, Any]]] = {}
    for device, rates in sorted(packed.rates.items()):
        for model, rate in sorted(rates.items()):
            routes.setdefault(model, []).append(
                {"server": device, "instance": instance_name(model), "weight": rate}
            )
    return {
        "spec": spec.name,
        "environment": spec.environment,
        "server": packed.server.name,
        "runtime": spec.runtime.kind,
        "replicas": 1,
        "port": packed.server.port,
        "bind_address": spec.runtime.bind_address,
        "threads": 1,
        "models": [
            {"name": d.model, "task": spec.model(d.model).task, "instances": 1}
            for d in sorted(packed.fleet.demands, key=lambda d: d.model)
        ],
        "routes": dict(sorted(routes.items())),
    } | runtime.deploy_inputs(spec, router_server(packed))


def packing_summary(packed: PackedFleet) -> str:
    nodes: dict[str, int] = {}
    for node in packed.packing.nodes:
        nodes[node.type.name] = nodes.get(node.type.name, 0) + 1
    kinds = ", ".join(f"{count} {name}" for name, count in sorted(nodes.items()))
    return (
        f"pack {packed.server.name}: {len(packed.fleet.demands)} models onto "
        f"{len(packed.devices)} devices of {kinds or 'no nodes'}, "
        f"${packed.packing.cost_per_hour:,.2f}/h (lower bound "
        f"${packed.packing.lower_bound_per_hour:,.2f}/h)"
    )


def trace_placer(spec: Spec) -> Callable[[str], Host | None]:
    """Which host traces for a processor: a host of that processor if the spec lists any
    (the least loaded so far, in spec order, so a plan says exactly where each trace
    runs), else none: the trace runs here (cpu, or a local device that validation found)."""
    load: dict[str, int] = {h.name: 0 for h in spec.hosts}

    def place(processor: str) -> Host | None:
        candidates = [h for h in spec.hosts if h.processor == processor]
        if not candidates:
            return None
        host = min(candidates, key=lambda h: load[h.name] / h.max_parallel)
        load[host.name] += 1
        return host

    return place


def host_settings(host: Host, base_dir: Path) -> dict[str, Any]:
    """A host as a step records it: JSON, with key files as absolute paths (~ expanded,
    relative paths against the spec's directory), so a saved plan applies from anywhere."""
    settings = asdict(host)
    for key in ("identity", "known_hosts"):
        if settings[key] is not None:
            settings[key] = str(base_dir / os.path.expanduser(settings[key]))
    return settings


@functools.cache
def server_code_digest() -> str:
    """What the model server runs: a change to its code restarts the replicas."""
    package = Path(engine.__file__).parent
    files = [package / "artifacts.py", *sorted((package / "serving").glob("*.py"))]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def package_digest() -> str:
    """All of doinfer's code: a server image carries it (the load clients run from it too)."""
    package = Path(engine.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] != "images":
            digest.update(f"{relative}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]
