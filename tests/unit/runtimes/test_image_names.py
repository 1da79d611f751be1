"""The base images' Dockerfiles: each processor's own `python` stage, then the stages all
of them share, written once (runtime_images/install.Dockerfile)."""

from __future__ import annotations

import pytest

from engine.runtimes.image_names import IMAGES_DIR, dockerfile, dockerfile_digest

PROCESSORS = ("cpu", "gpu", "inf")


@pytest.mark.parametrize("processor", PROCESSORS)
def test_a_base_dockerfile_is_its_own_python_stage_then_the_shared_stages(
    processor: str,
) -> None:
    text = dockerfile(processor)
    own = (IMAGES_DIR / processor / "python.Dockerfile").read_text()
    assert text.startswith(own)
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM ${BASE_IMAGE} AS python", "FROM python AS install", "FROM python"]
    # the venv's Python comes first on the final image's PATH, before any processor's tools
    final = text.split("\nFROM python\n")[1]
    assert "ENV PATH=/opt/doinfer/bin:$PATH" in final
    # the shared file's header (how it is assembled) is not part of any image's Dockerfile
    header = (IMAGES_DIR / "install.Dockerfile").read_text().splitlines()[0]
    assert header.startswith("#") and header not in text


def test_each_processor_has_its_own_base_image_digest() -> None:
    digests = {dockerfile_digest(p) for p in PROCESSORS}
    assert len(digests) == len(PROCESSORS)


def test_the_server_dockerfile_is_read_as_it_stands() -> None:
    assert dockerfile("server") == (IMAGES_DIR / "server" / "Dockerfile").read_text()
