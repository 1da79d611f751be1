"""The trace step: turn a model source into a traced artifact in the content-addressed cache.

The cache key covers what determines the traced module (source identity, task, processor,
trace shape and precision, library versions) and the texts its accuracy is measured on,
not the model's name in a spec nor the host that traces it, so the same inputs never
trace twice, whichever spec asks: steps that share an artifact (many models of one
source) take its lock in turn, and all but the first find it cached. The work itself runs
in `trace_job.py`, a self-contained script: here in a child process (the CLI never imports
torch, a crash cannot take the engine down), or, when the step was placed on a gpu or inf
host, on that host over SSH (trace_remote.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import system
from engine.artifacts import TRACE_META_FILE, artifact_key, artifact_problem
from engine.devices import has_local_device
from engine.errors import Cancelled, DoinferError, StepFailed
from engine.files import share_tree
from engine.graph.step import Observation, Step
from engine.runtimes.streams import run_streaming
from engine.sources import hash_directory, source_for_job
from engine.steps.base import ApplyRequest, Context, Log
from engine.steps.trace_request import TRACE_JOB, compiler_logs_dir, trace_job

LOCK_POLL_S = 0.2
cache_key = artifact_key  # an artifact's name in the cache


def artifact_dir(ctx: Context, inputs: dict[str, Any]) -> Path:
    return ctx.cache_dir / "traces" / cache_key(inputs)


SAVED_PLAN_HINT = (
    "a path: source is relative to the spec's directory; a saved plan is applied without its "
    "spec, and finds it from the current directory: apply it from the spec's directory"
)


def source_here(inputs: dict[str, Any], ctx: Context) -> str:
    """The model to trace, as found on this machine at apply: a path: source against the
    spec's directory, checked to hold the content the plan was made with."""
    try:
        source = source_for_job(inputs["job_source"], ctx.spec_dir)
    except DoinferError as exc:  # a saved plan applied from elsewhere, most likely
        raise StepFailed(f"{exc} ({SAVED_PLAN_HINT})") from None
    planned = inputs["source"].get("sha256")
    if inputs["job_source"].startswith("path:") and planned:
        found = hash_directory(Path(source), ctx.cache_dir)
        if found != planned:
            raise StepFailed(
                f"model {inputs['model']}: {inputs['job_source']} resolves to {source}, "
                f"whose content is not the planned one (sha256 {found[:12]}, planned "
                f"{planned[:12]}): it changed since the plan ({SAVED_PLAN_HINT})"
            )
    return source


@contextlib.contextmanager
def artifact_lock(out: Path, ctx: Context, log: Log) -> Iterator[None]:
    """Hold the artifact's lock (a side file's flock), so that one step traces it while the
    others that share it wait (in this apply or another), instead of each tracing the same
    module again into the same directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    locks = ctx.cache_dir / "locks"  # beside the traces, not among them: the cache holds
    locks.mkdir(parents=True, exist_ok=True)  # only whole artifacts
    lock = str(locks / f"trace-{out.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waiting = False
        while not system.try_lock(fd, lock):
            if not waiting:
                log(f"waiting for another step tracing {out}")
                waiting = True
            ctx.check_cancelled()
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            system.unlock(fd, lock)
    finally:
        os.close(fd)


class TraceStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        problem = artifact_problem(Path(record["outputs"]["artifact"]), full_check=False)
        return Observation(drift=(problem,) if problem else ())

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        out = artifact_dir(ctx, inputs)
        with artifact_lock(out, ctx, log):
            if artifact_problem(out, full_check=True) is None:
                log(f"cached: {out}")
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                source = source_here(inputs, ctx)
                if request.step.runs_on is not None:
                    from engine.steps.trace_remote import RemoteTrace  # asyncssh: slow load

                    logs = compiler_logs_dir(ctx, inputs)
                    job = RemoteTrace(inputs, source, request.step.runs_on, out, logs, log)
                    job.trace(ctx.cancel)
                else:
                    self._run_local(inputs, source, out, ctx, log)
                problem = artifact_problem(out, full_check=True)
                if problem:
                    raise StepFailed(
                        f"trace of {inputs['model']} produced a bad artifact: {problem}"
                    )
                share_tree(out)  # servers (a container's user, too) read it whatever our umask
        meta = json.loads((out / TRACE_META_FILE).read_text())
        return {
            "artifact": str(out),
            "sha256": meta["sha256"],
            "device": meta.get("device"),
            "precision": meta.get("precision", "fp32"),
            "accuracy": meta.get("accuracy", {}).get("summary", "not measured"),
        }

    def destroy(self, record: dict[str, Any], ctx: Context, log: Log) -> None:
        # Traced artifacts are content-addressed and shared between specs: keep them.
        log(f"kept cached artifact {record.get('outputs', {}).get('artifact')}")

    def _run_local(
        self, inputs: dict[str, Any], source: str, out: Path, ctx: Context, log: Log
    ) -> None:
        processor = inputs["processor"]
        if not has_local_device(processor):
            raise StepFailed(
                f"cannot trace {inputs['model']} for {processor} here: this machine has no "
                f"{processor} device and the spec no host with processor: {processor}; "
                f"add one under hosts"
            )
        compiler_dir = compiler_logs_dir(ctx, inputs)
        job = trace_job(inputs, source, str(out), str(compiler_dir))
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=out.parent, delete=False) as f:
            json.dump(job, f)
            job_file = f.name
        try:
            run_job(
                [sys.executable, str(TRACE_JOB), job_file], ctx, log, f"trace of {inputs['model']}"
            )
        except StepFailed as exc:
            if compiler_dir.is_dir():  # the Neuron compiler's log says why: keep it
                detail = f"{exc.detail}\ncompiler work directory: {compiler_dir}"
                raise StepFailed(str(exc), detail) from None
            raise
        finally:
            os.unlink(job_file)
        shutil.rmtree(compiler_dir, ignore_errors=True)


def run_job(command: list[str], ctx: Context, log: Log, what: str) -> None:
    """Run a child process, stream its output to `log`, stop it if the apply is cancelled."""
    try:
        code, tail = run_streaming(
            command,
            log,
            ctx.cancel.is_set,
            env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"},
        )
    except Cancelled:
        raise Cancelled(f"{what} interrupted") from None
    if code != 0:
        message = tail[-1] if tail else f"exit code {code}"
        raise StepFailed(f"{what} failed: {message}", "\n".join(tail))
