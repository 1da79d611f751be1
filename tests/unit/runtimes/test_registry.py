"""The runtime seam: runtimes are looked up by kind in one registry, and the graph asks
the runtime class what it needs, so a new runtime is one module and one registry line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.errors import DoinferError
from engine.runtimes import RUNTIMES, get_runtime, runtime_class
from engine.runtimes.base import AUTO, ImageRuntime
from engine.runtimes.docker import DockerRuntime
from engine.spec.model import Server, Spec

REPO = Path(__file__).resolve().parents[3]


class FakeClusterRuntime(DockerRuntime):
    """A stand-in for a cluster runtime: only its class-level declarations matter here."""

    kind = "kubernetes"
    registry_use = "required"

    @classmethod
    def deploy_inputs(cls, spec: Spec, server: Server) -> dict[str, Any]:
        return {"namespace": spec.runtime.namespace, "port": spec.runtime.port}


@pytest.mark.parametrize("kind", sorted(RUNTIMES))
def test_every_registered_kind_names_its_class(kind: str) -> None:
    assert runtime_class(kind).kind == kind


def test_the_built_in_runtimes_declare_what_they_need() -> None:
    local, docker = runtime_class("local"), runtime_class("docker")
    assert (issubclass(local, ImageRuntime), local.registry_use, local.serves_here) == (
        False,
        "none",
        True,
    )
    assert (issubclass(docker, ImageRuntime), docker.registry_use, docker.serves_here) == (
        True,
        "optional",
        False,
    )


def test_an_unknown_kind_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DoinferError, match=r"'kubernetes' is not available .* local, docker"):
        get_runtime("kubernetes", tmp_path)


def test_a_local_plan_never_imports_docker_s_client(tmp_path: Path) -> None:
    """`doinfer plan` of a local spec stays fast: python-on-whales is not loaded."""
    code = (
        "import sys\n"
        "from engine.runtimes import runtime_class\n"
        "from engine.spec import load_spec\n"
        "runtime_class('local')\n"
        f"load_spec({str(REPO / 'specs' / 'local.yaml')!r})\n"
        "assert 'python_on_whales' not in sys.modules, 'imported'\n"
        "assert 'engine.runtimes.docker' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_auto_threads_are_resolved_by_the_runtime_at_apply(tmp_path: Path) -> None:
    import os

    runtime = get_runtime("local", tmp_path)
    cores = len(os.sched_getaffinity(0))
    assert runtime.resolve_threads({"threads": 3}) == 3
    assert runtime.resolve_threads({"threads": AUTO, "cores_shared_by": 1}) == cores
    assert runtime.resolve_threads({"threads": AUTO, "cores_shared_by": cores * 4}) == 1
