"""Replica processes found by the labels in their environment, whatever their records say."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtimes.local_processes import find_servers, labels


@pytest.fixture
def spawn() -> Iterator:
    started: list[subprocess.Popen[bytes]] = []

    def spawn(env: dict[str, str], module: str = "engine.serving") -> subprocess.Popen[bytes]:
        # argv carries the module name as a server's does; the process only sleeps
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "-m", module],
            env={**os.environ, **env},
        )
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.kill()
        proc.wait()


def test_replicas_are_found_by_their_labels_only(tmp_path: Path, spawn) -> None:
    mine = [spawn(labels(tmp_path, "demo", "prod", "web", i)) for i in (1, 0)]
    spawn(labels(tmp_path, "demo", "prod", "api", 0))  # another server
    spawn(labels(tmp_path, "demo", "dev", "web", 0))  # another environment
    spawn(labels(tmp_path / "other", "demo", "prod", "web", 0))  # another state directory
    spawn(labels(tmp_path, "demo", "prod", "web", 2), module="something.else")  # not a server
    spawn({})  # unlabelled
    found = find_servers(tmp_path, "demo", "prod", "web")
    assert [(p.pid, p.index) for p in found] == [(mine[1].pid, 0), (mine[0].pid, 1)]
    mine[0].kill()
    mine[0].wait()
    assert [p.index for p in find_servers(tmp_path, "demo", "prod", "web")] == [0]
