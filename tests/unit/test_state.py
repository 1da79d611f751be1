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


def record(fingerprint: str) -> dict:
    return {"kind": "trace", "fingerprint": fingerprint, "outputs": {}}


def test_missing_state_is_empty_with_no_lineage(tmp_path: Path) -> None:
    state = StateStore(tmp_path, "demo", "prod").load()
    assert state.steps == {} and state.serial == 0 and state.lineage == ""


def test_save_bumps_serial_and_sets_lineage_once(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    state = store.load()
    store.record(state, "trace/a@cpu", record("x"))
    lineage = state.lineage
    store.record(state, "pack/a", record("y"))
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


BROKEN = {
    "a list": b"[]",
    "a string": b'"state"',
    "random bytes": bytes(range(256)) * 4,
    "not JSON": b"{not json",
    "no steps": b'{"format": 1, "spec": "demo", "environment": "prod", "lineage": "", "serial": 1}',
    "a step that is a list": (
        b'{"format": 1, "spec": "demo", "environment": "prod", "lineage": "l", "serial": 1, '
        b'"steps": {"x": []}}'
    ),
    "another format": b'{"format": 99}',
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_state_file_names_itself_and_the_way_out(tmp_path: Path, name: str) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    store.dir.mkdir(parents=True)
    store.path.write_bytes(BROKEN[name])
    with pytest.raises(StateError) as caught:
        store.load()
    message = str(caught.value)
    assert message.startswith(f"{store.path}: state file is unreadable (")
    assert f"(mv {store.path} {store.path}.broken)" in message


def test_a_state_file_that_is_a_directory_or_unreadable(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    store.path.mkdir(parents=True)
    with pytest.raises(StateError, match=r"prod\.json: is a directory, not a state file\. "):
        store.load()
    store.path.rmdir()
    store.path.symlink_to(store.path)  # a loop: unreadable whoever reads it, root included
    with pytest.raises(StateError, match=r"prod\.json: cannot be read \(Too many levels"):
        store.load()


def test_a_record_without_outputs_is_named_with_the_command_that_mends_it(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path, "demo", "prod")
    state = store.load()
    store.record(state, "trace/a@cpu", record("x"))
    store.record(state, "deploy/a", {"kind": "deploy", "fingerprint": "y"})
    store.record(state, "pack/a", {"kind": "pack", "fingerprint": 3, "outputs": {}})
    with pytest.raises(StateError) as caught:
        store.load()
    assert str(caught.value).splitlines()[1:4] == [
        "  deploy/a: no 'outputs'",
        "  pack/a: 'fingerprint' is a int",
        "Remove each with `doinfer state rm SPEC STEP` (the next apply redoes that step, "
        "reusing what still runs), or restore the file from a backup.",
    ]
    assert set(store.load_records().steps) == {"trace/a@cpu", "deploy/a", "pack/a"}


def test_the_state_of_another_spec_is_refused(tmp_path: Path) -> None:
    other = StateStore(tmp_path, "other", "prod")
    other.record(other.load(), "trace/a@cpu", record("x"))
    store = StateStore(tmp_path, "demo", "prod")
    store.dir.mkdir(parents=True)
    store.path.write_bytes(other.path.read_bytes())
    with pytest.raises(StateError, match=r"holds the state of other/prod, not of demo/prod"):
        store.load()


def test_a_state_directory_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = StateStore(tmp_path / "file", "demo", "prod")
    expected = rf"state directory {tmp_path / 'file'}: {tmp_path / 'file'} is a file"
    with pytest.raises(StateError, match=expected):
        store.load()
    with pytest.raises(StateError, match=expected), store.lock():
        pass
    with pytest.raises(StateError, match=expected):
        store.save(State("demo", "prod"))


def test_a_state_directory_that_cannot_be_written(tmp_path: Path) -> None:
    """sysfs refuses mkdir to root too; a chmod-ed directory does to anyone else."""
    unwritable = Path("/sys/doinfer-test") if os.geteuid() == 0 else tmp_path / "ro"
    if os.geteuid() != 0:
        unwritable.mkdir(mode=0o500)
    store = StateStore(unwritable, "demo", "prod")
    assert store.load().steps == {}  # reading (plan, status) needs no write
    expected = rf"state directory {unwritable}: .* cannot be written"
    with pytest.raises(StateError, match=expected), store.lock():
        pass


def test_state_and_lock_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = StateStore(tmp_path, "demo", "prod")
        with store.lock():
            store.record(store.load(), "trace/a@cpu", record("x"))
    finally:
        os.umask(old)
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.lock_path.stat().st_mode & 0o777 == 0o600


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
