"""A spec's packing: auto servers, packed and turned into the servers that run.

Each device that holds copies becomes a server of its own, `<server>-<node>-<device>`,
holding one instance of each of its copies' models, on a node of the chosen type. Node
names survive a re-pack, so a device whose copies stayed keeps its server, and its steps
stay unchanged in the plan. A previous packing (recorded by the `packing/<server>` step)
is re-packed with the fewest moves; without one the fleet is packed afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.packing.fleet import Fleet, Packing
from engine.packing.report import Summary, summarize
from engine.packing.servers import fleet_of
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

    @property
    def summary(self) -> Summary:
        return summarize(self.server.name, self.fleet, self.packing)


def instance_name(model: str) -> str:
    """A copy's name on its device's server (its one instance)."""
    return f"{model}-0"


def expand(
    spec: Spec, recorded: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[Server], list[PackedFleet]]:
    """The servers that run (manual ones as written, each fleet's device servers), and
    each fleet's packing. `recorded` is the state's step records, for re-packing."""
    servers: list[Server] = []
    fleets: list[PackedFleet] = []
    for server in spec.servers:
        if server.packing != "auto":
            servers.append(server)
            continue
        fleet = fleet_of(spec, server)
        record = (recorded or {}).get(packing_id(server.name))
        packing = _pack(fleet, spec, record)
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
                    )
                )
                node_types[name] = node.type.name
                rates[name] = {c.model: c.rate for c in device.copies}
        servers += devices
        fleets.append(PackedFleet(server, fleet, packing, tuple(devices), node_types, rates))
    return servers, fleets


def _pack(fleet: Fleet, spec: Spec, record: Mapping[str, Any] | None) -> Packing:
    from engine.packing.repack import repack
    from engine.packing.solver import pack

    previous = record.get("inputs", {}).get("packing") if record else None
    if previous:
        return repack(fleet, Packing.from_json(previous, spec.catalog))
    return pack(fleet)
