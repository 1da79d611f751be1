"""Run one command on a connected host: stream its output, and stop it for good if asked.

sshd runs a command through the user's shell with `-c`, not as a login shell; the command
line is built here from an argv whose every word is quoted (shlex.quote), so no spec value
is ever read by the remote shell as syntax. The command first prints its pid (the shell's,
which `exec` hands to the program): sshd starts each session in a process group of its
own, so that pid names the whole group, compiler children included, for `kill` on
cancel or timeout. A command whose client just went away would otherwise run on.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

Log = Callable[[str], None]
PID_MARKER = "doinfer-remote-pid:"
TAIL_LINES = 20
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Finished:
    """How a remote command ended. exit_status None: no status came back (a lost link)."""

    exit_status: int | None
    exit_signal: str | None
    stderr_tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def command_line(argv: list[str], cwd: str) -> str:
    """`cd DIR && echo MARKER$$ && exec ARGV...`, every word quoted."""
    words = " ".join(shlex.quote(word) for word in argv)
    return f"cd {shlex.quote(cwd)} && echo {PID_MARKER}$$ && exec {words}"


async def run_streaming(
    conn: asyncssh.SSHClientConnection,
    argv: list[str],
    cwd: str,
    log: Log,
    timeout_s: float,
) -> Finished:
    """Run argv in cwd; every output line goes to `log` as it comes.

    On timeout or cancellation the remote process group is stopped before this returns
    (TimeoutError / CancelledError are re-raised).
    """
    process = await conn.create_process(command_line(argv, cwd), encoding="utf-8", errors="replace")
    pid: list[int] = []  # filled by the first stdout line
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    async def pump_stdout() -> None:
        async for line in process.stdout:
            text = line.rstrip()
            if not pid and text.startswith(PID_MARKER):
                pid.append(int(text[len(PID_MARKER) :]))
            elif text:
                log(text)

    async def pump_stderr() -> None:
        async for line in process.stderr:
            text = line.rstrip()
            if text:
                tail.append(text)
                log(text)

    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(pump_stdout(), pump_stderr())
            await process.wait()
    except (TimeoutError, asyncio.CancelledError):
        await stop(conn, process, pid[0] if pid else None)
        raise
    except (OSError, asyncssh.Error):
        pass  # the link broke mid-stream: no exit status below says so
    return Finished(process.exit_status, process.exit_signal, tuple(tail))


async def stop(
    conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess[str], pid: int | None
) -> None:
    """TERM the command's process group, KILL it after a grace period; best effort."""
    with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
        if pid is None:  # it has not printed its pid yet: the channel's signal is all we have
            process.send_signal("TERM")
            process.close()
            return
        await conn.run(f"kill -TERM -- -{pid}", check=False, timeout=STOP_GRACE_S)
        try:
            await asyncio.wait_for(process.wait_closed(), STOP_GRACE_S)
        except TimeoutError:
            await conn.run(f"kill -KILL -- -{pid}", check=False, timeout=STOP_GRACE_S)
