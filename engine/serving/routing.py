"""A fleet's routing table, as data: for every model, the servers holding a copy (by the
URL the router reaches them at), the copy's name there and the rate the packing routed
to it. The router step writes it, each runtime ships it to where its router runs (a file,
a ConfigMap), and the router (router.py) reads it. No server code: plans import this.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

ROUTER_FILE = "router.json"  # a bundle holding this file is a fleet's router's


def routing_table(
    routes: Mapping[str, Sequence[Mapping[str, Any]]], urls: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """The router's table. `routes`: model -> [{server, instance, weight}] (the router
    step's inputs); `urls`: server -> its replicas' URLs, as seen from where the router
    runs (every replica of a server is one more copy of its models)."""
    models: dict[str, list[dict[str, Any]]] = {}
    for model, copies in sorted(routes.items()):
        for copy in copies:
            models.setdefault(model, []).extend(
                {"url": url, "instance": copy["instance"], "weight": copy["weight"]}
                for url in urls[copy["server"]]
            )
    return {"models": models}


def table_text(table: Mapping[str, Any]) -> str:
    """The table as its file holds it: one text per table, so its digest names it;
    compact, since a ConfigMap holds at most 1 MiB (some 10,000 copies)."""
    return json.dumps(table, sort_keys=True, separators=(",", ":"))


def table_digest(text: str) -> str:
    """What names a table's bundle: the same table, the same router replica."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
