"""The verbs of doinfer (plan, apply, destroy, status, logs, bench), free of any terminal.

A Workspace is one environment of one spec: its state store, its runtime and its steps.
The CLI composes these calls: lock -> plan -> show -> confirm -> apply -> results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import DoinferError
from engine.graph.build import build_steps
from engine.graph.executor import Executor, OnEvent, Outcome
from engine.graph.plan import Plan, destroy_plan, make_plan
from engine.graph.step import Observation, Step
from engine.runtimes import get_runtime
from engine.runtimes.base import ReplicaStatus
from engine.spec import load_spec
from engine.spec.model import Spec
from engine.state import StateStore
from engine.steps.base import Context
from engine.steps.registry import STEP_KINDS

if TYPE_CHECKING:  # the bench (numpy) is imported only to run it
    from engine.bench.results import BenchRun
    from engine.bench.scenarios import OnTick


@dataclass
class ApplyResult:
    outcomes: list[Outcome]

    @property
    def ok(self) -> bool:
        return all(o.status == "ok" for o in self.outcomes)

    @property
    def cancelled(self) -> bool:
        return any(o.status == "cancelled" for o in self.outcomes)


class Workspace:
    def __init__(self, spec: Spec, state_dir: Path) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.store = StateStore(state_dir, spec.name, spec.environment)
        self.ctx = Context(state_dir=state_dir, runtime=get_runtime(spec.runtime.kind, state_dir))

    @classmethod
    def open(cls, spec_path: str | Path, state_dir: Path) -> Workspace:
        return cls(load_spec(spec_path), state_dir)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self.store.lock():
            yield

    def steps(self) -> list[Step]:
        return build_steps(self.spec, self.ctx.cache_dir)

    def plan(self) -> Plan:
        """Desired steps against the recorded state and what the runtime shows."""
        return make_plan(
            self.steps(),
            self.store.load(),
            self._observe,
            spec=self.spec.name,
            environment=self.spec.environment,
            runtime=self.spec.runtime.kind,
            spec_path=str(self.spec.path),
            document=self.spec.document,
        )

    def destroy_plan(self) -> Plan:
        return destroy_plan(
            self.store.load(), runtime=self.spec.runtime.kind, spec_path=str(self.spec.path)
        )

    def apply(self, plan: Plan, on_event: OnEvent, max_parallel: int = 4) -> ApplyResult:
        return execute(plan, self.store, self.ctx, on_event, max_parallel)

    def sweep(self, log: Callable[[str], None]) -> None:
        """Stop replicas of this spec's servers that no record knows of (an apply killed
        before it recorded its deploy leaves such), so that destroy leaves nothing behind."""
        for server in self.spec.servers:
            if self.ctx.runtime.replicas(self.spec.name, self.spec.environment, server.name):
                self.ctx.runtime.undeploy(self.spec.name, self.spec.environment, server.name, log)

    def _observe(self, step: Step, record: dict[str, Any]) -> Observation:
        return STEP_KINDS[step.kind].observe(step, record, self.ctx)

    # -- what runs ----------------------------------------------------------------------

    def replicas(self) -> list[ReplicaStatus]:
        """Every replica the state records or the runtime finds, with its state."""
        state = self.store.load()
        statuses: list[ReplicaStatus] = []
        for server in self.spec.servers:
            found = {
                r.index: r
                for r in self.ctx.runtime.replicas(
                    self.spec.name, self.spec.environment, server.name
                )
            }
            record = state.steps.get(f"deploy/{server.name}")
            recorded = record["outputs"]["replicas"] if record else []
            for replica in recorded:
                status = found.pop(replica["index"], None)
                statuses.append(
                    status
                    or ReplicaStatus(
                        server.name,
                        replica["index"],
                        "missing",
                        replica["url"],
                        replica.get("container") or f"pid {replica.get('pid')}",
                    )
                )
            statuses += found.values()  # running without a record: an interrupted apply
        return statuses

    def traces(self) -> list[dict[str, Any]]:
        """Every traced model the state records: its processor, the precision it computes
        in and the agreement with fp32 its trace measured."""
        traces = []
        for step_id, record in sorted(self.store.load().steps.items()):
            if record.get("kind") != "trace":
                continue
            inputs, outputs = record.get("inputs", {}), record.get("outputs", {})
            traces.append(
                {
                    "model": inputs.get("model", step_id),
                    "processor": inputs.get("processor"),
                    "precision": outputs.get("precision", "fp32"),
                    "accuracy": outputs.get("accuracy", "not measured"),
                }
            )
        return traces

    def logs(self, server: str, replica: int, tail: int) -> str:
        self._check_server(server)
        return self.ctx.runtime.logs(self.spec.name, self.spec.environment, server, replica, tail)

    def exec(self, server: str, replica: int, command: list[str], tty: bool) -> int:
        """Run a command in a replica (a container); its exit code."""
        self._check_server(server)
        return self.ctx.runtime.exec(
            self.spec.name, self.spec.environment, server, replica, command, tty
        )

    def _check_server(self, server: str) -> None:
        if server not in {s.name for s in self.spec.servers}:
            names = ", ".join(s.name for s in self.spec.servers)
            raise DoinferError(f"no server {server!r} in {self.spec.name} (servers: {names})")

    def bench(self, names: list[str], on_tick: OnTick | None = None) -> BenchRun:
        """Run scenarios against what is deployed now, one after another; the state is not
        changed. Benchmarks' load clients run where the runtime puts them."""
        from engine.bench.results import BenchRun
        from engine.bench.scenarios import run_scenario
        from engine.bench.targets import targets_from_deploys

        scenarios = {s.name: s for s in self.spec.scenarios}
        unknown = [n for n in names if n not in scenarios]
        if unknown:
            raise DoinferError(
                f"no scenario {', '.join(unknown)} in {self.spec.name} "
                f"(scenarios: {', '.join(scenarios) or 'none'})"
            )
        if not scenarios:
            raise DoinferError(f"{self.spec.name} has no scenarios to run")
        state = self.store.load()
        deploys = {
            f"deploy/{s.name}": state.steps.get(f"deploy/{s.name}", {}).get("outputs")
            for s in self.spec.servers
        }
        missing = [i for i, o in deploys.items() if o is None]
        if missing:
            raise DoinferError(f"{', '.join(missing)} not applied yet: run doinfer apply first")
        targets = targets_from_deploys({k: v for k, v in deploys.items() if v is not None})
        started = time.time()
        results = [
            asyncio.run(
                run_scenario(
                    scenarios[n], targets, on_tick, clients=self.ctx.runtime.run_load_clients
                )
            )
            for n in names or scenarios
        ]
        return BenchRun(
            self.spec.name, self.spec.environment, self.spec.runtime.kind, started, results
        )

    def bench_files(self, started_at: float) -> tuple[Path, Path]:
        """Where a bench run's JSON and HTML report go when the user names no file."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(started_at))
        base = self.state_dir / "reports" / f"{self.spec.name}-{self.spec.environment}-{stamp}"
        return base.with_suffix(".json"), base.with_suffix(".html")


def execute(
    plan: Plan, store: StateStore, ctx: Context, on_event: OnEvent, max_parallel: int = 4
) -> ApplyResult:
    """Execute exactly `plan`; refuse it if the state moved since it was made.

    The caller holds the state lock.
    """
    state = store.load()
    if (state.lineage, state.serial) != (plan.lineage, plan.serial):
        raise DoinferError(
            f"the state of {plan.spec}/{plan.environment} changed since this plan was made "
            f"(serial {plan.serial}, now {state.serial}): make a new plan"
        )
    ctx.runtime.check()  # an unreachable runtime fails here, before any step changes anything
    executor = Executor(STEP_KINDS, ctx, store, state, on_event, max_parallel)
    return ApplyResult(executor.run(plan))


def saved_plan_target(plan: Plan, state_dir: Path) -> tuple[StateStore, Context]:
    """Where a saved plan applies: its spec's environment, on its runtime; no spec needed."""
    store = StateStore(state_dir, plan.spec, plan.environment)
    return store, Context(state_dir=state_dir, runtime=get_runtime(plan.runtime, state_dir))


def load_saved_plan(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise DoinferError(f"{path}: not a saved doinfer plan ({exc})") from None


def is_saved_plan(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(256).lstrip()
    except OSError:
        return False
    return head.startswith(b"{") and b"doinfer-plan" in head
