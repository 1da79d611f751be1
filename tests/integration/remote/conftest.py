"""Trace hosts for the remote tests: real sshd servers on this machine (see tests/sshd.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.graph.step import Action, Step
from engine.steps.base import ApplyRequest, Context
from engine.steps.trace import TraceStep
from tests import sshd
from tests.tiny_models import build_tiny_model

TRACE = {"sequence_length": 32, "batch_size": 1, "pipeline_cores": 1, "precision": "fp32"}


@pytest.fixture(scope="session")
def sshd_ok() -> None:
    reason = sshd.skip_reason()
    if reason:
        print(f"skipping sshd tests: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sshd_ok: None) -> Iterator[sshd.SshServer]:
    with sshd.ssh_server(tmp_path_factory.mktemp("sshd")) as running:
        yield running


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny", "feature-extraction")


def trace_inputs(model: str, job_source: str, processor: str = "gpu") -> dict[str, Any]:
    """A trace step's inputs, as build_steps makes them."""
    return {
        "model": model,
        "source": {"path": job_source},
        "job_source": job_source,
        "task": "feature-extraction",
        "processor": processor,
        "trace": TRACE,
        "calibration": [["where does the engine keep state", None]],
        "versions": {"torch": "test", "transformers": "test"},
    }


def trace_step(inputs: dict[str, Any], runs_on: dict[str, Any] | None) -> Step:
    host = runs_on["name"] if runs_on else None
    return Step(
        f"trace/{inputs['model']}@{inputs['processor']}",
        "trace",
        inputs,
        (),
        f"fp-{inputs['model']}",
        f"trace {inputs['model']}",
        runs_on=runs_on,
        pool=f"host/{host}" if host else None,
        pool_limit=runs_on.get("max_parallel", 1) if runs_on else 1,
    )


class Lines:
    """A step's log."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.lines = lines if lines is not None else []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def workdir(self) -> Path:
        """The remote work directory the log names ("uploaded to host:/tmp/doinfer-...")."""
        line = next(line for line in self.lines if line.startswith("uploaded to "))
        return Path(line.split(":", 1)[1].split(" in ", 1)[0])


def apply_trace(step: Step, state_dir: Path, log: Lines, ctx: Context | None = None) -> dict:
    ctx = ctx or Context(state_dir=state_dir, runtime=None)  # type: ignore[arg-type]
    return TraceStep().apply(ApplyRequest(step, Action.CREATE, None, {}), ctx, log)


REPO = Path(__file__).resolve().parents[3]
# TEST ONLY: the CLI, on a machine that pretends /dev/null is its GPU, so that the local
# runtime may serve a gpu server here (on the cpu: the model server loads onto the cpu).
# Semantic checks refuse a gpu server on the local runtime of a GPU-less machine; this
# wrapper is the one place that says otherwise, and only for these tests.
FAKE_GPU_CLI = (
    "import sys, engine.devices as d; d.LOCAL_DEVICES['gpu'] = '/dev/null'; "
    "from engine.cli import main; sys.exit(main(sys.argv[1:]))"
)


def doinfer_with_fake_gpu(
    state_dir: Path, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FAKE_GPU_CLI, *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def spec_with_host(model_dir: Path, host: dict[str, Any], extra: str = "") -> str:
    """A spec: one gpu model (a path: source), traced on `host`, served locally."""
    settings = "\n".join(
        f"    {key}: {json.dumps(value)}"
        for key, value in host.items()
        if key != "name" and value is not None
    )
    return (
        "apiVersion: doinfer/v1\n"
        "name: remote-demo\n"
        "models:\n"
        "  - name: tiny\n"
        f"    source: path:{model_dir}\n"
        "    task: feature-extraction\n"
        "    trace: {sequence_length: 32, batch_size: 1}\n"
        "hosts:\n"
        f"  - name: {host['name']}\n"
        f"{settings}\n"
        "servers:\n"
        "  - name: tiny\n"
        "    processor: gpu\n"
        "    models: [{model: tiny, instances: 1}]\n"
        "    replicas: 1\n"
        "runtime: {kind: local}\n"
        f"{extra}"
    )
