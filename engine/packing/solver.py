"""Choose node types, node counts and the copies each device loads, at the least cost per hour.

The problem is variable-sized, two-dimensional (memory, cores) bin packing where an item
(a model's demand) may be split across copies, each copy costing its memory again. What
the literature teaches, and what this module does with it:

1. *Classes.* Node types whose devices are alike (processor, cores, memory) form one device
   class, priced at its cheapest device. A class that is no better than another in memory
   and cores per dollar, and no bigger, is dominated and dropped from the search.
2. *Relaxation.* The LP relaxation of the assignment (fractions of each model's demand per
   class, fractional devices; a copy carries at most one device's cores) gives the lower
   bound every packing is measured against, and its (nearly integral) solution chooses
   each model's class. It is solved for groups of alike models, and its dual prices give
   the bound over every model. HiGHS solves it (highs.py), imported only when a spec packs
   and some model has more than one class to choose from.
3. *Packing a class.* Pinned copies first fit; the rest fill devices one by one, taking
   from both ends of the list sorted by load per MiB so that each device's memory and
   cores run out together (the ratio-balancing idea of vector bin packing), and a model
   whose load overflows a device's cores is split: the device takes what it can, the rest
   of the demand goes on (splitting costs at most one extra copy per device). Copies
   without load (rate 0) need memory only and fill the room the others left, last.
4. *Nodes.* Each device moves to the cheapest class that still holds it (a small last
   device on a smaller node), and each class's devices are covered by the cheapest mix of
   its node types (a small covering knapsack).
5. *Small fleets* are solved exactly as a MILP over every node the heuristic's cost could
   buy, so that a handful of models gets the true optimum.

Deterministic: inputs are sorted by name, ties break by name, HiGHS runs single-threaded
without time limits that could cut it differently.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.packing.catalog import NodeType
from engine.packing.fleet import Copy, Demand, Device, Fleet, Node, Packing, PackingError

EPS = 1e-9
EXACT_MAX_MODELS = 6  # small fleets are solved exactly
EXACT_MAX_CELLS = 400  # models x candidate devices the exact MILP may hold
MIN_SPLIT = 0.02  # of a device's cores: a smaller share of a dense model is not split off
DENSE_LOOKAHEAD = 16  # items past the dense end a device looks for one it does not hold
GROUP_STEP = 0.05  # models this close in memory and load share a row of the bound's LP
COPY_TIEBREAK = 1e-7  # $/h the exact MILP charges per copy, below any price difference


@dataclass(frozen=True)
class DeviceClass:
    """Node types whose devices are alike: whatever fits one device fits any of them."""

    processor: str
    cores: float
    memory_mib: float
    types: tuple[NodeType, ...]  # cheapest device first, then by name

    @property
    def price_per_device(self) -> float:
        return self.types[0].price_per_device

    @property
    def name(self) -> str:
        return self.types[0].name

    @classmethod
    def of(cls, node_type: NodeType) -> DeviceClass:
        return cls(
            node_type.processor,
            node_type.cores_per_device,
            node_type.memory_per_device_mib,
            (node_type,),
        )

    def capacity(self, max_utilization: float) -> float:
        """Cores a device's copies may use in all."""
        return self.cores * max_utilization


def device_classes(node_types: Iterable[NodeType]) -> list[DeviceClass]:
    """Node types grouped by device shape, cheapest device first."""
    groups: dict[tuple[str, float, float], list[NodeType]] = {}
    for t in node_types:
        groups.setdefault((t.processor, t.cores_per_device, t.memory_per_device_mib), []).append(t)
    classes = [
        DeviceClass(p, c, m, tuple(sorted(ts, key=lambda t: (t.price_per_device, t.name))))
        for (p, c, m), ts in groups.items()
    ]
    return sorted(classes, key=lambda k: (k.price_per_device, k.name))


