"""What a scenario sends requests to: one model instance on one server replica, and how often.

A weight map selects targets by key, `SERVER/REPLICA/INSTANCE` (INSTANCE is `MODEL-i`):
a map key names a server, a replica (`SERVER/REPLICA`) or an instance, each part may use
`*` and `?` wildcards, and every target it selects gets its weight. The spec's semantic
checks use the same function, so a key that selects nothing is an error at `validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any

from engine.runtimes.contracts import DeployResult


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


def target_key(server: str, replica: int, instance: str) -> str:
    return f"{server}/{replica}/{instance}"


def model_of(key: str) -> str:
    """The model name in a target key: `qa/0/bert-3` -> `bert`."""
    return key.rsplit("/", 1)[1].rsplit("-", 1)[0]


def replica_of(key: str) -> str:
    """The replica in a target key: `qa/0/bert-3` -> `qa/0`."""
    return key.rsplit("/", 1)[0]


def targets_from_deploys(deploys: dict[str, dict[str, Any]]) -> list[Target]:
    """Every (replica, model instance) of the deployed servers."""
    targets = []
    for step_id, outputs in sorted(deploys.items()):
        server = step_id.split("/", 1)[1]
        deployed = DeployResult.from_json(outputs)
        for replica in deployed.replicas:
            for model in deployed.models:
                for i in range(model.instances):
                    targets.append(
                        Target(
                            url=replica.url,
                            server=server,
                            replica=replica.index,
                            instance=f"{model.name}-{i}",
                            model=model.name,
                            task=model.task,
                        )
                    )
    return targets


def selects(pattern: str, key: str) -> bool:
    """Whether a weight-map key selects a target: matched part by part, from the server."""
    parts = min(pattern.count("/") + 1, 3)
    return fnmatchcase("/".join(key.split("/")[:parts]), pattern)


def weigh(keys: list[str], weights: Mapping[str, float]) -> list[float]:
    """Each target's weight; raise ValueError for a key that selects no target, a target
    two keys select, or weights that leave every target without requests."""
    result = [0.0] * len(keys)
    owner: dict[int, str] = {}
    for pattern, weight in weights.items():
        chosen = [i for i, key in enumerate(keys) if selects(pattern, key)]
        if not chosen:
            raise ValueError(f"weight key '{pattern}' selects no target (targets: {_sample(keys)})")
        for i in chosen:
            if i in owner:
                raise ValueError(f"weight keys '{owner[i]}' and '{pattern}' both select {keys[i]}")
            owner[i] = pattern
            result[i] = float(weight)
    if not any(result):
        raise ValueError("the weights give no target a share of the requests")
    return result


def _sample(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
