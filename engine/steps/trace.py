"""The trace step: turn a model source into a traced artifact in the content-addressed cache.

The cache key covers what determines the traced module (source identity, task, processor,
trace shape, library versions), not the model's name in a spec, so the same inputs never
trace twice, whichever spec asks. The work itself runs in `trace_job.py`, a self-contained
script, in a child process: the CLI never imports torch, a crash cannot take the engine
down, and the same script runs on remote accelerator hosts.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any

from engine.artifacts import MODULE_FILE, TRACE_META_FILE, sha256_file
from engine.errors import Cancelled, StepFailed
from engine.graph.fingerprint import fingerprint
from engine.graph.step import Observation, Step
from engine.steps.base import ApplyRequest, Context, Log

TRACE_JOB = Path(__file__).with_name("trace_job.py")
CACHE_KEY_INPUTS = ("source", "task", "processor", "trace", "versions")


def cache_key(inputs: dict[str, Any]) -> str:
    return fingerprint({k: inputs[k] for k in CACHE_KEY_INPUTS}, {})


def artifact_dir(ctx: Context, inputs: dict[str, Any]) -> Path:
    return ctx.cache_dir / "traces" / cache_key(inputs)


def _artifact_problem(directory: Path, full_check: bool) -> str | None:
    """Why a cached artifact is unusable, or None. The full check hashes the module."""
    try:
        meta = json.loads((directory / TRACE_META_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return f"artifact {directory} is missing from the cache"
    module = directory / MODULE_FILE
    if not module.is_file():
        return f"{module} is missing"
    if full_check and sha256_file(module) != meta.get("sha256"):
        return f"{module} does not match its sha256"
    return None


class TraceStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        problem = _artifact_problem(Path(record["outputs"]["artifact"]), full_check=False)
        return Observation(drift=(problem,) if problem else ())

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        out = artifact_dir(ctx, inputs)
        if _artifact_problem(out, full_check=True) is None:
            log(f"cached: {out}")
        else:
            self._run_local(inputs, out, ctx, log)
            problem = _artifact_problem(out, full_check=True)
            if problem:
                raise StepFailed(f"trace of {inputs['model']} produced a bad artifact: {problem}")
        meta = json.loads((out / TRACE_META_FILE).read_text())
        return {"artifact": str(out), "sha256": meta["sha256"], "device": meta.get("device")}

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        # Traced artifacts are content-addressed and shared between specs: keep them.
        log(f"kept cached artifact {record.get('outputs', {}).get('artifact')}")

    def _run_local(self, inputs: dict[str, Any], out: Path, ctx: Context, log: Log) -> None:
        processor = inputs["processor"]
        if processor != "cpu":
            raise StepFailed(
                f"cannot trace {inputs['model']} for {processor} here: tracing on a {processor} "
                f"host over SSH is not available yet; use a cpu server for now"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        job = {
            "model": inputs["model"],
            "source": inputs["job_source"],
            "task": inputs["task"],
            "processor": processor,
            "trace": inputs["trace"],
            "out_dir": str(out),
        }
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=out.parent, delete=False) as f:
            json.dump(job, f)
            job_file = f.name
        try:
            run_job(
                [sys.executable, str(TRACE_JOB), job_file], ctx, log, f"trace of {inputs['model']}"
            )
        finally:
            os.unlink(job_file)


def run_job(command: list[str], ctx: Context, log: Log, what: str) -> None:
    """Run a child process, stream its output to `log`, stop it if the apply is cancelled."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_die_with_parent,
    ) as proc:
        finished = threading.Event()

        def stop_on_cancel() -> None:
            while not finished.wait(0.2):
                if ctx.cancel.is_set():
                    proc.terminate()
                    return

        threading.Thread(target=stop_on_cancel, daemon=True).start()
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            log(line)
        code = proc.wait()
        finished.set()
    if ctx.cancel.is_set():
        raise Cancelled(f"{what} interrupted")
    if code != 0:
        message = tail[-1] if tail else f"exit code {code}"
        raise StepFailed(f"{what} failed: {message}", "\n".join(tail))


def _die_with_parent() -> None:
    """Linux: have the kernel stop a job whose engine was killed, so no work is orphaned."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