def fits(demand: Demand, cls: DeviceClass, max_utilization: float) -> bool:
    """Whether a copy of the model may go on a device of the class at all."""
    profile = demand.profiles.get(cls.processor)
    if profile is None or profile.memory_mib > cls.memory_mib + EPS:
        return False
    if demand.instances:  # a pinned copy carries its share whole
        share = demand.rate / demand.instances / profile.rate_per_core
        return share <= cls.capacity(max_utilization) + EPS
    return True


def copy_weight(demand: Demand, cls: DeviceClass, max_utilization: float) -> float:
    """The fewest copies (fractionally) the model's whole demand needs on the class."""
    if demand.instances:
        return float(demand.instances)
    load = demand.rate / demand.profiles[cls.processor].rate_per_core
    return max(1.0, load / cls.capacity(max_utilization))


def pack(fleet: Fleet) -> Packing:
    """The cheapest packing found for the fleet, with the LP lower bound beside it."""
    u = fleet.max_utilization
    classes = device_classes(fleet.node_types)
    demands = sorted(fleet.demands, key=lambda d: d.model)
    options = _options(demands, classes, u)
    kept = _undominated(classes)
    search = {m: [k for k in ks if kept[k]] or ks for m, ks in options.items()}
    bound, choice = relaxation(demands, classes, search, u)
    bins = []
    for k, cls in enumerate(classes):
        chosen = [d for d in demands if choice[d.model] == k]
        if chosen:
            bins += _fill(chosen, cls, u)
    bins = [_downsize(b, classes, u) for b in bins]
    nodes = _nodes(bins, classes)
    method = "heuristic"
    if len(demands) <= EXACT_MAX_MODELS:
        exact = _exact(demands, fleet.node_types, u, sum(n.type.price_per_hour for n in nodes))
        if exact is not None:  # solved to optimality: its cost is also the best bound
            nodes, method = exact, "exact"
            bound = max(bound, sum(n.type.price_per_hour for n in nodes))
    if demands:
        bound = max(bound, cheapest_node(classes, options))
    return Packing(tuple(named(nodes)), bound, {"method": method})


def _carries(demand: Demand, rate: float) -> bool:
    """Whether the exact solution's copy is one to load: a copy costs the MILP nothing,
    so it may place copies that carry no load beside those that carry a model's demand;
    those are left out (a pinned copy, or any copy of a model without demand, stays)."""
    return bool(demand.instances) or demand.rate <= 0 or rate > EPS


def named(nodes: Sequence[Node], taken: Iterable[str] = ()) -> list[Node]:
    """Nodes with names n0001, n0002, ... (those in `taken` skipped); named nodes stay."""
    used = set(taken) | {n.name for n in nodes if n.name}
    counter = 0
    result = []
    for node in nodes:
        if not node.name:
            while (name := f"n{counter + 1:04d}") in used:
                counter += 1
            used.add(name)
            node = Node(name, node.type, node.devices)
        result.append(node)
    return result


def cheapest_node(classes: Sequence[DeviceClass], options: dict[str, list[int]]) -> float:
    """Whatever the LP says (a fleet of zero demand costs it nothing), a fleet rents at
    least one node, of a type some model may go to."""
    return min(t.price_per_hour for k in kept_classes(classes, options) for t in classes[k].types)


def kept_classes(classes: Sequence[DeviceClass], options: dict[str, list[int]]) -> set[int]:
    """The classes some model may go to."""
    return {k for ks in options.values() for k in ks}


def _options(
    demands: Sequence[Demand], classes: Sequence[DeviceClass], u: float
) -> dict[str, list[int]]:
    """Model -> the classes its copies may go to; a model with none is an error."""
    options: dict[str, list[int]] = {}
    for d in demands:
        options[d.model] = [k for k, cls in enumerate(classes) if fits(d, cls, u)]
        if not options[d.model]:
            raise PackingError(unplaceable(d, classes, u))
    return options


