"""The recorded state of one environment of one spec.

State is a JSON file per spec name and environment under the state directory
(`.doinfer/` by default). It is rewritten atomically (temp file, fsync, rename) after
every step, so a kill at any moment leaves either the old or the new file, never half
of one, and an interrupted apply resumes from what was recorded. An exclusive lock
(flock on a side file) keeps two applies from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FORMAT = 1
LOCK_POLL_S = 0.1  # how often a waiting lock is tried again


class StateError(Exception):
    """The state cannot be read or written; the message says what to do."""


class StateLocked(StateError):
    pass


@dataclass
class State:
    spec: str
    environment: str
    lineage: str = ""  # set on the first save; "" means nothing was ever recorded
    serial: int = 0
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "spec": self.spec,
            "environment": self.environment,
            "lineage": self.lineage,
            "serial": self.serial,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        if data.get("format") != STATE_FORMAT:
            raise StateError(f"unsupported state format {data.get('format')!r}")
        return cls(
            spec=data["spec"],
            environment=data["environment"],
            lineage=data["lineage"],
            serial=int(data["serial"]),
            steps=dict(data["steps"]),
        )


def default_state_dir() -> Path:
    return Path(os.environ.get("DOINFER_STATE_DIR", ".doinfer"))


class StateStore:
    """Reads, writes and locks the state of one spec environment."""

    def __init__(self, root: Path, spec: str, environment: str) -> None:
        self.root = root
        self.spec = spec
        self.environment = environment
        self.dir = root / "state" / spec
        self.path = self.dir / f"{environment}.json"
        self.lock_path = self.dir / f"{environment}.lock"
        self._write_lock = threading.Lock()

    def load(self) -> State:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return State(spec=self.spec, environment=self.environment)
        try:
            return State.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.path}: state file is unreadable ({exc})") from exc

    def save(self, state: State) -> None:
        """Bump the serial and replace the file atomically."""
        with self._write_lock:
            state.serial += 1
            state.lineage = state.lineage or uuid.uuid4().hex
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{self.environment}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(state.to_dict(), f, indent=1, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def record(self, state: State, step_id: str, record: dict[str, Any] | None) -> None:
        """Set (or with None, drop) one step's record and persist at once."""
        with self._write_lock:
            if record is None:
                state.steps.pop(step_id, None)
            else:
                state.steps[step_id] = record
        self.save(state)

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 0.0) -> Iterator[None]:
        """Hold the environment's lock, waiting up to `timeout_s` for whoever holds it
        (`--lock-timeout`), then fail naming who holds it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(min(LOCK_POLL_S, max(0.0, deadline - time.monotonic())))
                        continue
                    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                    waited = f" after waiting {timeout_s:g}s" if timeout_s else ""
                    raise StateLocked(
                        f"state of {self.spec}/{self.environment} is locked by another doinfer "
                        f"({holder}){waited}; wait for it to finish, or pass --lock-timeout"
                    ) from None
            os.ftruncate(fd, 0)
            info = f"pid {os.getpid()}, {' '.join(sys.argv[:3])}, since {time.strftime('%H:%M:%S')}"
            os.pwrite(fd, info.encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
