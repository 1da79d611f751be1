"""A plan does not depend on the machine that makes it: the same spec and state give the
same `doinfer plan --format json`, byte for byte, whatever cores the planning process may
use (threads are "auto", resolved where the servers run) and wherever the spec is read
from (another working directory, a copy of its directory elsewhere). Real CLI processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def plans(spec: str, state_dir: Path, cwd: Path, cpus: str) -> tuple[bytes, bytes]:
    """`plan --format json` (what a user reads) and `plan --out` (what apply runs, with
    every step's inputs), from a process pinned to `cpus`."""
    saved = cwd / "saved-plan.json"
    outputs = []
    for options in (["--format", "json"], ["--out", str(saved)]):
        command = ["taskset", "-c", cpus, sys.executable, "-m", "engine", "plan", spec]
        result = subprocess.run(
            [*command, *options, "--state-dir", str(state_dir)],
            cwd=cwd,
            capture_output=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        outputs.append(result.stdout)
    return outputs[0], saved.read_bytes()


@pytest.mark.parametrize("example", ["local.yaml", "examples/docker.yaml"])
def test_the_same_spec_and_state_plan_the_same_anywhere(example: str, tmp_path: Path) -> None:
    if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs taskset and two usable cores")
    here = tmp_path / "here"
    elsewhere = tmp_path / "else" / "where"
    for directory in (here, elsewhere):
        shutil.copytree(REPO / "specs", directory)
        # one replica: it would take every core of the planning process, were it asked
        spec = directory / example
        spec.write_text(spec.read_text().replace("replicas: 2", "replicas: 1", 1))
    state_dir = tmp_path / "state"
    shown, saved = plans(example, state_dir, cwd=here, cpus="0")
    assert (shown, saved) == plans(str(elsewhere / example), state_dir, cwd=tmp_path, cpus="0,1")
    assert b'"threads": "(known after apply)"' in shown
    assert b'"threads": "auto"' in saved  # decided where the servers run
    for machine_dependent in (str(tmp_path), str(REPO), sys.prefix):
        assert machine_dependent.encode() not in shown + saved
