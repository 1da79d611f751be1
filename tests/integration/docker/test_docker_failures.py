"""What goes wrong with Docker gets one clear message, and leaves the state as it was: a
daemon that does not answer, a base image build that fails, a port that is taken."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.docker.conftest import (
    BASE_IMAGE,
    dangling,
    docker,
    doinfer,
    ours,
    remove_everything_of,
    requires_engine,
)
from tests.tiny_models import build_tiny_model

pytestmark = pytest.mark.integration


def tiny_spec(directory: Path, name: str, base_image: str, port: int | None = None) -> str:
    model = build_tiny_model(directory / "tiny-model", "feature-extraction")
    port_line = f"    port: {port}\n" if port else ""
    spec = directory / f"{name}.yaml"
    spec.write_text(
        f"""\
apiVersion: doinfer/v1
name: {name}
models:
  - {{name: tiny, source: "path:{model}", task: feature-extraction, trace: {{sequence_length: 16}}}}
servers:
  - name: tiny
    processor: cpu
    models: [{{model: tiny}}]
    replicas: 2
{port_line}runtime:
  kind: docker
  base_images: {{cpu: "{base_image}"}}
"""
    )
    return str(spec)


def recorded_steps(state_dir: Path, name: str) -> set[str]:
    path = state_dir / "state" / name / "default.json"
    return set(json.loads(path.read_text())["steps"]) if path.exists() else set()


@pytest.fixture
def cleanup() -> Iterator[list[str]]:
    """Names of specs whose leftovers (if a test fails) are removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        remove_everything_of(name)


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker command")
def test_a_daemon_that_does_not_answer_is_one_message_and_changes_nothing(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, "nodaemon", BASE_IMAGE)
    gone = {"DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = doinfer(tmp_path / "state", "apply", spec, "--yes", check=False, env=gone)
    assert result.returncode == 1
    assert "error: the Docker daemon is not reachable" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert recorded_steps(tmp_path / "state", "nodaemon") == set()
    status = doinfer(tmp_path / "state", "status", spec, check=False, env=gone)
    assert status.returncode == 1 and "the Docker daemon is not reachable" in status.stderr


@requires_engine
def test_a_failed_build_names_the_image_and_records_nothing_of_it(
    tmp_path: Path, cleanup: list[str]
) -> None:
    cleanup.append("badbuild")
    spec = tiny_spec(tmp_path, "badbuild", "doinfer-test/no-such-base:1")
    containers_before = docker("ps", "-aq").split()
    dangling_before = dangling()
    result = doinfer(tmp_path / "state", "apply", spec, "--yes", check=False)
    assert result.returncode == 1
    assert (
        "image/cpu: create failed" in result.stderr
        and "building the cpu base image from doinfer-test/no-such-base:1 failed:" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "pack/tiny: create skipped" in result.stderr
    assert recorded_steps(tmp_path / "state", "badbuild") <= {"trace/tiny@cpu"}
    assert docker("ps", "-aq").split() == containers_before  # no failed build step left over
    assert dangling() <= dangling_before


@requires_engine
def test_a_port_taken_is_named_and_no_container_is_left(tmp_path: Path, cleanup: list[str]) -> None:
    cleanup.append("porttaken")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1] - 1  # replica 1 meets the taken port, replica 0 not
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                pytest.skip(f"port {port} is in use by something else")
        spec = tiny_spec(tmp_path, "porttaken", BASE_IMAGE, port=port)
        result = doinfer(tmp_path / "state", "apply", spec, "--yes", check=False)
    assert result.returncode == 1
    assert (
        f"cannot publish replica 1 of tiny on 127.0.0.1:{port + 1}: Address already in use"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "deploy/tiny" not in recorded_steps(tmp_path / "state", "porttaken")
    assert ours("container", "porttaken") == []  # replica 0 was not started either
    destroyed = doinfer(tmp_path / "state", "destroy", spec, "--yes")
    assert "Apply complete" in destroyed.stdout
    assert ours("image", "porttaken") == []
