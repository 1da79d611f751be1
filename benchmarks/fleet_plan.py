"""How long a fleet of thousands of models takes to validate, pack and plan, and how close
its packing comes to the LP lower bound.

Generates a spec of N distinct models (hf: sources, so nothing is read but the spec), each
with declared inf and cpu profiles of assorted sizes and a long-tailed (Pareto) demand, all
in one `packing: auto` server; then times, in-process, loading + validating the spec and
packing it, and the whole CLI (`doinfer plan --format json`, a fresh process, as a user runs
it), and reads the cost and the bound from the plan's JSON.

    python benchmarks/fleet_plan.py [--models 300 3000 30000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.packing import pack  # noqa: E402
from engine.spec import load_spec  # noqa: E402
from engine.spec.fleet import fleet_of  # noqa: E402


def write_spec(directory: Path, count: int, seed: int = 0) -> Path:
    """A fleet spec of `count` models, written as a person would (block style)."""
    rng = random.Random(seed)
    lines = [
        "apiVersion: doinfer/v1",
        f"name: fleet-{count}",
        "models:",
    ]
    rates = []
    for i in range(count):
        memory = rng.choice((250, 520, 900, 1400))
        rates.append(round(rng.paretovariate(1.16) * 0.4, 3))
        lines += [
            f"  - name: m{i:05d}",
            f"    source: hf:acme/m{i:05d}",
            "    task: feature-extraction",
            "    profiles:",
            f"      inf: {{memory_mib: {memory}, rate_per_core: {rng.uniform(80, 140):.1f}}}",
            f"      cpu: {{memory_mib: {memory * 1.2:.0f}, rate_per_core: "
            f"{rng.uniform(10, 20):.1f}}}",
        ]
    lines += [
        "hosts:",
        "  - {name: neuron, address: 10.0.0.7, processor: inf}",
        "servers:",
        "  - name: fleet",
        "    packing: auto",
        "    max_utilization: 0.75",
        "    node_types: [inf2.*, c6i.*, m6i.*]",
        "    models:",
        *(f"      - {{model: m{i:05d}, rate: {rate}}}" for i, rate in enumerate(rates)),
        "runtime: {kind: docker, registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com/}",
    ]
    path = directory / f"fleet-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(path: Path, runs: int) -> dict[str, float]:
    """Medians over `runs`: wall and CPU seconds (on a busy machine CPU time is the
    steadier measure of the work), in-process phases and the whole CLI."""
    loads, packs, load_cpu, pack_cpu = [], [], [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        spec = load_spec(path)
        loaded, loaded_cpu = time.perf_counter(), time.process_time()
        packing = pack(fleet_of(spec, spec.servers[0]))
        loads.append(loaded - start)
        load_cpu.append(loaded_cpu - cpu)
        packs.append(time.perf_counter() - loaded)
        pack_cpu.append(time.process_time() - loaded_cpu)
    cli, cli_cpu = [], []
    plan = {}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as state:
            start, cpu = time.perf_counter(), children_cpu()
            done = subprocess.run(
                [sys.executable, "-m", "engine", "plan", str(path), "--format", "json",
                 "--state-dir", state],
                capture_output=True, text=True, cwd=REPO,
            )  # fmt: skip
            cli.append(time.perf_counter() - start)
            cli_cpu.append(children_cpu() - cpu)
        if done.returncode not in (0, 2):
            raise SystemExit(f"doinfer plan failed:\n{done.stderr}")
        plan = json.loads(done.stdout)
    fleet = plan.get("packing", {}).get("fleet") or packing.to_json()
    return {
        "load_s": statistics.median(loads),
        "load_cpu_s": statistics.median(load_cpu),
        "pack_s": statistics.median(packs),
        "pack_cpu_s": statistics.median(pack_cpu),
        "plan_cli_s": statistics.median(cli),
        "plan_cli_cpu_s": statistics.median(cli_cpu),
        "cost": fleet["cost_per_hour"],
        "bound": fleet["lower_bound_per_hour"],
        "nodes": len(fleet["nodes"]),
        "copies": sum(len(d["copies"]) for n in fleet["nodes"] for d in n["devices"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[300, 3000, 30000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; seconds wall/CPU")
    print("models  load+validate     pack       plan (CLI)    cost $/h  bound $/h  over  nodes")
    with tempfile.TemporaryDirectory() as directory:
        for count in args.models:
            r = measure(write_spec(Path(directory), count), args.runs)
            print(
                f"{count:6d}  {r['load_s']:6.2f}/{r['load_cpu_s']:<6.2f}  "
                f"{r['pack_s']:5.2f}/{r['pack_cpu_s']:<5.2f}  "
                f"{r['plan_cli_s']:6.2f}/{r['plan_cli_cpu_s']:<6.2f}  {r['cost']:8.2f}  "
                f"{r['bound']:9.2f}  {r['cost'] / r['bound'] - 1:5.1%}  {r['nodes']:5d}",
                flush=True,
            )


if __name__ == "__main__":
    main()
