"""A stand-in for the kubernetes runtime's Docker half, for the tests against the test API
server: images are "built" and "pushed" as names only.

Why: the image and push steps are the Docker runtime's code (engine/runtimes/docker_builds.py,
shared by both runtimes), tested for real with a Docker engine and a registry in
tests/integration/docker/; building a base image takes minutes, and the test API server
pulls nothing. Everything else, the Kubernetes half, is the real KubernetesRuntime: its
objects, server-side apply, rollout waits, drift, status, logs and Jobs go to the API server
through kr8s. The names follow image_names, as the real builds do, so the Deployments name
the images a real apply would (a pushed image by `REPOSITORY@sha256:...`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from engine.runtimes.base import Log
from engine.runtimes.contracts import ImageResult, PackRequest, PackResult, PushResult
from engine.runtimes.image_names import base_tag, registry_reference, server_tag
from engine.runtimes.kubernetes import KubernetesRuntime


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class PrebuiltImagesRuntime(KubernetesRuntime):
    def build_base(
        self, inputs: dict[str, Any], fingerprint: str, log: Log, cancelled: Callable[[], bool]
    ) -> ImageResult:
        return ImageResult(base_tag(inputs["processor"], fingerprint), _digest(fingerprint))

    def image_drift(self, image: ImageResult) -> list[str]:
        return []

    def pack(
        self, request: PackRequest, log: Log, cancelled: Callable[[], bool] = lambda: False
    ) -> PackResult:
        inputs = request.inputs
        tag = server_tag(
            inputs["spec"], inputs["environment"], inputs["server"], request.fingerprint
        )
        return PackResult(image=tag, image_id=_digest(tag))

    def pack_drift(self, pack: PackResult) -> list[str]:
        return []

    def unpack(self, pack: PackResult, log: Log) -> None:
        pass

    def push(self, inputs: dict[str, Any], pack: PackResult, log: Log) -> PushResult:
        assert pack.image is not None and pack.image_id is not None
        reference = registry_reference(inputs["registry"], pack.image)
        repository = reference.rsplit(":", 1)[0]
        return PushResult(reference, f"{repository}@{_digest(reference)}", pack.image_id)

    def push_drift(self, pushed: PushResult) -> list[str]:
        return []

    def unpush(self, pushed: PushResult, log: Log) -> None:
        pass
