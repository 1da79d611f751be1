"""The fleet benchmark still runs: nothing else calls benchmarks/, so an engine change that
breaks a script (as the typed pack results once broke three) goes unseen until someone
measures. A fleet of 40 models keeps this a few seconds; it checks what the script
prints, not how fast (timings belong in docs/BENCHMARKS.md, not in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fleet_plan_script_packs_and_plans_a_small_fleet() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/fleet_plan.py", "--models", "40", "--runs", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[-1].split()
    assert row[0] == "40", done.stdout
    cost, bound, nodes = float(row[4]), float(row[5]), int(row[7])
    assert cost >= bound > 0 and nodes >= 1
