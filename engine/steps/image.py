"""The image step: a base image per processor (Python and the server's wheels), which
server images are built on. Content-addressed and shared between specs, like traced
models: destroy keeps it, and the next spec that needs the same base finds it built."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.runtimes.contracts import ImageResult
from engine.steps.base import ApplyRequest, Context, Log, image_runtime


class ImageStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        image = ImageResult.from_json(record["outputs"])
        return Observation(drift=tuple(image_runtime(ctx, step.id).image_drift(image)))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        step = request.step
        image = image_runtime(ctx, step.id).build_base(
            step.inputs, step.fingerprint, log, ctx.cancel.is_set
        )
        ctx.check_cancelled()
        return image.to_json()

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        image = record.get("outputs", {}).get("image")
        log(f"kept base image {image}: shared by every spec on this processor (docker rmi to drop)")