def unplaceable(d: Demand, classes: Sequence[DeviceClass], u: float) -> str:
    """Why a model fits no device of the classes (for a model that does not)."""
    processors = sorted({c.processor for c in classes})
    profiled = sorted(set(d.profiles) & set(processors))
    if not profiled:
        has = ", ".join(sorted(d.profiles)) or "no processor"
        offered = ", ".join(processors) or "none"
        return (
            f"model {d.model}: it has profiles for {has} but the fleet's node types are "
            f"{offered}; add a profile for one of them"
        )
    biggest = max(c.memory_mib for c in classes if c.processor in profiled)
    need = min(d.profiles[p].memory_mib for p in profiled)
    if need > biggest:
        return (
            f"model {d.model}: one copy needs {need:g} MiB, more than any device of the "
            f"fleet's node types holds ({biggest:g} MiB); add a bigger node type to the catalog"
        )
    return (
        f"model {d.model}: {d.instances} copies at {d.rate / (d.instances or 1):g} requests/s "
        f"each fit no device (cores x max_utilization {u:g}); raise instances or drop the pin"
    )


def _undominated(classes: Sequence[DeviceClass]) -> list[bool]:
    """Classes no other class beats: at least as big, and at least as much memory and
    cores per dollar. Dropping a dominated class changes neither the bound nor the best
    assignment (whatever it holds, its dominator holds as cheaply)."""
    kept = []
    for k, a in enumerate(classes):
        beaten = any(
            _dominates(b, a) and (not _dominates(a, b) or j < k)  # of equals, keep the first
            for j, b in enumerate(classes)
            if j != k
        )
        kept.append(not beaten)
    return kept


def _dominates(b: DeviceClass, a: DeviceClass) -> bool:
    return (
        b.processor == a.processor
        and b.memory_mib >= a.memory_mib
        and b.cores >= a.cores
        and b.memory_mib / b.price_per_device >= a.memory_mib / a.price_per_device
        and b.cores / b.price_per_device >= a.cores / a.price_per_device
    )


