"""engine/system.py keeps the Linux-only APIs; the rest of the engine goes through it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from engine import system

ENGINE = Path(__file__).resolve().parents[2] / "engine"
LINUX_ONLY = re.compile(r"\bfcntl\b|/proc\b|\bprctl\b|sched_getaffinity|EpollSelector")


def test_linux_only_apis_live_in_one_module() -> None:
    found = [
        f"{path.relative_to(ENGINE.parent)}:{number}: {line.strip()}"
        for path in ENGINE.rglob("*.py")
        if path.name != "system.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if LINUX_ONLY.search(line) and not line.lstrip().startswith("#")
    ]
    allowed = [
        line
        for line in found
        # bench/load.py is guarded (hasattr/getattr); steps/trace_job.py is a self-contained
        # script that runs on trace hosts, so it cannot import engine.system: its read of
        # /proc/cpuinfo falls back to "no flags" (fp32 and int8 only) where there is none
        if "bench/load.py" in line or "steps/trace_job.py" in line
    ]
    assert found == allowed, "\n".join(found)


def test_usable_cpus_without_affinity_counts_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    if hasattr(os, "sched_getaffinity"):
        assert system.usable_cpus() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    expected = (
        len(psutil.Process().cpu_affinity())
        if hasattr(psutil.Process, "cpu_affinity")
        else psutil.cpu_count()
    )
    assert system.usable_cpus() == expected


def test_process_running_tells_a_live_program_from_a_dead_one() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd python
        while not system.process_running(proc.pid, b"time.sleep(30)"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert not system.process_running(proc.pid, b"engine.serving")  # another program
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while system.process_running(proc.pid):  # a zombie, until reaped, does not run
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
    proc.wait()
    assert not system.process_running(proc.pid)


def test_the_lock_file_fallback_excludes_and_takes_over_from_the_dead(tmp_path: Path) -> None:
    path = str(tmp_path / "env.lock")
    assert system._try_lock_file(path)
    assert not system._try_lock_file(path)  # held by a live pid (this one)
    Path(f"{path}.held").write_text("999999999")  # a holder that is gone
    assert system._try_lock_file(path)
    Path(f"{path}.held").unlink()
