from __future__ import annotations

import numpy as np

from engine.bench.client import Sample
from engine.bench.results import BenchRun, ScenarioResult


def stalled_result(name: str = "load", slo: dict | None = None, seed: int = 1) -> ScenarioResult:
    """8 s of 20 ms answers, with 1 s stalls at 2-3 s and 6-7 s and a few errors."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 8, 400))
    samples = []
    for i, start in enumerate(starts):
        stalled = 2 <= start % 4 < 3
        latency = 20 + (3 - start % 4) * 1000 if stalled else 20 + rng.exponential(1)
        status = 503 if i % 100 == 7 else 200
        target = f"web/{i % 2}/m-{i % 3}"
        samples.append(Sample(target, float(start), float(latency), status, "busy <b>"))
    settings = {"kind": "benchmark", "rate": 50, "clients": 2, "duration_s": 8, "slo": slo}
    clients = [{"client": 0, "sent": 200, "lag": {"p50_ms": 0.1, "p99_ms": 1, "max_ms": 2}}]
    return ScenarioResult(
        name, "benchmark", samples, 1_700_000_000.0, 8.0, 6, ["a <note>"], settings, clients
    )


def bench_run(*results: ScenarioResult) -> BenchRun:
    return BenchRun("demo", "default", "local", 1_700_000_000.0, list(results))
