"""The executor with stand-in step kinds: order, parallelism, failures, state, cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import StepFailed
from engine.graph.executor import Event, Executor
from engine.graph.plan import make_plan
from engine.graph.step import Observation, Step
from engine.state import StateStore
from engine.steps.base import ApplyRequest, Context

from .test_plan import PLAN_ARGS, plan_of


class FakeKind:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.destroyed: list[str] = []
        self.fail: set[str] = set()
        self.barrier: threading.Barrier | None = None
        self.block: threading.Event | None = None

    def observe(self, step: Step, record: dict[str, Any], ctx: Context) -> Observation:
        return Observation()

    def apply(self, request: ApplyRequest, ctx: Context, log) -> dict[str, Any]:
        step_id = request.step.id
        log(f"applying {step_id}")
        if self.barrier and step_id.startswith("trace/"):
            self.barrier.wait(timeout=5)  # both traces must be running at once
        if self.block and step_id.startswith("deploy/"):
            while not ctx.cancel.is_set():
                time.sleep(0.01)
            ctx.check_cancelled()
        if step_id in self.fail:
            raise StepFailed(f"{step_id} broke", "the log tail")
        self.applied.append(step_id)
        return {"seen_upstream": sorted(request.upstream)}

    def destroy(self, record: dict[str, Any], ctx: Context, log) -> None:
        self.destroyed.append(record["summary"])


def step(step_id: str, needs: tuple[str, ...] = ()) -> Step:
    return Step(step_id, "fake", {"id": step_id}, needs, f"fp-{step_id}", step_id)


STEPS = [
    step("trace/a"),
    step("trace/b"),
    step("pack/a", ("trace/a",)),
    step("pack/b", ("trace/b",)),
    step("deploy/a", ("pack/a",)),
]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def run(tmp_path: Path, kind: FakeKind, steps=STEPS, cancel_after: float | None = None):
    store = StateStore(tmp_path, "demo", "default")
    state = store.load()
    plan = plan_of(steps, state)
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    if cancel_after is not None:
        threading.Timer(cancel_after, ctx.cancel.set).start()
    recorder = Recorder()
    outcomes = Executor({"fake": kind}, ctx, store, state, recorder).run(plan)
    return outcomes, store, recorder


def test_applies_in_dependency_order_and_records_each_step(tmp_path: Path) -> None:
    kind = FakeKind()
    outcomes, store, recorder = run(tmp_path, kind)
    assert all(o.status == "ok" for o in outcomes)
    assert (
        kind.applied.index("trace/a")
        < kind.applied.index("pack/a")
        < kind.applied.index("deploy/a")
    )
    state = store.load()
    assert set(state.steps) == {s.id for s in STEPS}
    assert state.serial == len(STEPS)  # written after every step
    assert state.steps["pack/a"]["outputs"] == {"seen_upstream": ["trace/a"]}
    assert state.steps["pack/a"]["upstream"] == {"trace/a": "fp-trace/a"}
    assert any(e.kind == "log" and e.message == "applying trace/b" for e in recorder.events)


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    kind = FakeKind()
    kind.barrier = threading.Barrier(2)  # deadlocks (and times out) if run one at a time
    outcomes, _, _ = run(tmp_path, kind)
    assert all(o.status == "ok" for o in outcomes), outcomes


def test_a_failure_skips_dependents_only(tmp_path: Path) -> None:
    kind = FakeKind()
    kind.fail = {"trace/a"}
    outcomes, store, recorder = run(tmp_path, kind)
    status = {o.step_id: o.status for o in outcomes}
    assert status == {
        "trace/a": "failed",
        "trace/b": "ok",
        "pack/b": "ok",
        "pack/a": "skipped",
        "deploy/a": "skipped",
    }
    assert set(store.load().steps) == {"trace/b", "pack/b"}
    failed = next(e for e in recorder.events if e.kind == "failed")
    assert (failed.message, failed.detail) == ("trace/a broke", "the log tail")


def test_rerun_after_failure_applies_only_what_is_missing(tmp_path: Path) -> None:
    kind = FakeKind()
    kind.fail = {"trace/a"}
    run(tmp_path, kind)
    kind = FakeKind()
    _, store, _ = run(tmp_path, kind)
    assert sorted(kind.applied) == ["deploy/a", "pack/a", "trace/a"]
    assert set(store.load().steps) == {s.id for s in STEPS}


def test_cancel_stops_running_steps_and_keeps_what_completed(tmp_path: Path) -> None:
    kind = FakeKind()
    kind.block = threading.Event()
    outcomes, store, _ = run(tmp_path, kind, cancel_after=0.3)
    status = {o.step_id: o.status for o in outcomes}
    assert status["deploy/a"] == "cancelled"
    assert "deploy/a" not in store.load().steps
    assert {"trace/a", "pack/a"} <= set(store.load().steps)


def test_deletes_run_first_dependents_before_dependencies(tmp_path: Path) -> None:
    kind = FakeKind()
    run(tmp_path, kind)
    kind = FakeKind()
    _, store, _ = run(tmp_path, kind, steps=[step("trace/b"), step("pack/b", ("trace/b",))])
    assert kind.destroyed == ["deploy/a", "pack/a", "trace/a"]
    assert set(store.load().steps) == {"trace/b", "pack/b"}


def test_exclusive_steps_never_overlap(tmp_path: Path) -> None:
    running: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    class Measuring(FakeKind):
        def apply(self, request: ApplyRequest, ctx: Context, log) -> dict[str, Any]:
            running.append(request.step.id)
            overlaps.append(tuple(running))
            time.sleep(0.05)
            running.remove(request.step.id)
            return {}

    scenarios = [
        Step(f"scenario/{i}", "fake", {"i": i}, (), f"fp{i}", f"s{i}", exclusive=True)
        for i in range(3)
    ]
    outcomes, _, _ = run(tmp_path, Measuring(), steps=scenarios)
    assert all(o.status == "ok" for o in outcomes)
    assert all(len(seen) == 1 for seen in overlaps)


def test_a_pool_limits_its_steps_while_others_run(tmp_path: Path) -> None:
    """Three traces on host a (one slot) run one at a time; host b's trace runs beside them."""
    lock = threading.Lock()
    running: dict[str, int] = {"a": 0, "b": 0}
    peaks: dict[str, int] = {"a": 0, "b": 0}
    overlapped_b = threading.Event()

    class Pooled(FakeKind):
        def apply(self, request: ApplyRequest, ctx: Context, log) -> dict[str, Any]:
            pool = request.step.pool or ""
            with lock:
                running[pool] += 1
                peaks[pool] = max(peaks[pool], running[pool])
                if running["a"] and running["b"]:
                    overlapped_b.set()
            time.sleep(0.1)
            with lock:
                running[pool] -= 1
            return {}

    steps = [
        Step(f"trace/{i}", "fake", {"i": i}, (), f"fp{i}", f"s{i}", pool="a", pool_limit=1)
        for i in range(3)
    ] + [Step("trace/x", "fake", {"i": "x"}, (), "fpx", "sx", pool="b", pool_limit=2)]
    outcomes, _, _ = run(tmp_path, Pooled(), steps=steps)
    assert all(o.status == "ok" for o in outcomes)
    assert peaks == {"a": 1, "b": 1}
    assert overlapped_b.is_set()  # a full pool does not hold back a step of another pool


def test_a_requested_replace_destroys_then_applies_that_step_only(tmp_path: Path) -> None:
    kind = FakeKind()
    run(tmp_path, kind)  # everything applied and recorded
    kind.applied.clear()
    store = StateStore(tmp_path, "demo", "default")
    state = store.load()
    plan = make_plan(STEPS, state, None, **PLAN_ARGS, replace=["pack/a"])
    ctx = Context(state_dir=tmp_path, runtime=None)  # type: ignore[arg-type]
    outcomes = Executor({"fake": kind}, ctx, store, state, Recorder()).run(plan)
    assert [(o.step_id, o.status) for o in outcomes] == [("pack/a", "ok")]
    assert kind.destroyed == ["pack/a"] and kind.applied == ["pack/a"]
