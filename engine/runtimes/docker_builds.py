"""Server images built and pushed with the local Docker engine: the image half that the
docker and kubernetes runtimes share (an ImageRuntime's build_base, pack and push verbs).

A runtime that mixes this in sets `self.docker` (a python-on-whales client) and
`self.state_dir`; where the replicas then run is its own business. The Docker client is
imported when an image is first built, not when a plan is made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import DoinferError
from engine.runtimes.base import Log
from engine.runtimes.contracts import ImageResult, PackRequest, PackResult, PushResult

if TYPE_CHECKING:
    from python_on_whales import DockerClient


class DockerBuilds:
    docker: DockerClient
    state_dir: Path

    def build_base(
        self, inputs: dict[str, Any], fingerprint: str, log: Log, cancelled: Callable[[], bool]
    ) -> ImageResult:
        from engine.runtimes import docker_images as images

        return images.build_base(
            self.docker,
            inputs,
            fingerprint,
            self._work_dir(),
            self.state_dir / "cache",
            log,
            cancelled,
        )

    def image_drift(self, image: ImageResult) -> list[str]:
        from engine.runtimes import docker_images as images

        return images.image_drift(self.docker, image.image, image.image_id)

    def pack(
        self, request: PackRequest, log: Log, cancelled: Callable[[], bool] = lambda: False
    ) -> PackResult:
        from engine.runtimes import docker_images as images

        inputs = request.inputs
        pack = images.build_server(self.docker, request, self._work_dir(), log, cancelled)
        images.prune_server_images(
            self.docker,
            inputs["spec"],
            inputs["environment"],
            inputs["server"],
            {image_id(pack)},
            log,
        )
        return pack

    def pack_drift(self, pack: PackResult) -> list[str]:
        from engine.runtimes import docker_images as images

        return images.image_drift(self.docker, image_tag(pack), image_id(pack))

    def unpack(self, pack: PackResult, log: Log) -> None:
        from engine.runtimes import docker_images as images

        images.remove_image(self.docker, image_tag(pack), log)

    def push(self, inputs: dict[str, Any], pack: PackResult, log: Log) -> PushResult:
        from engine.runtimes import docker_images as images

        return images.push(self.docker, inputs, image_tag(pack), log)

    def push_drift(self, pushed: PushResult) -> list[str]:
        from engine.runtimes import docker_images as images

        return images.push_drift(self.docker, pushed.reference)

    def unpush(self, pushed: PushResult, log: Log) -> None:
        """Drop the local registry tag; the registry keeps what was pushed (as registries do)."""
        from engine.runtimes import docker_images as images

        images.remove_image(self.docker, pushed.reference, log)
        log(f"kept {pushed.digest} in the registry")

    def _work_dir(self) -> Path:
        directory = self.state_dir / "build"
        directory.mkdir(parents=True, exist_ok=True)
        return directory


def image_tag(pack: PackResult) -> str:
    if pack.image is None:
        raise DoinferError("this pack holds no image: it was made by a runtime without images")
    return pack.image


def image_id(pack: PackResult) -> str:
    if pack.image_id is None:
        raise DoinferError("this pack holds no image: it was made by a runtime without images")
    return pack.image_id
