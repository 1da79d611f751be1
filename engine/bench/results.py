"""What a benchmark run produced: scenario results with every raw sample, and their file.

A ScenarioResult keeps every sample with its target, so the results of several clients
merge before any percentile is taken. A BenchRun is the JSON document `doinfer bench`
writes (`--json`) and `--compare` and the HTML report read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.bench.client import Sample
from engine.bench.plan import ClientResult
from engine.bench.slo import Verdict, verdicts
from engine.bench.stats import Interval, Summary, summarize, timeline
from engine.bench.targets import model_of, replica_of
from engine.errors import DoinferError

FORMAT = "doinfer-bench/1"
SAMPLE_FIELDS = ["target", "start", "latency_ms", "status", "error"]


@dataclass
class ScenarioResult:
    name: str
    kind: str
    samples: list[Sample]
    started_at: float  # wall clock (epoch seconds) when measuring began
    duration_s: float  # measured time: throughput is answers over it
    targets: int = 0
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the scenario as the spec says
    clients: list[dict[str, Any]] = field(default_factory=list)  # per client: sent, lag

    @property
    def ok(self) -> bool:
        """Every objective met (with no SLO: at least one answer, and no errors)."""
        return all(v.met for v in self.verdicts())

    def summary(self) -> Summary:
        return summarize(self.samples, self.duration_s)

    def verdicts(self) -> list[Verdict]:
        return verdicts(self.settings.get("slo"), self.summary())

    def timeline(self) -> tuple[float, list[Interval]]:
        return timeline(self.samples, self.duration_s)

    def by_target(self) -> dict[str, Summary]:
        return self._grouped(lambda s: s.target)

    def by_server(self) -> dict[str, Summary]:
        return self._grouped(lambda s: s.target.split("/", 1)[0])

    def by_replica(self) -> dict[str, Summary]:
        return self._grouped(lambda s: replica_of(s.target))

    def by_model(self) -> dict[str, Summary]:
        return self._grouped(lambda s: model_of(s.target))

    def _grouped(self, key: Callable[[Sample], str]) -> dict[str, Summary]:
        groups: dict[str, list[Sample]] = defaultdict(list)
        for sample in self.samples:
            groups[key(sample)].append(sample)
        return {k: summarize(v, self.duration_s) for k, v in sorted(groups.items())}

    def to_dict(self) -> dict[str, Any]:
        step, intervals = self.timeline()
        return {
            "name": self.name,
            "kind": self.kind,
            "settings": self.settings,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "targets": self.targets,
            "notes": self.notes,
            "clients": self.clients,
            "summary": self.summary().to_dict(),
            "slo": [v.to_dict() for v in self.verdicts()],
            "by_replica": {k: v.to_dict() for k, v in self.by_replica().items()},
            "by_model": {k: v.to_dict() for k, v in self.by_model().items()},
            "timeline": {"step_s": step, "intervals": [i.to_dict() for i in intervals]},
            "sample_fields": SAMPLE_FIELDS,
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
            dict(data.get("settings", {})),
            list(data.get("clients", [])),
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
        first.settings,
        [c for r in results for c in r.clients],
    )


def from_clients(
    name: str, kind: str, settings: dict[str, Any], clients: list[ClientResult]
) -> ScenarioResult:
    """The scenario's result from its clients' results, on one timeline."""
    origin = min(c.started_at for c in clients)
    parts = []
    for client in clients:
        shift = client.started_at - origin  # a client that started late
        samples = [
            Sample(client.targets[t], start + shift, latency, status, error)
            for t, start, latency, status, error in client.samples
        ]
        stats = {"client": client.client, "sent": client.sent, "lag": client.lag}
        parts.append(
            ScenarioResult(
                name,
                kind,
                samples,
                client.started_at,
                client.duration_s + shift,
                len(client.targets),
                list(client.notes),
                settings,
                [stats],
            )
        )
    return merge(parts)


@dataclass
class BenchRun:
    """One `doinfer bench`: which deployment, when, and every scenario's result."""

    spec: str
    environment: str
    runtime: str
    started_at: float
    results: list[ScenarioResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "spec": self.spec,
            "environment": self.environment,
            "runtime": self.runtime,
            "started_at": self.started_at,
            "scenarios": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRun:
        return cls(
            data["spec"],
            data["environment"],
            data["runtime"],
            data["started_at"],
            [ScenarioResult.from_dict(s) for s in data["scenarios"]],
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: Path) -> BenchRun:
        """Read a file `doinfer bench --json` wrote; a clear error for anything else."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DoinferError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DoinferError(f"{path}: cannot read it ({exc})") from None
        except ValueError as exc:
            raise DoinferError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DoinferError(f'{path}: not a result of doinfer bench (no "format": "{FORMAT}")')
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise DoinferError(f"{path}: a damaged doinfer bench result ({exc!r})") from None
