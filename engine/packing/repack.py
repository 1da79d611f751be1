"""Re-pack a fleet after its demand or models changed, moving as few copies as it can.

Copies that can stay, stay: each kept model's new demand is routed over the copies it
already has (in proportion to what they carried, within each device's cores), and only
what they cannot carry — new models, grown demand, copies whose device is gone — is
placed: first on the spare room of the devices there are, then on new nodes packed as a
fleet of its own. A node left empty is given up. The bound is the whole fleet's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.packing.fleet import Copy, Demand, Device, Fleet, Node, Packing
from engine.packing.solver import (
    EPS,
    DeviceClass,
    cheapest_node,
    device_classes,
    fits,
    named,
    pack,
    relaxation,
)


@dataclass
class _Slot:
    """A device as it is re-filled: its class and its copies' rates."""

    node: Node
    cls: DeviceClass
    rates: dict[str, float] = field(default_factory=dict)

    def memory_left(self, demands: dict[str, Demand]) -> float:
        used = sum(demands[m].profiles[self.cls.processor].memory_mib for m in self.rates)
        return self.cls.memory_mib - used

    def load(self, demands: dict[str, Demand]) -> float:
        return sum(
            rate / demands[m].profiles[self.cls.processor].rate_per_core
            for m, rate in self.rates.items()
        )


def repack(fleet: Fleet, previous: Packing) -> Packing:
    """The fleet packed starting from `previous`, moving few copies."""
    u = fleet.max_utilization
    demands = {d.model: d for d in fleet.demands}
    allowed = {t.name for t in fleet.node_types}
    slots: list[_Slot] = []
    for node in previous.nodes:
        if node.type.name not in allowed:
            continue
        cls = DeviceClass.of(node.type)
        for device in node.devices:
            slot = _Slot(node, cls)
            for copy in device.copies:
                d = demands.get(copy.model)
                if d is not None and fits(d, cls, u) and _fits_memory(slot, d, demands):
                    slot.rates[copy.model] = copy.rate
            slots.append(slot)
    unserved, missing = _route(slots, demands, u)
    _top_up(slots, demands, unserved, missing, u)
    rest = []
    for d in sorted(demands.values(), key=lambda d: d.model):
        if d.instances and missing.get(d.model):
            share = d.rate / d.instances
            rest.append(Demand(d.model, d.profiles, share * missing[d.model], missing[d.model]))
        elif not d.instances and (unserved[d.model] > EPS or missing.get(d.model)):
            rest.append(Demand(d.model, d.profiles, unserved[d.model]))
    nodes = _kept_nodes(previous, slots)
    if rest:
        extra = pack(Fleet(tuple(rest), fleet.node_types, u))
        nodes += [Node("", n.type, n.devices) for n in extra.nodes]
    classes = device_classes(fleet.node_types)
    options = {
        d.model: [k for k, c in enumerate(classes) if fits(d, c, u)] for d in demands.values()
    }
    bound, _ = relaxation(sorted(fleet.demands, key=lambda d: d.model), classes, options, u)
    if demands:
        bound = max(bound, cheapest_node(classes, options))
    kept = named(nodes, taken=(n.name for n in previous.nodes))
    return Packing(tuple(kept), bound, {"method": "repack"})


def _fits_memory(slot: _Slot, d: Demand, demands: dict[str, Demand]) -> bool:
    return d.profiles[slot.cls.processor].memory_mib <= slot.memory_left(demands) + EPS


def _route(
    slots: Sequence[_Slot], demands: dict[str, Demand], u: float
) -> tuple[dict[str, float], dict[str, int]]:
    """Route each model's demand over the copies it kept. Returns the demand left
    unserved, and the copies still missing (a pinned model's, or the one copy a model
    without demand and without copies needs)."""
    held: dict[str, list[_Slot]] = {}
    for slot in slots:
        for model in slot.rates:
            held.setdefault(model, []).append(slot)
    unserved: dict[str, float] = {}
    missing: dict[str, int] = {}
    for model, d in demands.items():
        mine = held.get(model, [])
        unserved[model] = 0.0
        if d.instances:
            for extra in mine[d.instances :]:
                del extra.rates[model]
            mine = mine[: d.instances]
            for slot in mine:
                slot.rates[model] = d.rate / d.instances
            missing[model] = d.instances - len(mine)
        elif mine:
            before = sum(slot.rates[model] for slot in mine)
            for slot in mine:
                weight = slot.rates[model] / before if before > 0 else 1 / len(mine)
                slot.rates[model] = d.rate * weight
        else:
            unserved[model] = d.rate
            missing[model] = 1
    for slot in slots:  # a device over its cores sheds its biggest copies' load first
        excess = slot.load(demands) - slot.cls.capacity(u)
        biggest = sorted(
            (m for m in slot.rates if not demands[m].instances),
            key=lambda m: (
                -slot.rates[m] / demands[m].profiles[slot.cls.processor].rate_per_core,
                m,
            ),
        )
        for model in biggest:
            if excess <= EPS:
                break
            r = demands[model].profiles[slot.cls.processor].rate_per_core
            shed = min(slot.rates[model], excess * r)
            slot.rates[model] -= shed
            unserved[model] += shed
            excess -= shed / r
    return unserved, missing


def _top_up(
    slots: Sequence[_Slot],
    demands: dict[str, Demand],
    unserved: dict[str, float],
    missing: dict[str, int],
    u: float,
) -> None:
    """Unserved demand goes first to the copies there are, then to new copies on the
    spare room of the devices there are (first fit). A model with no demand and no copy
    (new, or its copies' device gone) gets one copy where memory is left: it needs no
    cores, and the router must still answer it."""
    for model in sorted(unserved):
        d = demands[model]
        if d.instances:
            continue
        if unserved[model] <= EPS and missing.get(model):
            for slot in sorted(slots, key=lambda s: not s.rates):  # not alone on a node
                if fits(d, slot.cls, u) and _fits_memory(slot, d, demands):
                    slot.rates[model] = 0.0
                    missing.pop(model)
                    break
            continue
        if unserved[model] <= EPS:
            continue
        for adding in (False, True):
            for slot in slots:
                if unserved[model] <= EPS:
                    break
                if (model in slot.rates) == adding:
                    continue
                if adding and not (fits(d, slot.cls, u) and _fits_memory(slot, d, demands)):
                    continue
                r = d.profiles[slot.cls.processor].rate_per_core
                spare = (slot.cls.capacity(u) - slot.load(demands)) * r
                if spare <= EPS * max(1.0, d.rate):
                    continue
                take = min(spare, unserved[model])
                slot.rates[model] = slot.rates.get(model, 0.0) + take
                unserved[model] -= take
        if unserved[model] < EPS * max(1.0, d.rate):
            unserved[model] = 0.0
        if any(model in slot.rates for slot in slots):
            missing.pop(model, None)


def _kept_nodes(previous: Packing, slots: Sequence[_Slot]) -> list[Node]:
    by_node: dict[str, list[_Slot]] = {}
    for slot in slots:
        by_node.setdefault(slot.node.name, []).append(slot)
    nodes = []
    for node in previous.nodes:
        mine = by_node.get(node.name)
        if not mine or not any(slot.rates for slot in mine):
            continue
        devices = tuple(
            Device(tuple(Copy(m, r) for m, r in sorted(slot.rates.items()))) for slot in mine
        )
        nodes.append(Node(node.name, node.type, devices))
    return nodes


def moves(previous: Packing, current: Packing) -> tuple[int, int]:
    """Copies loaded anew and copies unloaded between two packings."""
    before, after = previous.placements(), current.placements()
    return len(after - before), len(before - after)