def relaxation(
    demands: Sequence[Demand],
    classes: Sequence[DeviceClass],
    options: dict[str, list[int]],
    u: float,
) -> tuple[float, dict[str, int]]:
    """The LP lower bound on the cost per hour, and each model's class from its solution.

    The LP: y[i,k], the fraction of model i's demand served on class k; n[k], the
    (fractional) devices of class k. Served on k, a model needs per unit of y at least
    copy_weight copies (one, or its load over a device's cores), each costing its memory:
        min sum_k price_k n_k   s.t.  sum_k y_ik = 1,
        sum_i mem_ik w_ik y_ik <= M_k n_k,   sum_i load_ik y_ik <= L_k n_k.
    Every packing gives a feasible point, so its optimum bounds every packing's cost.

    Thousands of models make that LP slow, so it is solved for groups of alike models
    (within GROUP_STEP of each other in memory and load on every class), and the bound is
    the dual objective of the full LP at the group LP's prices: any prices (lam_k per MiB,
    mu_k per core) with lam_k M_k + mu_k L_k <= price_k give the valid bound
    sum_i min_k (lam_k mem_ik w_ik + mu_k load_ik), and the group LP's are near the best.
    """
    if all(len(options[d.model]) == 1 for d in demands):  # no choice: the bound is direct
        choice = {d.model: options[d.model][0] for d in demands}
        return _direct_bound(demands, classes, choice, u), choice
    from engine.packing.highs import solve

    def need(d: Demand, k: int) -> tuple[float, float]:
        """Memory (MiB, copies counted) and load (cores) of the whole model on class k."""
        cls = classes[k]
        profile = d.profiles[cls.processor]
        return profile.memory_mib * copy_weight(d, cls, u), d.rate / profile.rate_per_core

    groups: dict[tuple[Any, ...], list[Demand]] = {}
    for d in demands:
        key = tuple((k, *(_bucket(v) for v in need(d, k))) for k in options[d.model])
        groups.setdefault(key, []).append(d)
    members = list(groups.values())
    cells = [(g, k) for g, ds in enumerate(members) for k in options[ds[0].model]]
    used = sorted({k for _, k in cells})
    n_col = {k: len(cells) + j for j, k in enumerate(used)}
    cost = [0.0] * len(cells) + [classes[k].price_per_device for k in used]
    rows: list[dict[int, float]] = [{} for _ in members]
    for c, (g, _) in enumerate(cells):
        rows[g][c] = 1.0
    capacity_rows = {}
    for k in used:
        capacity_rows[k] = len(rows)
        rows.append({n_col[k]: classes[k].memory_mib})
        rows.append({n_col[k]: classes[k].capacity(u)})
    for c, (g, k) in enumerate(cells):
        memory = sum(need(d, k)[0] for d in members[g])
        load = sum(need(d, k)[1] for d in members[g])
        rows[capacity_rows[k]][c] = -memory
        rows[capacity_rows[k] + 1][c] = -load
    lower = [1.0] * len(members) + [0.0] * (2 * len(used))
    upper = [1.0] * len(members) + [math.inf] * (2 * len(used))
    solution = solve(cost, rows, lower, upper)
    if not solution.optimal:  # cannot happen for a fleet whose models all fit somewhere
        raise PackingError("the packing's LP relaxation found no solution")
    prices = {}
    for k in used:  # clipped to stay dual feasible despite rounding
        lam = max(0.0, solution.row_duals[capacity_rows[k]])
        mu = max(0.0, solution.row_duals[capacity_rows[k] + 1])
        spent = lam * classes[k].memory_mib + mu * classes[k].capacity(u)
        scale = min(1.0, classes[k].price_per_device / spent) if spent > 0 else 1.0
        prices[k] = (lam * scale, mu * scale)
    bound = 0.0
    for d in demands:
        bound += min(
            prices[k][0] * need(d, k)[0] + prices[k][1] * need(d, k)[1] for k in options[d.model]
        )
    shares: list[list[tuple[int, float]]] = [[] for _ in members]
    for c, (g, k) in enumerate(cells):
        shares[g].append((k, solution.x[c]))
    choice: dict[str, int] = {}
    for g, ds in enumerate(members):  # a group's members share out its fractions in order
        for j, d in enumerate(ds):
            point, acc = (j + 0.5) / len(ds), 0.0
            choice[d.model] = shares[g][-1][0]
            for k, y in shares[g]:
                acc += y
                if point < acc:
                    choice[d.model] = k
                    break
    return bound, choice


def _bucket(value: float) -> int | None:
    return None if value <= 0 else round(math.log(value) / math.log1p(GROUP_STEP))


def _direct_bound(
    demands: Sequence[Demand], classes: Sequence[DeviceClass], choice: dict[str, int], u: float
) -> float:
    memory: dict[int, float] = {}
    load: dict[int, float] = {}
    for d in demands:
        k = choice[d.model]
        cls = classes[k]
        profile = d.profiles[cls.processor]
        memory[k] = memory.get(k, 0.0) + profile.memory_mib * copy_weight(d, cls, u)
        load[k] = load.get(k, 0.0) + d.rate / profile.rate_per_core
    return sum(
        classes[k].price_per_device
        * max(memory[k] / classes[k].memory_mib, load[k] / classes[k].capacity(u))
        for k in memory
    )


@dataclass
class _Bin:
    """A device being filled: its class, what is left, and its copies' loads (cores)."""

    cls: DeviceClass
    memory_left: float
    load_left: float
    max_utilization: float
    copies: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> (load, r)

    @classmethod
    def empty(cls, device_class: DeviceClass, u: float) -> _Bin:
        return cls(device_class, device_class.memory_mib, device_class.capacity(u), u)

    def add(self, model: str, memory: float, load: float, rate_per_core: float) -> None:
        self.copies[model] = (load, rate_per_core)
        self.memory_left -= memory
        self.load_left -= load


