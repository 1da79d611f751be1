"""Plan decisions: pure functions of desired steps, recorded state and observations."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.errors import DoinferError
from engine.graph.build import build_steps
from engine.graph.plan import Plan, decide, make_plan
from engine.graph.step import Action, Observation, Step
from engine.state import State
from engine.steps.scenario import scenario_from_inputs


def record_of(step: Step, steps: dict[str, Step]) -> dict:
    return {
        "kind": step.kind,
        "fingerprint": step.fingerprint,
        "inputs": step.inputs,
        "needs": list(step.needs),
        "upstream": {n: steps[n].fingerprint for n in step.needs},
        "summary": step.summary,
        "outputs": {},
    }


def applied_state(steps: list[Step]) -> State:
    by_id = {s.id: s for s in steps}
    return State("demo", "default", "lineage", 3, {s.id: record_of(s, by_id) for s in steps})


def plan_of(steps: list[Step], state: State, observe=None, environment: str = "default") -> Plan:
    """A plan of spec "demo" on the local runtime: what most graph tests need."""
    return make_plan(
        steps,
        state,
        observe,
        spec="demo",
        environment=environment,
        runtime="local",
        spec_path="spec.yaml",
        document={},
    )


PLAN_ARGS = {
    "spec": "demo",
    "environment": "default",
    "runtime": "local",
    "spec_path": "spec.yaml",
    "document": {},
}


def actions(plan: Plan) -> dict[str, Action]:
    return {c.step_id: c.action for c in plan.changes}


def test_steps_and_ids(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    assert [s.id for s in steps] == ["trace/tiny@cpu", "pack/tiny", "deploy/tiny", "scenario/smoke"]
    assert steps[1].needs == ("trace/tiny@cpu",)
    assert steps[2].needs == ("pack/tiny",)


def test_empty_state_creates_everything(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(steps, State("demo", "default"))
    assert set(actions(plan).values()) == {Action.CREATE}
    assert plan.has_changes


def test_applied_state_is_no_change(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(steps, applied_state(steps), observe=lambda step, record: Observation())
    assert not plan.has_changes
    assert set(actions(plan).values()) == {Action.NOOP}


def test_sequence_length_replaces_trace_pack_and_deploy(make_spec, tmp_path: Path) -> None:
    before = build_steps(make_spec(sequence_length=128), tmp_path / "cache")
    after = build_steps(make_spec(sequence_length=64), tmp_path / "cache")
    plan = plan_of(after, applied_state(before))
    assert actions(plan) == {
        "trace/tiny@cpu": Action.REPLACE,
        "pack/tiny": Action.REPLACE,
        "deploy/tiny": Action.REPLACE,
        "scenario/smoke": Action.REPLACE,
    }
    trace = plan.changes[0]
    assert "trace.sequence_length: 128 -> 64" in trace.reasons
    assert "trace/tiny@cpu changed" in plan.changes[1].reasons


def test_replica_count_updates_only_deploy(make_spec, tmp_path: Path) -> None:
    before = build_steps(make_spec(replicas=2), tmp_path / "cache")
    after = build_steps(make_spec(replicas=3), tmp_path / "cache")
    plan = plan_of(after, applied_state(before), observe=lambda step, record: Observation())
    assert actions(plan) == {
        "trace/tiny@cpu": Action.NOOP,
        "pack/tiny": Action.NOOP,
        "deploy/tiny": Action.UPDATE,
        # the smoke test proves the changed deployment again
        "scenario/smoke": Action.REPLACE,
    }
    assert plan.changes[2].reasons == ("replicas: 2 -> 3",)


def test_instances_change_replaces_pack_not_trace(make_spec, tmp_path: Path) -> None:
    before = build_steps(make_spec(instances=2), tmp_path / "cache")
    after = build_steps(make_spec(instances=5), tmp_path / "cache")
    plan = plan_of(after, applied_state(before), observe=lambda step, record: Observation())
    assert actions(plan)["trace/tiny@cpu"] is Action.NOOP
    assert actions(plan)["pack/tiny"] is Action.REPLACE
    assert actions(plan)["deploy/tiny"] is Action.REPLACE


def test_drift_is_an_update_with_its_reason(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")

    def observe(step: Step, record: dict) -> Observation:
        if step.kind == "deploy":
            return Observation(drift=("replica 1 (pid 42) is dead",))
        return Observation()

    plan = plan_of(steps, applied_state(steps), observe)
    deploy = next(c for c in plan.changes if c.step_id == "deploy/tiny")
    assert deploy.action is Action.UPDATE
    assert deploy.reasons == ("drift: replica 1 (pid 42) is dead",)
    assert actions(plan)["scenario/smoke"] is Action.REPLACE
    assert actions(plan)["pack/tiny"] is Action.NOOP


def test_removed_steps_are_deleted_dependents_first(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    state = applied_state(steps)
    plan = plan_of([], state)
    assert [c.step_id for c in plan.changes] == [
        "scenario/smoke",
        "deploy/tiny",
        "pack/tiny",
        "trace/tiny@cpu",
    ]
    assert all(c.action is Action.DELETE for c in plan.changes)


def test_decide_is_pure_data() -> None:
    step = Step(
        "deploy/x",
        "deploy",
        {"replicas": 2, "port": None},
        ("pack/x",),
        "fp2",
        "d",
        frozenset({"replicas"}),
    )
    record = {
        "fingerprint": "fp1",
        "inputs": {"replicas": 1, "port": None},
        "upstream": {"pack/x": "p1"},
    }
    assert decide(step, None, None, {"pack/x": "p1"}, []) == (Action.CREATE, ("not yet applied",))
    assert decide(step, record, None, {"pack/x": "p1"}, []) == (
        Action.UPDATE,
        ("replicas: 1 -> 2",),
    )
    action, reasons = decide(step, record, None, {"pack/x": "p2"}, ["pack/x"])
    assert action is Action.REPLACE
    assert "pack/x changed" in reasons


def test_plan_round_trips_through_json(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(steps, State("demo", "default"))
    again = Plan.from_dict(plan.to_dict())
    assert again.changes == plan.changes
    assert again.steps == plan.steps


def test_a_change_to_the_server_code_replaces_pack_and_deploy(
    make_spec, tmp_path: Path, monkeypatch
) -> None:
    from engine.graph import build

    before = build_steps(make_spec(), tmp_path / "cache")
    monkeypatch.setattr(build, "server_code_digest", lambda: "new-server-code")
    after = build_steps(make_spec(), tmp_path / "cache")
    plan = plan_of(after, applied_state(before), observe=lambda step, record: Observation())
    assert actions(plan)["trace/tiny@cpu"] is Action.NOOP
    assert actions(plan)["pack/tiny"] is Action.REPLACE
    assert actions(plan)["deploy/tiny"] is Action.REPLACE


CORPUS = (
    *((f"question number {i} about the state", None) for i in range(20)),
    ("where is the state kept", "in a json file under .doinfer"),
)


def with_corpus(spec, texts=CORPUS):
    scenario = dataclasses.replace(spec.scenarios[0], kind="benchmark", texts=texts)
    return dataclasses.replace(spec, scenarios=(scenario,))


def test_a_scenario_step_carries_its_whole_corpus_through_json(make_spec, tmp_path) -> None:
    """The step rebuilds the scenario from its recorded (JSON) inputs: the corpus must
    survive that whole, not as the digest that reports show."""
    spec = with_corpus(make_spec())
    step = next(s for s in build_steps(spec, tmp_path / "cache") if s.kind == "scenario")
    assert scenario_from_inputs(json.loads(json.dumps(step.inputs))) == spec.scenarios[0]


def test_a_corpus_read_back_from_state_shows_no_change_of_its_own(make_spec, tmp_path) -> None:
    """A deploy change re-runs the scenario: its reasons must not include a corpus that
    only looks different because the state file gave tuples back as lists."""
    before = build_steps(with_corpus(make_spec(replicas=2)), tmp_path / "cache")
    state = applied_state(before)
    state.steps.update(json.loads(json.dumps(state.steps)))  # as the state file gives it back
    after = build_steps(with_corpus(make_spec(replicas=3)), tmp_path / "cache")
    plan = plan_of(after, state, observe=lambda step, record: Observation())
    scenario = next(c for c in plan.changes if c.step_id == "scenario/smoke")
    assert scenario.action is Action.REPLACE
    assert scenario.reasons == ("deploy/tiny changed",)


def test_a_changed_corpus_replaces_the_scenario_and_shows_as_a_digest(make_spec, tmp_path) -> None:
    """The plan's digest is the one the scenario's report shows (Scenario.settings)."""
    before = build_steps(with_corpus(make_spec()), tmp_path / "cache")
    changed = (("a brand new question", None), *CORPUS[1:])
    after = build_steps(with_corpus(make_spec(), changed), tmp_path / "cache")
    plan = plan_of(after, applied_state(before), observe=lambda step, record: Observation())
    assert actions(plan)["scenario/smoke"] is Action.REPLACE
    (reason,) = next(c for c in plan.changes if c.step_id == "scenario/smoke").reasons
    old, new = (
        with_corpus(make_spec(), t).scenarios[0].settings()["texts"] for t in (CORPUS, changed)
    )
    assert old != new
    assert reason == f"texts: ({old}) -> ({new})"


def test_a_plan_saved_by_an_older_doinfer_with_a_digest_for_texts_is_a_clear_error() -> None:
    with pytest.raises(DoinferError, match="make a new plan"):
        scenario_from_inputs({"name": "mix", "kind": "benchmark", "texts": "2 texts, sha256 ab"})


def with_precision(spec, precision: str):
    model = spec.models[0]
    trace = dataclasses.replace(model.trace, precision=precision)
    return dataclasses.replace(spec, models=(dataclasses.replace(model, trace=trace),))


def test_precision_is_in_the_trace_fingerprint_and_replaces_what_follows(
    make_spec, tmp_path
) -> None:
    before = build_steps(make_spec(), tmp_path / "cache")
    after = build_steps(with_precision(make_spec(), "bf16"), tmp_path / "cache")
    assert before[0].fingerprint != after[0].fingerprint
    plan = plan_of(after, applied_state(before))
    assert actions(plan) == {
        "trace/tiny@cpu": Action.REPLACE,
        "pack/tiny": Action.REPLACE,
        "deploy/tiny": Action.REPLACE,
        "scenario/smoke": Action.REPLACE,
    }
    trace = plan.changes[0]
    assert trace.reasons == ('trace.precision: "fp32" -> "bf16"',)
    assert trace.summary.endswith(", bf16")
    assert trace.values == {"precision": "(known after apply)", "accuracy": "(known after apply)"}


def test_the_plan_shows_the_recorded_precision_and_accuracy(make_spec, tmp_path) -> None:
    steps = build_steps(with_precision(make_spec(), "auto"), tmp_path / "cache")
    state = applied_state(steps)
    measured = "cosine to fp32 min 0.99995, mean 0.99996 on 36 texts (floor 0.999)"
    state.steps["trace/tiny@cpu"]["outputs"] = {"precision": "bf16", "accuracy": measured}
    plan = plan_of(steps, state)
    assert plan.changes[0].values == {"precision": "bf16", "accuracy": measured}


def test_a_reduced_precision_is_measured_on_the_specs_corpus_fp32_on_the_default(
    make_spec, tmp_path
) -> None:
    """Editing a benchmark's corpus must not re-trace an fp32 model; a bf16 model's
    agreement is measured on what users send, so it is re-measured."""
    fp32 = build_steps(with_corpus(make_spec()), tmp_path / "cache")[0]
    bf16 = build_steps(with_corpus(with_precision(make_spec(), "bf16")), tmp_path / "cache")[0]
    assert [t for t, _ in bf16.inputs["calibration"]] == [t for t, _ in CORPUS]
    assert (
        fp32.inputs["calibration"]
        == build_steps(make_spec(), tmp_path / "c")[0].inputs["calibration"]
    )
    assert ["where is the state kept", None] not in fp32.inputs["calibration"]


def test_target_keeps_the_step_and_what_it_needs(make_spec, tmp_path: Path) -> None:
    before = build_steps(make_spec(sequence_length=128), tmp_path / "cache")
    after = build_steps(make_spec(sequence_length=64), tmp_path / "cache")
    state = applied_state(before)
    state.steps["deploy/old"] = {"kind": "deploy", "fingerprint": "f", "needs": []}
    full = make_plan(after, state, None, **PLAN_ARGS)
    assert "scenario/smoke" in actions(full) and "deploy/old" in actions(full)
    targeted = make_plan(after, state, None, **PLAN_ARGS, targets=["pack/tiny"])
    assert actions(targeted) == {"trace/tiny@cpu": Action.REPLACE, "pack/tiny": Action.REPLACE}
    deleted = make_plan(after, state, None, **PLAN_ARGS, targets=["deploy/old"])
    assert actions(deleted) == {"deploy/old": Action.DELETE}


def test_replace_forces_an_unchanged_step_and_what_follows_it(make_spec, tmp_path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    plan = make_plan(steps, applied_state(steps), None, **PLAN_ARGS, replace=["deploy/tiny"])
    assert actions(plan) == {
        "trace/tiny@cpu": Action.NOOP,
        "pack/tiny": Action.NOOP,
        "deploy/tiny": Action.REPLACE,
        "scenario/smoke": Action.REPLACE,  # a scenario proves what it follows again
    }
    deploy = next(c for c in plan.changes if c.step_id == "deploy/tiny")
    assert deploy.forced and deploy.why == ("replacement requested (--replace)",)
    assert not next(c for c in plan.changes if c.step_id == "scenario/smoke").forced


def test_unknown_target_or_replace_names_the_steps(make_spec, tmp_path: Path) -> None:
    steps = build_steps(make_spec(), tmp_path / "cache")
    with pytest.raises(DoinferError, match=r"no step deploy/nope in demo/default \(steps: trace"):
        make_plan(steps, applied_state(steps), None, **PLAN_ARGS, targets=["deploy/nope"])
    with pytest.raises(DoinferError, match="no step pack/x"):
        make_plan(steps, applied_state(steps), None, **PLAN_ARGS, replace=["pack/x"])
