"""The local runtime: each replica is a uvicorn process on this machine.

A bundle is a directory of hard links into the trace cache. A replica is a model-server
process in its own session (it outlives the CLI), listening on a socket the engine bound
first, so a free port is chosen without a race. Each replica has a pid file, the local
runtime's label: observe() finds replicas by these files and checks the process behind
them, so a server that died, or one left running by an interrupted apply, is seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine
from engine.artifacts import BUNDLE_CONFIG_FILE
from engine.bundles import write_bundle
from engine.errors import Cancelled, DoinferError, StepFailed
from engine.runtimes.base import Log, ReplicaStatus, Runtime
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    PackResult,
    ReplicaRecord,
    served_models,
)

READY_TIMEOUT_S = 180.0
# sh -c: wait for the engine's "go" on stdin (EOF: the engine died before recording this
# replica), then become the model server (same pid) with stdin from /dev/null.
HOLD_UNTIL_RECORDED = 'read -r go && [ "$go" = go ] || exit 1; exec "$@" </dev/null'
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30


class LocalRuntime(Runtime):
    kind = "local"
    serves_here = True  # replicas are processes here, on this machine's devices

    # -- pack ---------------------------------------------------------------------------

    def pack(
        self,
        inputs: dict[str, Any],
        artifacts: dict[str, str],
        fingerprint: str,
        log: Log,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> PackResult:
        server_dir = self._bundles_dir(inputs["spec"], inputs["environment"], inputs["server"])
        bundle = server_dir / fingerprint[:16]
        if (bundle / BUNDLE_CONFIG_FILE).is_file():
            log(f"bundle {bundle} exists")
            return PackResult(bundle=str(bundle))
        tmp = server_dir / f".tmp-{fingerprint[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        write_bundle(tmp, inputs, artifacts)
        os.replace(tmp, bundle)
        log(f"packed {bundle}")
        self._prune_bundles(inputs["spec"], inputs["environment"], inputs["server"], log)
        return PackResult(bundle=str(bundle))

    def pack_drift(self, pack: PackResult) -> list[str]:
        bundle = _bundle(pack)
        return [] if (bundle / BUNDLE_CONFIG_FILE).is_file() else [f"bundle {bundle} is missing"]

    def unpack(self, pack: PackResult, log: Log) -> None:
        bundle = _bundle(pack)
        if bundle.exists():
            shutil.rmtree(bundle)
            log(f"removed {bundle}")
        _remove_empty_parents(bundle.parent, self.state_dir)

    # -- deploy -------------------------------------------------------------------------

    def deploy(
        self, inputs: dict[str, Any], source: DeployInput, log: Log, cancelled: Callable[[], bool]
    ) -> DeployResult:
        inputs = {**inputs, "threads": self.resolve_threads(inputs)}  # "auto" decided here
        bundle = str(_bundle(source.pack))
        spec, env, server = inputs["spec"], inputs["environment"], inputs["server"]
        run_dir = self._run_dir(spec, env, server)
        run_dir.mkdir(parents=True, exist_ok=True)
        existing = {r["index"]: r for r in self._pid_records(run_dir)}
        replicas: list[tuple[dict[str, Any], subprocess.Popen[bytes] | None]] = []
        for index in range(inputs["replicas"]):
            key = _replica_key(inputs, bundle, index)
            record = existing.pop(index, None)
            if record and record.get("key") == key and _alive(record):
                log(f"replica {index} (pid {record['pid']}) already runs this bundle: kept")
                replicas.append((record, None))
                continue
            if record:
                self._stop(record, log)
            replicas.append(self._start(inputs, bundle, index, key, run_dir, log))
        for record in existing.values():
            self._stop(record, log)
        for record, proc in replicas:  # kept ones too: an adopted replica may still be loading
            self._wait_ready(record, proc, log, cancelled)
        self._prune_bundles(spec, env, server, log)
        return DeployResult(
            tuple(
                ReplicaRecord(r["index"], r["url"], r["key"], {"pid": r["pid"], "port": r["port"]})
                for r, _ in replicas
            ),
            served_models(inputs),
            inputs["threads"],
            {"bundle": bundle},
        )

    def replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        return [
            ReplicaStatus(
                server,
                r["index"],
                "running" if _alive(r) else "dead",
                r["url"],
                f"pid {r['pid']}",
                r.get("key"),
            )
            for r in self._pid_records(self._run_dir(spec, environment, server))
        ]

    def undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        run_dir = self._run_dir(spec, environment, server)
        for record in self._pid_records(run_dir):
            self._stop(record, log)
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_empty_parents(run_dir.parent, self.state_dir)

    def logs(self, spec: str, environment: str, server: str, index: int, tail: int) -> str:
        path = self._run_dir(spec, environment, server) / f"replica-{index}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-tail:])
        except FileNotFoundError:
            return ""

    # -- internals ----------------------------------------------------------------------

    def _bundles_dir(self, spec: str, environment: str, server: str) -> Path:
        return self.state_dir / "bundles" / spec / environment / server

    def _run_dir(self, spec: str, environment: str, server: str) -> Path:
        return self.state_dir / "local" / spec / environment / server

    def _pid_records(self, run_dir: Path) -> list[dict[str, Any]]:
        records = []
        for path in sorted(run_dir.glob("replica-*.json")):
            with contextlib.suppress(ValueError, OSError):
                records.append(json.loads(path.read_text()))
        return sorted(records, key=lambda r: r["index"])

    def _start(
        self,
        inputs: dict[str, Any],
        bundle: str,
        index: int,
        key: str,
        run_dir: Path,
        log: Log,
    ) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        host = inputs["bind_address"]
        port = inputs["port"] + index if inputs["port"] else 0
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise StepFailed(
                f"cannot listen on {host}:{port} for replica {index} of "
                f"{inputs['server']}: {exc.strerror}"
            ) from None
        sock.listen(1024)
        port = sock.getsockname()[1]
        log_path = run_dir / f"replica-{index}.log"
        command = [
            sys.executable,
            "-m",
            "engine.serving",
            "--bundle",
            bundle,
            "--fd",
            str(sock.fileno()),
            "--threads",
            str(inputs["threads"]),
        ]
        package_root = str(Path(engine.__file__).resolve().parent.parent)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p
            ),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
        }
        # The replica waits on a pipe until its pid is recorded: an engine killed between
        # spawning and recording closes the pipe, and the replica exits instead of running
        # on where no apply or destroy would ever find it.
        go_read, go_write = os.pipe()
        try:
            with log_path.open("ab") as log_file:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", HOLD_UNTIL_RECORDED, "sh", *command],
                    stdin=go_read,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,
                    env=env,
                )
            sock.close()
            record = {
                "index": index,
                "pid": proc.pid,
                "port": port,
                "url": f"http://{host}:{port}",
                "key": key,
                "bundle": bundle,
                "log": str(log_path),
                "started_at": time.time(),
            }
            _write_json(run_dir / f"replica-{index}.json", record)
            os.write(go_write, b"go\n")
        finally:
            os.close(go_read)
            os.close(go_write)
        log(f"replica {index}: pid {proc.pid} on {record['url']}")
        return record, proc

    def _wait_ready(
        self,
        record: dict[str, Any],
        proc: subprocess.Popen[bytes] | None,
        log: Log,
        cancelled: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"{record['url']}/v2/health/ready"
        while time.monotonic() < deadline:
            if cancelled():
                raise Cancelled("interrupted while waiting for replicas")
            exited = proc.poll() is not None if proc else not _alive(record)
            if exited:
                raise StepFailed(
                    f"replica {record['index']} exited before it was ready; "
                    f"its log {record['log']} ends:",
                    _tail(Path(record["log"])),
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        log(f"replica {record['index']} ready on {record['url']}")
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise StepFailed(
            f"replica {record['index']} not ready after {READY_TIMEOUT_S:.0f} s; "
            f"its log {record['log']} ends:",
            _tail(Path(record["log"])),
        )

    def _stop(self, record: dict[str, Any], log: Log) -> None:
        pid = record["pid"]
        if _alive(record):
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _alive(record) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _alive(record):
                _signal(pid, signal.SIGKILL)
            log(f"replica {record['index']} (pid {pid}) stopped")
        _reap(pid)
        with contextlib.suppress(FileNotFoundError):
            Path(record["log"]).with_suffix(".json").unlink()

    def _prune_bundles(self, spec: str, environment: str, server: str, log: Log) -> None:
        """Remove a server's old bundles that no live replica serves."""
        bundles = self._bundles_dir(spec, environment, server)
        in_use = {
            r["bundle"]
            for r in self._pid_records(self._run_dir(spec, environment, server))
            if _alive(r)
        }
        newest = max(bundles.glob("*"), key=lambda p: p.stat().st_mtime, default=None)
        for bundle in bundles.glob("*"):
            if bundle != newest and str(bundle) not in in_use:
                shutil.rmtree(bundle, ignore_errors=True)
                log(f"pruned old bundle {bundle}")


def _bundle(pack: PackResult) -> Path:
    if pack.bundle is None:
        raise DoinferError("this pack holds no bundle: it was made by a runtime with images")
    return Path(pack.bundle)


def _replica_key(inputs: dict[str, Any], bundle: str, index: int) -> str:
    """What a replica runs: if this is unchanged, a running replica is kept as it is."""
    port = inputs["port"] + index if inputs["port"] else None
    text = json.dumps([bundle, inputs["threads"], inputs["bind_address"], port])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alive(record: dict[str, Any]) -> bool:
    """The pid runs, is not a zombie, and is our model server for this bundle."""
    pid = record["pid"]
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if ") Z" in (proc / "stat").read_text():
                return False
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        return b"engine.serving" in cmdline and record["bundle"].encode() in cmdline
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(pid: int, signum: int) -> None:
    """Signal the replica's process group (it leads one), or the process if it does not."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _remove_empty_parents(path: Path, stop: Path) -> None:
    while path != stop and path.is_relative_to(stop):
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent
