"""The local runtime: each replica is a uvicorn process on this machine.

A bundle is a directory of hard links into the trace cache. A replica is a model-server
process in its own session (it outlives the CLI), listening on a socket the engine bound
first, so a free port is chosen without a race. Each replica has a pid file, its record,
and carries labels in its environment (local_processes.py): observe() finds replicas by
both, so a server that died, one left running by an interrupted apply, and one whose pid
file was lost, are all seen.

A changed replica is replaced without an outage, one replica at a time: the new server
takes over the old one's listening socket (serving/handover.py), so its URL stays and no
connection is refused or reset; it must be ready before the old one gets SIGTERM and
drains. A replica started by a doinfer without the handover is restarted instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import engine
from engine import system
from engine.artifacts import BUNDLE_CONFIG_FILE
from engine.bundles import write_bundle
from engine.errors import Cancelled, DoinferError, StepFailed
from engine.files import sweep_temps, temp_path
from engine.runtimes.base import Log, ReplicaStatus, Runtime
from engine.runtimes.contracts import (
    DeployInput,
    DeployResult,
    PackRequest,
    PackResult,
    ReplicaRecord,
    served_models,
)
from engine.runtimes.local_processes import find_servers, labels
from engine.serving.handover import take_listener
from engine.serving.limits import limit_flags, stop_timeout_s

READY_TIMEOUT_S = 180.0
# sh -c: wait for the engine's "go" on stdin (EOF: the engine died before recording this
# replica), then become the model server (same pid) with stdin from /dev/null.
HOLD_UNTIL_RECORDED = 'read -r go && [ "$go" = go ] || exit 1; exec "$@" </dev/null'
LOG_TAIL_LINES = 30


class LocalRuntime(Runtime):
    kind = "local"
    serves_here = True  # replicas are processes here, on this machine's devices
    rollout = "roll"  # a new server takes over the old one's socket, ready before it drains

    # -- pack ---------------------------------------------------------------------------

    def pack(
        self, request: PackRequest, log: Log, cancelled: Callable[[], bool] = lambda: False
    ) -> PackResult:
        inputs = request.inputs
        server_dir = self._bundles_dir(inputs["spec"], inputs["environment"], inputs["server"])
        bundle = server_dir / request.fingerprint[:16]
        if (bundle / BUNDLE_CONFIG_FILE).is_file():
            log(f"bundle {bundle} exists")
            return PackResult(bundle=str(bundle))
        sweep_temps(server_dir, depth=1)  # what a pack killed with kill -9 left
        tmp = temp_path(bundle)
        write_bundle(tmp, inputs, request.artifacts)
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
        threads = self.resolve_threads(inputs)  # "auto" decided here, for replicas started now
        bundle = str(_bundle(source.pack))
        spec, env, server = inputs["spec"], inputs["environment"], inputs["server"]
        run_dir = self._run_dir(spec, env, server)
        run_dir.mkdir(parents=True, exist_ok=True)
        existing = {r["index"]: r for r in self._pid_records(run_dir)}
        replicas: list[tuple[dict[str, Any], subprocess.Popen[bytes] | None]] = []
        for index in range(inputs["replicas"]):
            # the key from the spec's threads ("auto" stays "auto"), the server started
            # with the resolved number
            key = _replica_key(inputs, bundle, index)
            launch = _Launch(inputs | {"threads": threads}, bundle, index, key, run_dir)
            record = existing.pop(index, None)
            if record and record.get("key") == key and _alive(record):
                log(f"replica {index} (pid {record['pid']}) already runs this bundle: kept")
                replicas.append((record, None))
                continue
            if record and _alive(record):
                replicas.append(self._replace(record, launch, log, cancelled))
                continue
            if record:
                self._stop(record, log)
            port = _same_port(record, inputs, index)  # a dead replica's URL stays, if free
            replicas.append(self._start(launch, log, port))
        for record in existing.values():
            self._stop(record, log)
        for record, proc in replicas:  # kept ones too: an adopted replica may still be loading
            self._wait_ready(record, proc, log, cancelled)
        serving = {r["pid"] for r, _ in replicas}
        for found in find_servers(self.state_dir, spec, env, server):
            if found.pid not in serving:  # its record lost, or an apply killed mid-update
                self._stop_unrecorded(found.pid, found.index, log)
        self._prune_bundles(spec, env, server, log)
        return DeployResult(
            tuple(
                ReplicaRecord(r["index"], r["url"], r["key"], {"pid": r["pid"], "port": r["port"]})
                for r, _ in replicas
            ),
            served_models(inputs),
            threads,
            {"bundle": bundle},
        )

    def replicas(self, spec: str, environment: str, server: str) -> list[ReplicaStatus]:
        """Recorded replicas, then servers labelled as this server's that no record knows
        ("extra": an interrupted update's old server, or one whose pid file was lost)."""
        records = self._pid_records(self._run_dir(spec, environment, server))
        statuses = [
            ReplicaStatus(
                server,
                r["index"],
                "running" if _alive(r) else "dead",
                r["url"],
                f"pid {r['pid']}",
                r.get("key"),
            )
            for r in records
        ]
        recorded = {r["pid"] for r in records}
        statuses += [
            ReplicaStatus(server, p.index, "extra", None, f"pid {p.pid}, unrecorded")
            for p in find_servers(self.state_dir, spec, environment, server)
            if p.pid not in recorded
        ]
        return statuses

    def undeploy(self, spec: str, environment: str, server: str, log: Log) -> None:
        run_dir = self._run_dir(spec, environment, server)
        for record in self._pid_records(run_dir):
            self._stop(record, log)
        for found in find_servers(self.state_dir, spec, environment, server):
            self._stop_unrecorded(found.pid, found.index, log)
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
        """The replicas' records; a corrupt one is skipped (its server, if any, is found
        by its labels)."""
        records = []
        for path in sorted(run_dir.glob("replica-*.json")):
            with contextlib.suppress(ValueError, OSError):
                record = json.loads(path.read_text())
                if _well_formed(record):
                    records.append(record)
        return sorted(records, key=lambda r: r["index"])

    def _start(
        self, launch: _Launch, log: Log, port: int = 0, sock: socket.socket | None = None
    ) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
        """Start a replica on `sock` (a predecessor's, taken over) or on a new socket
        (on `port`, else the spec's port, else a free one)."""
        inputs, index = launch.inputs, launch.index
        host = inputs["bind_address"]
        if sock is None:
            named = inputs["port"] + index if inputs["port"] else None
            where = f"replica {index} of {inputs['server']}"
            sock = _listen(host, named, where) if named else _listen(host, port, where, True)
        port = sock.getsockname()[1]
        log_path = launch.run_dir / f"replica-{index}.log"
        handover = _handover_path()
        command = _server_command(launch, sock, handover)
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
                    env=self._server_env(launch),
                )
            sock.close()
            record = {
                "index": index,
                "pid": proc.pid,
                "port": port,
                "url": f"http://{host}:{port}",
                "key": launch.key,
                "bundle": launch.bundle,
                "log": str(log_path),
                "handover": str(handover),
                "started_at": time.time(),
                "stop_timeout_s": stop_timeout_s(inputs.get("limits", {})),
            }
            _write_json(launch.run_dir / f"replica-{index}.json", record)
            os.write(go_write, b"go\n")
        finally:
            os.close(go_read)
            os.close(go_write)
        log(f"replica {index}: pid {proc.pid} on {record['url']}")
        return record, proc

    def _server_env(self, launch: _Launch) -> dict[str, str]:
        """The replica's environment: this one, doinfer's code importable, no hub, and the
        labels observe() finds it by."""
        inputs = launch.inputs
        package_root = str(Path(engine.__file__).resolve().parent.parent)
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p
            ),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            **labels(
                self.state_dir,
                inputs["spec"],
                inputs["environment"],
                inputs["server"],
                launch.index,
            ),
        }

    def _wait_ready(
        self,
        record: dict[str, Any],
        proc: subprocess.Popen[bytes] | None,
        log: Log,
        cancelled: Callable[[], bool],
        shared: bool = False,
    ) -> None:
        """Until the replica answers; one that `shared` its socket with its predecessor
        may not be the one that answers at its URL: it is ready once it offers its socket
        (it does only once it serves)."""
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
            if shared:
                offered = take_listener(Path(record["handover"]), timeout_s=0.2)
                if offered is not None:
                    offered.close()
                    log(f"replica {record['index']} (pid {record['pid']}) ready")
                    return
            else:
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

    def _replace(
        self, old: dict[str, Any], launch: _Launch, log: Log, cancelled: Callable[[], bool]
    ) -> tuple[dict[str, Any], subprocess.Popen[bytes] | None]:
        """Replace a running replica: the new one ready before the old one drains."""
        inputs, index = launch.inputs, launch.index
        port = inputs["port"] + index if inputs["port"] else old["port"]
        same_address = old["url"] == f"http://{inputs['bind_address']}:{port}"
        sock = take_listener(Path(old["handover"])) if same_address and "handover" in old else None
        if same_address and sock is None:
            log(
                f"replica {index} (pid {old['pid']}) cannot hand its socket over (started by "
                f"an older doinfer): restarted; {old['url']} answers again once it is ready"
            )
            self._stop(old, log)
            return self._start(launch, log, port)
        record, proc = self._start(launch, log, port, sock)
        if sock is not None:
            sock.close()  # the new server holds it now
            log(f"replica {index}: pid {proc.pid} took over {record['url']} from pid {old['pid']}")
        try:
            self._wait_ready(record, proc, log, cancelled, shared=sock is not None)
        except BaseException:  # the old one serves on, recorded again
            self._stop(record, log, drop_record=False)
            _write_json(launch.run_dir / f"replica-{index}.json", old)
            raise
        self._stop(old, log, drop_record=False)  # its record is the new one's now
        return record, None  # ready: nothing to wait for again

    def _stop_unrecorded(self, pid: int, index: int, log: Log) -> None:
        log(f"found an unrecorded server of replica {index} (pid {pid}): stopping it")
        self._stop({"pid": pid, "index": index}, log, drop_record=False)

    def _stop(self, record: dict[str, Any], log: Log, drop_record: bool = True) -> None:
        """SIGTERM (the server drains), then SIGKILL if it is still there after a while."""
        pid = record["pid"]
        if _alive(record):
            _signal(pid, signal.SIGTERM)
            # it drains its requests first: wait for that (records before: the old ceiling)
            deadline = time.monotonic() + record.get("stop_timeout_s", stop_timeout_s({}))
            while _alive(record) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if _alive(record):
                _signal(pid, signal.SIGKILL)
            log(f"replica {record['index']} (pid {pid}) stopped")
        _reap(pid)
        if drop_record:
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


