"""Server-side apply and field ownership (metadata.managedFields), after structured-merge-diff.

Written from https://kubernetes.io/docs/reference/using-api/server-side-apply/ :
- a field set is the set of paths an applied configuration names: `f:<field>` for struct fields
  and map keys, `k:{"name":"server"}` for items of lists that merge by key
  (`x-kubernetes-list-type: map`), `v:<json>` for items of set lists; a list without a list type
  is atomic (one leaf), and so are the structs/maps marked atomic (a LabelSelector, a Service's
  selector, a pod's nodeSelector). FieldsV1 is that set as a trie; `.` marks a node that is
  itself a member and has children (a list item).
- Apply: the applied configuration is the manager's whole intent. A field it sets to a value
  different from the live one, owned by another manager, is a conflict (409) unless force, which
  moves the ownership; the same value is shared ownership. Fields the manager applied before and
  omits now are removed unless another manager owns them.
- Update (POST, PUT, merge/strategic/json patch): never conflicts; the changed fields move to
  the manager's Update entry.

Only the list types of the objects doinfer renders are known (`_LIST_KEYS`); any other list is
atomic, as in the schema of the built-in types where no list type is given.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]

# list types, keyed by the field names on the way (no keys), relative to a pod spec ("pod:")
# or absolute; anything not here is atomic
_POD_LISTS: dict[tuple[str, ...], tuple[str, ...] | str] = {
    ("containers",): ("name",),
    ("initContainers",): ("name",),
    ("containers", "ports"): ("containerPort", "protocol"),
    ("initContainers", "ports"): ("containerPort", "protocol"),
    ("containers", "env"): ("name",),
    ("initContainers", "env"): ("name",),
    ("containers", "volumeMounts"): ("mountPath",),
    ("initContainers", "volumeMounts"): ("mountPath",),
    ("volumes",): ("name",),
    ("imagePullSecrets",): ("name",),
    ("topologySpreadConstraints",): ("topologyKey", "whenUnsatisfiable"),
}
_LISTS: dict[tuple[str, ...], tuple[str, ...] | str] = {
    ("metadata", "ownerReferences"): ("uid",),
    ("metadata", "finalizers"): "set",
    ("status", "conditions"): ("type",),
}
_SERVICE_LISTS: dict[tuple[str, ...], tuple[str, ...] | str] = {
    ("spec", "ports"): ("port", "protocol"),
}
# structs and maps that are replaced whole (+structType=atomic / +mapType=atomic)
_POD_ATOMIC = {("nodeSelector",)}
_ATOMIC = {
    "Deployment": {("spec", "selector")},
    "ReplicaSet": {("spec", "selector")},
    "Job": {("spec", "selector")},
    "Service": {("spec", "selector")},
}
# defaults the server fills into list keys before it keys the item
_KEY_DEFAULTS = {"protocol": "TCP"}
# never part of a field set
_METADATA_STRIPPED = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "selfLink",
    "managedFields",
)


def _pod_spec_prefix(kind: str) -> tuple[str, ...] | None:
    if kind == "Pod":
        return ("spec",)
    if kind in ("Deployment", "ReplicaSet", "Job"):
        return ("spec", "template", "spec")
    return None


def list_type(kind: str, names: tuple[str, ...]) -> tuple[str, ...] | str:
    """The merge keys of the list at `names`, "set", or "atomic"."""
    if names in _LISTS:
        return _LISTS[names]
    if kind == "Service" and names in _SERVICE_LISTS:
        return _SERVICE_LISTS[names]
    prefix = _pod_spec_prefix(kind)
    if prefix and names[: len(prefix)] == prefix and names[len(prefix) :] in _POD_LISTS:
        return _POD_LISTS[names[len(prefix) :]]
    return "atomic"


def is_atomic_map(kind: str, names: tuple[str, ...]) -> bool:
    if names in _ATOMIC.get(kind, set()):
        return True
    prefix = _pod_spec_prefix(kind)
    return bool(prefix and names[: len(prefix)] == prefix and names[len(prefix) :] in _POD_ATOMIC)


def _names(path: Path) -> tuple[str, ...]:
    return tuple(p[2:] for p in path if p.startswith("f:"))


def item_key(item: Any, keys: tuple[str, ...]) -> str:
    """`k:{"containerPort":8080,"protocol":"TCP"}` (defaults filled in, keys sorted)."""
    values = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys} if isinstance(item, dict) else {}
    return "k:" + json.dumps(values, sort_keys=True, separators=(",", ":"))


def _set_key(item: Any) -> str:
    return "v:" + json.dumps(item, sort_keys=True, separators=(",", ":"))


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object that field ownership covers: no identity, no status."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    metadata = {k: v for k, v in out.get("metadata", {}).items() if k not in _METADATA_STRIPPED}
    if metadata:
        out["metadata"] = metadata
    else:
        out.pop("metadata", None)
    return out


def field_set(obj: Any, kind: str, path: Path = ()) -> set[Path]:
    """Every path `obj` names (leaves, list items and atomic values)."""
    paths: set[Path] = set()
    if not isinstance(obj, dict):
        return paths
    for key, value in obj.items():
        here = (*path, f"f:{key}")
        names = _names(here)
        if isinstance(value, dict) and value and not is_atomic_map(kind, names):
            paths |= field_set(value, kind, here)
        elif isinstance(value, list) and list_type(kind, names) != "atomic":
            kind_of_list = list_type(kind, names)
            for item in value:
                if kind_of_list == "set":
                    paths.add((*here, _set_key(item)))
                else:
                    item_path = (*here, item_key(item, kind_of_list))  # type: ignore[arg-type]
                    paths.add(item_path)
                    paths |= field_set(item, kind, item_path)
        else:
            paths.add(here)
    return paths


_MISSING = object()


def value_at(obj: Any, path: Path, kind: str) -> Any:
    """The value at `path`, or _MISSING."""
    node = obj
    for i, part in enumerate(path):
        if part.startswith("f:"):
            if not isinstance(node, dict) or part[2:] not in node:
                return _MISSING
            node = node[part[2:]]
        elif part.startswith("k:"):
            keys = list_type(kind, _names(path[:i]))
            if not isinstance(node, list) or not isinstance(keys, tuple):
                return _MISSING
            node = next((it for it in node if item_key(it, keys) == part), _MISSING)
        else:  # v:
            if not isinstance(node, list):
                return _MISSING
            node = next((it for it in node if _set_key(it) == part), _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def _differs(new: Any, old: Any, path: Path, kind: str) -> bool:
    """A leaf differs by value; a list item only by being there or not (its fields are
    paths of their own)."""
    if path[-1].startswith("k:"):
        return (value_at(new, path, kind) is _MISSING) != (value_at(old, path, kind) is _MISSING)
    return value_at(new, path, kind) != value_at(old, path, kind)


def _is_key_field(path: Path) -> bool:
    """A merge key of a list item (`name` in `k:{"name":"x"}`): it goes only with the item."""
    return len(path) > 1 and path[-2].startswith("k:") and path[-1][2:] in json.loads(path[-2][2:])


def remove_path(obj: dict[str, Any], path: Path, kind: str) -> None:
    """Remove the value at `path`, and the maps and lists it leaves empty (the API types omit
    empty ones)."""
    _remove_one(obj, path, kind)
    for depth in range(len(path) - 1, 0, -1):
        parent = value_at(obj, path[:depth], kind)
        if parent in ({}, []) and path[depth - 1].startswith("f:"):
            _remove_one(obj, path[:depth], kind)
        else:
            break


def _remove_one(obj: dict[str, Any], path: Path, kind: str) -> None:
    parent = value_at(obj, path[:-1], kind) if len(path) > 1 else obj
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        keys = list_type(kind, _names(path[:-1]))
        parent[:] = [
            it
            for it in parent
            if (item_key(it, keys) if isinstance(keys, tuple) else _set_key(it)) != last
        ]


def merge(live: Any, applied: Any, kind: str, names: tuple[str, ...] = ()) -> Any:
    """`applied` laid over `live`: maps field by field, keyed lists item by item."""
    if isinstance(live, dict) and isinstance(applied, dict) and not is_atomic_map(kind, names):
        out = copy.deepcopy(live)
        for key, value in applied.items():
            out[key] = merge(live.get(key, _MISSING), value, kind, (*names, key))
        return out
    kind_of_list = list_type(kind, names)
    if isinstance(live, list) and isinstance(applied, list) and kind_of_list != "atomic":

        def key(item: Any) -> str:
            if isinstance(kind_of_list, tuple):
                return item_key(item, kind_of_list)
            return _set_key(item)

        out_list = [copy.deepcopy(it) for it in live]
        positions = {key(it): i for i, it in enumerate(out_list)}
        for item in applied:
            if key(item) in positions:
                index = positions[key(item)]
                out_list[index] = merge(out_list[index], item, kind, names)
            else:
                positions[key(item)] = len(out_list)
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(applied)


def path_text(path: Path) -> str:
    """`.spec.template.spec.containers[name="server"].image`, as conflict messages write it."""
    text = ""
    for part in path:
        if part.startswith("f:"):
            text += "." + part[2:]
        elif part.startswith("k:"):
            keys = json.loads(part[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        else:
            text += "[=" + part[2:] + "]"
    return text


# FieldsV1: the set as a trie


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    paths = set(paths)
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})

    def mark(node: dict[str, Any], prefix: Path) -> None:
        for part, child in node.items():
            here = (*prefix, part)
            if child:
                mark(child, here)
                if here in paths:
                    child["."] = {}

    mark(root, ())
    return _sorted_trie(root)


def _sorted_trie(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted_trie(node[k]) for k in sorted(node, key=lambda k: (k != ".", k))}


def from_fields_v1(trie: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for part, child in trie.items():
        if part == ".":
            paths.add(prefix)
            continue
        here = (*prefix, part)
        if child:
            paths |= from_fields_v1(child, here)
        else:
            paths.add(here)
    return paths


@dataclass
class Entry:
    """One metadata.managedFields entry."""

    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    fields: set[Path]
    subresource: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.fields),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            manager=data.get("manager", ""),
            operation=data.get("operation", "Update"),
            api_version=data.get("apiVersion", ""),
            time=data.get("time", ""),
            fields=from_fields_v1(data.get("fieldsV1", {})),
            subresource=data.get("subresource", ""),
        )

    def who(self) -> str:
        """How conflict messages name the other manager."""
        sub = f' with subresource "{self.subresource}"' if self.subresource else ""
        return f'"{self.manager}"{sub} using {self.api_version}'


@dataclass
class Conflict:
    entry: Entry
    path: Path


class ConflictError(Exception):
    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message())

    def message(self) -> str:
        """`Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`"""
        by_who: dict[str, list[str]] = {}
        for c in self.conflicts:
            by_who.setdefault(c.entry.who(), []).append(path_text(c.path))
        count = len(self.conflicts)
        head = f"Apply failed with {count} conflict{'s' if count > 1 else ''}: "
        parts = []
        for who, fields in by_who.items():
            if len(fields) == 1 and count == 1:
                parts.append(f"conflict with {who}: {fields[0]}")
            else:
                parts.append(f"conflicts with {who}:\n" + "\n".join(f"- {f}" for f in fields))
        return head + "\n".join(parts)

    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {c.entry.who()}",
                "field": path_text(c.path),
            }
            for c in self.conflicts
        ]


def _owned_below(entries: Iterable[Entry], path: Path) -> bool:
    return any(p[: len(path)] == path for e in entries for p in e.fields)


def apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    entries: list[Entry],
    manager: str,
    force: bool,
    kind: str,
    api_version: str,
    now: str,
) -> tuple[dict[str, Any], list[Entry]]:
    """The object after `manager` applies `applied` to `live`, and the new managedFields.

    `live` and the result are stripped (see strip); raises ConflictError."""
    intent = strip(applied)
    new_set = field_set(intent, kind)
    merged = merge(live, intent, kind)
    others = [e for e in entries if not (e.manager == manager and e.operation == "Apply")]
    mine = next((e for e in entries if e.manager == manager and e.operation == "Apply"), None)

    changed = {p for p in new_set if _differs(merged, live, p, kind)}
    conflicts = [
        Conflict(e, p) for e in others if e.manager != manager for p in sorted(changed & e.fields)
    ]
    if conflicts and not force:
        raise ConflictError(conflicts)
    copies = {
        id(e): Entry(e.manager, e.operation, e.api_version, e.time, set(e.fields), e.subresource)
        for e in others
    }
    for c in conflicts:  # force: the ownership moves to the applier
        copies[id(c.entry)].fields.discard(c.path)
    others = list(copies.values())

    if mine is not None:
        # whole items first; a field whose item is gone is gone with it
        for path in sorted(mine.fields - new_set, key=len):
            if _is_key_field(path):
                continue
            still_applied = any(p[: len(path)] == path for p in new_set)
            if not still_applied and not _owned_below(others, path):
                remove_path(merged, path, kind)
    entry = Entry(manager, "Apply", api_version, now, new_set)
    result = list(others)
    result.insert(entries.index(mine) if mine is not None else len(result), entry)
    return merged, [e for e in result if e.fields]


def update(
    before: dict[str, Any] | None,
    after: dict[str, Any],
    entries: list[Entry],
    manager: str,
    kind: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> list[Entry]:
    """The managedFields after a non-apply write by `manager` turned `before` into `after`.

    Both are stripped objects. Changed fields move to `manager`'s Update entry; removed ones
    leave every entry."""
    old_set = field_set(before or {}, kind)
    new_set = field_set(after, kind)
    changed = {p for p in new_set if _differs(after, before or {}, p, kind)}
    removed = old_set - new_set
    result: list[Entry] = []
    mine: Entry | None = None
    for e in entries:
        is_mine = (e.manager, e.operation, e.subresource) == (manager, "Update", subresource)
        if is_mine:
            mine = Entry(
                manager, "Update", api_version, now, (e.fields | changed) - removed, subresource
            )
            result.append(mine)
        else:
            result.append(
                Entry(
                    e.manager,
                    e.operation,
                    e.api_version,
                    e.time,
                    e.fields - changed - removed,
                    e.subresource,
                )
            )
    if mine is None and changed:
        result.append(Entry(manager, "Update", api_version, now, changed, subresource))
    return [e for e in result if e.fields]
