"""The push step: put a server image into `runtime.registry`, where replicas run it from."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.runtimes.contracts import PackResult, PushResult
from engine.steps.base import ApplyRequest, Context, Log, image_runtime


class PushStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        pushed = PushResult.from_json(record["outputs"])
        return Observation(drift=tuple(image_runtime(ctx, step.id).push_drift(pushed)))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        (outputs,) = request.upstream.values()
        pack = PackResult.from_json(outputs)
        return image_runtime(ctx, request.step.id).push(request.step.inputs, pack, log).to_json()

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        image_runtime(ctx, "push").unpush(PushResult.from_json(record["outputs"]), log)
