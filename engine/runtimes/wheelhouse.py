"""The wheelhouse: the server's Python dependencies, downloaded on the host for an image.

An image build then installs with `pip install --no-index`: it needs no package index, no
proxy certificate and no network, as in an air-gapped cluster. The requirements are
doinfer's own, pinned to the versions installed here, so an image runs what was tested
here, and torch is the version that traced the models. A wheelhouse is cached by what
determines it (requirements, Python, platform) and never downloaded twice.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from engine.errors import DoinferError, StepFailed
from engine.runtimes.streams import run_streaming

REQUIREMENTS_FILE = "requirements.txt"
NEURON_INDEX = "https://pip.repos.neuron.amazonaws.com"


@dataclass(frozen=True)
class Platform:
    """What a wheel must fit: the image's Python and its machine and C library."""

    python: str  # "3.11"
    machine: str  # "x86_64" | "aarch64"
    glibc: str  # "2.36"

    def tags(self) -> list[str]:
        """manylinux tags this platform accepts, newest first (pip wants each named)."""
        major, minor = (int(p) for p in self.glibc.split(".")[:2])
        if major != 2:
            raise DoinferError(f"unsupported C library glibc {self.glibc} in the image")
        tags = [f"manylinux_2_{m}_{self.machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        return [*tags, f"linux_{self.machine}"]


def server_requirements(processor: str) -> list[str]:
    """doinfer's runtime requirements, pinned to what is installed here.

    On inf the image takes torch-neuronx (which brings its own torch) instead of torch.
    """
    try:
        declared = importlib.metadata.requires("doinfer") or []
    except importlib.metadata.PackageNotFoundError:
        raise DoinferError(
            "doinfer is not installed as a package (pip install -e .), so the requirements "
            "of its server image are unknown"
        ) from None
    pins = []
    for text in declared:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.name == "torch" and processor == "inf":
            pins.append("torch-neuronx")
            continue
        version = importlib.metadata.version(requirement.name)
        if requirement.name == "torch":  # 2.13.0+cpu: the index decides the build
            version = version.split("+")[0]
        pins.append(f"{requirement.name}=={version}")
    return sorted(pins)


def pip_index_args(processor: str) -> list[str]:
    return ["--extra-index-url", NEURON_INDEX] if processor == "inf" else []


def wheelhouse_key(requirements: list[str], platform: Platform, index_args: list[str]) -> str:
    text = json.dumps([requirements, platform.python, platform.machine, platform.glibc, index_args])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_wheelhouse(
    cache_dir: Path,
    requirements: list[str],
    platform: Platform,
    index_args: list[str],
    log: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> Path:
    """A directory of wheels and a requirements.txt for them; downloaded once."""
    directory = cache_dir / "wheelhouses" / wheelhouse_key(requirements, platform, index_args)
    if (directory / REQUIREMENTS_FILE).is_file():
        log(f"wheelhouse {directory} exists")
        return directory
    tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / REQUIREMENTS_FILE).write_text("\n".join(requirements) + "\n")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--progress-bar",
        "off",
        "--dest",
        str(tmp),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        platform.python,
        *[arg for tag in platform.tags() for arg in ("--platform", tag)],
        *index_args,
        "--requirement",
        str(tmp / REQUIREMENTS_FILE),
    ]
    log(f"downloading wheels for Python {platform.python} on {platform.machine}")
    code, tail = run_streaming(command, log, cancelled)
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = next((line for line in reversed(tail) if line.startswith("ERROR")), None)
        raise StepFailed(
            f"cannot download the server's wheels for Python {platform.python} "
            f"({reason or f'pip exited with {code}'}); the image's Python must be one that "
            f"these pinned versions exist for",
            "\n".join(tail),
        )
    os.replace(tmp, directory)
    return directory
