"""What the graph knows of a step: an id, its inputs, what it needs, its fingerprint.

The graph knows nothing of what a step *does*; that lives in engine/steps/, one module
per kind, looked up by `Step.kind`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # changed in place (e.g. replicas scaled, a dead replica restarted)
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass(frozen=True)
class Step:
    id: str  # "<kind>/<name>[@<processor>]", e.g. "trace/minilm@cpu"
    kind: str  # trace | pack | deploy | scenario
    inputs: dict[str, Any]  # canonical, JSON-compatible
    needs: tuple[str, ...]  # ids of upstream steps
    fingerprint: str
    summary: str  # one line for humans: what this step is
    updatable: frozenset[str] = field(default_factory=frozenset)  # inputs changeable in place
    follows_upstream: bool = False  # re-run whenever an upstream step changes at all
    exclusive: bool = False  # never runs alongside another exclusive step (measurements)
    # Where the step runs: a remote host's settings (name, address, ...), None for here. Not
    # part of the fingerprint: the same inputs give the same result on any suitable host.
    runs_on: dict[str, Any] | None = None
    pool: str | None = None  # steps of one pool run at most pool_limit at once (a host's slots)
    pool_limit: int = 1
    after_apply: tuple[str, ...] = ()  # outputs known only after apply (an image id, a digest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "inputs": self.inputs,
            "needs": list(self.needs),
            "fingerprint": self.fingerprint,
            "summary": self.summary,
            "updatable": sorted(self.updatable),
            "follows_upstream": self.follows_upstream,
            "exclusive": self.exclusive,
            "runs_on": self.runs_on,
            "pool": self.pool,
            "pool_limit": self.pool_limit,
            "after_apply": list(self.after_apply),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        return cls(
            id=data["id"],
            kind=data["kind"],
            inputs=data["inputs"],
            needs=tuple(data["needs"]),
            fingerprint=data["fingerprint"],
            summary=data["summary"],
            updatable=frozenset(data.get("updatable", ())),
            follows_upstream=bool(data.get("follows_upstream", False)),
            exclusive=bool(data.get("exclusive", False)),
            runs_on=data.get("runs_on"),
            pool=data.get("pool"),
            pool_limit=int(data.get("pool_limit", 1)),
            after_apply=tuple(data.get("after_apply", ())),
        )


@dataclass(frozen=True)
class Observation:
    """What a step kind saw of its resource: `drift` lists why reality differs from the record."""

    drift: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.drift
