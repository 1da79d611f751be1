"""Defaults come from the schema, and from nowhere else.

Every property with a `default` in schemas/doinfer.schema.json that a (schema-valid)
document leaves out is filled in, depth first, so the typed spec objects are built from a
complete document. An object property whose default is `{}` (a model's `trace`, a
server's `batching`, `runtime`) is created and then filled in turn.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from engine.spec.validate import validator


def with_defaults(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` with every schema default it leaves out filled in."""
    root = schema()
    return _fill(_copy(document), root, root)


def schema_default(*path: str) -> Any:
    """The schema's default at a path of property names (and `items`), from the top or
    from a `$defs` entry: schema_default("server", "replicas") -> 1."""
    node = _definitions().get(path[0]) or schema()["properties"][path[0]]
    for part in path[1:]:
        node = node["items"] if part == "items" else node["properties"][part]
    return copy.deepcopy(node["default"])


def schema() -> dict[str, Any]:
    """The schema the validator checks against (read once)."""
    return validator().schema  # type: ignore[no-any-return]


@functools.cache
def _definitions() -> dict[str, Any]:
    return schema().get("$defs", {})


def _copy(value: Any) -> Any:
    """A copy of a JSON document (copy.deepcopy's memo costs a fleet spec a tenth of a second)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _fill(value: Any, node: dict[str, Any], root: dict[str, Any]) -> Any:
    node = _resolve(node, root)
    if isinstance(value, dict):
        for name, prop in node.get("properties", {}).items():
            if name not in value and "default" in prop:  # beside a $ref, or in its target
                value[name] = copy.deepcopy(prop["default"])
            prop = _resolve(prop, root)
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = _fill(value[name], prop, root)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_fill(item, node["items"], root) for item in value]
    return value
