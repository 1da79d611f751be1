"""Fingerprints: a step's identity is the hash of what it is made from.

A fingerprint covers a step's canonical inputs and the fingerprints of the steps it
needs, so a change anywhere upstream reaches everything downstream, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(inputs: Mapping[str, Any], upstream: Mapping[str, str]) -> str:
    payload = canonical_json({"inputs": inputs, "upstream": upstream})
    return hashlib.sha256(payload.encode()).hexdigest()


def diff_inputs(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two input documents, one line per leaf."""
    lines: list[str] = []
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        if key not in old:
            lines.append(f"{path}: (none) -> {show_value(new[key])}")
        elif key not in new:
            lines.append(f"{path}: {show_value(old[key])} -> (none)")
        elif isinstance(old[key], Mapping) and isinstance(new[key], Mapping):
            lines.extend(diff_inputs(old[key], new[key], f"{path}."))
        elif old[key] != new[key]:
            lines.append(f"{path}: {show_value(old[key])} -> {show_value(new[key])}")
    return lines


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """Top-level input keys whose values differ."""
    return {k for k in set(old) | set(new) if old.get(k) != new.get(k)}


def show_value(value: Any) -> str:
    """A value short enough for one line; a long list of lists (a scenario's corpus of
    texts) as its length and digest, since its first characters rarely show what changed."""
    text = canonical_json(value)
    if len(text) <= 60:
        return text
    if isinstance(value, list) and all(isinstance(item, list) for item in value):
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"({len(value)} texts, sha256 {digest})"
    return text[:57] + "..."
