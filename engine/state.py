"""The recorded state of one environment of one spec.

State is a JSON file per spec name and environment under the state directory
(`.doinfer/` by default). It is rewritten atomically (temp file, fsync, rename) after
every step, so a kill at any moment leaves either the old or the new file, never half
of one, and an interrupted apply resumes from what was recorded. An exclusive lock
(flock on a side file) keeps two applies from interleaving.

A state file broken by hand or by the disk is refused with a message that names the file
and how to recover, never half-read: `doinfer state` lists, shows and removes records.
"""

from __future__ import annotations

import contextlib
import errno
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

from engine import system

STATE_FORMAT = 1
LOCK_POLL_S = 0.1  # how often a waiting lock is tried again


class StateError(Exception):
    """The state cannot be read or written; the message says what to do."""


REQUIRED = {"kind": str, "fingerprint": str, "outputs": dict}  # in every step's record
OPTIONAL = {
    "inputs": dict,
    "needs": list,
    "upstream": dict,
    "upstream_applied": dict,
    "summary": str,
    "applied_at": float | int,
}


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
    def from_dict(cls, data: Any) -> State:
        """The state a JSON document holds; a StateError says what is wrong with it."""
        if not isinstance(data, dict):
            raise StateError(f"holds {_describe(data)}, not a doinfer state (a JSON object)")
        if data.get("format") != STATE_FORMAT:
            raise StateError(f"unsupported state format {data.get('format')!r}")
        for key, kind in (
            ("spec", str),
            ("environment", str),
            ("lineage", str),
            ("serial", int),
            ("steps", dict),
        ):
            if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
                raise StateError(f"'{key}' is {_describe(data.get(key))}, not {kind.__name__}")
        if not all(isinstance(r, dict) for r in data["steps"].values()):
            raise StateError("a step's record is not a JSON object")
        return cls(
            spec=data["spec"],
            environment=data["environment"],
            lineage=data["lineage"],
            serial=data["serial"],
            steps=dict(data["steps"]),
        )


def record_problems(steps: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What is wrong with each broken step's record, by step id ({} when nothing is)."""
    problems = {}
    for step_id, record in sorted(steps.items()):
        wrong = [
            f"no '{key}'" if key not in record else f"'{key}' is {_describe(record[key])}"
            for key, kind in REQUIRED.items()
            if not isinstance(record.get(key), kind)
        ]
        wrong += [
            f"'{key}' is {_describe(record[key])}"
            for key, kind in OPTIONAL.items()
            if key in record and not isinstance(record[key], kind)
        ]
        if wrong:
            problems[step_id] = ", ".join(wrong)
    return problems


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "missing (null)"
    return f"a {type(value).__name__}"


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
        """The state, every record checked; a StateError names the file and the way out."""
        state = self.load_records()
        problems = record_problems(state.steps)
        if problems:
            raise StateError(
                f"{self.path}: broken record(s) in the state of {self.spec}/"
                f"{self.environment}:\n  "
                + "\n  ".join(f"{i}: {p}" for i, p in problems.items())
                + "\nRemove each with "
                "`doinfer state rm SPEC STEP` (the next apply redoes that step, reusing what "
                "still runs), or restore the file from a backup."
            )
        return state

    def load_records(self) -> State:
        """The state as recorded, its records unchecked (for `doinfer state` to mend them)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return State(spec=self.spec, environment=self.environment)
        except NotADirectoryError:
            raise StateError(self._unusable(self._a_file_on_the_way(), "is a file")) from None
        except IsADirectoryError:
            raise StateError(self._broken("is a directory, not a state file")) from None
        except OSError as exc:
            raise StateError(self._broken(f"cannot be read ({exc.strerror})")) from None
        try:
            state = State.from_dict(json.loads(data))
        except UnicodeDecodeError:
            raise StateError(self._broken("state file is unreadable (not UTF-8 text)")) from None
        except ValueError as exc:
            raise StateError(self._broken(f"state file is unreadable (not JSON: {exc})")) from None
        except StateError as exc:
            raise StateError(self._broken(f"state file is unreadable ({exc})")) from None
        if (state.spec, state.environment) != (self.spec, self.environment):
            raise StateError(
                f"{self.path} holds the state of {state.spec}/{state.environment}, not of "
                f"{self.spec}/{self.environment}: it was copied or moved here. Move it back "
                f"to {self.root / 'state' / state.spec / (state.environment + '.json')}, "
                f"or aside to start afresh."
            )
        return state

    def make_dir(self) -> None:
        """Create the state's directory, or say why the state directory cannot hold it."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not os.access(self.dir, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        except (FileExistsError, NotADirectoryError):
            raise StateError(self._unusable(self._a_file_on_the_way(), "is a file")) from None
        except OSError as exc:
            raise StateError(
                self._unusable(self.dir, f"cannot be written ({exc.strerror})")
            ) from None

    def check_dir(self) -> None:
        """Refuse a state directory that is a file, before anything reads or writes in it
        (a state directory doinfer may only read is fine until apply writes)."""
        blocking = self._a_file_on_the_way(self.root)
        if blocking.exists() and not blocking.is_dir():
            raise StateError(self._unusable(blocking, "is a file"))

    def _a_file_on_the_way(self, path: Path | None = None) -> Path:
        """The first of `path`'s directories (the state's by default) that exists as
        something else; `path` itself when none does."""
        path = path or self.dir
        return next(
            (p for p in reversed((path, *path.parents)) if p.exists() and not p.is_dir()),
            path,
        )

    def _broken(self, problem: str) -> str:
        return (
            f"{self.path}: {problem}. Restore it from a backup, or move it aside "
            f"(mv {self.path} {self.path}.broken) to start from an empty state: the next "
            f"apply re-creates every step, reusing what still runs, and destroy stops the "
            f"servers the spec's runtime finds."
        )

    def _unusable(self, path: Path, problem: str) -> str:
        return (
            f"state directory {self.root}: {path} {problem}; choose a directory doinfer "
            f"may write (--state-dir or $DOINFER_STATE_DIR)"
        )

    def save(self, state: State) -> None:
        """Bump the serial and replace the file atomically."""
        with self._write_lock:
            state.serial += 1
            state.lineage = state.lineage or uuid.uuid4().hex
            self.make_dir()
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
        self.make_dir()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(self._unusable(self.lock_path, f"({exc.strerror})")) from None
        try:
            deadline = time.monotonic() + timeout_s
            while not system.try_lock(fd, str(self.lock_path)):
                if time.monotonic() < deadline:
                    time.sleep(min(LOCK_POLL_S, max(0.0, deadline - time.monotonic())))
                    continue
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                waited = f" after waiting {timeout_s:g}s" if timeout_s else ""
                raise StateLocked(
                    f"state of {self.spec}/{self.environment} is locked by another doinfer "
                    f"({holder}){waited}; wait for it to finish, or pass --lock-timeout"
                )
            os.ftruncate(fd, 0)
            info = f"pid {os.getpid()}, {' '.join(sys.argv[:3])}, since {time.strftime('%H:%M:%S')}"
            os.pwrite(fd, info.encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                system.unlock(fd, str(self.lock_path))
        finally:
            os.close(fd)
