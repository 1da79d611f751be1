"""Typed, frozen Spec objects from a validated document whose defaults the schema filled
in (engine/spec/defaults.py): nothing here knows a default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.spec.model import (
    Batching,
    Host,
    Model,
    Runtime,
    Scenario,
    Server,
    ServerModel,
    Slo,
    Spec,
    TraceParams,
)


def build_spec(doc: dict[str, Any], path: Path) -> Spec:
    runtime = doc["runtime"]
    return Spec(
        api_version=doc["apiVersion"],
        name=doc["name"],
        environment=doc["environment"],
        models=tuple(
            Model(m["name"], m["source"], m["task"], TraceParams(**m["trace"]))
            for m in doc["models"]
        ),
        hosts=tuple(Host(**h) for h in doc["hosts"]),
        servers=tuple(
            Server(
                name=s["name"],
                processor=s["processor"],
                models=tuple(ServerModel(**m) for m in s["models"]),
                replicas=s["replicas"],
                batching=Batching(**s["batching"]),
                port=s.get("port"),
                threads=s.get("threads"),
                share_weights=s["share_weights"],
            )
            for s in doc["servers"]
        ),
        runtime=Runtime(
            **{
                **runtime,
                "node_selector": dict(runtime["node_selector"]),
                "base_images": dict(runtime["base_images"]),
            }
        ),
        scenarios=tuple(_scenario(s) for s in doc["scenarios"]),
        path=path,
        document=doc,
    )


def _scenario(s: dict[str, Any]) -> Scenario:
    texts = None
    if "texts" in s:
        texts = tuple(
            (t, None) if isinstance(t, str) else (t["seq_0"], t.get("seq_1")) for t in s["texts"]
        )
    return Scenario(**{**s, "slo": Slo(**s["slo"]) if "slo" in s else None, "texts": texts})
