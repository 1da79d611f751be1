"""How long `doinfer plan` takes on a large spec (3,000 model instances by default).

Generates a spec of M models packed into S servers with I instances each (all traced
from one small `path:` model directory made here), then times the whole CLI
(`doinfer plan`, a fresh process, as a user runs it) and, in-process, each phase:
load + validate, build the step graph, diff against the state.

    python benchmarks/plan_speed.py [--servers 300 --instances 10 --models 100 --runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from engine.graph.build import build_steps
from engine.graph.plan import make_plan
from engine.spec import load_spec
from engine.state import StateStore


def write_spec(directory: Path, servers: int, instances: int, models: int) -> Path:
    model_dir = directory / "tiny-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
    spec = {
        "apiVersion": "doinfer/v1",
        "name": "big",
        "models": [
            {
                "name": f"m{i}",
                "source": "path:tiny-model",
                "task": "feature-extraction",
                "trace": {"sequence_length": 64 + i % 4 * 32},
            }
            for i in range(models)
        ],
        "servers": [
            {
                "name": f"s{i}",
                "processor": "cpu",
                "models": [
                    {"model": f"m{(i + k) % models}", "instances": instances // 2} for k in range(2)
                ],
                "replicas": 1,
            }
            for i in range(servers)
        ],
        "runtime": {"kind": "local"},
        "scenarios": [{"name": "smoke", "kind": "sequential"}],
    }
    path = directory / "big.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def time_cli(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def record_everything(steps: list, store: StateStore, directory: Path) -> None:
    """A state in which every step is recorded, so plan observes each one (all drifted:
    their artifacts, bundles and replicas do not exist)."""
    state = store.load()
    for step in steps:
        outputs = {
            "trace": {"artifact": str(directory / "no-artifact")},
            "pack": {"bundle": str(directory / "no-bundle")},
            "deploy": {"replicas": [{"index": 0, "key": "k"}], "models": []},
            "scenario": {},
        }[step.kind]
        state.steps[step.id] = {
            "kind": step.kind,
            "fingerprint": step.fingerprint,
            "inputs": step.inputs,
            "needs": list(step.needs),
            "upstream": {},
            "summary": step.summary,
            "outputs": outputs,
        }
    store.save(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=300)
    parser.add_argument("--instances", type=int, default=10, help="model instances per server")
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        path = write_spec(directory, args.servers, args.instances, args.models)
        state_dir = directory / "state"
        command = [
            sys.executable,
            "-m",
            "engine",
            "plan",
            str(path),
            "--state-dir",
            str(state_dir),
            "--format",
            "json",
        ]
        subprocess.run(command, check=True, capture_output=True)  # warm the hash cache
        cli = time_cli(command, args.runs)
        phases: dict[str, list[float]] = {"load+validate": [], "build": [], "diff": []}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            spec = load_spec(path)
            t1 = time.perf_counter()
            steps = build_steps(spec, state_dir / "cache")
            t2 = time.perf_counter()
            make_plan(
                steps,
                StateStore(state_dir, spec.name, spec.environment).load(),
                None,
                spec=spec.name,
                environment=spec.environment,
                runtime="local",
                spec_path=str(path),
                document=spec.document,
            )
            t3 = time.perf_counter()
            phases["load+validate"].append(t1 - t0)
            phases["build"].append(t2 - t1)
            phases["diff"].append(t3 - t2)
        record_everything(steps, StateStore(state_dir, spec.name, spec.environment), directory)
        observed = time_cli(command, args.runs)
        total = sum(m["instances"] for s in spec.document["servers"] for m in s["models"])
        print(
            f"spec: {args.models} models, {args.servers} servers, {total} model instances, "
            f"{len(steps)} steps"
        )
        print(
            f"doinfer plan, empty state (whole CLI process): median "
            f"{statistics.median(cli):.3f} s, min {min(cli):.3f} s over {args.runs} runs"
        )
        print(
            f"doinfer plan, every step recorded and observed: median "
            f"{statistics.median(observed):.3f} s, min {min(observed):.3f} s"
        )
        print("in-process phases (empty state):")
        for name, times in phases.items():
            print(f"  {name:<14} median {statistics.median(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
