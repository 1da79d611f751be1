"""What a scenario sends requests to: one model instance on one server replica.

How often each is chosen follows the scenario's weight map (engine/weights.py, which the
spec's checks share, so a key that selects nothing is an error at `validate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.weights import selects, target_key, weigh

__all__ = [
    "Target",
    "model_of",
    "replica_of",
    "selects",
    "target_key",
    "weigh",
]


@dataclass(frozen=True)
class Target:
    url: str  # base URL of the replica, e.g. http://127.0.0.1:41234
    server: str
    replica: int
    instance: str  # "<model>-<i>"
    model: str
    task: str

    @property
    def key(self) -> str:
        return target_key(self.server, self.replica, self.instance)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_of(key: str) -> str:
    """The model name in a target key: `qa/0/bert-3` -> `bert`."""
    return key.rsplit("/", 1)[1].rsplit("-", 1)[0]


def replica_of(key: str) -> str:
    """The replica in a target key: `qa/0/bert-3` -> `qa/0`."""
    return key.rsplit("/", 1)[0]
