"""Plan decisions: pure functions of desired steps, recorded state and observations."""

from __future__ import annotations

from pathlib import Path

from engine.graph.build import build_steps
from engine.graph.plan import Plan, decide, make_plan
from engine.graph.step import Action, Observation, Step
from engine.state import State


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
