"""Measure a traced model's profile on this machine with the real model server
(`python -m engine.serving`), one thread pinned to one core:

- memory_mib: the resident memory of a server holding two copies (share_weights false)
  less that of a server holding one, both warmed up: one copy's cost, without the
  server's own (Python, torch, the tokenizer);
- rate_per_core: the highest throughput of closed-loop runs at concurrency 1, 2, 4, ...
  (each `seconds` long, after a short warm-up) whose p99 latency stays within the
  objective and which answered every request. It stops at the first run over the
  objective, or once doubling the concurrency twice in a row gains less than 5% over the
  best run (the core is full).

The load client runs in this process on the machine's other cores; requests draw texts
from doinfer's default corpus (engine/data/corpus.json), so batches pad as real ones do.
benchmarks/profile_minilm.py is a thin caller of `measure`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import engine
from engine import system
from engine.bundles import write_bundle
from engine.calibration import default_corpus
from engine.errors import Cancelled, StepFailed
from engine.profiles import LoadStep, MeasuredProfile

CONCURRENCY = (1, 2, 4, 8, 16, 32)  # the closed-loop runs, at most
SATURATED = 1.05  # a run that gains less than this over the best so far is flat
PATIENCE = 2  # flat runs in a row that end the ladder
START_TIMEOUT_S = 300.0  # a server that loads for longer has failed
RSS_SAMPLES = 5
WARMUP_REQUESTS = 8  # per copy, before its memory is read

Log = Callable[[str], None]


@dataclass(frozen=True)
class Subject:
    """What is measured: a traced artifact of a model, served as a fleet's server would."""

    model: str
    task: str
    processor: str
    artifact: Path
    batching: Mapping[str, Any]  # max_batch_size, max_delay_ms, max_queue, max_padding


def measure(
    subject: Subject,
    key: str,
    slo_p99_ms: float,
    seconds: float,
    work_dir: Path,
    log: Log,
    cancelled: Callable[[], bool] = lambda: False,
) -> MeasuredProfile:
    """Measure `subject`; `work_dir` holds the two bundles (the caller removes it)."""
    core = max(system.usable_cores())  # the last one: interrupts and most else favour core 0
    bundles = {n: work_dir / f"copies-{n}" for n in (1, 2)}
    for copies, directory in bundles.items():
        write_bundle(
            directory, bundle_inputs(subject, copies), {subject.model: str(subject.artifact)}
        )
    logs = {n: work_dir / f"server-{n}.log" for n in (1, 2)}
    with serving(bundles[1], core, logs[1]) as one, serving(bundles[2], None, logs[2]) as two:
        for server in (one, two):
            server.wait_ready(cancelled)
        rss = {}
        for copies, server in ((1, one), (2, two)):
            for i in range(copies):
                server.warm_up(f"{subject.model}-{i}", subject.task)
            rss[copies] = server.rss_mib()
        two.stop()
        log(f"resident memory: 1 copy {rss[1]:,.0f} MiB, 2 copies {rss[2]:,.0f} MiB")
        memory = rss[2] - rss[1]
        if memory <= 0:
            raise StepFailed(
                f"profile of {subject.model}: a second copy added no resident memory "
                f"({rss[1]:,.0f} MiB with one, {rss[2]:,.0f} MiB with two); declare its "
                f"profile instead"
            )
        ladder = climb(
            lambda c: closed_loop(one.url, subject, c, seconds), slo_p99_ms, log, cancelled
        )
    within = [s for s in ladder if s.p99_ms <= slo_p99_ms and s.errors == 0]
    if not within:
        first = ladder[0]
        raise StepFailed(
            f"profile of {subject.model}: one request at a time already takes p99 "
            f"{first.p99_ms:,.0f} ms on one core ({first.errors} errors), over the objective "
            f"of {slo_p99_ms:g} ms: relax the scenarios' p99_ms, or declare the profile"
        )
    return MeasuredProfile(
        key=key,
        memory_mib=memory,
        rate_per_core=max(s.rate for s in within),
        slo_p99_ms=slo_p99_ms,
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        where=f"{socket.gethostname()}, 1 core ({system.cpu_model()})",
        ladder=tuple(ladder),
    )


