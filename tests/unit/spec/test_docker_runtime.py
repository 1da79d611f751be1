"""The docker keys of `runtime`: base images per processor and the restart policy."""

from __future__ import annotations

from engine.spec.model import Runtime

from .conftest import VALID, errors_of, valid

DOCKER = VALID.replace(
    "runtime: {kind: local}",
    "runtime:\n  kind: docker\n  registry: localhost:5000/\n"
    "  base_images: {cpu: debian:bookworm-slim}\n  restart: on-failure\n",
)


def test_docker_keys_reach_the_typed_spec(write) -> None:
    runtime = valid(write("spec.yaml", DOCKER)).runtime
    assert runtime.kind == "docker" and runtime.registry == "localhost:5000/"
    assert runtime.base_images == {"cpu": "debian:bookworm-slim"}
    assert runtime.restart == "on-failure"
    assert Runtime().restart == "unless-stopped" and Runtime().port == 8080


def test_a_base_image_for_an_unknown_processor_is_named_with_its_line(write) -> None:
    path = write("spec.yaml", DOCKER.replace("{cpu: debian", "{cpu: debian:12, tpu: debian"))
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:14:33: error: ")
    assert "runtime.base_images.tpu: unknown key 'tpu' (did you mean 'gpu'?)" in error


def test_a_restart_policy_must_be_one_docker_knows(write) -> None:
    (error,) = errors_of(write("spec.yaml", DOCKER.replace("on-failure", "sometimes")))
    assert ":15:12: error: runtime.restart: 'sometimes' is not one of" in error
