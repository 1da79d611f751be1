"""Fingerprints: a step's identity is the hash of what it is made from.

A fingerprint covers a step's canonical inputs and the fingerprints of the steps it
needs, so a change anywhere upstream reaches everything downstream, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from engine.canonical import canonical_json

__all__ = ["canonical_json", "diff_inputs", "fingerprint"]

_encode_string = json.encoder.encode_basestring  # what canonical_json does to a str (C)


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
    text = _scalar_json(value)
    if text is None:
        text = canonical_json(value)
    if len(text) <= 60:
        return text
    if isinstance(value, list) and all(isinstance(item, list) for item in value):
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"({len(value)} texts, sha256 {digest})"
    return text[:57] + "..."


def _scalar_json(value: Any) -> str | None:
    """canonical_json of a scalar without json.dumps' set-up (a plan of thousands of steps
    shows tens of thousands of them); None for anything else."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    if isinstance(value, str):
        return _encode_string(value)
    return None