def _fill(demands: Sequence[Demand], cls: DeviceClass, u: float) -> list[_Bin]:
    """Pack the models chosen for one class onto its devices."""
    capacity = cls.capacity(u)
    bins: list[_Bin] = []
    pinned = [d for d in demands if d.instances]
    pinned.sort(key=lambda d: (-d.rate / d.instances / d.profiles[cls.processor].rate_per_core,
                               d.model))  # fmt: skip
    for d in pinned:
        profile = d.profiles[cls.processor]
        share = d.rate / d.instances / profile.rate_per_core
        for _ in range(d.instances):  # first fit, one copy per device
            target = next(
                (
                    b
                    for b in bins
                    if d.model not in b.copies
                    and b.memory_left >= profile.memory_mib - EPS
                    and b.load_left >= share - EPS
                ),
                None,
            )
            if target is None:
                target = _Bin.empty(cls, u)
                bins.append(target)
            target.add(d.model, profile.memory_mib, share, profile.rate_per_core)
    # [model, memory, load still to place, rate per core], densest (load per MiB) first
    items = _Items(
        sorted(
            (
                [d.model, d.profiles[cls.processor].memory_mib,
                 d.rate / d.profiles[cls.processor].rate_per_core,
                 d.profiles[cls.processor].rate_per_core]
                for d in demands
                if not d.instances
            ),
            key=lambda it: (-it[2] / it[1], it[0]),
        )
    )  # fmt: skip
    # the load per MiB the class needs overall, a heavy model's copies counted
    memory = sum(it[1] * max(1.0, it[2] / capacity) for it in items.queue)
    density = items.load / memory if memory > 0 else 0.0
    # Copies without load (rate 0) need memory only: the density above counts their
    # memory, so the others leave room for them, and they fill it last, first fit,
    # biggest first (a device whose cores are used up may still hold them).
    idle = sorted((it for it in items.queue if it[2] <= 0), key=lambda it: (-it[1], it[0]))
    items = _Items([it for it in items.queue if it[2] > 0])
    open_bins = deque(bins)  # pinned devices are topped up first
    while items.queue:
        current = open_bins.popleft() if open_bins else None
        if current is None:
            current = _Bin.empty(cls, u)
            bins.append(current)
        placed = _fill_bin(current, items, density)
        if not placed and not current.copies:  # nothing fits an empty device: cannot happen
            raise PackingError(f"model {items.queue[0][0]}: fits no device of {cls.name}")
    for model, memory_mib, _, rate_per_core in idle:
        target = next((b for b in bins if b.memory_left >= memory_mib - EPS), None)
        if target is None:
            target = _Bin.empty(cls, u)
            bins.append(target)
        target.add(model, memory_mib, 0.0, rate_per_core)
    return bins


class _Items:
    """The copies still to place, densest first, with their total memory and load."""

    def __init__(self, items: list[list[Any]]) -> None:
        self.queue = deque(items)
        self.memory = sum(it[1] for it in items)
        self.load = sum(it[2] for it in items)

    def take(self, end: int, load: float) -> None:
        """Place `load` of the item at `end`; what is left of it stays, needing a copy."""
        item = self.queue[end]
        self.load -= load
        if load < item[2] - EPS * max(1.0, item[2]):
            item[2] -= load
        else:
            self.memory -= item[1]
            del self.queue[end]

    def densest(self, b: _Bin) -> int | None:
        """The densest item the device may take: split remainders of models it already
        holds wait at the dense end, so look a few items past them."""
        for i in range(min(len(self.queue), DENSE_LOOKAHEAD)):
            model, memory, _, _ = self.queue[i]
            if model not in b.copies and memory <= b.memory_left + EPS:
                return i
        return None


