"""Typed, frozen Spec objects from a validated document whose defaults the schema filled
in (engine/spec/defaults.py): nothing here knows a default."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine.packing.catalog import NodeType, catalog
from engine.packing.fleet import Profile
from engine.spec.model import (
    Batching,
    Host,
    Model,
    Profiling,
    Resources,
    Runtime,
    Scenario,
    Server,
    ServerModel,
    Slo,
    Spec,
    TraceParams,
)


def build_spec(doc: dict[str, Any], path: Path) -> Spec:
    return Spec(
        api_version=doc["apiVersion"],
        name=doc["name"],
        environment=doc["environment"],
        models=tuple(
            Model(
                m["name"],
                m["source"],
                m["task"],
                TraceParams(**m["trace"]),
                {p: Profile(**v) for p, v in m["profiles"].items()},
            )
            for m in doc["models"]
        ),
        hosts=tuple(Host(**h) for h in doc["hosts"]),
        servers=tuple(
            Server(
                name=s["name"],
                processor=s.get("processor"),  # none: packing auto chooses
                # instances has no schema default: with packing auto, leaving it out lets
                # the packing choose the copies, and giving it pins them
                models=tuple(ServerModel(**m, pinned="instances" in m) for m in s["models"]),
                replicas=s["replicas"],
                batching=Batching(**s["batching"]),
                port=s.get("port"),
                threads=s.get("threads"),
                share_weights=s["share_weights"],
                resources=_resources(s["resources"]),
                node_selector=s.get("node_selector"),
                packing=s["packing"],
                max_utilization=s["max_utilization"],
                node_types=tuple(s.get("node_types", ())),
                limits=dict(s.get("limits", {})),
            )
            for s in doc["servers"]
        ),
        runtime=build_runtime(doc["runtime"]),
        scenarios=tuple(_scenario(s) for s in doc["scenarios"]),
        path=path,
        document=doc,
        catalog=spec_catalog(doc.get("catalog", [])),
        profiling=Profiling(**doc["profiling"]),
    )


def spec_catalog(entries: list[dict[str, Any]]) -> dict[str, NodeType]:
    """The built-in catalog with the spec's node types added or overriding fields by name."""
    builtin = catalog()
    return catalog(
        dataclasses.replace(builtin[e["name"]], **e) if e["name"] in builtin else NodeType(**e)
        for e in entries
    )


def build_runtime(runtime: dict[str, Any]) -> Runtime:
    """The typed `runtime` section (also what a saved plan's document holds)."""
    return Runtime(
        **{
            **runtime,
            "node_selector": dict(runtime.get("node_selector", {})),
            "base_images": dict(runtime.get("base_images", {})),
            "client_node_selector": dict(runtime.get("client_node_selector", {})),
        }
    )


def _scenario(s: dict[str, Any]) -> Scenario:
    texts = None
    if "texts" in s:
        texts = tuple(
            (t, None) if isinstance(t, str) else (t["seq_0"], t.get("seq_1")) for t in s["texts"]
        )
    return Scenario(**{**s, "slo": Slo(**s["slo"]) if "slo" in s else None, "texts": texts})


def _resources(r: dict[str, Any]) -> Resources:
    """Quantities as strings (YAML may give `cpu: 2` as a number)."""
    return Resources(**{**r, **{k: str(r[k]) for k in ("cpu", "memory") if k in r}})
