"""Attribute-level diffs, Terraform style: what a step is made of, old -> new.

A step's inputs are flattened into named leaves (`trace.sequence_length`, named list
items by name: `models[bert-qa].instances`). A create lists the attributes that matter
for its kind; an update or replace lists every attribute that changed, marking those that
force the replacement, and counts the unchanged ones it folds away. This is presentation:
it never decides an action (plan.decide does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.graph.fingerprint import show_value

# What a create shows, per step kind (a name, or the start of a flattened name). Other
# inputs (library versions, code digests, where a model was read from) show only when
# they change.
KEY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "trace": ("model", "source", "task", "processor", "trace"),
    "image": ("processor", "base_image"),
    "pack": ("processor", "models", "share_weights", "image"),  # models: see _PACK_MODEL_KEYS
    "push": ("registry",),
    "deploy": (
        "replicas",
        "processor",
        "models",
        "threads",
        "port",
        "limits",
        "namespace",
        "node_type",
        "node_selector",
        "resources",
        "cpu",
        "memory",
        "accelerators",
    ),
    "scenario": ("kind",),  # and what its kind uses: _SCENARIO_KEYS
}
# Of each model a server packs, what a create shows: its density and its batching (the
# deploy repeats the pack's models: it shows the instances only).
_PACK_MODEL_KEYS = ("instances", "max_batch_size", "max_delay_ms", "max_queue", "max_padding")
_DEPLOY_MODEL_KEYS = ("instances",)
# Of a scenario, what its kind uses (the others hold defaults it ignores).
_SCENARIO_KEYS = {
    "sequential": ("seq_0", "seq_1"),
    "random": ("requests", "interval_ms", "weights", "seq_0", "seq_1", "texts"),
    "benchmark": (
        "clients",
        "concurrency",
        "rate",
        "arrivals",
        "warmup_s",
        "duration_s",
        "weights",
        "seq_0",
        "seq_1",
        "texts",
        "slo",
    ),
}


@dataclass(frozen=True)
class Attribute:
    name: str
    old: str | None  # None: not there before (a create, or a new attribute)
    new: str | None  # None: gone (a delete, or a dropped attribute)
    forces: bool = False  # this change is why the step is replaced

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "old": self.old, "new": self.new, "forces": self.forces}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attribute:
        return cls(data["name"], data.get("old"), data.get("new"), bool(data.get("forces")))


def flatten(inputs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted name; a list of named mappings by item name (`models[qa].x`)."""
    leaves: dict[str, Any] = {}
    for key, value in inputs.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            leaves |= flatten(value, f"{name}.")
        elif _named_items(value):
            for item in value:
                rest = {k: v for k, v in item.items() if k != "name"}
                leaves |= flatten(rest, f"{name}[{item['name']}].")
        else:
            leaves[name] = value
    return leaves


def created(kind: str, inputs: Mapping[str, Any]) -> tuple[Attribute, ...]:
    """The attributes that matter of a step about to be created."""
    keys = KEY_ATTRIBUTES.get(kind)
    if keys is not None and kind == "scenario":
        keys = (*keys, *_SCENARIO_KEYS.get(inputs.get("kind", ""), ()))
    if keys is not None:  # every key is a top-level name: flatten only what is shown
        inputs = {k: v for k, v in inputs.items() if k in keys}
    return tuple(
        Attribute(name, None, show_value(value))
        for name, value in flatten(inputs).items()
        if value is not None and _is_key(kind, keys, name)
    )


def deleted(kind: str, inputs: Mapping[str, Any]) -> tuple[Attribute, ...]:
    """The attributes that matter of a recorded step about to be deleted."""
    return tuple(Attribute(a.name, a.new, None) for a in created(kind, inputs))


def changed(
    old_inputs: Mapping[str, Any], new_inputs: Mapping[str, Any], updatable: frozenset[str]
) -> tuple[tuple[Attribute, ...], int]:
    """Every attribute that differs (and whether it forces a replacement: it is not
    updatable in place), and how many stayed the same."""
    old, new = flatten(old_inputs), flatten(new_inputs)
    attributes: list[Attribute] = []
    same = 0
    for name in sorted(old.keys() | new.keys(), key=_order(new, old)):
        if name in old and name in new and old[name] == new[name]:
            same += 1
            continue
        top = name.split(".")[0].split("[")[0]
        attributes.append(
            Attribute(
                name,
                show_value(old[name]) if name in old else None,
                show_value(new[name]) if name in new else None,
                forces=top not in updatable,
            )
        )
    return tuple(attributes), same


def _is_key(kind: str, keys: tuple[str, ...] | None, name: str) -> bool:
    if keys is None:  # a kind this table does not know: show everything
        return True
    if kind in ("pack", "deploy") and name.startswith("models["):
        keys = _PACK_MODEL_KEYS if kind == "pack" else _DEPLOY_MODEL_KEYS
        return name.rsplit(".", 1)[-1] in keys
    return any(name == k or name.startswith((f"{k}.", f"{k}[")) for k in keys)


def _order(*documents: dict[str, Any]) -> Any:
    """Attributes in the order the inputs list them (new first, then what was dropped)."""
    position = {name: i for doc in reversed(documents) for i, name in enumerate(doc)}
    return lambda name: (position.get(name, 0), name)


def _named_items(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, Mapping) and isinstance(item.get("name"), str) for item in value)
        and len({item["name"] for item in value}) == len(value)
    )
