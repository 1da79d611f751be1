"""The plan: for every step, desired vs recorded vs observed -> an action and its reasons.

`decide` is a pure function of (desired step, record, observation), testable with plain
data. A Plan is data: the CLI renders it, `apply` executes it, `plan --out` saves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

from engine.graph.fingerprint import changed_keys, diff_inputs
from engine.graph.step import Action, Observation, Step
from engine.remote.hosts import RemoteHost
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
        )


KNOWN_AFTER_APPLY = "(known after apply)"


def output_values(step: Step, record: Mapping[str, Any] | None, action: Action) -> dict[str, str]:
    """The step's after-apply outputs: recorded ones for a no-op, else not known yet."""
    if action is Action.NOOP and record is not None:
        outputs = record.get("outputs", {})
        return {name: str(outputs.get(name, "?")) for name in step.after_apply}
    return dict.fromkeys(step.after_apply, KNOWN_AFTER_APPLY)


@dataclass
class Plan:
    spec: str
    environment: str
    runtime: str
    spec_path: str  # the spec file's name: a plan does not say where it was made
    lineage: str  # of the state the plan was made against
    serial: int
    steps: list[Step]  # desired, in topological order
    changes: list[Change]  # one per desired step (no-op included), then the deletes
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes)

    def counts(self) -> dict[str, int]:
        counts = {str(a): 0 for a in Action}
        for c in self.changes:
            counts[str(c.action)] += 1
        return counts

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
            "changes": [c.to_dict() for c in self.changes],
            "steps": [s.to_dict() for s in self.steps],
            "document": self.document,
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
        )


def decide(
    step: Step,
    record: Mapping[str, Any] | None,
    observation: Observation | None,
    upstream: Mapping[str, str],
    upstream_changing: list[str],
) -> tuple[Action, tuple[str, ...]]:
    """The action one desired step needs, and why.

    `upstream` maps each needed step to its desired fingerprint; `upstream_changing` lists
    those of them that the plan creates, updates or replaces.
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
        reasons += upstream_moved + [f"depends now on {', '.join(new_needs)}"] * bool(new_needs)
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
    if step.follows_upstream and upstream_changing:
        return Action.REPLACE, tuple(f"{n} changes" for n in upstream_changing)
    return Action.NOOP, ()


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
) -> Plan:
    """Diff desired steps against the state (and, with `observe`, against reality)."""
    changes: list[Change] = []
    changing: set[str] = set()
    desired = {s.id for s in steps}
    fingerprints = {s.id: s.fingerprint for s in steps}
    for step in steps:  # topological order: upstream decisions are known
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
        action, reasons = decide(step, record, observation, upstream, upstream_changing)
        if action is not Action.NOOP:
            changing.add(step.id)
        changes.append(
            Change(
                step.id,
                step.kind,
                action,
                reasons,
                step.summary,
                step.fingerprint,
                record.get("fingerprint") if record else None,
                where(step.runs_on),
                output_values(step, record, action),
            )
        )
    for step_id in _reverse_order(state, set(state.steps) - desired):
        record = state.steps[step_id]
        changes.append(
            Change(
                step_id,
                record.get("kind", step_id.split("/")[0]),
                Action.DELETE,
                ("no longer in the spec",),
                record.get("summary", step_id),
                None,
                record.get("fingerprint"),
            )
        )
    return Plan(
        spec, environment, runtime, spec_path, state.lineage, state.serial, steps, changes, document
    )


def where(runs_on: dict[str, Any] | None) -> str | None:
    """A remote host as a plan shows it: `host gpu-a (ec2-user@10.0.0.7:22)`."""
    return None if runs_on is None else f"host {RemoteHost.from_settings(runs_on).label}"


def destroy_plan(state: State, *, runtime: str, spec_path: str) -> Plan:
    """Delete every recorded step, dependents first."""
    changes = [
        Change(
            i,
            state.steps[i].get("kind", i.split("/")[0]),
            Action.DELETE,
            ("destroy",),
            state.steps[i].get("summary", i),
            None,
            state.steps[i].get("fingerprint"),
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
