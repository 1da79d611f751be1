"""Names of the Docker runtime's images, known before apply: they follow from fingerprints.

Kept apart from the code that talks to Docker, so that planning imports no Docker client.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

IMAGES_DIR = Path(__file__).with_name("images")  # a link to the repository's runtime_images/
DEFAULT_BASE_IMAGES = {
    "cpu": "debian:bookworm-slim",
    "gpu": "nvidia/cuda:12.8.1-runtime-ubuntu24.04",
    "inf": "ubuntu:22.04",
}


def dockerfile(image: str) -> str:
    """The Dockerfile of the server image ("server") or of a processor's base image: that
    processor's own `python` stage (its python.Dockerfile), then the install and final
    stages every base image shares (install.Dockerfile, without its header comment)."""
    if image == "server":
        return (IMAGES_DIR / "server" / "Dockerfile").read_text()
    own = (IMAGES_DIR / image / "python.Dockerfile").read_text()
    shared = (IMAGES_DIR / "install.Dockerfile").read_text().splitlines(keepends=True)
    while shared and (shared[0].startswith("#") or not shared[0].strip()):
        shared.pop(0)
    return own + "\n" + "".join(shared)


def dockerfile_digest(processor: str) -> str:
    return hashlib.sha256(dockerfile(processor).encode()).hexdigest()[:16]


def base_tag(processor: str, fingerprint: str) -> str:
    return f"doinfer-base:{processor}-{fingerprint[:12]}"


def server_repository(spec: str, server: str) -> str:
    return f"doinfer-{spec}-{server}"


def server_tag(spec: str, environment: str, server: str, fingerprint: str) -> str:
    return f"{server_repository(spec, server)}:{environment}-{fingerprint[:12]}"


def registry_reference(registry: str, local_tag: str) -> str:
    """Where a server image is pushed: REGISTRY[/PATH]/doinfer-SPEC-SERVER:ENV-FINGERPRINT."""
    return f"{registry.rstrip('/')}/{local_tag}"


def registry_host(reference: str) -> str:
    return reference.split("/", 1)[0]


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "[::1]") or name.startswith("127.")
