"""The router step: one address in front of a fleet, sending each request to a copy.

Its routes name, for every model of the fleet, the device servers holding a copy and the
rate the packing routed to each; at apply it looks their URLs up in their deploys' results,
writes the routing table as a bundle of its own (content-addressed in the cache) and has
the runtime run it as one more replica: `python -m engine.serving` runs a router bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from engine.errors import StepFailed
from engine.runtimes.contracts import DeployInput, DeployResult, PackResult
from engine.serving.__main__ import ROUTER_FILE
from engine.steps.base import ApplyRequest, Context, Log
from engine.steps.deploy import DeployStep


def routing_table(inputs: dict[str, Any], upstream: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The router's table: each model's copies with their servers' URLs and weights."""
    models: dict[str, list[dict[str, Any]]] = {}
    for model, copies in sorted(inputs["routes"].items()):
        for copy in copies:
            outputs = upstream.get(f"deploy/{copy['server']}")
            if outputs is None:
                raise StepFailed(f"router: deploy/{copy['server']} has not been applied")
            replicas = DeployResult.from_json(outputs).replicas
            models.setdefault(model, []).extend(
                {"url": r.url, "instance": copy["instance"], "weight": copy["weight"]}
                for r in replicas
            )
    return {"models": models}


def write_router_bundle(cache_dir: Path, table: dict[str, Any]) -> Path:
    """The table as a bundle directory, named by its digest (the same table, the same
    bundle: the router replica is kept)."""
    text = json.dumps(table, sort_keys=True, indent=1)
    bundle = cache_dir / "routers" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if not (bundle / ROUTER_FILE).is_file():
        bundle.mkdir(parents=True, exist_ok=True)
        tmp = bundle / f".{ROUTER_FILE}.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, bundle / ROUTER_FILE)
    return bundle


class RouterStep(DeployStep):
    """Observed and destroyed as a deploy is; applied from its routing table."""

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        table = routing_table(request.step.inputs, request.upstream)
        bundle = write_router_bundle(ctx.cache_dir, table)
        log(f"routing {len(table['models'])} models from {bundle}")
        source = DeployInput(PackResult(bundle=str(bundle)))
        result = ctx.runtime.deploy(request.step.inputs, source, log, ctx.cancel.is_set)
        ctx.check_cancelled()
        return result.to_json()
