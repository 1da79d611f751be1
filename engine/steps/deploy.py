"""The deploy step: run a server's replicas on the runtime, and find them again."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.runtimes.contracts import DeployInput, DeployResult, PackResult, PushResult
from engine.steps.base import ApplyRequest, Context, Log


def deploy_input(upstream: dict[str, dict[str, Any]]) -> DeployInput:
    """The pack a deploy runs and, when there is a registry, its push (what then runs),
    told apart by their step ids (`pack/<server>`, `push/<server>`)."""
    by_kind = {step_id.split("/", 1)[0]: outputs for step_id, outputs in upstream.items()}
    push = by_kind.get("push")
    return DeployInput(
        PackResult.from_json(by_kind["pack"]), PushResult.from_json(push) if push else None
    )


class DeployStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        deployed = DeployResult.from_json(record["outputs"])
        return Observation(drift=tuple(ctx.runtime.deploy_drift(step.inputs, deployed)))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        source = deploy_input(request.upstream)
        result = ctx.runtime.deploy(request.step.inputs, source, log, ctx.cancel.is_set)
        ctx.check_cancelled()
        return result.to_json()

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        inputs = record["inputs"]
        ctx.runtime.undeploy(inputs["spec"], inputs["environment"], inputs["server"], log)
