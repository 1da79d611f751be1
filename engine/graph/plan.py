"""The plan: for every step, desired vs recorded vs observed -> an action and its reasons.

`decide` is a pure function of (desired step, record, observation), testable with plain
data. A Plan is data: the CLI renders it, `apply` executes it, `plan --out` saves it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from engine.errors import DoinferError
from engine.gc_pause import gc_paused
from engine.graph import attributes
from engine.graph.attributes import Attribute
from engine.graph.fingerprint import canonical_json, changed_keys, diff_inputs
from engine.graph.step import Action, Observation, Step
from engine.remote.hosts import RemoteHost
from engine.runtimes import runtime_rollout
from engine.state import State

PLAN_FORMAT = "doinfer-plan/1"

Observer = Callable[[Step, dict[str, Any]], Observation]


@dataclass(frozen=True)
class Change:
    step_id: str
    kind: str
    action: Action
    reasons: tuple[str, ...]
    summary: str
    fingerprint: str | None  # desired; None for a delete
    previous: str | None  # recorded; None for a create
    runs_on: str | None = None  # "host gpu-a (ec2-user@10.0.0.7:22)"; None: on this machine
    values: dict[str, str] = field(default_factory=dict)  # outputs: recorded, or "known after"
    attributes: tuple[Attribute, ...] = ()  # what it is made of: created, or old -> new
    unchanged: int = 0  # attributes that stayed the same (folded away)
    why: tuple[str, ...] = ()  # the reasons that are not an attribute's change (upstream, drift)
    effect: str | None = None  # what happens to running servers ("2 replica(s) restart ...")
    forced: bool = False  # replaced because the user asked (--replace), not because it changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "kind": self.kind,
            "action": str(self.action),
            "reasons": list(self.reasons),
            "summary": self.summary,
            "fingerprint": self.fingerprint,
            "previous": self.previous,
            "runs_on": self.runs_on,
            "values": self.values,
            "attributes": [a.to_dict() for a in self.attributes],
            "unchanged": self.unchanged,
            "why": list(self.why),
            "effect": self.effect,
            "forced": self.forced,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(
            data["step"],
            data["kind"],
            Action(data["action"]),
            tuple(data["reasons"]),
            data["summary"],
            data["fingerprint"],
            data["previous"],
            data.get("runs_on"),
            dict(data.get("values", {})),
            tuple(Attribute.from_dict(a) for a in data.get("attributes", ())),
            int(data.get("unchanged", 0)),
            tuple(data.get("why", data["reasons"])),
            data.get("effect"),
            bool(data.get("forced", False)),
        )


KNOWN_AFTER_APPLY = "(known after apply)"


def output_values(step: Step, record: Mapping[str, Any] | None, action: Action) -> dict[str, str]:
    """The step's after-apply outputs: recorded ones for a no-op, else not known yet."""
    if action is Action.NOOP and record is not None:
        outputs = record.get("outputs", {})
        return {name: str(outputs.get(name, "?")) for name in step.after_apply}
    return dict.fromkeys(step.after_apply, KNOWN_AFTER_APPLY)


@dataclass(frozen=True)
class Cost:
    """What the priced part of a fleet costs per hour before and after the plan.

    The renderers show it when a plan carries one; the fleet's packing fills it in (a
    spec whose servers have no price carries none).
    """

    before: float | None  # per hour; None: nothing priced ran before
    after: float | None  # per hour; None: nothing priced runs after
    currency: str = "USD"
    lines: tuple[str, ...] = ()  # how it adds up, e.g. "2 x inf1.6xlarge at 1.18/h"
    waiting: tuple[str, ...] = ()  # fleets not counted in `after`: packed after profiling

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "currency": self.currency,
            "lines": list(self.lines),
            "waiting": list(self.waiting),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        return cls(
            data["before"],
            data["after"],
            data["currency"],
            tuple(data["lines"]),
            tuple(data.get("waiting", ())),
        )


