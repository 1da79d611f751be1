"""Run a long command (trace job, pip download, docker build), its output streamed to a log.

The command is stopped when the apply is cancelled; the last lines are kept for the
message of a failure.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence

from engine import system
from engine.errors import Cancelled

TAIL_LINES = 25


def run_streaming(
    command: Sequence[str],
    log: Callable[[str], None],
    cancelled: Callable[[], bool],
    env: dict[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Exit code and the last lines of the output (stdout and stderr merged)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, **(env or {})},
        preexec_fn=system.die_with_parent,
    ) as proc:
        finished = threading.Event()

        def stop_on_cancel() -> None:
            while not finished.wait(0.2):
                if cancelled():
                    proc.terminate()
                    return

        threading.Thread(target=stop_on_cancel, daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(line)
        code = proc.wait()
        finished.set()
    if cancelled():
        raise Cancelled(f"interrupted: {command[0]} {command[1] if len(command) > 1 else ''}")
    return code, list(tail)
