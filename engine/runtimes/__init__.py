"""Runtimes: where server replicas run. `get_runtime` picks one by `runtime.kind`."""

from __future__ import annotations

from pathlib import Path

from engine.errors import DoinferError
from engine.runtimes.base import Runtime

# How each runtime replaces a server's running replicas: "restart" stops each and starts it
# again (the local processes, containers), "roll" starts each successor and waits until
# it is ready before stopping its predecessor (a Kubernetes Deployment, maxUnavailable 0).
ROLLOUTS = {"local": "restart", "docker": "restart", "kubernetes": "roll"}


def runtime_rollout(kind: str) -> str | None:
    """How `kind` replaces running replicas ("restart" or "roll"); None if not known."""
    return ROLLOUTS.get(kind)


def get_runtime(kind: str, state_dir: Path) -> Runtime:
    if kind == "local":
        from engine.runtimes.local import LocalRuntime

        return LocalRuntime(state_dir)
    if kind == "docker":
        from engine.runtimes.docker import DockerRuntime

        return DockerRuntime(state_dir)
    raise DoinferError(
        f"runtime.kind {kind!r} is not available in this version of doinfer yet; "
        f"the local and docker runtimes are"
    )
