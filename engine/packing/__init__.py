"""Fleet packing: choose node types, node counts and the copies each device loads.

pack(fleet) -> Packing           the cheapest packing found, with its LP lower bound
repack(fleet, previous) -> ...   the same, moving as few copies as it can
"""

from engine.packing.catalog import BUILTIN, NodeType, catalog
from engine.packing.fleet import (
    Copy,
    Demand,
    Device,
    Fleet,
    Node,
    Packing,
    PackingError,
    Profile,
)
from engine.packing.solver import pack

__all__ = [
    "BUILTIN",
    "Copy",
    "Demand",
    "Device",
    "Fleet",
    "Node",
    "NodeType",
    "Packing",
    "PackingError",
    "Profile",
    "catalog",
    "pack",
]
