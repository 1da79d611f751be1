"""What the Docker tests need: an engine, a base image and a registry (.ci/docker-engine
sets all three up from nothing). Where any is missing the tests are skipped, and the
reason says what is missing and how to get it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_local_apply import doinfer as run_doinfer

REPO = Path(__file__).resolve().parents[3]
BASE_IMAGE = os.environ.get("DOINFER_TEST_BASE_IMAGE", "doinfer-test/debian:bookworm")
REGISTRY = os.environ.get("DOINFER_TEST_REGISTRY", "127.0.0.1:5000")
SETUP = "run .ci/docker-engine as root to set it up"


def _missing() -> str | None:
    """Why the Docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return f"no docker command; {SETUP}"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        last = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no Docker engine answers ({last}); {SETUP}"
    image = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    if image.returncode != 0:
        return f"no base image {BASE_IMAGE}; {SETUP}"
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=5).close()
    except OSError as exc:
        return f"no registry on {REGISTRY} ({exc}); {SETUP}"
    return None


MISSING = _missing()
requires_engine = pytest.mark.skipif(MISSING is not None, reason=f"Docker tests: {MISSING}")


def doinfer(
    state_dir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI as the local tests run it, with time for image builds."""
    return run_doinfer(state_dir, *args, check=check, env=env, timeout_s=1500)


def docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def ours(kind: str, spec: str) -> list[str]:
    """Ids of containers, networks or images that carry the spec's label."""
    listing = {"container": ["ps", "-a"], "network": ["network", "ls"], "image": ["images"]}
    out = docker(*listing[kind], "-q", "--filter", f"label=io.doinfer.spec={spec}")
    return out.split()


def dangling() -> set[str]:
    return set(docker("images", "-q", "--filter", "dangling=true").split())


def events(since: float, until: float, *filters: str) -> list[dict]:
    """The engine's events in a time window (e.g. label=..., event=start)."""
    args = ["events", "--since", f"{since:.3f}", "--until", f"{until:.3f}"]
    args += [a for f in filters for a in ("--filter", f)]
    return [json.loads(line) for line in docker(*args, "--format", "{{json .}}").splitlines()]


def remove_everything_of(spec: str) -> None:
    """Whatever a failed test left: containers, networks, server images of `spec`."""
    for container in ours("container", spec):
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    for network in ours("network", spec):
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
    for image in ours("image", spec):
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