def _fill_bin(b: _Bin, items: _Items, density: float) -> bool:
    """Fill one device from both ends of the items; True if it took anything.

    Each device aims at the class's overall density (load per MiB): while it is lighter
    it takes from the dense end, else from the light end, so that every device ends with
    its memory and cores used in the proportion the whole class needs. A dense model
    bigger than what brings the device to its target load (less what the rest of its
    memory will bring from the light end) is split there: a heavy model spreads over many
    devices, one share each, instead of taking a device's cores whole and leaving its
    memory empty.
    """
    capacity = b.cls.capacity(b.max_utilization)
    target = min(capacity, density * b.cls.memory_mib)  # the load the device should carry
    target_memory = min(b.cls.memory_mib, capacity / density) if density > 0 else b.cls.memory_mib
    placed = False
    queue = items.queue
    while queue and b.load_left > EPS * capacity:
        load_used = capacity - b.load_left
        want_dense = load_used <= density * (b.cls.memory_mib - b.memory_left)
        choice = fallback = None
        for side in ("dense", "light") if want_dense else ("light", "dense"):
            end = items.densest(b) if side == "dense" else -1
            if end is None:
                continue
            model, memory, load, _ = queue[end]
            if model in b.copies or memory > b.memory_left + EPS:
                continue
            take = min(load, b.load_left)
            lightest = queue[-1][2] / queue[-1][1]
            # what the rest of the device's memory brings, filled from the light end
            rest = max(0.0, target_memory - (b.cls.memory_mib - b.memory_left) - memory) * lightest
            if side == "dense" and take > target - load_used - rest:
                share = target - load_used - rest
                if share < MIN_SPLIT * capacity:  # a sliver is not worth a copy's memory
                    fallback = fallback or (end, take)
                    continue
                take = share
            choice = (end, take)
            break
        choice = choice or fallback
        if choice is None:
            return placed
        end, take = choice
        model, memory, _, rate_per_core = queue[end]
        b.add(model, memory, take, rate_per_core)
        items.take(end, take)
        placed = True
    return placed


def _downsize(b: _Bin, classes: Sequence[DeviceClass], u: float) -> _Bin:
    """Move a device to the cheapest class of its processor that still holds it."""
    memory = b.cls.memory_mib - b.memory_left
    load = b.cls.capacity(u) - b.load_left
    for cls in classes:  # cheapest device first
        if (
            cls.processor == b.cls.processor
            and cls.memory_mib >= memory - EPS
            and cls.capacity(u) >= load - EPS
        ):
            if cls is b.cls:
                return b
            return _Bin(cls, cls.memory_mib - memory, cls.capacity(u) - load, u, b.copies)
    return b


def _nodes(bins: Sequence[_Bin], classes: Sequence[DeviceClass]) -> list[Node]:
    """Cover each class's devices with its cheapest mix of node types."""
    nodes: list[Node] = []
    for cls in classes:
        mine = [b for b in bins if b.cls is cls]
        if not mine:
            continue
        devices = [
            Device(tuple(Copy(m, load * r) for m, (load, r) in sorted(b.copies.items())))
            for b in mine
        ]
        for node_type in cover(len(devices), cls.types):
            taken, devices = devices[: node_type.devices], devices[node_type.devices :]
            taken += [Device()] * (node_type.devices - len(taken))
            nodes.append(Node("", node_type, tuple(taken)))
    return nodes


def cover(count: int, types: Sequence[NodeType]) -> list[NodeType]:
    """The cheapest list of nodes holding at least `count` devices (biggest nodes first)."""
    best = [0.0] + [math.inf] * count
    pick: list[NodeType | None] = [None] * (count + 1)
    for j in range(1, count + 1):
        for t in types:  # cheapest device first: ties keep the cheaper-per-device type
            c = t.price_per_hour + best[max(0, j - t.devices)]
            if c < best[j] - EPS:
                best[j], pick[j] = c, t
    chosen: list[NodeType] = []
    j = count
    while j > 0:
        t = pick[j]
        assert t is not None
        chosen.append(t)
        j = max(0, j - t.devices)
    return sorted(chosen, key=lambda t: (-t.devices, t.name))