@dataclass
class Plan:
    spec: str
    environment: str
    runtime: str
    spec_path: str  # the spec file's name (its path in the repository for --base-ref): a
    # plan does not say where it was made
    lineage: str  # of the state the plan was made against
    serial: int
    steps: list[Step]  # desired, in topological order
    changes: list[Change]  # one per desired step (no-op included), then the deletes
    document: dict[str, Any] = field(default_factory=dict)
    cost: Cost | None = None  # per hour before and after, where the fleet is priced
    base: str | None = None  # the revision this plan compares with (plan --base-ref), if any

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def counts(self) -> dict[str, int]:
        counts = {str(a): 0 for a in Action}
        for c in self.changes:
            counts[str(c.action)] += 1
        return counts

    def packing(self) -> dict[str, Any]:
        """Each fleet's packing (server -> nodes, devices, copies, cost and bound); a fleet
        waiting for its profiles has none yet."""
        return {
            s.inputs["server"]: s.inputs["packing"]
            for s in self.steps
            if s.kind == "packing" and s.inputs["packing"] is not None
        }

    def waiting_fleets(self) -> list[str]:
        """Fleets whose packing waits for profiles to be measured: `apply` measures them
        first, then plans again (engine/operations.py)."""
        return [
            s.inputs["server"]
            for s in self.steps
            if s.kind == "packing" and s.inputs["packing"] is None
        ]

    def profile_steps(self) -> list[str]:
        """The profile steps this plan runs."""
        return [
            c.step_id
            for c in self.changes
            if c.kind == "profile" and c.action not in (Action.NOOP, Action.DELETE)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "spec": self.spec,
            "environment": self.environment,
            "runtime": self.runtime,
            "spec_path": self.spec_path,
            "state": {"lineage": self.lineage, "serial": self.serial},
            "has_changes": self.has_changes,
            "counts": self.counts(),
            "packing": self.packing(),
            "waiting_for_profiles": self.waiting_fleets(),
            "changes": [c.to_dict() for c in self.changes],
            "steps": [s.to_dict() for s in self.steps],
            "document": self.document,
            "cost": self.cost.to_dict() if self.cost else None,
            "base": self.base,
            "hash": plan_hash(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a doinfer plan (format {data.get('format')!r})")
        return cls(
            spec=data["spec"],
            environment=data["environment"],
            runtime=data["runtime"],
            spec_path=data["spec_path"],
            lineage=data["state"]["lineage"],
            serial=int(data["state"]["serial"]),
            steps=[Step.from_dict(s) for s in data["steps"]],
            changes=[Change.from_dict(c) for c in data["changes"]],
            document=data.get("document", {}),
            cost=Cost.from_dict(data["cost"]) if data.get("cost") else None,
            base=data.get("base"),
        )


def plan_hash(plan: Plan) -> str:
    """What a reviewer approved: every step's action and fingerprints, desired and recorded.

    The same for a plan of a pull request (`plan --base-ref`, against the base revision)
    and for the plan `apply --plan-hash` makes against the environment's state, as long as
    that state was applied from the base revision and has not moved since.
    """
    changes = [[c.step_id, str(c.action), c.fingerprint, c.previous] for c in plan.changes]
    payload = {"spec": plan.spec, "environment": plan.environment, "changes": changes}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def decide(
    step: Step,
    record: Mapping[str, Any] | None,
    observation: Observation | None,
    upstream: Mapping[str, str],
    upstream_changing: list[str],
    upstream_reapplied: Sequence[str] = (),
) -> tuple[Action, tuple[str, ...]]:
    """The action one desired step needs, and why.

    `upstream` maps each needed step to its desired fingerprint; `upstream_changing` lists
    those of them that the plan creates, updates or replaces; `upstream_reapplied` those
    applied again since this step last ran (an apply interrupted, or failed, in between).
    """
    if record is None:
        return Action.CREATE, ("not yet applied",)
    if record.get("fingerprint") != step.fingerprint:
        old_inputs = record.get("inputs", {})
        reasons = diff_inputs(old_inputs, step.inputs)
        old_upstream = record.get("upstream", {})
        upstream_moved = [
            f"{n} changed"
            for n in step.needs
            if n in old_upstream and (n in upstream_changing or old_upstream[n] != upstream[n])
        ]
        new_needs = sorted(set(step.needs) ^ set(old_upstream))
        added = [n for n in new_needs if n in step.needs]
        dropped = [n for n in new_needs if n not in step.needs]
        reasons += upstream_moved + [f"depends now on {', '.join(added)}"] * bool(added)
        reasons += [f"no longer depends on {', '.join(dropped)}"] * bool(dropped)
        in_place = (
            not upstream_moved
            and not new_needs
            and changed_keys(old_inputs, step.inputs) <= step.updatable
        )
        if not reasons:
            reasons = ["upstream changed"]
        return (Action.UPDATE if in_place else Action.REPLACE), tuple(reasons)
    if observation is not None and not observation.ok:
        return Action.UPDATE, tuple(f"drift: {d}" for d in observation.drift)
    if step.follows_upstream and (upstream_changing or upstream_reapplied):
        return Action.REPLACE, tuple(
            [f"{n} changes" for n in upstream_changing]
            + [f"{n} was applied again since this last ran" for n in upstream_reapplied]
        )
    return Action.NOOP, ()


@gc_paused
def make_plan(
    steps: list[Step],
    state: State,
    observe: Observer | None,
    *,
    spec: str,
    environment: str,
    runtime: str,
    spec_path: str,
    document: dict[str, Any],
    replace: Collection[str] = (),
    targets: Collection[str] = (),
) -> Plan:
    """Diff desired steps against the state (and, with `observe`, against reality).

    `replace` names steps to replace although nothing changed (`--replace`); `targets`
    limits the plan to those steps and what they need (`--target`).
    """
    check_step_ids([*replace, *targets], [s.id for s in steps], state)
    rollout = runtime_rollout(runtime)
    changes = _desired_changes(steps, state, observe, replace, rollout)
    changes += _deletions(state, set(state.steps) - {s.id for s in steps}, rollout)
    if targets:
        wanted = needed_by(targets, {s.id: s.needs for s in steps})
        changes = [c for c in changes if c.step_id in wanted]
    return Plan(
        spec,
        environment,
        runtime,
        spec_path,
        state.lineage,
        state.serial,
        steps,
        changes,
        document,
        cost=fleet_cost(steps, state),
    )


def _desired_changes(
    steps: list[Step],
    state: State,
    observe: Observer | None,
    replace: Collection[str],
    rollout: str | None,
) -> list[Change]:
    """What each desired step needs, in topological order: a step's upstream decisions
    are known when its own is made."""
    changes: list[Change] = []
    changing: set[str] = set()
    fingerprints = {s.id: s.fingerprint for s in steps}
    for step in steps:
        record = state.steps.get(step.id)
        observation = None
        if (
            observe is not None
            and record is not None
            and record.get("fingerprint") == step.fingerprint
        ):
            observation = observe(step, record)
        upstream_changing = [n for n in step.needs if n in changing]
        upstream = {n: fingerprints[n] for n in step.needs}
        action, reasons = decide(
            step, record, observation, upstream, upstream_changing, reapplied(step, record, state)
        )
        forced = step.id in replace and record is not None and action is not Action.REPLACE
        if forced:
            action, reasons = Action.REPLACE, (*reasons, "replacement requested (--replace)")
        if action is not Action.NOOP:
            changing.add(step.id)
        changes.append(_change(step, record, action, reasons, rollout, forced))
    return changes


def _deletions(state: State, gone: set[str], rollout: str | None) -> list[Change]:
    """The recorded steps no longer in the spec, dependents first."""
    changes = []
    for step_id in _reverse_order(state, gone):
        record = state.steps[step_id]
        kind = record.get("kind", "")
        changes.append(
            Change(
                step_id,
                record.get("kind", step_id.split("/")[0]),
                Action.DELETE,
                ("no longer in the spec",),
                record.get("summary", step_id),
                None,
                record.get("fingerprint"),
                attributes=attributes.deleted(kind, record.get("inputs", {})),
                why=("no longer in the spec",),
                effect=_server_effect(kind, Action.DELETE, {}, (), rollout),
            )
        )
    return changes


def reapplied(step: Step, record: Mapping[str, Any] | None, state: State) -> list[str]:
    """Upstream steps applied again after `record` was made: each record keeps when what it
    needed was applied, so a step left undone by an interrupted apply is not forgotten."""
    if record is None:
        return []
    seen = record.get("upstream_applied", {})  # absent in records of older doinfers
    return [
        n
        for n in step.needs
        if n in seen and n in state.steps and state.steps[n].get("applied_at") != seen[n]
    ]


def fleet_cost(steps: list[Step], state: State) -> Cost | None:
    """What the spec's fleets cost per hour as recorded and as planned, from their
    packing steps; None for a spec with no fleet (nothing priced)."""
    before_records = [r for r in state.steps.values() if r.get("kind") == "packing"]
    after_steps = [s for s in steps if s.kind == "packing" and s.inputs["packing"] is not None]
    waiting = [s.inputs["server"] for s in steps if s.kind == "packing" and s not in after_steps]
    if not before_records and not after_steps and not waiting:
        return None
    lines = []
    for step in after_steps:
        nodes: dict[tuple[str, float], int] = {}
        for node in step.inputs["packing"]["nodes"]:
            key = (node["type"], node["price_per_hour"])
            nodes[key] = nodes.get(key, 0) + 1
        lines += [
            f"{step.inputs['server']}: {count} x {name} at {price:,.4g}/h"
            for (name, price), count in sorted(nodes.items())
        ]
    return Cost(
        sum(r["inputs"]["packing"]["cost_per_hour"] for r in before_records)
        if before_records
        else None,
        sum(s.inputs["packing"]["cost_per_hour"] for s in after_steps) if after_steps else None,
        lines=tuple(lines),
        waiting=tuple(waiting),
    )


def _change(
    step: Step,
    record: Mapping[str, Any] | None,
    action: Action,
    reasons: tuple[str, ...],
    rollout: str | None,
    forced: bool,
) -> Change:
    """A desired step's change, with its attributes: created, or old -> new."""
    if record is None:  # what is decided at apply shows once, among the values
        created = attributes.created(step.kind, step.inputs)
        attrs = tuple(a for a in created if a.name not in step.after_apply)
        unchanged, why = 0, ()
    else:
        old_inputs = record.get("inputs", {})
        attrs, unchanged = attributes.changed(old_inputs, step.inputs, step.updatable)
        if action is not Action.REPLACE or forced:
            attrs = tuple(dataclasses.replace(a, forces=False) for a in attrs)
        input_reasons = set(diff_inputs(old_inputs, step.inputs))
        why = tuple(r for r in reasons if r not in input_reasons)
    return Change(
        step.id,
        step.kind,
        action,
        reasons,
        step.summary,
        step.fingerprint,
        record.get("fingerprint") if record else None,
        where(step.runs_on),
        output_values(step, record, action),
        attrs,
        unchanged,
        why,
        _server_effect(step.kind, action, step.inputs, attrs, rollout),
        forced,
    )


def _server_effect(
    kind: str,
    action: Action,
    inputs: Mapping[str, Any],
    attrs: tuple[Attribute, ...],
    rollout: str | None,
) -> str | None:
    """What a deploy's change does to running servers: start, scale, restart, roll, stop."""
    if kind != "deploy" or action is Action.NOOP:
        return None
    replicas = inputs.get("replicas")
    if action is Action.CREATE:
        return f"{replicas} replica(s) start"
    if action is Action.DELETE:
        return "every replica stops"
    if action is Action.UPDATE:
        names = {a.name for a in attrs}
        if names and names <= {"replicas", "cores_shared_by"}:  # a replica count changed
            scaled = next((a for a in attrs if a.name == "replicas"), None)
            if scaled is None:  # another server's: new replicas share the cores differently
                return "running replicas keep serving"
            return f"scale {scaled.old} -> {scaled.new} replica(s); running replicas keep serving"
        return "replicas that drifted restart"
    if rollout == "roll":
        return f"{replicas} replica(s) roll: each new replica is ready before an old one stops"
    if rollout == "restart":
        return f"{replicas} replica(s) restart: each stops serving until it has started again"
    return f"{replicas} replica(s) are replaced"


def needed_by(targets: Collection[str], needs: Mapping[str, Sequence[str]]) -> set[str]:
    """The targets and every step they need, directly or not."""
    wanted: set[str] = set()
    todo = list(targets)
    while todo:
        step_id = todo.pop()
        if step_id not in wanted:
            wanted.add(step_id)
            todo.extend(needs.get(step_id, ()))
    return wanted


def check_step_ids(names: Collection[str], desired: Sequence[str], state: State) -> None:
    """Every step named on the command line exists (in the spec or the state)."""
    known = [*desired, *(i for i in state.steps if i not in desired)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DoinferError(
            f"no step {', '.join(unknown)} in {state.spec}/{state.environment} "
            f"(steps: {', '.join(known)})"
        )


def where(runs_on: dict[str, Any] | None) -> str | None:
    """A remote host as a plan shows it: `host gpu-a (ec2-user@10.0.0.7:22)`."""
    return None if runs_on is None else f"host {RemoteHost.from_settings(runs_on).label}"


def destroy_plan(state: State, *, runtime: str, spec_path: str) -> Plan:
    """Delete every recorded step, dependents first."""
    rollout = runtime_rollout(runtime)
    changes = [
        Change(
            i,
            state.steps[i].get("kind", i.split("/")[0]),
            Action.DELETE,
            ("destroy",),
            state.steps[i].get("summary", i),
            None,
            state.steps[i].get("fingerprint"),
            attributes=attributes.deleted(
                state.steps[i].get("kind", ""), state.steps[i].get("inputs", {})
            ),
            why=("destroy",),
            effect=_server_effect(state.steps[i].get("kind", ""), Action.DELETE, {}, (), rollout),
        )
        for i in _reverse_order(state, set(state.steps))
    ]
    return Plan(
        state.spec, state.environment, runtime, spec_path, state.lineage, state.serial, [], changes
    )


def _reverse_order(state: State, ids: set[str]) -> list[str]:
    """Recorded steps, dependents before what they depend on."""
    graph = {i: [n for n in state.steps[i].get("needs", []) if n in ids] for i in ids}
    return list(reversed(list(TopologicalSorter(graph).static_order())))
