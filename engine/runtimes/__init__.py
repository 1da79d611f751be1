"""Runtimes: where server replicas run, one module each, named here by `runtime.kind`.

Adding a runtime is one module (a `Runtime` subclass, see base.py) and one line in
RUNTIMES. Modules load only when asked for, so planning a local spec never imports
Docker's client. The graph builder and the spec checks ask the runtime *class* what it
needs (no engine connection at plan time); only apply makes an instance.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from engine.errors import DoinferError
from engine.runtimes.base import Runtime

RUNTIMES: dict[str, str] = {
    "local": "engine.runtimes.local:LocalRuntime",
    "docker": "engine.runtimes.docker:DockerRuntime",
}


def unknown_runtime(kind: str) -> str:
    """Why a kind cannot be used: the one message validate and plan both give."""
    return (
        f"runtime.kind {kind!r} is not available in this version of doinfer; "
        f"it has: {', '.join(RUNTIMES)}"
    )


def runtime_class(kind: str) -> type[Runtime]:
    """The class of a registered runtime (its module imported now, not before)."""
    if kind not in RUNTIMES:
        raise DoinferError(unknown_runtime(kind))
    module, _, name = RUNTIMES[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, Runtime) and cls.kind == kind, f"{RUNTIMES[kind]} is no {kind} runtime"
    return cls


def get_runtime(kind: str, state_dir: Path) -> Runtime:
    return runtime_class(kind)(state_dir)


def runtime_rollout(kind: str) -> str | None:
    """How `kind` replaces running replicas (its class's `rollout`); None if not known."""
    return runtime_class(kind).rollout if kind in RUNTIMES else None
