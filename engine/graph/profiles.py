"""The profile steps of a spec's fleets, and what the plan knows of their results.

A model of a packing: auto server that declares no profile for a processor of the
server's node types that this machine has (engine/spec/fleet.py `unprofiled`) gets a step
`profile/<model>@<processor>`, which needs the model's trace there and measures the
profile on this machine (engine/steps/profile_step.py). Its inputs are what the numbers
depend on: the artifact's fingerprint, the processor, the p99 objective, the batching
and the seconds each load step runs; their fingerprint is the profile's cache key
(engine/profiles.py). The plan reads the cache: a fleet whose every profile is declared
or cached packs now; the others wait, their packing known after profiling, and `apply`
measures first and plans them again (engine/operations.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.artifacts import artifact_key
from engine.graph.step import Step
from engine.packing.fleet import Profile
from engine.profiles import DEFAULT_SLO_P99_MS, MeasuredProfile, cached_profile, profile_key
from engine.spec.fleet import unprofiled
from engine.spec.model import Server, Spec

KNOWN_AFTER_PROFILING = "(known after profiling)"


def profile_id(model: str, processor: str) -> str:
    return f"profile/{model}@{processor}"


@dataclass(frozen=True)
class ProfileNeed:
    """A profile a fleet measures: its step's inputs, and the cached result, if any."""

    model: str
    processor: str
    trace: str  # the trace step it needs
    inputs: dict[str, Any]
    measured: MeasuredProfile | None

    @property
    def id(self) -> str:
        return profile_id(self.model, self.processor)

    @property
    def summary(self) -> str:
        what = f"profile {self.model} on {self.processor}"
        if self.measured is not None:
            return f"{what}: {self.measured.describe()}"
        return (
            f"{what}: measure one copy's memory and the rate one core sustains within "
            f"p99 {self.inputs['slo_p99_ms']:g} ms"
        )


def slo_p99_ms(spec: Spec) -> float:
    """The objective a measured rate is held to: the strictest p99 of the spec's
    scenarios, else the default."""
    objectives = [s.slo.p99_ms for s in spec.scenarios if s.slo and s.slo.p99_ms]
    return min(objectives, default=DEFAULT_SLO_P99_MS)


def profile_needs(
    spec: Spec,
    trace: Callable[[str, str], Step],
    cache_dir: Path,
) -> list[ProfileNeed]:
    """Every profile the spec's fleets measure, once each (a model in two fleets is
    measured with the first one's batching). `trace(model, processor)` adds the trace
    step a profile needs."""
    needs: dict[str, ProfileNeed] = {}
    objective = slo_p99_ms(spec)
    for server in spec.servers:
        if server.packing != "auto":
            continue
        for model, processor in unprofiled(spec, server):
            if profile_id(model, processor) in needs:
                continue
            traced = trace(model, processor)
            inputs = profile_inputs(spec, server, model, processor, traced.inputs, objective)
            measured = cached_profile(cache_dir, profile_key(inputs))
            need = ProfileNeed(model, processor, traced.id, inputs, measured)
            needs[need.id] = need
    return list(needs.values())


def profile_inputs(
    spec: Spec,
    server: Server,
    model: str,
    processor: str,
    trace_inputs: Mapping[str, Any],
    objective: float,
) -> dict[str, Any]:
    return {
        "model": model,
        "task": spec.model(model).task,
        "processor": processor,
        "artifact": artifact_key(trace_inputs),  # precision included
        "precision": trace_inputs["trace"]["precision"],  # shown; in the artifact already
        "slo_p99_ms": objective,
        "seconds": spec.profiling.seconds,
        "batching": asdict(server.batching),
    }


def measured_profiles(needs: list[ProfileNeed]) -> dict[tuple[str, str], Profile | None]:
    """What the packing may use, by (model, processor): the cached profile, or None where
    it is still to be measured."""
    return {(n.model, n.processor): n.measured.profile if n.measured else None for n in needs}


def waiting_packing_inputs(server: str, waits_for: list[str]) -> dict[str, Any]:
    """A fleet's packing step before its profiles are measured: no packing yet."""
    return {"server": server, "packing": None, "waits_for": sorted(waits_for)}


def waiting_summary(inputs: Mapping[str, Any]) -> str:
    return (
        f"pack {inputs['server']}: {KNOWN_AFTER_PROFILING[1:-1]} "
        f"({len(inputs['waits_for'])} profile(s) to measure; apply measures, then plans again)"
    )


def measured_lines(inputs: Mapping[str, Any]) -> list[str]:
    """The profiles a packing step's packing rests on that were measured, one line each."""
    return [
        f"{name}: {MeasuredProfile.from_json(data).describe()}"
        for name, data in sorted(inputs.get("measured", {}).items())
    ]
