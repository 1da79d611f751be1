"""Weight maps: which targets a scenario's `weights` key selects, and each target's share.

A key selects targets by `SERVER/REPLICA/INSTANCE` (INSTANCE is `MODEL-i`), part by part,
with `*` and `?` wildcards. The spec's checks (at validate) and the load plans (at bench)
both use these functions, so they live below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase


def target_key(server: str, replica: int, instance: str) -> str:
    return f"{server}/{replica}/{instance}"


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
