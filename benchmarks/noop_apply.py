"""How long a no-change `doinfer apply` (and `plan`) takes once a spec is deployed.

Applies the spec once into a temporary state directory (trace, pack, deploy, scenarios),
then times fresh CLI processes of `apply --yes` and `plan` that find nothing to do, and
destroys everything at the end.

    python benchmarks/noop_apply.py [specs/local.yaml] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def doinfer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )


def timed(runs: int, *args: str) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = doinfer(*args)
        times.append(time.perf_counter() - start)
        assert "No changes." in result.stdout, result.stdout
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="specs/local.yaml")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        start = time.perf_counter()
        doinfer("apply", args.spec, "--yes", "--state-dir", state)
        first = time.perf_counter() - start
        try:
            apply = timed(args.runs, "apply", args.spec, "--yes", "--state-dir", state)
            plan = timed(args.runs, "plan", args.spec, "--state-dir", state)
        finally:
            doinfer("destroy", args.spec, "--yes", "--state-dir", state)
    print(f"first apply (trace, pack, deploy, scenarios): {first:.1f} s")
    print(
        f"no-change apply: median {statistics.median(apply):.3f} s, "
        f"min {min(apply):.3f} s, max {max(apply):.3f} s over {args.runs} runs"
    )
    print(
        f"no-change plan:  median {statistics.median(plan):.3f} s, "
        f"min {min(plan):.3f} s, max {max(plan):.3f} s over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
