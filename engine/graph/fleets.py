"""A spec's packing: auto servers, packed and turned into the servers that run.

Each device that holds copies becomes a server of its own, `<server>-<node>-<device>`,
holding one instance of each of its copies' models, on a node of the chosen type. Node
names survive a re-pack, so a device whose copies stayed keeps its server, and its steps
stay unchanged in the plan. A previous packing (recorded by the `packing/<server>` step)
is kept as it is while the fleet it was packed for is the same (its digest, recorded
beside it), re-packed with the fewest moves when the fleet changed, and without one the
fleet is packed afresh. A fleet with a profile still to measure (engine/graph/profiles.py)
is not packed: it waits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.canonical import canonical_json
from engine.graph.profiles import ProfileNeed, measured_profiles
from engine.graph.step import Step
from engine.packing.fleet import Fleet, Packing
from engine.packing.report import Summary, summarize
from engine.profiles import MeasuredProfile
from engine.spec.fleet import fleet_of
from engine.spec.model import Server, ServerModel, Spec


def packing_id(server: str) -> str:
    return f"packing/{server}"


@dataclass(frozen=True)
class PackedFleet:
    """One packing: auto server: its fleet, its packing, and the servers it runs."""

    server: Server
    fleet: Fleet
    packing: Packing
    devices: tuple[Server, ...]  # one per device with copies
    node_types: Mapping[str, str]  # device server name -> node type name
    rates: Mapping[str, Mapping[str, float]]  # device server name -> model -> rate
    digest: str  # of the fleet it was packed for (fleet_digest): the packing step records it
    measured: Mapping[str, MeasuredProfile] = field(default_factory=dict)  # by profile step

    @property
    def summary(self) -> Summary:
        return summarize(self.server.name, self.fleet, self.packing)


def fleet_digest(fleet: Fleet) -> str:
    """What a packing was packed for: its models' demands and profiles, the node types
    allowed (with their prices) and the cap on cores."""
    form = {  # asdict(fleet), written out: asdict's deep copy of thousands of demands is slow
        "demands": [
            {
                "model": d.model,
                "profiles": {
                    p: {"memory_mib": f.memory_mib, "rate_per_core": f.rate_per_core}
                    for p, f in d.profiles.items()
                },
                "rate": d.rate,
                "instances": d.instances,
            }
            for d in fleet.demands
        ],
        "node_types": [asdict(t) for t in fleet.node_types],
        "max_utilization": fleet.max_utilization,
    }
    return hashlib.sha256(canonical_json(form).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WaitingFleet:
    """A packing: auto server whose packing waits for profiles still to be measured."""

    server: Server
    waits_for: tuple[str, ...]  # the profile steps' ids


def instance_name(model: str) -> str:
    """A copy's name on its device's server (its one instance)."""
    return f"{model}-0"


def expand(
    spec: Spec,
    recorded: Mapping[str, Mapping[str, Any]] | None = None,
    profiles: list[ProfileNeed] | None = None,
) -> tuple[list[Server], list[PackedFleet], list[WaitingFleet]]:
    """The servers that run (manual ones as written, each packed fleet's device servers),
    each fleet's packing, and the fleets that wait for profiles. `recorded` is the
    state's step records, for re-packing; `profiles` the profiles the fleets measure."""
    servers: list[Server] = []
    fleets: list[PackedFleet] = []
    waiting: list[WaitingFleet] = []
    measured = measured_profiles(profiles or [])
    for server in spec.servers:
        if server.packing != "auto":
            servers.append(server)
            continue
        names = {m.model for m in server.models}
        mine = [n for n in profiles or [] if n.model in names]
        missing = tuple(n.id for n in mine if n.measured is None)
        if missing:
            waiting.append(WaitingFleet(server, missing))
            continue
        known = {k: v for k, v in measured.items() if v is not None}
        fleet = fleet_of(spec, server, known)
        record = (recorded or {}).get(packing_id(server.name))
        digest = fleet_digest(fleet)
        packing = _pack(fleet, digest, spec, record)
        devices, node_types, rates = [], {}, {}
        for node in packing.nodes:
            for i, device in enumerate(node.devices):
                if not device.copies:
                    continue
                name = f"{server.name}-{node.name}-{i}"
                devices.append(
                    Server(
                        name=name,
                        processor=node.type.processor,  # type: ignore[arg-type]
                        models=tuple(ServerModel(c.model) for c in device.copies),
                        batching=server.batching,
                        threads=server.threads,
                        share_weights=server.share_weights,
                        limits=server.limits,
                        resources=server.resources,
                        node_selector=server.node_selector,
                    )
                )
                node_types[name] = node.type.name
                rates[name] = {c.model: c.rate for c in device.copies}
        servers += devices
        used = {n.id: n.measured for n in mine if n.measured is not None}
        fleets.append(
            PackedFleet(server, fleet, packing, tuple(devices), node_types, rates, digest, used)
        )
    return servers, fleets, waiting


def kept_steps(
    waiting: WaitingFleet, recorded: Mapping[str, Mapping[str, Any]], desired: Collection[str]
) -> list[Step]:
    """What runs of a waiting fleet, as recorded: its device servers' and its router's
    steps (and what they need that the spec no longer asks for), so that a plan made
    before the profiles are measured keeps them unchanged rather than deleting them. The
    plan made after re-packs the fleet from its recorded packing."""
    name = waiting.server.name
    record = recorded.get(packing_id(name))
    if record is None or not record.get("inputs", {}).get("packing"):
        return []
    servers = {name} | {
        f"{name}-{node['name']}-{i}"
        for node in record["inputs"]["packing"]["nodes"]
        for i, device in enumerate(node["devices"])
        if device["copies"]
    }
    todo = [
        i
        for i, r in recorded.items()
        if r.get("kind") in ("pack", "push", "deploy", "router")
        and r.get("inputs", {}).get("server") in servers
    ]
    kept: dict[str, Step] = {}
    while todo:
        step_id = todo.pop()
        if step_id in kept or step_id in desired or step_id not in recorded:
            continue
        r = recorded[step_id]
        needs = tuple(r.get("needs", ()))
        summary = r.get("summary", step_id)
        kept[step_id] = Step(step_id, r["kind"], r["inputs"], needs, r["fingerprint"], summary)
        todo.extend(needs)
    return [kept[i] for i in sorted(kept)]


def _pack(fleet: Fleet, digest: str, spec: Spec, record: Mapping[str, Any] | None) -> Packing:
    from engine.packing.repack import repack
    from engine.packing.solver import pack

    def as_recorded(packing: Packing) -> Packing:  # its JSON rounds: plan what is recorded
        return Packing.from_json(packing.to_json(), spec.catalog)

    inputs = record.get("inputs", {}) if record else {}
    if not inputs.get("packing"):
        return as_recorded(pack(fleet))
    previous = Packing.from_json(inputs["packing"], spec.catalog)
    if inputs.get("fleet") == digest:
        return previous  # the same fleet: a re-pack would move rates about for nothing
    return as_recorded(repack(fleet, previous))
