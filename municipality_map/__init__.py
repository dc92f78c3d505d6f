"""Routing data for nodrute: which centre answers 113 / 116117 for each municipality.

Knows municipalities, centres and routing tables; nothing of SIP. The usual entry points::

    snapshot = load_snapshot(default_table_dir())
    found = snapshot.lookup("0301", Service.AMK)   # RouteLookup or None
    found.plan                                     # DestinationPlan: centre, backups, overflow
"""

from municipality_map.loader import TableError
from municipality_map.model import (
    Centre,
    Destination,
    DestinationPlan,
    DestinationRole,
    RouteLookup,
    Service,
)
from municipality_map.snapshot import RoutingSnapshot, default_table_dir, load_snapshot

__all__ = [
    "Centre",
    "Destination",
    "DestinationPlan",
    "DestinationRole",
    "RouteLookup",
    "RoutingSnapshot",
    "Service",
    "TableError",
    "default_table_dir",
    "load_snapshot",
]
