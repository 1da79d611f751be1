"""An independent check of a packing against its fleet: every limit the issue states."""

from __future__ import annotations

import os
import random
from collections import defaultdict

from engine.packing import BUILTIN, Demand, Fleet, Packing, Profile

TOL = 1e-6


def examples(count: int) -> int:
    """A property test's max_examples, scaled by DOINFER_HYPOTHESIS_SCALE (default 1) so
    that a long local search (`DOINFER_HYPOTHESIS_SCALE=20 pytest ...`) needs no edit."""
    return max(1, round(count * float(os.environ.get("DOINFER_HYPOTHESIS_SCALE", "1"))))


def violations(fleet: Fleet, packing: Packing) -> list[str]:
    """Every broken limit, as text; [] for a feasible packing."""
    u = fleet.max_utilization
    demands = {d.model: d for d in fleet.demands}
    allowed = {t.name: t for t in fleet.node_types}
    routed: dict[str, float] = defaultdict(float)
    copies: dict[str, list[float]] = defaultdict(list)
    found = []
    for node in packing.nodes:
        if allowed.get(node.type.name) != node.type:
            found.append(f"{node.name}: type {node.type.name} is not one the fleet allows")
        if len(node.devices) != node.type.devices:
            found.append(f"{node.name}: {len(node.devices)} devices, not {node.type.devices}")
        for i, device in enumerate(node.devices):
            names = [c.model for c in device.copies]
            if len(names) != len(set(names)):
                found.append(f"{node.name}/{i}: a model twice on one device")
            memory = load = 0.0
            for copy in device.copies:
                profile = demands[copy.model].profiles.get(node.type.processor)
                if profile is None:
                    found.append(f"{node.name}/{i}: {copy.model} has no {node.type.processor}")
                    continue
                if copy.rate < -TOL:
                    found.append(f"{node.name}/{i}: {copy.model} negative rate")
                memory += profile.memory_mib
                load += copy.rate / profile.rate_per_core
                routed[copy.model] += copy.rate
                copies[copy.model].append(copy.rate)
            if memory > node.type.memory_per_device_mib * (1 + TOL):
                found.append(
                    f"{node.name}/{i}: memory {memory} > {node.type.memory_per_device_mib}"
                )
            if load > node.type.cores_per_device * u * (1 + TOL) + TOL:
                found.append(f"{node.name}/{i}: load {load} > {node.type.cores_per_device * u}")
    for name, d in demands.items():
        if not copies[name]:
            found.append(f"{name}: no copy")
        if abs(routed[name] - d.rate) > TOL * max(1.0, d.rate):
            found.append(f"{name}: routed {routed[name]} != demand {d.rate}")
        if d.instances is not None:
            if len(copies[name]) != d.instances:
                found.append(f"{name}: {len(copies[name])} copies, pinned {d.instances}")
            share = d.rate / d.instances
            if any(abs(r - share) > TOL * max(1.0, share) for r in copies[name]):
                found.append(f"{name}: pinned copies carry unequal shares")
    cost = sum(n.type.price_per_hour for n in packing.nodes)
    if abs(packing.cost_per_hour - cost) > TOL:
        found.append(f"cost {packing.cost_per_hour} != sum of node prices {cost}")
    if packing.lower_bound_per_hour > cost + TOL:
        found.append(f"bound {packing.lower_bound_per_hour} above cost {cost}")
    return found


def long_tail_fleet(count: int, seed: int = 0, names: tuple[str, ...] = ()) -> Fleet:
    """`count` models of assorted sizes with a long-tailed (Pareto) demand, on the
    built-in node types (those named, or all)."""
    rng = random.Random(seed)
    demands = []
    for i in range(count):
        memory = rng.choice((250, 520, 900, 1400))
        profiles = {
            "inf": Profile(memory, rng.uniform(80, 140)),
            "cpu": Profile(memory * 1.2, rng.uniform(10, 20)),
        }
        demands.append(Demand(f"m{i:05d}", profiles, round(rng.paretovariate(1.16) * 0.4, 3)))
    types = tuple(t for t in BUILTIN if not names or t.name.split(".")[0] in names)
    return Fleet(tuple(demands), types, 0.75)
