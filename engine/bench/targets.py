"""What a scenario sends requests to: one model instance on one server replica."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
        return f"{self.server}/{self.replica}/{self.instance}"


def targets_from_deploys(deploys: dict[str, dict[str, Any]]) -> list[Target]:
    """Every (replica, model instance) of the deployed servers."""
    targets = []
    for step_id, outputs in sorted(deploys.items()):
        server = step_id.split("/", 1)[1]
        for replica in outputs["replicas"]:
            for model in outputs["models"]:
                for i in range(model["instances"]):
                    targets.append(
                        Target(
                            url=replica["url"],
                            server=server,
                            replica=replica["index"],
                            instance=f"{model['name']}-{i}",
                            model=model["name"],
                            task=model["task"],
                        )
                    )
    return targets
