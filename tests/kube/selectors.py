"""Label and field selectors as the Kubernetes API parses them.

Label selectors (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/):
requirements separated by commas are ANDed; each is one of `key=value`, `key==value`,
`key!=value`, `key in (a,b)`, `key notin (a,b)`, `key` (exists) or `!key` (does not exist).
`key!=value` and `notin` also match objects that do not carry the key at all.

Field selectors support `=`, `==` and `!=` on the field labels each kind has (`metadata.name`
and `metadata.namespace` everywhere; `involvedObject.name` on events, `status.phase` on pods),
comma = AND; a missing field compares as "".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


class SelectorError(ValueError):
    """A selector the API server would reject with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside a `( ... )` value set."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """The requirements of a `labelSelector` query parameter (empty = everything)."""
    requirements = []
    for part in _split_top_level(text or ""):
        if match := _SET.match(part):
            values = tuple(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQ.match(part):
            op = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), op, (match.group(3),)))
        elif match := _EXISTS.match(part):
            requirements.append(Requirement(match.group(2), "!" if match.group(1) else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
    return requirements


def label_matcher(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    requirements = parse_label_selector(text)
    return lambda labels: all(r.matches(labels) for r in requirements)


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# the field labels each kind answers to (the API server refuses others with 400)
_FIELD_LABELS = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
    "jobs": {"status.successful"},
    "namespaces": {"status.phase"},
    "services": {"spec.clusterIP", "spec.type"},
    "replicasets": {"status.replicas"},
}


def field_matcher(text: str | None, plural: str = "") -> Callable[[Mapping[str, Any]], bool]:
    """A matcher for a `fieldSelector` query parameter on `plural` objects."""
    allowed = {"metadata.name", "metadata.namespace", *_FIELD_LABELS.get(plural, set())}
    checks: list[tuple[str, bool, str]] = []
    for part in _split_top_level(text or ""):
        match = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise SelectorError(f"invalid selector: {part.strip()!r}")
        if match.group(1) not in allowed:
            raise SelectorError(f"field label not supported: {match.group(1)}")
        checks.append((match.group(1), match.group(2) != "!=", match.group(3)))
    return lambda obj: all((_field(obj, path) == value) == equal for path, equal, value in checks)
