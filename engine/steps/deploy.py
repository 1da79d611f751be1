"""The deploy step: run a server's replicas on the runtime, and find them again."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.steps.base import ApplyRequest, Context, Log


class DeployStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation(drift=tuple(ctx.runtime.deploy_drift(step.inputs, record["outputs"])))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        # pack, and push when there is a registry: the pushed reference is what runs
        pack = {k: v for outputs in request.upstream.values() for k, v in outputs.items()}
        outputs = ctx.runtime.deploy(request.step.inputs, pack, log, ctx.cancel.is_set)
        ctx.check_cancelled()
        return outputs

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        inputs = record["inputs"]
        ctx.runtime.undeploy(inputs["spec"], inputs["environment"], inputs["server"], log)
