"""The local runtime's labels: every replica process carries, in its environment, the state
directory, spec, environment, server and replica index it serves.

The pid files are the records; these labels are what the processes *are*. A pid file lost
or corrupted, or an apply killed between starting a replacement and stopping what it
replaces, leaves a server no record knows: found by its labels, as the docker runtime
finds containers by theirs, it is shown and stopped rather than orphaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

LABELS = ("DOINFER_STATE_DIR", "DOINFER_SPEC", "DOINFER_ENVIRONMENT", "DOINFER_SERVER")
INDEX_LABEL = "DOINFER_REPLICA"
SERVER_MODULE = "engine.serving"


@dataclass(frozen=True)
class ServerProcess:
    pid: int
    index: int
    cmdline: tuple[str, ...]


def labels(state_dir: Path, spec: str, environment: str, server: str, index: int) -> dict[str, str]:
    """The environment variables that say what a replica process is."""
    values = (str(state_dir), spec, environment, server)
    return {**dict(zip(LABELS, values, strict=True)), INDEX_LABEL: str(index)}


def find_servers(state_dir: Path, spec: str, environment: str, server: str) -> list[ServerProcess]:
    """Every live model-server process labelled as a replica of this server, by index.

    Processes of other users are not readable, and not ours: they are skipped.
    """
    wanted = dict(zip(LABELS, (str(state_dir), spec, environment, server), strict=True))
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = tuple(proc.info["cmdline"] or ())
            if SERVER_MODULE not in cmdline or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            environ = proc.environ()
        except (psutil.Error, OSError):
            continue
        if (
            all(environ.get(k) == v for k, v in wanted.items())
            and environ.get(INDEX_LABEL, "").isdigit()
        ):
            found.append(ServerProcess(proc.info["pid"], int(environ[INDEX_LABEL]), cmdline))
    return sorted(found, key=lambda p: (p.index, p.pid))
