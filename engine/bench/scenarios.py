"""Scenarios, first cut: sequential and random probes, and a bounded closed-loop benchmark.

A scenario returns a ScenarioResult that keeps every raw sample with its target, so
results of several runs or client processes can be merged before any percentile is taken.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.bench.client import Sample, query_for, send, session
from engine.bench.stats import Summary, summarize
from engine.bench.targets import Target
from engine.spec.model import Scenario

Progress = Callable[[int, int], None]  # (done, total); total 0 when unknown


@dataclass
class ScenarioResult:
    name: str
    kind: str
    samples: list[Sample]
    started_at: float  # wall clock (epoch seconds)
    duration_s: float
    targets: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.samples) and all(s.ok for s in self.samples)

    def summary(self) -> Summary:
        return summarize(self.samples, self.duration_s)

    def by_target(self) -> dict[str, Summary]:
        return self._grouped(lambda s: s.target)

    def by_server(self) -> dict[str, Summary]:
        return self._grouped(lambda s: s.target.split("/", 1)[0])

    def _grouped(self, key: Callable[[Sample], str]) -> dict[str, Summary]:
        groups: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            groups[key(sample)].append(sample)
        return {k: summarize(v, self.duration_s) for k, v in sorted(groups.items())}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "targets": self.targets,
            "notes": self.notes,
            "summary": self.summary().to_dict(),
            "sample_fields": ["target", "start", "latency_ms", "status", "error"],
            "samples": [s.to_list() for s in self.samples],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioResult:
        return cls(
            data["name"],
            data["kind"],
            [Sample.from_list(s) for s in data["samples"]],
            data["started_at"],
            data["duration_s"],
            data.get("targets", 0),
            list(data.get("notes", [])),
        )


def merge(results: list[ScenarioResult]) -> ScenarioResult:
    """One result from several runs of a scenario (e.g. client processes): samples pooled."""
    first = results[0]
    return ScenarioResult(
        first.name,
        first.kind,
        [s for r in results for s in r.samples],
        min(r.started_at for r in results),
        max(r.duration_s for r in results),
        first.targets,
        [n for r in results for n in r.notes],
    )


async def run_scenario(
    scenario: Scenario,
    targets: list[Target],
    on_progress: Progress | None = None,
    seed: int | None = None,
) -> ScenarioResult:
    if not targets:
        raise ValueError(f"scenario {scenario.name}: no targets to send requests to")
    progress = on_progress or (lambda done, total: None)
    started_at, origin = time.time(), time.perf_counter()
    async with session() as http:
        if scenario.kind == "sequential":
            samples = await _sequential(http, scenario, targets, origin, progress)
        elif scenario.kind == "random":
            samples = await _random(http, scenario, targets, origin, progress, random.Random(seed))
        else:
            samples = await _closed_loop(
                http, scenario, targets, origin, progress, random.Random(seed)
            )
    duration = time.perf_counter() - origin
    notes = []
    if scenario.kind == "benchmark" and (scenario.rate or scenario.clients > 1):
        notes.append("this version runs benchmarks closed-loop from one client process")
    return ScenarioResult(
        scenario.name, scenario.kind, samples, started_at, duration, len(targets), notes
    )


async def _sequential(
    http: Any, scenario: Scenario, targets: list[Target], origin: float, progress: Progress
) -> list[Sample]:
    """Every replica, every model instance, one request each, in order."""
    samples = []
    for target in targets:
        params = query_for(target, scenario.seq_0, scenario.seq_1)
        samples.append(await send(http, target, params, origin))
        progress(len(samples), len(targets))
    return samples


async def _random(
    http: Any,
    scenario: Scenario,
    targets: list[Target],
    origin: float,
    progress: Progress,
    rng: random.Random,
) -> list[Sample]:
    """N requests, one at a time, each to a random target, `interval_ms` apart."""
    samples = []
    for i in range(scenario.requests):
        if i and scenario.interval_ms:
            await asyncio.sleep(scenario.interval_ms / 1000)
        target = rng.choice(targets)
        samples.append(
            await send(http, target, query_for(target, scenario.seq_0, scenario.seq_1), origin)
        )
        progress(len(samples), scenario.requests)
    return samples


async def _closed_loop(
    http: Any,
    scenario: Scenario,
    targets: list[Target],
    origin: float,
    progress: Progress,
    rng: random.Random,
) -> list[Sample]:
    """`concurrency` workers send back-to-back to random targets for `duration_s`.

    Samples sent during `warmup_s` are dropped.
    """
    deadline = origin + scenario.warmup_s + scenario.duration_s
    samples: list[Sample] = []

    async def worker() -> None:
        while time.perf_counter() < deadline:
            target = rng.choice(targets)
            sample = await send(
                http, target, query_for(target, scenario.seq_0, scenario.seq_1), origin
            )
            if sample.start >= scenario.warmup_s:
                samples.append(sample)
                progress(len(samples), 0)

    await asyncio.gather(*(worker() for _ in range(scenario.concurrency or 1)))
    return samples
