"""Refresh-only: what runs now, recorded in the state without changing anything deployed.

Every recorded step is observed as it was recorded (its recorded inputs, not the spec's);
applying a refresh writes what was seen (the drift, or none, and when) into each record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from engine.errors import DoinferError
from engine.graph.plan import Observer
from engine.graph.step import Step
from engine.state import State, StateStore


@dataclass(frozen=True)
class Refresh:
    spec: str
    environment: str
    lineage: str  # of the state observed, so a refresh is not recorded over a newer state
    serial: int
    observed: tuple[tuple[str, tuple[str, ...]], ...]  # (step id, drift) per recorded step

    @property
    def drifted(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(step_id, drift) for step_id, drift in self.observed if drift]


def observe_recorded(state: State, observe: Observer) -> Refresh:
    """Observe every recorded step as it was recorded."""
    observed = []
    for step_id, record in state.steps.items():
        step = Step(
            step_id,
            record.get("kind", step_id.split("/")[0]),
            record.get("inputs", {}),
            tuple(record.get("needs", ())),
            record.get("fingerprint", ""),
            record.get("summary", step_id),
        )
        observed.append((step_id, observe(step, record).drift))
    return Refresh(state.spec, state.environment, state.lineage, state.serial, tuple(observed))


def record_refresh(refresh: Refresh, store: StateStore) -> None:
    """Write what was observed into each record; the caller holds the lock."""
    state = store.load()
    if (state.lineage, state.serial) != (refresh.lineage, refresh.serial):
        raise DoinferError(
            f"the state of {refresh.spec}/{refresh.environment} changed while it was "
            f"observed: refresh again"
        )
    now = time.time()
    for step_id, drift in refresh.observed:
        state.steps[step_id]["observed"] = {"at": now, "drift": list(drift)}
    store.save(state)
