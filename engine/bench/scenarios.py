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
    started_at = time.time()
    async with session() as http:
        run = _Run(
            http,
            scenario,
            targets,
            time.perf_counter(),
            on_progress or (lambda done, total: None),
            random.Random(seed),
        )
        shape = {"sequential": run.sequential, "random": run.random}.get(
            scenario.kind, run.closed_loop
        )
        samples = await shape()
    duration = time.perf_counter() - run.origin
    notes = []
    if scenario.kind == "benchmark" and (scenario.rate or scenario.clients > 1):
        notes.append("this version runs benchmarks closed-loop from one client process")
    return ScenarioResult(
        scenario.name, scenario.kind, samples, started_at, duration, len(targets), notes
    )


@dataclass
class _Run:
    """One run of a scenario: its session, its clock, and the request shapes it can take."""

    http: Any
    scenario: Scenario
    targets: list[Target]
    origin: float  # perf_counter at the start
    progress: Progress
    rng: random.Random

    async def hit(self, target: Target) -> Sample:
        params = query_for(target, self.scenario.seq_0, self.scenario.seq_1)
        return await send(self.http, target, params, self.origin)

    async def sequential(self) -> list[Sample]:
        """Every replica, every model instance, one request each, in order."""
        samples = []
        for target in self.targets:
            samples.append(await self.hit(target))
            self.progress(len(samples), len(self.targets))
        return samples

    async def random(self) -> list[Sample]:
        """N requests, one at a time, each to a random target, `interval_ms` apart."""
        samples = []
        for i in range(self.scenario.requests):
            if i and self.scenario.interval_ms:
                await asyncio.sleep(self.scenario.interval_ms / 1000)
            samples.append(await self.hit(self.rng.choice(self.targets)))
            self.progress(len(samples), self.scenario.requests)
        return samples

    async def closed_loop(self) -> list[Sample]:
        """`concurrency` workers send back-to-back to random targets for `duration_s`.

        Samples sent during `warmup_s` are dropped.
        """
        warmup = self.scenario.warmup_s
        deadline = self.origin + warmup + self.scenario.duration_s
        samples: list[Sample] = []

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sample = await self.hit(self.rng.choice(self.targets))
                if sample.start >= warmup:
                    samples.append(sample)
                    self.progress(len(samples), 0)

        await asyncio.gather(*(worker() for _ in range(self.scenario.concurrency or 1)))
        return samples
