"""The TAP device's kernel state, set through rtnetlink (pyroute2) and /proc/sys.

Link settings, addresses and sysctls when the plane opens, the routes it is asked for,
and the removal of a device a crashed instance left behind. These are control-path
calls, a few per event. The mappings (neighbour entries) are not here: a hub adds
thousands, so they go through the raw rtnetlink socket of ``..neighbours``.
"""

from __future__ import annotations

import logging
import socket

from pyroute2 import IPRoute

from ..addresses import add_overlay_addresses
from ..base import ROUTE_PROTO, DataPlaneConfig, Network, StaleStateError
from .tap import DEVICE_MAC, mac_text

log = logging.getLogger(__name__)

# Written to IFLA_IFALIAS so cleanup_stale() only ever deletes a device we made.
ALIAS = "flexmesh-dmvpn userspace"
RTNH_F_ONLINK = 0x04
TXQLEN = 1000


def configure_device(ipr: IPRoute, index: int, config: DataPlaneConfig) -> None:
    """Sysctls, MAC, MTU, alias and the overlay addresses of a freshly created device."""
    has6 = any(i.version == 6 for i in config.overlay)
    tunnel = config.tunnel
    # No DAD (nobody on this link answers), no router solicitations, no redirects:
    # NHRP, not ICMP, tells spokes about better next hops (Cisco: no ip redirects).
    _sysctl(tunnel, "ipv4", "send_redirects", "0")
    _sysctl(tunnel, "ipv4", "accept_redirects", "0")
    if has6:
        _sysctl(tunnel, "ipv6", "accept_dad", "0")
        _sysctl(tunnel, "ipv6", "router_solicitations", "0")
        _sysctl(tunnel, "ipv6", "accept_redirects", "0")
    else:
        _sysctl(tunnel, "ipv6", "disable_ipv6", "1")
    ipr.link(
        "set",
        index=index,
        address=mac_text(DEVICE_MAC),
        mtu=config.effective_mtu,
        txqlen=TXQLEN,
        ifalias=ALIAS,
    )
    ipr.link("set", index=index, state="up")
    add_overlay_addresses(ipr, index, config)


def _sysctl(tunnel: str, family: str, name: str, value: str) -> None:
    path = f"/proc/sys/net/{family}/conf/{tunnel}/{name}"
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:  # IPv6 disabled on the host, read-only /proc/sys
        log.warning("cannot set %s: %s", path, exc)


def delete_if_ours(ipr: IPRoute, name: str) -> list[str]:
    """Delete device ``name`` if our alias marks it; raise StaleStateError if not."""
    (link,) = ipr.get_links(ifname=name)
    alias = link.get("IFLA_IFALIAS")
    if alias != ALIAS:
        raise StaleStateError(
            f"interface {name} exists but is not ours (alias {alias!r}); not touching it"
        )
    # Routes and neighbour entries through the device go with it.
    ipr.link("del", index=link["index"])
    log.info("removed stale interface %s", name)
    return [f"link {name}"]


def route_keys(net: Network, ifindex: int, table: int | None) -> dict[str, object]:
    """What identifies our route to ``net`` through device ``ifindex``, in ``table``."""
    keys: dict[str, object] = {
        "dst": str(net.network_address),
        "dst_len": net.prefixlen,
        "oif": ifindex,
        "proto": ROUTE_PROTO,
        # The next hop need not be inside a connected overlay prefix (/32 overlays).
        "flags": RTNH_F_ONLINK,
        "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
    }
    if table is not None:
        keys["table"] = table
    return keys
