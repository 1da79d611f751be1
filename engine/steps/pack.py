"""The pack step: put a server's traced models into what its replicas run (via the runtime)."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.steps.base import ApplyRequest, Context, Log


class PackStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation(drift=tuple(ctx.runtime.pack_drift(record["outputs"])))

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        artifacts = {m["name"]: request.upstream[m["trace"]]["artifact"] for m in inputs["models"]}
        if "image" in inputs:  # an image runtime builds on the base image of the image step
            inputs = {**inputs, "base_image": request.upstream[inputs["image"]]["image"]}
        # A replaced pack's predecessor may still be serving; the runtime prunes it once
        # no replica uses it.
        outputs = ctx.runtime.pack(
            inputs, artifacts, request.step.fingerprint, log, ctx.cancel.is_set
        )
        ctx.check_cancelled()
        return outputs

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        ctx.runtime.unpack(record["outputs"], log)
