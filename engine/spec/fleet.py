"""A packing: auto server of a spec, as the Fleet the packer solves.

Which node types the server may rent: the catalog's (built-in and the spec's), narrowed to
its `node_types` patterns, its processor if it names one, and the processors this spec can
reach (a local runtime serves on this machine; otherwise a processor needs a device here
or a trace host). Semantic checks and the graph both ask here, so they agree.

A model's profile for a processor is declared in the spec, or measured by a profile step
where this machine has the processor and the spec declares none (`unprofiled`): the
declared one wins for its processor, measured ones fill in the rest.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping

from engine.devices import has_local_device
from engine.packing.catalog import NodeType
from engine.packing.fleet import Demand, Fleet, Profile
from engine.spec.model import Server, Spec

PROCESSORS = ("cpu", "gpu", "inf")


def reachable_processors(serves_here: bool, host_processors: Collection[str]) -> set[str]:
    """Processors a fleet may be placed on: traced here or on a host, and served here when
    the runtime serves on this machine."""
    if serves_here:
        return {p for p in PROCESSORS if has_local_device(p)}
    return {p for p in PROCESSORS if has_local_device(p) or p in host_processors}


def unmatched(patterns: Iterable[str], catalog: Mapping[str, NodeType]) -> list[str]:
    """Patterns of a server's node_types that name no catalog type."""
    return [p for p in patterns if not fnmatch.filter(catalog, p)]


def allowed_types(
    catalog: Mapping[str, NodeType],
    patterns: Iterable[str],
    processor: str | None,
    reachable: Collection[str],
) -> tuple[NodeType, ...]:
    """The node types a server may rent, by name."""
    patterns = list(patterns) or ["*"]
    return tuple(
        t
        for name, t in sorted(catalog.items())
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        and (processor is None or t.processor == processor)
        and t.processor in reachable
    )


def server_types(spec: Spec, server: Server) -> tuple[NodeType, ...]:
    """The node types a spec's packing: auto server may rent."""
    from engine.runtimes import runtime_class

    serves_here = runtime_class(spec.runtime.kind).serves_here
    reachable = reachable_processors(serves_here, {h.processor for h in spec.hosts})
    return allowed_types(spec.catalog, server.node_types, server.processor, reachable)


def offered_processors(spec: Spec, server: Server) -> list[str]:
    """The processors of the node types a packing: auto server may rent."""
    return sorted({t.processor for t in server_types(spec, server)})


def measurable(processors: Iterable[str]) -> list[str]:
    """Those of `processors` a profile step can measure: those this machine has."""
    return [p for p in processors if has_local_device(p)]


def unprofiled(spec: Spec, server: Server) -> list[tuple[str, str]]:
    """(model, processor) of a packing: auto server whose profile a profile step measures:
    a processor of its node types that this machine has, and the spec declares none for."""
    processors = measurable(offered_processors(spec, server))
    return [
        (m.model, p)
        for m in server.models
        for p in processors
        if p not in spec.model(m.model).profiles
    ]


def demand(
    model: str,
    profiles: Mapping[str, Profile],
    rate: float | None,
    instances: int,
    pinned: bool,
) -> Demand:
    """A model of the server: its rate spread as the packer likes, or its copies pinned
    (instances given, or no rate at all)."""
    if rate is None or pinned:
        return Demand(model, dict(profiles), rate or 0.0, instances)
    return Demand(model, dict(profiles), rate)


def fleet_of(
    spec: Spec, server: Server, measured: Mapping[tuple[str, str], Profile] | None = None
) -> Fleet:
    """The Fleet of a spec's packing: auto server; `measured` holds the profiles measured
    by profile steps, by (model, processor): the spec's declared ones win."""
    by_model: dict[str, dict[str, Profile]] = {}
    for (model, processor), profile in (measured or {}).items():
        by_model.setdefault(model, {})[processor] = profile
    demands = tuple(
        demand(
            m.model,
            {**by_model.get(m.model, {}), **spec.model(m.model).profiles},
            m.rate,
            m.instances,
            m.pinned,
        )
        for m in server.models
    )
    return Fleet(demands, server_types(spec, server), server.max_utilization)
