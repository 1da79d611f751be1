"""The interface every step kind implements, and what the executor hands it.

A step kind observes its resource (pure reading, used by `plan`), applies a step (does
only what the plan decided), and destroys what a record says it created.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.errors import Cancelled, DoinferError
from engine.graph.step import Action, Observation, Step
from engine.runtimes.base import ImageRuntime, Runtime

Log = Callable[[str], None]


@dataclass
class Context:
    """What steps may use: where things live, the runtime, a way to log, a cancel flag."""

    state_dir: Path
    runtime: Runtime
    cancel: threading.Event = field(default_factory=threading.Event)
    # what a plan's relative paths (path: model sources) are relative to: the spec's
    # directory; for a saved plan, applied without its spec, the current directory
    spec_dir: Path = field(default_factory=Path.cwd)

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("interrupted")


@dataclass(frozen=True)
class ApplyRequest:
    step: Step
    action: Action
    record: dict[str, Any] | None  # what was recorded before (None for a create)
    upstream: dict[str, dict[str, Any]]  # outputs of the steps this one needs, by id


class StepKind(Protocol):
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation: ...

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        """Do the work; return the outputs to record (paths, urls, pids, results)."""
        ...

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None: ...


def image_runtime(ctx: Context, step_id: str) -> ImageRuntime:
    """The runtime, as one that builds images (a plan saved for another runtime may ask)."""
    if not isinstance(ctx.runtime, ImageRuntime):
        raise DoinferError(f"{step_id} needs a runtime that builds images, not {ctx.runtime.kind}")
    return ctx.runtime
