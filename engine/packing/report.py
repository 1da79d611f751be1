"""What a packing costs, per node type: the rows a plan shows (text, markdown, json).

Utilisation is of what the devices hold: memory used over device memory, and cores used
over cores (the copies' load, each its rate over its profile's rate per core); the cost
per million requests is the cost per hour over the requests an hour of the demand makes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.packing.fleet import Fleet, Packing


@dataclass(frozen=True)
class TypeRow:
    """The nodes of one type in a packing."""

    type: str
    nodes: int
    devices: int
    copies: int
    memory_utilization: float  # 0..1
    core_utilization: float  # 0..1
    cost_per_hour: float
    requests_per_s: float

    @property
    def cost_per_million(self) -> float | None:
        return _per_million(self.cost_per_hour, self.requests_per_s)


@dataclass(frozen=True)
class Summary:
    server: str
    rows: tuple[TypeRow, ...]
    cost_per_hour: float
    lower_bound_per_hour: float
    requests_per_s: float

    @property
    def cost_per_million(self) -> float | None:
        return _per_million(self.cost_per_hour, self.requests_per_s)

    @property
    def over_bound(self) -> float:
        """How far the cost is above the bound, as a fraction of the bound."""
        if self.lower_bound_per_hour <= 0:
            return 0.0
        return self.cost_per_hour / self.lower_bound_per_hour - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "node_types": [asdict(r) for r in self.rows],
            "cost_per_hour": self.cost_per_hour,
            "lower_bound_per_hour": self.lower_bound_per_hour,
            "requests_per_s": self.requests_per_s,
            "cost_per_million_requests": self.cost_per_million,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            data["server"],
            tuple(TypeRow(**r) for r in data["node_types"]),
            data["cost_per_hour"],
            data["lower_bound_per_hour"],
            data["requests_per_s"],
        )


def _per_million(cost_per_hour: float, requests_per_s: float) -> float | None:
    if requests_per_s <= 0:
        return None
    return cost_per_hour / (requests_per_s * 3600) * 1e6


def summarize(server: str, fleet: Fleet, packing: Packing) -> Summary:
    """The packing of one server, per node type (the costliest first)."""
    profiles = {d.model: d.profiles for d in fleet.demands}
    by_type: dict[str, list[Any]] = {}
    for node in packing.nodes:
        by_type.setdefault(node.type.name, []).append(node)
    rows = []
    for name, nodes in by_type.items():
        t = nodes[0].type
        devices = [d for n in nodes for d in n.devices]
        memory = load = rate = 0.0
        copies = 0
        for device in devices:
            for c in device.copies:
                profile = profiles[c.model][t.processor]
                memory += profile.memory_mib
                load += c.rate / profile.rate_per_core
                rate += c.rate
                copies += 1
        rows.append(
            TypeRow(
                name,
                len(nodes),
                len(devices),
                copies,
                memory / (len(devices) * t.memory_per_device_mib),
                load / (len(devices) * t.cores_per_device),
                len(nodes) * t.price_per_hour,
                rate,
            )
        )
    rows.sort(key=lambda r: (-r.cost_per_hour, r.type))
    return Summary(
        server,
        tuple(rows),
        packing.cost_per_hour,
        packing.lower_bound_per_hour,
        sum(d.rate for d in fleet.demands),
    )


def text_lines(summary: Summary, markdown: bool = False) -> list[str]:
    """The bill as a table: a header line, one row per node type, and the total."""
    per_million = summary.cost_per_million
    head = (
        f"packing of {summary.server}: ${summary.cost_per_hour:,.2f}/h for "
        f"{summary.requests_per_s:,.1f} requests/s"
        + (f" (${per_million:,.4f} per million requests)" if per_million is not None else "")
        + f"; lower bound ${summary.lower_bound_per_hour:,.2f}/h"
        + f" (+{summary.over_bound:.1%})"
    )
    columns = ("node type", "nodes", "devices", "copies", "memory", "cores", "$/h", "$/M req")
    rows = [
        (
            r.type,
            str(r.nodes),
            str(r.devices),
            str(r.copies),
            f"{r.memory_utilization:.0%}",
            f"{r.core_utilization:.0%}",
            f"{r.cost_per_hour:,.2f}",
            f"{r.cost_per_million:,.4f}" if r.cost_per_million is not None else "-",
        )
        for r in summary.rows
    ]
    if markdown:
        return [
            f"**{head}**",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    widths = [max(len(x) for x in column) for column in zip(columns, *rows, strict=True)]
    lines = [head]
    for row in (columns, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  " + "  ".join(cells))
    return lines
