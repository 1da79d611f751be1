"""The router step: one address in front of a fleet, sending each request to a copy.

Its routes name, for every model of the fleet, the device servers holding a copy and the
rate the packing routed to each; at apply it looks up, in their deploys' results, the
address each replica is reached at from where the router runs (`peer_url`: a container's
name on its network, a Service's cluster DNS name, 127.0.0.1 on this machine), writes the
routing table as a bundle of its own (content-addressed in the cache) and has the runtime
run it (`deploy_router`): `python -m engine.serving` runs a router bundle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.errors import StepFailed
from engine.runtimes.contracts import DeployResult
from engine.serving.routing import ROUTER_FILE, routing_table, table_digest, table_text
from engine.steps.base import ApplyRequest, Context, Log
from engine.steps.deploy import DeployStep


def device_deploys(
    inputs: dict[str, Any], upstream: dict[str, dict[str, Any]]
) -> dict[str, DeployResult]:
    """The deployed device servers the routes name, by server name."""
    devices = {}
    for copies in inputs["routes"].values():
        for copy in copies:
            server = copy["server"]
            outputs = upstream.get(f"deploy/{server}")
            if outputs is None:
                raise StepFailed(f"router: deploy/{server} has not been applied")
            devices[server] = DeployResult.from_json(outputs)
    return dict(sorted(devices.items()))


def write_router_bundle(cache_dir: Path, table: dict[str, Any]) -> Path:
    """The table as a bundle directory, named by its digest (the same table, the same
    bundle: the router replica is kept). Readable by all: a container's user reads it."""
    text = table_text(table)
    bundle = cache_dir / "routers" / table_digest(text)
    if not (bundle / ROUTER_FILE).is_file():
        bundle.mkdir(parents=True, exist_ok=True)
        tmp = bundle / f".{ROUTER_FILE}.{os.getpid()}"
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, bundle / ROUTER_FILE)
    return bundle


class RouterStep(DeployStep):
    """Observed and destroyed as a deploy is; applied from its routing table."""

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        devices = device_deploys(inputs, request.upstream)
        urls = {name: [r.peer_url for r in d.replicas] for name, d in devices.items()}
        table = routing_table(inputs["routes"], urls)
        bundle = write_router_bundle(ctx.cache_dir, table)
        log(f"routing {len(table['models'])} models from {bundle}")
        result = ctx.runtime.deploy_router(
            inputs, bundle, list(devices.values()), log, ctx.cancel.is_set
        )
        ctx.check_cancelled()
        return result.to_json()
