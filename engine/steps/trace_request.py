"""What a trace job is asked, wherever it runs: the job description the trace script
(trace_job.py) reads, and where a failed compile's log is kept. Shared by the local trace
(trace.py) and the remote one (trace_remote.py), which otherwise know nothing of each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.artifacts import padded_lengths
from engine.steps.base import Context

TRACE_JOB = Path(__file__).with_name("trace_job.py")


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
