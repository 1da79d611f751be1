"""The verbs of doinfer (plan, apply, destroy, status, logs, bench), free of any terminal.

A Workspace is one environment of one spec: its state store, its runtime and its steps.
The CLI composes these calls: lock -> plan -> show -> confirm -> apply -> results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.envs import app_dir, environments, spec_file
from engine.errors import DoinferError
from engine.graph.build import build_steps
from engine.graph.executor import Executor, OnEvent, Outcome
from engine.graph.plan import Plan, destroy_plan, make_plan, plan_hash
from engine.graph.refresh import Refresh, observe_recorded, record_refresh
from engine.graph.step import Observation, Step
from engine.review import plan_against_revision, plan_all_environments
from engine.runtimes import get_runtime
from engine.runtimes.base import ReplicaStatus
from engine.runtimes.contracts import DeployResult
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
    def open(
        cls, spec_path: str | Path, state_dir: Path, environment: str | None = None
    ) -> Workspace:
        """A spec file, or an app directory's environment (`specs/<app>` and `--env`)."""
        return cls(load_spec(spec_file(Path(spec_path), environment), environment), state_dir)

    @contextlib.contextmanager
    def locked(self, timeout_s: float = 0.0) -> Iterator[None]:
        with self.store.lock(timeout_s):
            yield

    def steps(self) -> list[Step]:
        return build_steps(self.spec, self.ctx.cache_dir)

    def plan(self, replace: Collection[str] = (), targets: Collection[str] = ()) -> Plan:
        """Desired steps against the recorded state and what the runtime shows; `replace`
        and `targets` as `--replace` and `--target` name them."""
        return make_plan(
            self.steps(),
            self.store.load(),
            self._observe,
            spec=self.spec.name,
            environment=self.spec.environment,
            runtime=self.spec.runtime.kind,
            spec_path=self.spec.path.name,
            document=self.spec.document,
            replace=replace,
            targets=targets,
        )

    def refresh(self) -> Refresh:
        """What every recorded step looks like now (`--refresh-only`); changes nothing."""
        return observe_recorded(self.store.load(), self._observe)

    def record_refresh(self, refresh: Refresh) -> None:
        """Write a refresh into the state; the caller holds the lock."""
        record_refresh(refresh, self.store)

    def destroy_plan(self) -> Plan:
        return destroy_plan(
            self.store.load(), runtime=self.spec.runtime.kind, spec_path=self.spec.path.name
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
            recorded = DeployResult.from_json(record["outputs"]).replicas if record else ()
            for replica in recorded:
                status = found.pop(replica.index, None)
                statuses.append(
                    status
                    or ReplicaStatus(
                        server.name,
                        replica.index,
                        "missing",
                        replica.url,
                        replica.extra.get("container") or f"pid {replica.extra.get('pid')}",
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


def plans_for(
    spec_arg: Path,
    environment: str | None,
    state_dir: Path,
    *,
    base_ref: str | None = None,
    all_envs: bool = False,
    replace: Collection[str] = (),
    targets: Collection[str] = (),
) -> list[Plan]:
    """The plans `doinfer plan` shows: one environment, or every environment of an app
    (`--all-envs`); against its state, or against a git revision (`--base-ref`)."""
    if all_envs and environment:
        raise DoinferError("--all-envs plans every environment: leave out --env")
    if base_ref is not None:
        if replace or targets:
            raise DoinferError(
                "--base-ref plans a change of the spec, with no state: --replace and --target "
                "act on an environment's state"
            )
        cache_dir = state_dir / "cache"
        if all_envs:
            return plan_all_environments(spec_arg, base_ref, cache_dir)
        return [plan_against_revision(spec_arg, environment, base_ref, cache_dir)]
    names = environments(app_dir(spec_arg)) if all_envs else [environment]
    return [Workspace.open(spec_arg, state_dir, env).plan(replace, targets) for env in names]


def check_plan_hash(plan: Plan, expected: str) -> None:
    """Refuse a plan that is not the one reviewed (`apply --plan-hash`): the state moved,
    something drifted, or the spec is not the one the hash was made of."""
    actual = plan_hash(plan)
    if actual != expected:
        raise DoinferError(
            f"the plan of {plan.spec}/{plan.environment} is not the one reviewed: its hash "
            f"is {actual}, not {expected}. The state moved, something drifted or the spec "
            f"changed since; review the new plan (doinfer plan) and apply that"
        )


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
