"""Profiles in the plan: a fleet with a profile to measure plans its trace and profile
steps and waits to pack; with every profile declared or cached it packs, and the plan
says which profiles were measured, when and where; a declared profile beats a measured one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import StepFailed
from engine.graph.build import build_steps
from engine.graph.render import render_json, render_markdown, render_text
from engine.graph.step import Action
from engine.packing.fleet import Profile
from engine.profiles import LoadStep, MeasuredProfile, profile_key, store_profile
from engine.spec import load_spec
from engine.spec.fleet import fleet_of, unprofiled
from engine.steps.base import ApplyRequest, Context
from engine.steps.packing import PackingStep
from engine.steps.profile_step import ProfileStep
from tests.unit.graph.test_plan import applied_state, plan_of

CPU_PROFILE = "    profiles: {cpu: {memory_mib: 300, rate_per_core: 20}}"
LENGTHS = {"a": 128, "b": 96, "c": 64, "d": 32}


def write_spec(
    directory: Path, declared: tuple[str, ...] = ("b",), slo: str = "", names: str = "abc"
) -> Path:
    """A fleet of models a, b and c (or `names`) on the local runtime; `declared` ones
    have a cpu profile in the spec."""
    model = directory / "models" / "tiny"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    lines = [
        "apiVersion: doinfer/v1",
        "name: demo",
        "catalog:",
        "  - {name: test-cpu, processor: cpu, devices: 1, cores_per_device: 2,",
        "     memory_per_device_gib: 1, price_per_hour: 0.1}",
        "profiling: {seconds: 2}",
        "models:",
    ]
    for name in names:
        lines += [
            f"  - name: {name}",
            "    source: path:models/tiny",
            "    task: feature-extraction",
            f"    trace: {{sequence_length: {LENGTHS[name]}}}",  # each its own artifact
            *([CPU_PROFILE] if name in declared else []),
        ]
    lines += [
        "servers:",
        "  - name: fleet",
        "    packing: auto",
        "    node_types: [test-cpu]",
        "    models: [{model: a, rate: 30}, {model: b, rate: 5}, {model: c, rate: 1}"
        + ", {model: d, rate: 2}" * ("d" in names)
        + "]",
        "runtime: {kind: local}",
        f"scenarios: [{{name: smoke, kind: sequential{slo}}}]",
    ]
    path = directory / "fleet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def measured(key: str, memory: float, rate: float) -> MeasuredProfile:
    ladder = (LoadStep(1, rate * 0.7, 20.0, 0), LoadStep(2, rate, 60.0, 0))
    return MeasuredProfile(key, memory, rate, 100.0, "2026-12-02 15:00 UTC", "here, 1 core", ladder)


def cache_profiles(steps: list, cache: Path, values: dict[str, tuple[float, float]]) -> None:
    """What profile steps would have measured, put in the cache under their keys."""
    for step in steps:
        if step.kind == "profile":
            key = profile_key(step.inputs)
            store_profile(cache, measured(key, *values[step.inputs["model"]]))


def test_a_fleet_with_a_profile_to_measure_plans_the_measurement_and_waits(
    tmp_path: Path,
) -> None:
    steps = build_steps(load_spec(write_spec(tmp_path)), tmp_path / "cache")
    by_id = {s.id: s for s in steps}
    assert sorted(i for i in by_id if i.startswith("profile/")) == [
        "profile/a@cpu",
        "profile/c@cpu",  # b's cpu profile is declared
    ]
    profile = by_id["profile/a@cpu"]
    assert profile.needs == ("trace/a@cpu",) and profile.exclusive
    assert profile.inputs["artifact"] and profile.inputs["precision"] == "fp32"
    assert profile.inputs["seconds"] == 2 and profile.inputs["slo_p99_ms"] == 100.0
    assert "trace/c@cpu" in by_id
    packing = by_id["packing/fleet"]
    assert packing.inputs["packing"] is None
    assert set(packing.needs) == {"profile/a@cpu", "profile/c@cpu"}
    assert not [i for i in by_id if i.startswith(("deploy/", "router/", "pack/"))]
    assert "packing/fleet" in by_id["scenario/smoke"].needs  # runs after the fleet is there

    plan = plan_of(steps, applied_state([]))
    assert plan.waiting_fleets() == ["fleet"]
    assert plan.profile_steps() == ["profile/a@cpu", "profile/c@cpu"]
    assert "pack fleet: known after profiling" in render_text(plan)
    data = json.loads(render_json(plan))
    assert data["packing"] == {} and data["waiting_for_profiles"] == ["fleet"]
    assert data["cost"]["after"] is None and data["cost"]["waiting"] == ["fleet"]
    assert "Cost per hour: nothing priced -> known after profiling (fleet)" in render_text(plan)


def test_a_fleet_whose_profiles_are_cached_packs_with_them(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = load_spec(write_spec(tmp_path))
    cache_profiles(build_steps(spec, cache), cache, {"a": (250.0, 12.5), "c": (90.0, 40.0)})
    steps = build_steps(spec, cache)
    by_id = {s.id: s for s in steps}
    packing = by_id["packing/fleet"]
    assert packing.inputs["packing"] is not None  # packed now
    assert sorted(packing.inputs["measured"]) == ["profile/a@cpu", "profile/c@cpu"]
    assert [i for i in by_id if i.startswith("deploy/fleet-")] and "router/fleet" in by_id
    # a's demand of 30/s at 12.5/s per core needs more cores than one 2-core device has at
    # 0.75: the measured rate, not a declared one, decided that
    copies = [
        c["model"]
        for n in packing.inputs["packing"]["nodes"]
        for d in n["devices"]
        for c in d["copies"]
    ]
    assert copies.count("a") >= 2
    assert "250 MiB, 12.5 requests/s per core" in by_id["profile/a@cpu"].summary

    plan = plan_of(steps, applied_state([]))
    assert plan.waiting_fleets() == []
    text = render_text(plan)
    assert "packing of fleet: $" in text
    assert (
        "  measured profile/a@cpu: 250 MiB, 12.5 requests/s per core within p99 100 ms "
        "(measured 2026-12-02 15:00 UTC on here, 1 core)"
    ) in text
    assert "measured profile/c@cpu: 90 MiB, 40.0 requests/s per core" in render_markdown(plan)

    # applied, the next plan measures nothing again, and packs with the same profiles
    again = build_steps(spec, cache, applied_state(steps).steps)
    replan = plan_of(again, applied_state(steps))
    assert replan.profile_steps() == [] and replan.waiting_fleets() == []
    assert {c.step_id: c.action for c in replan.changes}["profile/a@cpu"] is Action.NOOP
    repacked = next(s for s in again if s.id == "packing/fleet").inputs
    assert repacked["measured"] == packing.inputs["measured"]


def test_a_profile_step_records_a_cached_profile_without_measuring(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "cache"
    spec = load_spec(write_spec(tmp_path))
    steps = build_steps(spec, cache)
    cache_profiles(steps, cache, {"a": (250.0, 12.5), "c": (90.0, 40.0)})
    step = next(s for s in steps if s.id == "profile/a@cpu")
    ctx = Context(state_dir=tmp_path / "state", runtime=None)  # type: ignore[arg-type]
    lines: list[str] = []
    request = ApplyRequest(step, Action.CREATE, None, {"trace/a@cpu": {"artifact": "/nowhere"}})
    outputs = ProfileStep().apply(request, ctx, lines.append)
    assert MeasuredProfile.from_json(outputs) == measured(profile_key(step.inputs), 250.0, 12.5)
    assert lines == [f"cached: {measured('k', 250.0, 12.5).describe()}"]
    record = {"outputs": outputs}
    assert ProfileStep().observe(step, record, ctx).ok
    (cache / "profiles" / f"{outputs['key']}.json").unlink()
    assert ProfileStep().observe(step, record, ctx).drift[0].startswith("its profile ")


def test_the_scenarios_strictest_p99_is_the_objective(tmp_path: Path) -> None:
    slo = ", slo: {p99_ms: 40}"
    steps = build_steps(load_spec(write_spec(tmp_path, slo=slo)), tmp_path / "cache")
    profile = next(s for s in steps if s.id == "profile/a@cpu")
    assert profile.inputs["slo_p99_ms"] == 40


def test_a_declared_profile_beats_a_measured_one(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, declared=("a", "b", "c")))
    server = spec.servers[0]
    assert unprofiled(spec, server) == []  # nothing to measure: every cpu profile declared
    steps = build_steps(spec, tmp_path / "cache")
    assert not [s for s in steps if s.kind == "profile"]
    assert next(s for s in steps if s.id == "packing/fleet").inputs["packing"] is not None
    fleet = fleet_of(spec, server, {("a", "cpu"): Profile(1.0, 1000.0)})
    demand = next(d for d in fleet.demands if d.model == "a")
    assert demand.profiles == {"cpu": Profile(300, 20)}
    partly = load_spec(write_spec(tmp_path / "partly", declared=("b",)))
    fleet = fleet_of(partly, partly.servers[0], {("a", "cpu"): Profile(1.0, 1000.0)})
    assert next(d for d in fleet.demands if d.model == "a").profiles == {
        "cpu": Profile(1.0, 1000.0)  # measured fills in what is not declared
    }


def test_a_packing_planned_before_profiling_is_never_applied(tmp_path: Path) -> None:
    steps = build_steps(load_spec(write_spec(tmp_path)), tmp_path / "cache")
    packing = next(s for s in steps if s.id == "packing/fleet")
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match="its packing waits for profile/a@cpu, profile/c@cpu"):
        PackingStep().apply(ApplyRequest(packing, Action.CREATE, None, {}), ctx, print)


def test_a_running_fleet_keeps_running_while_a_new_model_is_profiled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = load_spec(write_spec(tmp_path))
    cache_profiles(build_steps(spec, cache), cache, {"a": (250.0, 12.5), "c": (90.0, 40.0)})
    steps = build_steps(spec, cache)
    state = applied_state(steps)
    grown = load_spec(write_spec(tmp_path / "grown", names="abcd"))  # d: no profile yet
    plan = plan_of(build_steps(grown, cache, state.steps), state)
    actions = {c.step_id: c.action for c in plan.changes}
    assert actions["profile/d@cpu"] is Action.CREATE and plan.waiting_fleets() == ["fleet"]
    running = [s.id for s in steps if s.kind in ("pack", "deploy", "router")]
    assert running and all(actions[i] is Action.NOOP for i in running)  # none deleted
    assert Action.DELETE not in actions.values()
