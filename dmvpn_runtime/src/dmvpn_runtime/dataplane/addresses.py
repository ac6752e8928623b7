"""The overlay addresses on the tunnel device, put there the same way by both data planes.

Every ``config.overlay`` address goes on the device (the mGRE link or the TAP device)
with its prefix length, IPv6 ones without duplicate address detection: nobody else on
the tunnel answers for them.
"""

from __future__ import annotations

from pyroute2 import IPRoute

from .base import DataPlaneConfig

IFA_F_NODAD = 0x02


def add_overlay_addresses(ipr: IPRoute, index: int, config: DataPlaneConfig) -> None:
    for iface in config.overlay:
        ipr.addr(
            "add",
            index=index,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            flags=IFA_F_NODAD if iface.version == 6 else 0,
        )
