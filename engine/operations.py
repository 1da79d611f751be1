"""The verbs of doinfer (plan, apply, destroy, status, logs, bench), free of any terminal.

A Workspace is one environment of one spec: its state store, its runtime and its steps.
The CLI composes these calls: lock -> plan -> show -> confirm -> apply -> results.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.envs import app_dir, environments, spec_file
from engine.errors import DoinferError
from engine.files import sweep_temps
from engine.graph.build import build_steps
from engine.graph.executor import Executor, OnEvent, Outcome
from engine.graph.plan import Plan, destroy_plan, make_plan, plan_hash
from engine.graph.refresh import Refresh, observe_recorded, record_refresh
from engine.graph.step import Observation, Step
from engine.profiles import MeasuredProfile
from engine.review import plan_against_revision, plan_all_environments
from engine.runtimes import get_runtime
from engine.runtimes.base import ReplicaStatus, RuntimeOptions
from engine.runtimes.contracts import DeployResult
from engine.spec import load_spec
from engine.spec.build import build_runtime
from engine.spec.model import Spec
from engine.state import State, StateStore, record_problems
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
    def __init__(self, spec: Spec, state_dir: Path, options: RuntimeOptions | None = None) -> None:
        self.spec = spec
        self.state_dir = state_dir
        self.store = StateStore(state_dir, spec.name, spec.environment)
        self.store.check_dir()
        options = dataclasses.replace(options or RuntimeOptions(), settings=spec.runtime)
        self.ctx = Context(
            state_dir=state_dir,
            runtime=get_runtime(spec.runtime.kind, state_dir, options),
            spec_dir=spec.path.parent,
        )

    @classmethod
    def open(
        cls,
        spec_path: str | Path,
        state_dir: Path,
        environment: str | None = None,
        options: RuntimeOptions | None = None,
    ) -> Workspace:
        """A spec file, or an app directory's environment (`specs/<app>` and `--env`)."""
        spec = load_spec(spec_file(Path(spec_path), environment), environment)
        return cls(spec, state_dir, options)

    @contextlib.contextmanager
    def locked(self, timeout_s: float = 0.0) -> Iterator[None]:
        with self.store.lock(timeout_s):
            yield

    def steps(self) -> list[Step]:
        return build_steps(self.spec, self.ctx.cache_dir, self.store.load().steps)

    def plan(
        self, replace: Collection[str] = (), targets: Collection[str] = (), refresh: bool = True
    ) -> Plan:
        """Desired steps against the recorded state and what the runtime shows; `replace`
        and `targets` as `--replace` and `--target` name them. Without `refresh`, against
        the recorded state alone (the runtime is not asked: no cluster, no Docker engine
        needed, and drift goes unseen)."""
        return make_plan(
            self.steps(),
            self.store.load(),
            self._observe if refresh else None,
            spec=self.spec.name,
            environment=self.spec.environment,
            runtime=self.spec.runtime.kind,
            spec_path=self.spec.path.name,
            document=self.spec.document,
            replace=replace,
            targets=targets,
        )

    def render(self) -> list[dict[str, Any]]:
        """The objects the runtime would create, as data: from the spec and the recorded
        state alone (pushed images by digest), without reaching the runtime."""
        steps = self.steps()
        waiting = [
            s.inputs["server"] for s in steps if s.kind == "packing" and not s.inputs["packing"]
        ]
        if waiting:
            raise DoinferError(
                f"the servers of {', '.join(waiting)} are known after profiling: measure the "
                f"profiles first (doinfer profile {self.spec.path.name}), or declare them"
            )
        return type(self.ctx.runtime).render(steps, self.store.load().steps)

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

    def measure_profiles(self, on_event: OnEvent, max_parallel: int = 4) -> ApplyResult:
        """Run the spec's profile steps, and only them: the traces they need first (in
        parallel), then each measurement alone, so no trace competes with one for the
        cores. The caller holds the lock, and plans again afterwards: what the fleets
        pack now rests on the measured profiles."""
        plan = self.plan()
        profiles = plan.profile_steps()
        steps = {s.id: s for s in plan.steps}
        traces = sorted({n for p in profiles for n in steps[p].needs})
        outcomes: list[Outcome] = []
        for targets in (traces, profiles):
            if not targets:
                continue
            part = self.plan(targets=targets)
            if not part.has_changes:
                continue
            result = self.apply(part, on_event, max_parallel)
            outcomes += result.outcomes
            if not result.ok:
                break
        return ApplyResult(outcomes)

    def profiles(self) -> list[tuple[str, MeasuredProfile]]:
        """Every profile the state records as measured, by step id."""
        return [
            (step_id, MeasuredProfile.from_json(record["outputs"]))
            for step_id, record in sorted(self.store.load().steps.items())
            if record.get("kind") == "profile"
        ]

    def sweep(self, log: Callable[[str], None]) -> None:
        """Stop replicas of this spec's servers that no record knows of (an apply killed
        before it recorded its deploy leaves such), so that destroy leaves nothing behind."""
        for name in self.served(self.store.load()):
            if self.ctx.runtime.replicas(self.spec.name, self.spec.environment, name):
                self.ctx.runtime.undeploy(self.spec.name, self.spec.environment, name, log)

    # -- the state itself (`doinfer state`) ----------------------------------------------

    def records(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every recorded step, as recorded, and what is wrong with those that are broken."""
        steps = self.store.load_records().steps
        return steps, record_problems(steps)

    def forget(self, step_ids: list[str]) -> None:
        """Drop steps' records (the next apply redoes them); the caller holds the lock."""
        state = self.store.load_records()
        unknown = [i for i in step_ids if i not in state.steps]
        if unknown:
            raise DoinferError(
                f"no record of {', '.join(unknown)} in the state of {self.spec.name}/"
                f"{self.spec.environment} (recorded: {', '.join(sorted(state.steps)) or 'none'})"
            )
        for step_id in step_ids:
            self.store.record(state, step_id, None)

    def _observe(self, step: Step, record: dict[str, Any]) -> Observation:
        return STEP_KINDS[step.kind].observe(step, record, self.ctx)

    # -- what runs ----------------------------------------------------------------------

    def replicas(self) -> list[ReplicaStatus]:
        """Every replica the state records or the runtime finds, with its state."""
        state = self.store.load()
        statuses: list[ReplicaStatus] = []
        for name, step_id in self.served(state).items():
            on_runtime = self.ctx.runtime.replicas(self.spec.name, self.spec.environment, name)
            found = {r.index: r for r in on_runtime if r.state != "extra"}
            extra = [r for r in on_runtime if r.state == "extra"]  # e.g. a lost pid file's
            record = state.steps.get(step_id)
            recorded = DeployResult.from_json(record["outputs"]).replicas if record else ()
            for replica in recorded:
                status = found.pop(replica.index, None)
                statuses.append(
                    status
                    or ReplicaStatus(
                        name,
                        replica.index,
                        "missing",
                        replica.url,
                        replica.extra.get("container") or f"pid {replica.extra.get('pid')}",
                    )
                )
            statuses += found.values()  # running without a record: an interrupted apply
            statuses += extra
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
        known = {s.name for s in self.spec.servers} | set(self.served(self.store.load()))
        if server not in known:
            names = ", ".join(sorted(known))
            raise DoinferError(f"no server {server!r} in {self.spec.name} (servers: {names})")

    def bench(self, names: list[str], on_tick: OnTick | None = None) -> BenchRun:
        """Run scenarios against what is deployed now, one after another; the state is not
        changed. Benchmarks' load clients run where the runtime puts them."""
        from engine.bench.results import BenchRun
        from engine.bench.scenarios import run_scenario
        from engine.steps.deployed import targets_from_deploys

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
            step_id: state.steps.get(step_id, {}).get("outputs")
            for step_id in self.bench_targets(state)
        }
        missing = [i for i, o in deploys.items() if o is None]
        if missing:
            raise DoinferError(f"{', '.join(missing)} not applied yet: run doinfer apply first")
        targets = targets_from_deploys({k: v for k, v in deploys.items() if v is not None})
        started = time.time()
        results = [
            asyncio.run(
                run_scenario(
                    scenarios[n],
                    targets,
                    on_tick,
                    clients=self.ctx.runtime.run_load_clients,
                    probes_here=self.ctx.runtime.probes_here,
                )
            )
            for n in names or scenarios
        ]
        return BenchRun(
            self.spec.name, self.spec.environment, self.spec.runtime.kind, started, results
        )

    def served(self, state: State) -> dict[str, str]:
        """Every server that runs replicas -> the step whose record holds them: the spec's
        servers, and each fleet's device servers and router, as recorded."""
        served = {s.name: f"deploy/{s.name}" for s in self.spec.servers if s.packing != "auto"}
        for step_id, record in sorted(state.steps.items()):
            if record.get("kind") in ("deploy", "router"):
                served.setdefault(record["inputs"]["server"], step_id)
        return served

    def bench_targets(self, state: State) -> list[str]:
        """The steps whose replicas a bench sends to: each server's deploy, and for a
        fleet its router (its one address), or its devices where it runs none."""
        ids = []
        for server in self.spec.servers:
            if server.packing != "auto":
                ids.append(f"deploy/{server.name}")
            elif f"router/{server.name}" in state.steps:
                ids.append(f"router/{server.name}")
            else:
                ids += [
                    i
                    for i, r in sorted(state.steps.items())
                    if r.get("kind") == "deploy"
                    and r["inputs"]["server"].startswith(f"{server.name}-")
                ] or [f"router/{server.name}"]
        return ids

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
    sweep_temps(ctx.cache_dir)  # what an apply killed with kill -9 left half-written
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
    refresh: bool = True,
    options: RuntimeOptions | None = None,
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
    return [
        Workspace.open(spec_arg, state_dir, env, options).plan(replace, targets, refresh)
        for env in names
    ]


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


def saved_plan_target(
    plan: Plan, state_dir: Path, options: RuntimeOptions | None = None
) -> tuple[StateStore, Context]:
    """Where a saved plan applies: its spec's environment, on its runtime, with the
    runtime section of the spec it was made from; no spec file needed."""
    store = StateStore(state_dir, plan.spec, plan.environment)
    store.check_dir()
    settings = build_runtime(plan.document.get("runtime", {}))
    options = dataclasses.replace(options or RuntimeOptions(), settings=settings)
    runtime = get_runtime(plan.runtime, state_dir, options)
    return store, Context(state_dir=state_dir, runtime=runtime)


def load_saved_plan(path: Path) -> Plan:
    try:
        return Plan.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise DoinferError(f"{path}: not a saved doinfer plan ({exc})") from None


def is_saved_plan(path: Path) -> bool:
    if not path.is_file():  # a FIFO would block here; the spec loader says what it is
        return False
    try:
        with path.open("rb") as f:
            head = f.read(256).lstrip()
    except OSError:
        return False
    return head.startswith(b"{") and b"doinfer-plan" in head
