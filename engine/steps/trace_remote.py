"""The trace step's remote path: trace a model on its gpu or inf host, over SSH.

Into a fresh remote work directory go the trace script, its job and, for a model whose
source is on this machine (path:, package:), the model directory; hf: sources download
on the host. The job runs with the host's Python (no login shell), its output streamed
into the apply's log. The artifact comes back into a temporary sibling of its cache
directory, every module is checked against its sha256, and only then is it moved into
place. The remote directory is removed whatever happened. Imported only when a trace
runs remotely: asyncssh takes a third of a second to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from engine.artifacts import artifact_problem
from engine.errors import Cancelled, StepFailed
from engine.remote import files
from engine.remote.connect import connect, describe
from engine.remote.hosts import RemoteHost
from engine.remote.process import Finished, run_streaming
from engine.steps.base import Log
from engine.steps.trace_request import TRACE_JOB, trace_job

COMPILER_LOG_PATTERNS = ("*log*", "*.txt")
COMPILER_LOG_LIMIT = 16 << 20  # bytes per file: logs, not the compiler's graphs
T = TypeVar("T")


async def until_cancelled(work: Coroutine[Any, Any, T], cancel: threading.Event) -> T:
    """Run `work`; if the apply is interrupted, cancel it (its cleanup runs) and say so."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait([task], timeout=0.2)
        if cancel.is_set() and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Cancelled("trace interrupted; its remote process was stopped")
    return task.result()


class RemoteTrace:
    """A trace of `source` (a directory here, or hf:) on the host `runs_on` describes; the
    artifact ends up whole in `out`, the compiler's logs in `compiler_logs`."""

    def __init__(
        self,
        inputs: dict[str, Any],
        source: str,
        runs_on: dict[str, Any],
        out: Path,
        compiler_logs: Path,
        log: Log,
    ) -> None:
        self.inputs = inputs
        self.source = source
        self.host = RemoteHost.from_settings(runs_on)
        self.python: str = runs_on.get("python") or "python3"
        self.timeout_s = float(runs_on.get("trace_timeout_s", 3600.0))
        self.out = out
        self.compiler_logs = compiler_logs
        self.log = log
        self.what = f"trace of {inputs['model']} on host {self.host.label}"

    def trace(self, cancel: threading.Event) -> None:
        """Run the trace; once `cancel` is set, stop it (its remote process too)."""
        asyncio.run(until_cancelled(self.run(), cancel))

    async def run(self) -> None:
        self.log(f"connecting to host {self.host.label}")
        async with await connect(self.host, self.log) as conn:
            try:
                sftp = await conn.start_sftp_client()
                work = await files.make_workdir(sftp)
                try:
                    await self._trace(conn, sftp, work)
                finally:
                    # A lost link fails this at once; the host's /tmp keeps the directory.
                    with contextlib.suppress(OSError, asyncssh.Error):
                        await asyncio.wait_for(files.remove(sftp, work), 30)
            except (OSError, asyncssh.Error) as exc:  # e.g. the link broke during a transfer
                raise StepFailed(f"{self.what}: {describe(exc, self.host)}") from None

    async def _trace(
        self, conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, work: str
    ) -> None:
        started = time.monotonic()
        await files.upload(sftp, TRACE_JOB, f"{work}/trace_job.py")
        source = self.source
        if not source.startswith("hf:"):  # a directory here: the host gets a copy
            await files.upload(sftp, Path(source), f"{work}/model")
            source = f"{work}/model"
        job = trace_job(self.inputs, source, f"{work}/out", f"{work}/compiler")
        async with sftp.open(f"{work}/job.json", "w") as f:
            await f.write(json.dumps(job))
        self.log(f"uploaded to {self.host.name}:{work} in {time.monotonic() - started:.1f}s")
        argv = [
            self.python,
            "-u",
            f"{work}/trace_job.py",
            f"{work}/job.json",
            "--stop-when-stdin-closes",
        ]
        try:
            finished = await run_streaming(conn, argv, work, self._remote_log, self.timeout_s)
        except TimeoutError:
            raise StepFailed(
                f"{self.what} did not finish within {self.timeout_s:g}s (trace_timeout_s); "
                f"it was stopped"
            ) from None
        if not finished.ok:
            raise await self._failure(sftp, work, finished)
        started = time.monotonic()
        await self._download(sftp, f"{work}/out")
        self.log(f"downloaded and verified in {time.monotonic() - started:.1f}s")

    def _remote_log(self, line: str) -> None:
        self.log(f"{self.host.name}: {line}")

    async def _failure(
        self, sftp: asyncssh.SFTPClient, work: str, finished: Finished
    ) -> StepFailed:
        """What went wrong, with the tail of the remote stderr (and the compiler's logs)."""
        detail = "\n".join(finished.stderr_tail)
        if finished.exit_signal is not None:
            return StepFailed(f"{self.what} was killed by signal {finished.exit_signal}", detail)
        if finished.exit_status is None:
            return StepFailed(
                f"{self.what}: lost the connection to the host mid-trace (no exit status came "
                f"back; a host silent for {self.host.connect_timeout_s:g}s counts as lost); "
                f"the trace stops on the host once its sshd sees the connection gone",
                detail,
            )
        if self.inputs["processor"] == "inf":  # the Neuron compiler's logs say why
            shutil.rmtree(self.compiler_logs, ignore_errors=True)
            with contextlib.suppress(OSError, asyncssh.Error):
                kept = await files.download_matching(
                    sftp,
                    f"{work}/compiler",
                    self.compiler_logs,
                    COMPILER_LOG_PATTERNS,
                    COMPILER_LOG_LIMIT,
                )
                if kept:
                    detail += f"\ncompiler logs: {self.compiler_logs}"
        last = finished.stderr_tail[-1] if finished.stderr_tail else "no output on stderr"
        return StepFailed(
            f"{self.what} failed (exit {finished.exit_status}): {last.removeprefix('error: ')}",
            detail,
        )

    async def _download(self, sftp: asyncssh.SFTPClient, remote: str) -> None:
        tmp = self.out.with_name(f".{self.out.name}.download-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            await files.download(sftp, remote, tmp)
            problem = artifact_problem(tmp, full_check=True)
            if problem:
                raise StepFailed(f"{self.what}: the downloaded artifact is unusable: {problem}")
            if self.out.exists():  # a broken earlier artifact
                shutil.rmtree(self.out)
            os.replace(tmp, self.out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
