"""The push step: put a server image into `runtime.registry`, where replicas run it from."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.steps.base import ApplyRequest, Context, Log, image_runtime


class PushStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation(drift=tuple(image_runtime(ctx, step.id).push_drift(record["outputs"])))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        (pack,) = request.upstream.values()
        return image_runtime(ctx, request.step.id).push(request.step.inputs, pack, log)

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        image_runtime(ctx, "push").unpush(record["outputs"], log)