@dataclass(frozen=True)
class _Launch:
    """What one replica is started with: the deploy's inputs (threads resolved), the
    bundle it serves, its index and key, and the directory of its record and log."""

    inputs: dict[str, Any]
    bundle: str
    index: int
    key: str
    run_dir: Path


def _server_command(launch: _Launch, sock: socket.socket, handover: Path) -> list[str]:
    """The model server's command line: it serves on the inherited socket `sock`, and
    offers it to a successor at `handover`."""
    return [
        sys.executable,
        "-m",
        "engine.serving",
        "--bundle",
        launch.bundle,
        "--fd",
        str(sock.fileno()),
        "--threads",
        str(launch.inputs["threads"]),
        *limit_flags(launch.inputs.get("limits", {})),
        "--handover",
        str(handover),
    ]


def _bundle(pack: PackResult) -> Path:
    if pack.bundle is None:
        raise DoinferError("this pack holds no bundle: it was made by a runtime with images")
    return Path(pack.bundle)


def _replica_key(inputs: dict[str, Any], bundle: str, index: int) -> str:
    """What a replica runs: if this is unchanged, a running replica is kept as it is.
    Threads as the spec says ("auto" or a number), not as resolved: a replica count change
    resolves "auto" differently, and must not restart the replicas already running."""
    port = inputs["port"] + index if inputs["port"] else None
    what = [bundle, inputs["threads"], inputs["bind_address"], port]
    if inputs.get("limits"):  # (a key made before limits existed stays the same)
        what.append(inputs["limits"])
    text = json.dumps(what, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _alive(record: dict[str, Any]) -> bool:
    """The pid runs, is not a zombie, and is our model server for this bundle."""
    # unrecorded servers (found by their labels) have only a pid
    bundle = record.get("bundle", "").encode()
    return system.process_running(record["pid"], b"engine.serving", bundle)


def _well_formed(record: Any) -> bool:
    fields = {"index": int, "pid": int, "port": int, "url": str, "bundle": str, "log": str}
    return isinstance(record, dict) and all(
        isinstance(record.get(k), kind) for k, kind in fields.items()
    )


def _same_port(record: dict[str, Any] | None, inputs: dict[str, Any], index: int) -> int:
    """The port a restarted replica should take: its recorded one when the spec names
    none and the address is the same (0 lets the system choose)."""
    if record is None or inputs["port"]:
        return 0
    return record["port"] if record["url"].startswith(f"http://{inputs['bind_address']}:") else 0


def _listen(host: str, port: int, what: str, or_any: bool = False) -> socket.socket:
    """A listening socket on host:port (0: a free port); with `or_any`, a free port when
    that one is taken (it was only the port a replica had before)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if or_any and port:
            return _listen(host, 0, what)
        raise StepFailed(f"cannot listen on {host}:{port} for {what}: {exc.strerror}") from None
    sock.listen(1024)
    return sock


def _handover_path() -> Path:
    """A fresh path for a replica's handover socket: short (a Unix socket's path must fit
    in 108 bytes), in a directory only this user may enter."""
    directory = Path(tempfile.gettempdir()) / f"doinfer-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    info = directory.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not directory.is_dir():
        raise StepFailed(
            f"{directory} must be a directory of yours that only you may enter (mode 0700): "
            f"remove it, doinfer makes it"
        )
    for stale in directory.glob("*.sock"):  # left by servers killed with SIGKILL
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(stale))
            except ConnectionRefusedError:
                stale.unlink(missing_ok=True)
            except OSError:
                pass
    return directory / f"{secrets.token_hex(8)}.sock"


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
