"""The pack step: put a server's traced models into what its replicas run (via the runtime)."""

from __future__ import annotations

from typing import Any

from engine.graph.step import Observation, Step
from engine.runtimes.contracts import ImageResult, PackRequest, PackResult
from engine.steps.base import ApplyRequest, Context, Log


class PackStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation(
            drift=tuple(ctx.runtime.pack_drift(PackResult.from_json(record["outputs"])))
        )

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        artifacts = {m["name"]: request.upstream[m["trace"]]["artifact"] for m in inputs["models"]}
        if "image" in inputs:  # an image runtime builds on the base image of the image step
            base = ImageResult.from_json(request.upstream[inputs["image"]])
            inputs = {**inputs, "base_image": base.image}
        # A replaced pack's predecessor may still be serving; the runtime prunes it once
        # no replica uses it.
        what = PackRequest(inputs, artifacts, request.step.fingerprint)
        pack = ctx.runtime.pack(what, log, ctx.cancel.is_set)
        ctx.check_cancelled()
        return pack.to_json()

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        ctx.runtime.unpack(PackResult.from_json(record["outputs"]), log)
