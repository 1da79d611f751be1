"""State: atomic writes, serials, and the lock that keeps two applies apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.state import State, StateError, StateLocked, StateStore


def test_missing_state_is_empty_with_no_lineage(tmp_path: Path) -> None:
    state = StateStore(tmp_path, "demo", "prod").load()
    assert state.steps == {} and state.serial == 0 and state.lineage == ""


def test_save_bumps_serial_and_sets_lineage_once(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    state = store.load()
    store.record(state, "trace/a@cpu", {"fingerprint": "x"})
    lineage = state.lineage
    store.record(state, "pack/a", {"fingerprint": "y"})
    again = store.load()
    assert (again.serial, again.lineage) == (2, lineage)
    assert set(again.steps) == {"trace/a@cpu", "pack/a"}
    assert store.path == tmp_path / "state" / "demo" / "prod.json"
    store.record(again, "pack/a", None)
    assert set(store.load().steps) == {"trace/a@cpu"}


def test_failed_write_keeps_the_old_file_whole(tmp_path: Path, monkeypatch) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    state = store.load()
    store.record(state, "a", {"fingerprint": "1"})
    before = store.path.read_text()

    def explode(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(OSError):
        store.record(state, "b", {"fingerprint": "2"})
    monkeypatch.undo()
    assert store.path.read_text() == before
    assert [p.name for p in store.dir.iterdir() if p.suffix == ".tmp"] == []


def test_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    store.dir.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(StateError, match=r"prod\.json: state file is unreadable"):
        store.load()


def test_state_round_trip() -> None:
    state = State("demo", "prod", "abc", 7, {"x": {"fingerprint": "f"}})
    assert State.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_lock_excludes_a_second_holder_in_another_process(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    code = (
        "import sys, time; from pathlib import Path; from engine.state import StateStore\n"
        f"s = StateStore(Path({str(tmp_path)!r}), 'demo', 'prod')\n"
        "with s.lock():\n    print('locked', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(StateLocked, match=rf"locked by another doinfer \(pid {holder.pid}"),
            store.lock(),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops a dead holder's lock: no stale lock files
        try:
            with store.lock():
                break
        except StateLocked:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_lock_is_reentrant_across_sequential_uses(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    with store.lock():
        pass
    with store.lock():
        pass


def _hold_lock(tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock of demo/prod for `seconds`, once it printed."""
    code = (
        "import sys, time; from pathlib import Path; from engine.state import StateStore\n"
        f"s = StateStore(Path({str(tmp_path)!r}), 'demo', 'prod')\n"
        f"with s.lock():\n    print('locked', flush=True); time.sleep({seconds})\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_lock_timeout_waits_for_the_holder_to_finish(tmp_path: Path) -> None:
    holder = _hold_lock(tmp_path, 0.5)
    try:
        started = time.monotonic()
        with StateStore(tmp_path, "demo", "prod").lock(timeout_s=20):
            waited = time.monotonic() - started
        assert 0.1 < waited < 20  # it waited, and got the lock once the holder let go
    finally:
        holder.kill()
        holder.wait()


def test_lock_timeout_gives_up_naming_the_holder(tmp_path: Path) -> None:
    holder = _hold_lock(tmp_path, 30)
    try:
        started = time.monotonic()
        with (
            pytest.raises(StateLocked, match=r"\(pid \d+.*\) after waiting 0.3s"),
            StateStore(tmp_path, "demo", "prod").lock(timeout_s=0.3),
        ):
            pass
        assert 0.3 <= time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