def climb(
    run: Callable[[int], LoadStep],
    slo_p99_ms: float,
    log: Log,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[LoadStep]:
    """Closed-loop runs (`run(concurrency)`) at growing concurrency, until the objective
    is missed or the core is full."""
    ladder: list[LoadStep] = []
    best, flat = 0.0, 0
    for concurrency in CONCURRENCY:
        if cancelled():
            raise Cancelled("profile interrupted")
        step = run(concurrency)
        ladder.append(step)
        within = step.p99_ms <= slo_p99_ms and step.errors == 0
        log(
            f"concurrency {concurrency:2d}: {step.rate:7.1f} requests/s, p99 "
            f"{step.p99_ms:6.1f} ms{'' if within else '  (over the objective)'}"
        )
        if not within:
            break
        flat = flat + 1 if step.rate < best * SATURATED else 0
        if flat == PATIENCE:  # one flat step may be noise; two say the core is full
            break
        best = max(best, step.rate)
    return ladder


def closed_loop(url: str, subject: Subject, concurrency: int, seconds: float) -> LoadStep:
    """One run of `concurrency` requests in flight for `seconds`, after a warm-up."""
    from engine.bench.client import Sample
    from engine.bench.load import Client, new_event_loop
    from engine.bench.plan import ClientPlan
    from engine.bench.stats import summarize
    from engine.bench.targets import Target

    target = Target(url, "profile", 0, f"{subject.model}-0", subject.model, subject.task)
    plan = ClientPlan(
        scenario="profile",
        mode="closed",
        targets=[target],
        texts=corpus(subject.task),
        duration_s=seconds,
        warmup_s=min(1.0, seconds / 2),
        concurrency=concurrency,
    )
    loop = new_event_loop()
    try:
        result = loop.run_until_complete(Client(plan).run())
    finally:
        loop.close()
    samples = [Sample(result.targets[t], *rest) for t, *rest in result.samples]
    summary = summarize(samples, result.duration_s)
    return LoadStep(concurrency, summary.ok_throughput, summary.p99_ms, summary.errors)


def corpus(task: str) -> list[list[str | None]]:
    """The texts requests draw from: questions with passages for question answering,
    every text of the default corpus otherwise."""
    questions, passages = default_corpus()
    if task == "question-answering":
        return [[q, passages[i % len(passages)]] for i, q in enumerate(questions)]
    return [[t] for t in questions + passages]


def bundle_inputs(subject: Subject, copies: int) -> dict[str, Any]:
    """A pack step's inputs for a server of `copies` copies, each with its own weights."""
    return {
        "server": f"profile-{subject.model}-{copies}",
        "processor": subject.processor,
        "share_weights": False,  # each copy its own weights: a copy's whole cost
        "models": [
            {"name": subject.model, "task": subject.task, "instances": copies, **subject.batching}
        ],
    }


class ServerProcess:
    """A model server this module started, on a socket it bound."""

    def __init__(self, bundle: Path, core: int | None, log_file: Path) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        command = [
            sys.executable, "-m", "engine.serving", "--bundle", str(bundle),
            "--fd", str(self.sock.fileno()), "--threads", "1", "--log-level", "warning",
        ]  # fmt: skip
        self.log_file = log_file
        with log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                command, pass_fds=(self.sock.fileno(),), env=server_env(), stdout=out, stderr=out
            )
        if core is not None:
            system.pin_to_core(self.proc.pid, core)

    def wait_ready(self, cancelled: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if cancelled():
                raise Cancelled("profile interrupted")
            if self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise StepFailed(f"the model server exited {self.proc.returncode}", tail)
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise StepFailed(f"the model server did not come up in {START_TIMEOUT_S:g} s")

    def warm_up(self, instance: str, task: str) -> None:
        """Send an instance a few requests: its first batches allocate what it keeps."""
        from engine.artifacts import default_request

        request = default_request(task)
        query = urllib.parse.urlencode({k: v for k, v in request.items() if v})
        for _ in range(WARMUP_REQUESTS):
            with urllib.request.urlopen(f"{self.url}/predictions/{instance}?{query}", timeout=30):
                pass

    def rss_mib(self) -> float:
        """Resident memory, the median of a few readings."""
        readings = []
        for _ in range(RSS_SAMPLES):
            readings.append(system.resident_mib(self.proc.pid))
            time.sleep(0.1)
        return statistics.median(readings)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()


def server_env() -> dict[str, str]:
    """The server runs this doinfer's code (its package first on the path), offline."""
    root = str(Path(engine.__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }


@contextlib.contextmanager
def serving(bundle: Path, core: int | None, log_file: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(bundle, core, log_file)
    try:
        yield server
    finally:
        server.stop()
