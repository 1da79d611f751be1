"""One spelling per JSON value: what fingerprints and digests hash (the spec, the graph and
the reports all hash the same way, so this sits below them all)."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
