"""Measured profiles: what one loaded copy of a traced model costs on a processor of this
machine, as a profile step measured it, and the cache that keeps them.

A profile is cached as `cache/profiles/<key>.json`. The key is the fingerprint of what
determines the numbers: the artifact's fingerprint (source, shape, precision, library
versions: engine/artifacts.py), the processor, the p99 objective the rate is held to, the
batching the server runs with, and how long each load step runs. The same artifact under
the same terms is measured once, whichever spec or model name asks; a bf16 artifact is
another artifact, so it has its own (faster) profile. The plan reads the cache to pack
(engine/graph/profiles.py); the profile step writes it (engine/steps/profile_step.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.canonical import canonical_json
from engine.files import write_atomically
from engine.packing.fleet import Profile

DEFAULT_SLO_P99_MS = 100.0  # when no scenario of the spec sets a p99 objective
METHOD = 1  # how profiles are measured (engine/profiling.py): a new method measures anew


@dataclass(frozen=True)
class LoadStep:
    """One closed-loop run of a profile measurement: `concurrency` requests in flight."""

    concurrency: int
    rate: float  # answers per second
    p99_ms: float
    errors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "rate": round(self.rate, 3),
            "p99_ms": round(self.p99_ms, 3),
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadStep:
        return cls(
            int(data["concurrency"]),
            float(data["rate"]),
            float(data["p99_ms"]),
            int(data["errors"]),
        )


@dataclass(frozen=True)
class MeasuredProfile:
    """A profile as measured: one copy's resident memory, the rate one core sustains with
    its p99 latency within the objective, and when, where and how it was measured."""

    key: str  # its cache key (profile_key)
    memory_mib: float
    rate_per_core: float
    slo_p99_ms: float
    measured_at: str  # ISO 8601, UTC
    where: str  # the machine and the core it ran on
    ladder: tuple[LoadStep, ...] = ()  # the load steps, in the order they ran

    @property
    def profile(self) -> Profile:
        """What the packer reads."""
        return Profile(self.memory_mib, self.rate_per_core)

    def describe(self) -> str:
        return (
            f"{self.memory_mib:,.0f} MiB, {self.rate_per_core:,.1f} requests/s per core "
            f"within p99 {self.slo_p99_ms:g} ms (measured {self.measured_at} on {self.where})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "memory_mib": round(self.memory_mib, 1),
            "rate_per_core": round(self.rate_per_core, 3),
            "slo_p99_ms": self.slo_p99_ms,
            "measured_at": self.measured_at,
            "where": self.where,
            "ladder": [step.to_json() for step in self.ladder],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MeasuredProfile:
        return cls(
            str(data["key"]),
            float(data["memory_mib"]),
            float(data["rate_per_core"]),
            float(data["slo_p99_ms"]),
            str(data["measured_at"]),
            str(data["where"]),
            tuple(LoadStep.from_json(s) for s in data.get("ladder", ())),
        )


def profile_key(inputs: Mapping[str, Any]) -> str:
    """The cache key of a profile step's inputs: all of them but the model's name in the
    spec (the artifact's fingerprint stands for the model), and the method."""
    terms = {k: v for k, v in inputs.items() if k != "model"} | {"method": METHOD}
    return hashlib.sha256(canonical_json(terms).encode()).hexdigest()


def cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / "profiles" / f"{key}.json"


def cached_profile(cache_dir: Path, key: str) -> MeasuredProfile | None:
    """The cached profile of a key; None if there is none (or only an unreadable one,
    which is measured again)."""
    try:
        profile = MeasuredProfile.from_json(json.loads(cache_file(cache_dir, key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return profile if profile.key == key else None


def store_profile(cache_dir: Path, profile: MeasuredProfile) -> Path:
    path = cache_file(cache_dir, profile.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(profile.to_json(), indent=1).encode(), 0o644)
    return path
