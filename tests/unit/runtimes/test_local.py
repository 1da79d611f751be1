"""Local runtime without a model server: bundles, pid-file labels, drift detection.

Replicas here are stand-in processes whose command line looks like a model server's
(`engine.serving` and the bundle path), which is all observe() looks at; the real server
is exercised by tests/integration/test_local_apply.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import StepFailed
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    PackRequest,
    PackResult,
    ReplicaRecord,
)
from engine.runtimes.local import (
    HOLD_UNTIL_RECORDED,
    LocalRuntime,
    _alive,
    _Launch,
    _replica_key,
)

INPUTS = {
    "spec": "demo",
    "environment": "default",
    "server": "web",
    "runtime": "local",
    "processor": "cpu",
    "share_weights": True,
    "replicas": 2,
    "port": None,
    "bind_address": "127.0.0.1",
    "threads": 1,
    "models": [
        {
            "name": "tiny",
            "task": "feature-extraction",
            "instances": 3,
            "trace": "trace/tiny@cpu",
            "max_batch_size": 8,
            "max_delay_ms": 2.0,
            "max_padding": 1.25,
            "max_queue": 64,
        }
    ],
}


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    directory = tmp_path / "cache" / "traces" / "abc"
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "model.pt").write_bytes(b"weights")
    (directory / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    return directory


def fake_replica(bundle: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "engine.serving", bundle],
        start_new_session=True,
    )


def write_pidfile(runtime: LocalRuntime, index: int, pid: int, bundle: str, key: str) -> None:
    run_dir = runtime._run_dir("demo", "default", "web")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"replica-{index}.json").write_text(
        json.dumps(
            {
                "index": index,
                "pid": pid,
                "port": 1000 + index,
                "url": f"http://127.0.0.1:{1000 + index}",
                "key": key,
                "bundle": bundle,
                "log": str(run_dir / f"replica-{index}.log"),
            }
        )
    )


def test_pack_links_artifacts_and_writes_the_bundle_config(tmp_path: Path, artifact: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    outputs = runtime.pack(
        PackRequest(INPUTS, {"tiny": str(artifact)}, "f" * 64), lambda line: None
    )
    assert outputs.bundle is not None
    bundle = Path(outputs.bundle)
    assert bundle == tmp_path / "bundles" / "demo" / "default" / "web" / ("f" * 16)
    model = bundle / "models" / "tiny" / "model.pt"
    assert model.read_bytes() == b"weights"
    assert model.stat().st_ino == (artifact / "model.pt").stat().st_ino  # a link, not a copy
    config = json.loads((bundle / "server.json").read_text())
    assert config["models"] == [
        {
            "name": "tiny",
            "task": "feature-extraction",
            "instances": 3,
            "artifact": "models/tiny",
            "max_batch_size": 8,
            "max_delay_ms": 2.0,
            "max_padding": 1.25,
            "max_queue": 64,
        }
    ]
    assert runtime.pack_drift(outputs) == []
    runtime.unpack(outputs, lambda line: None)
    assert runtime.pack_drift(outputs) == [f"bundle {bundle} is missing"]


def test_a_new_pack_prunes_the_old_bundle_nobody_serves(tmp_path: Path, artifact: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    first = runtime.pack(PackRequest(INPUTS, {"tiny": str(artifact)}, "a" * 64), lambda line: None)
    time.sleep(0.01)
    second = runtime.pack(PackRequest(INPUTS, {"tiny": str(artifact)}, "b" * 64), lambda line: None)
    assert not Path(str(first.bundle)).exists()
    assert Path(str(second.bundle)).exists()


def test_observe_finds_dead_changed_and_extra_replicas(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    bundle = str(tmp_path / "bundle")
    alive = fake_replica(bundle)
    changed = fake_replica(bundle)
    extra = fake_replica(bundle)
    dead = fake_replica(bundle)
    dead.kill()
    dead.wait()
    try:
        write_pidfile(runtime, 0, alive.pid, bundle, "k0")
        write_pidfile(runtime, 1, dead.pid, bundle, "k1")
        write_pidfile(runtime, 2, changed.pid, bundle, "other")
        write_pidfile(runtime, 3, extra.pid, bundle, "k3")
        outputs = DeployResult(
            tuple(ReplicaRecord(i, f"http://127.0.0.1:{9000 + i}", f"k{i}") for i in range(3)), ()
        )
        assert runtime.deploy_drift(INPUTS, outputs) == [
            f"replica 1 (pid {dead.pid}) is dead",
            f"replica 2 (pid {changed.pid}) runs something else",
            f"replica 3 (pid {extra.pid}) is not in the spec",
        ]
        states = [(r.index, r.state) for r in runtime.replicas("demo", "default", "web")]
        assert states == [(0, "running"), (1, "dead"), (2, "running"), (3, "running")]
        runtime.undeploy("demo", "default", "web", lambda line: None)
        for proc in (alive, changed, extra):
            assert proc.wait(timeout=15) is not None
        assert runtime.replicas("demo", "default", "web") == []
    finally:
        for proc in (alive, changed, extra):
            proc.kill()


def test_a_reused_pid_is_not_mistaken_for_our_server(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = {"pid": proc.pid, "bundle": str(tmp_path / "bundle")}
        assert not _alive(record)
    finally:
        proc.kill()
        proc.wait()


def test_a_replica_that_dies_while_starting_fails_with_its_log_tail(tmp_path: Path) -> None:
    runtime = LocalRuntime(tmp_path)
    log = tmp_path / "replica-0.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "print('loading'); print('RuntimeError: no memory'); exit(3)"],
            stdout=out,
        )
    record = {
        "index": 0,
        "pid": proc.pid,
        "url": "http://127.0.0.1:9",
        "log": str(log),
        "bundle": "b",
    }
    with pytest.raises(StepFailed) as failed:
        runtime._wait_ready(record, proc, lambda line: None, lambda: False)
    assert "replica 0 exited before it was ready" in str(failed.value)
    assert failed.value.detail.splitlines() == ["loading", "RuntimeError: no memory"]


@pytest.mark.parametrize("engine_says_go", [True, False])
def test_a_replica_starts_only_once_the_engine_recorded_it(
    tmp_path: Path, engine_says_go: bool
) -> None:
    """A replica whose engine died before recording it (its pipe closed, no "go") exits
    instead of serving where no apply or destroy would find it."""
    go_read, go_write = os.pipe()
    ran = tmp_path / "ran"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", HOLD_UNTIL_RECORDED, "sh", "touch", str(ran)], stdin=go_read
    )
    os.close(go_read)
    if engine_says_go:
        os.write(go_write, b"go\n")
    os.close(go_write)  # an engine killed right after spawning: the kernel closes it
    assert proc.wait(timeout=10) == (0 if engine_says_go else 1)
    assert ran.exists() == engine_says_go


def test_a_replacement_that_fails_leaves_the_old_replica_serving_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new server took the old one's socket, then died before it was ready: the old one
    was never stopped, and its record is back, so nothing is orphaned and nothing is down."""
    import socket
    import threading

    from engine.serving.handover import offer_listener

    runtime = LocalRuntime(tmp_path)
    bundle = str(tmp_path / "bundle")
    old_proc = fake_replica(bundle)
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()
    offer_listener(tmp_path / "old.sock", listener, lambda: True, stopping.is_set)
    write_pidfile(runtime, 0, old_proc.pid, bundle, "old")
    run_dir = runtime._run_dir("demo", "default", "web")
    pidfile = run_dir / "replica-0.json"
    old = {**json.loads(pidfile.read_text()), "handover": str(tmp_path / "old.sock")}
    pidfile.write_text(json.dumps(old))
    taken: list[socket.socket | None] = []

    def start_one_that_dies(launch, log, port=0, sock=None):
        taken.append(sock)
        proc = subprocess.Popen([sys.executable, "-c", "exit(3)"])
        record = {**old, "pid": proc.pid, "key": launch.key, "handover": str(tmp_path / "new.sock")}
        pidfile.write_text(json.dumps(record))
        return record, proc

    monkeypatch.setattr(runtime, "_start", start_one_that_dies)
    try:
        with pytest.raises(StepFailed, match="replica 0 exited before it was ready"):
            runtime._replace(old, _Launch(INPUTS, bundle, 0, "new", run_dir), print, lambda: False)
        assert taken[0] is not None  # it did take the old one's socket over
        assert json.loads(pidfile.read_text()) == old
        assert old_proc.poll() is None
    finally:
        stopping.set()
        listener.close()
        old_proc.kill()
        old_proc.wait()


def test_a_replica_replaced_under_threads_auto_is_started_with_a_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """threads: auto stays "auto" in a replica's key (as the spec says), but the server it
    starts takes a number: a replacement of a running replica gets the resolved one too."""
    runtime = LocalRuntime(tmp_path)
    bundle = str(tmp_path / "bundle")
    running = fake_replica(bundle)
    write_pidfile(runtime, 0, running.pid, bundle, "what ran before")
    started: list[_Launch] = []

    class Started(Exception):
        pass

    def start(launch: _Launch, log: object, port: int = 0, sock: object = None) -> None:
        started.append(launch)
        raise Started

    monkeypatch.setattr(runtime, "_start", start)
    inputs = {**INPUTS, "replicas": 1, "threads": "auto"}
    try:
        with pytest.raises(Started):
            runtime.deploy(inputs, DeployInput(PackResult(bundle=bundle)), print, lambda: False)
    finally:
        running.kill()
        running.wait()
    assert started[0].inputs["threads"] == runtime.resolve_threads(inputs) >= 1
    assert started[0].key == _replica_key(inputs, bundle, 0)
