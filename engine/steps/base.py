"""Step kinds' shared parts: the interface (engine/graph/kinds.py, named here too, where
every step kind has imported it from) and helpers the kinds use."""

from __future__ import annotations

from engine.errors import DoinferError
from engine.graph.kinds import ApplyRequest, Context, Log, StepKind
from engine.runtimes.base import ImageRuntime

__all__ = ["ApplyRequest", "Context", "Log", "StepKind", "image_runtime"]


def image_runtime(ctx: Context, step_id: str) -> ImageRuntime:
    """The runtime, as one that builds images (a plan saved for another runtime may ask)."""
    if not isinstance(ctx.runtime, ImageRuntime):
        raise DoinferError(f"{step_id} needs a runtime that builds images, not {ctx.runtime.kind}")
    return ctx.runtime
