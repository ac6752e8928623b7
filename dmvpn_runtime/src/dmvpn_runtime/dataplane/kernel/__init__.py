"""The kernel data plane: a multipoint ip_gre link driven over netlink.

``plane`` has the data plane and, in its docstring, how it works (docs/dataplane-kernel.md
has the long form); it says where the other modules come in.

The package exports the plane, the availability probe ``dataplane.create`` asks, the
nftables table functions and the NFLOG prefixes; the netlink messages and protocol
numbers live in ``messages``, the sockets in ``sockets``.
"""

from __future__ import annotations

from .availability import available, unavailable_reason
from .nftables import (
    PREFIX_HAIRPIN,
    PREFIX_MULTICAST,
    nft_delete_table,
    nft_ruleset,
    nft_table_exists,
    read_set_counters,
    table_name,
)
from .plane import KernelDataPlane
from .udp_checksum import complete_checksum

__all__ = [
    "PREFIX_HAIRPIN",
    "PREFIX_MULTICAST",
    "KernelDataPlane",
    "available",
    "complete_checksum",
    "nft_delete_table",
    "nft_ruleset",
    "nft_table_exists",
    "read_set_counters",
    "table_name",
    "unavailable_reason",
]