def _exact(
    demands: Sequence[Demand], node_types: Sequence[NodeType], u: float, upper: float
) -> list[Node] | None:
    """The optimum as a MILP over every node the cost `upper` could buy; None when the
    fleet is too big to solve exactly here.

    Columns: x (a copy of model i on device d), f (the rate routed to it), o (node bought).
    """
    from engine.packing.highs import solve

    candidates: list[NodeType] = []  # one entry per node that may be bought
    for t in sorted(node_types, key=lambda t: t.name):
        if any(fits(d, DeviceClass.of(t), u) for d in demands):
            candidates += [t] * int(upper / t.price_per_hour + EPS)
    devices = [(n, t) for n, t in enumerate(candidates) for _ in range(t.devices)]
    if not devices or len(devices) * len(demands) > EXACT_MAX_CELLS:
        return None
    cells = [
        (i, dv)
        for i, d in enumerate(demands)
        for dv, (_, t) in enumerate(devices)
        if fits(d, DeviceClass.of(t), u)
    ]
    nc = len(cells)
    x0, f0, o0 = 0, nc, 2 * nc
    cost = [COPY_TIEBREAK] * nc + [0.0] * nc + [t.price_per_hour for t in candidates]
    rows: list[dict[int, float]] = []
    lower: list[float] = []
    upper_rows: list[float] = []

    def row(coefs: dict[int, float], lo: float, hi: float) -> None:
        rows.append(coefs)
        lower.append(lo)
        upper_rows.append(hi)

    for i, d in enumerate(demands):
        mine = [c for c, (ii, _) in enumerate(cells) if ii == i]
        if d.instances:
            row({x0 + c: 1.0 for c in mine}, d.instances, d.instances)
        else:
            row({x0 + c: 1.0 for c in mine}, 1.0, math.inf)
            row({f0 + c: 1.0 for c in mine}, d.rate, d.rate)
    for c, (i, dv) in enumerate(cells):
        d, t = demands[i], devices[dv][1]
        if d.instances:  # a pinned copy carries its share: f = share * x
            row({f0 + c: 1.0, x0 + c: -d.rate / d.instances}, 0.0, 0.0)
        else:  # a copy carries at most a device's cores
            r = d.profiles[t.processor].rate_per_core
            row({f0 + c: 1.0, x0 + c: -t.cores_per_device * u * r}, -math.inf, 0.0)
    for dv, (n, t) in enumerate(devices):
        mine = [c for c, (_, cdv) in enumerate(cells) if cdv == dv]
        profiles = {c: demands[cells[c][0]].profiles[t.processor] for c in mine}
        memory = {x0 + c: p.memory_mib for c, p in profiles.items()}
        load = {f0 + c: 1.0 / p.rate_per_core for c, p in profiles.items()}
        row({**memory, o0 + n: -t.memory_per_device_mib}, -math.inf, 0.0)
        row({**load, o0 + n: -t.cores_per_device * u}, -math.inf, 0.0)
    for n in range(1, len(candidates)):  # a type's candidates are bought in order
        if candidates[n] is candidates[n - 1]:
            row({o0 + n - 1: 1.0, o0 + n: -1.0}, 0.0, math.inf)
    integer = [*range(x0, x0 + nc), *range(o0, o0 + len(candidates))]
    col_upper = [1.0] * nc + [math.inf] * nc + [1.0] * len(candidates)
    solution = solve(cost, rows, lower, upper_rows, col_upper, integer)
    if not solution.optimal:
        return None
    x = solution.x
    nodes = []
    for n, t in enumerate(candidates):
        if x[o0 + n] < 0.5:
            continue
        node_devices = []
        for dv, (dn, _) in enumerate(devices):
            if dn == n:
                copies = [
                    Copy(demands[i].model, max(0.0, x[f0 + c]))
                    for c, (i, cdv) in enumerate(cells)
                    if cdv == dv and x[x0 + c] > 0.5 and _carries(demands[i], x[f0 + c])
                ]
                node_devices.append(Device(tuple(sorted(copies, key=lambda c: c.model))))
        nodes.append(Node("", t, tuple(node_devices)))
    return sorted(
        nodes, key=lambda n: (n.type.name, [c.model for d in n.devices for c in d.copies])
    )
