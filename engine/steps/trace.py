"""The trace step: turn a model source into a traced artifact in the content-addressed cache.

The cache key covers what determines the traced module (source identity, task, processor,
trace shape and precision, library versions) and the texts its accuracy is measured on,
not the model's name in a spec nor the host that traces it, so the same inputs never
trace twice, whichever spec asks. The work itself runs in `trace_job.py`, a self-contained
script: here in a child process (the CLI never imports torch, a crash cannot take the
engine down), or, when the step was placed on a gpu or inf host, on that host over SSH
(trace_remote.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.artifacts import TRACE_META_FILE, artifact_problem, padded_lengths
from engine.devices import has_local_device
from engine.errors import Cancelled, StepFailed
from engine.graph.fingerprint import fingerprint
from engine.graph.step import Observation, Step
from engine.runtimes.streams import run_streaming
from engine.sources import source_for_job
from engine.steps.base import ApplyRequest, Context, Log

TRACE_JOB = Path(__file__).with_name("trace_job.py")
CACHE_KEY_INPUTS = ("source", "task", "processor", "trace", "calibration", "versions")


def cache_key(inputs: dict[str, Any]) -> str:
    return fingerprint({k: inputs[k] for k in CACHE_KEY_INPUTS}, {})


def artifact_dir(ctx: Context, inputs: dict[str, Any]) -> Path:
    return ctx.cache_dir / "traces" / cache_key(inputs)


def compiler_logs_dir(ctx: Context, inputs: dict[str, Any]) -> Path:
    """Where a failed Neuron compile's work directory (its log) is kept for the user."""
    return ctx.state_dir / "logs" / "traces" / f"{inputs['model']}@{inputs['processor']}"


def trace_job(
    inputs: dict[str, Any], source: str, out_dir: str, compiler_workdir: str
) -> dict[str, Any]:
    """The trace script's job: on inf, one module per padded length, at the traced batch."""
    job: dict[str, Any] = {
        "model": inputs["model"],
        "source": source,
        "task": inputs["task"],
        "processor": inputs["processor"],
        "trace": inputs["trace"],
        "calibration": inputs["calibration"],
        "out_dir": out_dir,
    }
    if inputs["processor"] == "inf":
        job["sequence_lengths"] = padded_lengths(inputs["trace"]["sequence_length"])
        job["compiler_workdir"] = compiler_workdir
    return job


class TraceStep:
    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        problem = artifact_problem(Path(record["outputs"]["artifact"]), full_check=False)
        return Observation(drift=(problem,) if problem else ())

    def apply(self, request: ApplyRequest, ctx: Context, log: Log) -> dict[str, Any]:
        inputs = request.step.inputs
        out = artifact_dir(ctx, inputs)
        if artifact_problem(out, full_check=True) is None:
            log(f"cached: {out}")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            if request.step.runs_on is not None:
                from engine.steps.trace_remote import trace_remotely  # asyncssh is slow to load

                trace_remotely(inputs, request.step.runs_on, out, ctx, log)
            else:
                self._run_local(inputs, out, ctx, log)
            problem = artifact_problem(out, full_check=True)
            if problem:
                raise StepFailed(f"trace of {inputs['model']} produced a bad artifact: {problem}")
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

    def _run_local(self, inputs: dict[str, Any], out: Path, ctx: Context, log: Log) -> None:
        processor = inputs["processor"]
        if not has_local_device(processor):
            raise StepFailed(
                f"cannot trace {inputs['model']} for {processor} here: this machine has no "
                f"{processor} device and the spec no host with processor: {processor}; "
                f"add one under hosts"
            )
        compiler_dir = compiler_logs_dir(ctx, inputs)
        job = trace_job(inputs, source_for_job(inputs["job_source"]), str(out), str(compiler_dir))
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
