"""doinfer where Linux-only APIs do not exist (macOS): validate, plan, a local apply of a tiny
model, a bench and a destroy, each a real CLI process (and its model server and load
clients) started with tests/without_linux_apis/sitecustomize.py, which takes away
os.sched_getaffinity, epoll, fcntl for doinfer's modules, prctl and /proc. A stand-in for
a Mac: the processes still run on Linux, but without the APIs a Mac lacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration.test_local_apply import doinfer as run_doinfer
from tests.integration.test_local_apply import server_pids
from tests.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "tests" / "without_linux_apis"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(SHIM), str(REPO)]),
    "NO_COLOR": "1",
}

SPEC = """\
apiVersion: doinfer/v1
name: portable
models:
  - name: tiny
    source: path:tiny
    task: feature-extraction
    trace: {sequence_length: 16, batch_size: 1}
servers:
  - name: tiny
    processor: cpu
    models: [{model: tiny, instances: 1}]
    replicas: 1
runtime: {kind: local}
scenarios:
  - {name: smoke, kind: sequential}
  - {name: load, kind: benchmark, clients: 1, concurrency: 1, warmup_s: 0, duration_s: 1}
"""

pytestmark = pytest.mark.integration


def doinfer(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    result = run_doinfer(state, *args, env=ENV)
    assert "Traceback" not in result.stderr
    return result


def test_the_shim_takes_the_apis_away() -> None:
    probe = """
import os, selectors, engine.system
assert not hasattr(os, "sched_getaffinity") and not hasattr(selectors, "EpollSelector")
assert not engine.system.LINUX
try:
    exec("import fcntl", {"__name__": "engine.probe"})
except ImportError:
    pass
else:
    raise SystemExit("fcntl imported")
try:
    exec("open('/proc/self/status')", {"__name__": "engine.probe"})
except FileNotFoundError:
    pass
else:
    raise SystemExit("/proc read")
print(engine.system.usable_cpus())
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == psutil.cpu_count()


def test_validate_plan_apply_bench_destroy_without_linux_apis(tmp_path: Path) -> None:
    spec = tmp_path / "portable.yaml"
    spec.write_text(SPEC)
    build_tiny_model(tmp_path / "tiny", "feature-extraction")
    state = tmp_path / "state"
    try:
        assert "valid" in doinfer("validate", str(spec), state=state).stdout
        assert "Plan: 5 to create" in doinfer("plan", str(spec), state=state).stdout
        applied = doinfer("apply", str(spec), "--yes", state=state)
        assert "Apply complete" in applied.stdout
        (pid,) = server_pids(state)
        assert psutil.Process(pid).environ()["DOINFER_TEST_WITHOUT_LINUX_APIS"] == "1"
        bench = doinfer("bench", str(spec), state=state)
        assert "✓ smoke: 1 answered, 0 error(s)" in bench.stderr
        assert re.search(r"^✓ load: \d+ answered, 0 error\(s\)", bench.stderr, re.M)
        assert "No changes." in doinfer("plan", str(spec), state=state).stdout
        assert not list(state.rglob("*.held"))  # the lock-file fallback let go of its lock
    finally:
        destroy = ["destroy", str(spec), "--yes", "--state-dir", str(state)]
        subprocess.run(
            [sys.executable, "-m", "engine", *destroy],
            env=ENV,
            cwd=REPO,
            capture_output=True,
            timeout=300,
            check=False,
        )
    assert server_pids(state) == set()
