"""What a packing is asked (a Fleet) and what it answers (a Packing), as frozen values.

A Packing has one JSON form: the plan's `packing` section, what the state records, and
what a re-pack starts from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import DoinferError
from engine.packing.catalog import NodeType


class PackingError(DoinferError):
    """The fleet cannot be packed as asked: a model fits nowhere, a pin cannot hold."""


@dataclass(frozen=True)
class Profile:
    """One loaded copy of a model on a processor: its memory, and the rate one core
    sustains within the server's SLO."""

    memory_mib: float
    rate_per_core: float


@dataclass(frozen=True)
class Demand:
    """A model of the fleet: its demand, and its profile per processor. `instances` pins
    the number of copies (each on its own device, the rate shared equally among them);
    without it the packer chooses the copies and may route unequal shares to them."""

    model: str
    profiles: Mapping[str, Profile]
    rate: float = 0.0  # requests/s
    instances: int | None = None

    def __post_init__(self) -> None:
        # The schema keeps a spec's rates and pins in range; this guards every other caller
        # (a re-pack, a test), since a negative rate would be routed as if it were demand.
        if not self.rate >= 0:  # also NaN
            raise PackingError(f"model {self.model}: rate {self.rate} is not a rate (>= 0)")
        if self.instances is not None and self.instances < 1:
            raise PackingError(f"model {self.model}: instances {self.instances} is not >= 1")


@dataclass(frozen=True)
class Fleet:
    """A packing problem: the models, the node types allowed, the cap on device cores."""

    demands: tuple[Demand, ...]
    node_types: tuple[NodeType, ...]
    max_utilization: float = 0.75


@dataclass(frozen=True)
class Copy:
    model: str
    rate: float  # requests/s routed to this copy


@dataclass(frozen=True)
class Device:
    copies: tuple[Copy, ...] = ()


@dataclass(frozen=True)
class Node:
    """A node of the fleet. Its name stays while the node does (a re-pack keeps it), so
    what runs on its devices keeps its name too."""

    name: str
    type: NodeType
    devices: tuple[Device, ...]


@dataclass(frozen=True)
class Packing:
    """The nodes chosen, the copies on each of their devices, and the LP lower bound on
    the cost per hour of any packing of the same fleet."""

    nodes: tuple[Node, ...]
    lower_bound_per_hour: float
    stats: Mapping[str, Any] = field(default_factory=dict, compare=False)  # how it was found

    @property
    def cost_per_hour(self) -> float:
        return sum(n.type.price_per_hour for n in self.nodes)

    def copies(self) -> dict[str, int]:
        """Model -> number of copies."""
        counts: dict[str, int] = {}
        for node in self.nodes:
            for device in node.devices:
                for copy in device.copies:
                    counts[copy.model] = counts.get(copy.model, 0) + 1
        return counts

    def placements(self) -> set[tuple[str, int, str]]:
        """Every copy as (node name, device index, model)."""
        return {
            (n.name, i, c.model)
            for n in self.nodes
            for i, d in enumerate(n.devices)
            for c in d.copies
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "name": n.name,
                    "type": n.type.name,
                    "price_per_hour": n.type.price_per_hour,
                    "devices": [
                        {"copies": [{"model": c.model, "rate": round(c.rate, 6)} for c in d.copies]}
                        for d in n.devices
                    ],
                }
                for n in self.nodes
            ],
            "cost_per_hour": round(self.cost_per_hour, 6),
            "lower_bound_per_hour": round(self.lower_bound_per_hour, 6),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], node_types: Mapping[str, NodeType]) -> Packing:
        """A recorded packing; node types no longer in the catalog are dropped with their
        copies (a re-pack places those again)."""
        nodes = tuple(
            Node(
                n["name"],
                node_types[n["type"]],
                tuple(
                    Device(tuple(Copy(c["model"], float(c["rate"])) for c in d["copies"]))
                    for d in n["devices"]
                ),
            )
            for n in data.get("nodes", [])
            if n["type"] in node_types
        )
        return cls(nodes, float(data.get("lower_bound_per_hour", 0.0)))
