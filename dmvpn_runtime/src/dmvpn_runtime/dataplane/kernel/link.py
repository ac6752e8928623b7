"""The GRE link's kernel state: creating and configuring it, and removing a stale one.

The link is made and set up once per ``open`` through rtnetlink (pyroute2, and our own
request socket for the neighbour-table parameters) and ``/proc/sys``; ``cleanup_stale``
removes a link a crashed instance left, but only one our alias marks. These are
control-path calls. The mappings (neighbour entries) and the routes the plane is asked
for stay in the plane, next to the state it keeps of them.
"""

from __future__ import annotations

import errno
import logging
import socket
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..addresses import add_overlay_addresses
from ..base import (
    ROUTE_PROTO,
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneUnavailable,
    StaleStateError,
)
from ..netlink import RequestSocket
from .messages import GRE_FLAG_KEY, neigh_table_request

log = logging.getLogger(__name__)

# Written to IFLA_IFALIAS so cleanup_stale() only ever deletes a device we made (the
# userspace data plane writes "flexmesh-dmvpn userspace"; both are ours).
ALIAS = "flexmesh-dmvpn kernel"
ALIAS_PREFIX = "flexmesh-dmvpn"
TTL = 64

IFF_UP = 0x1
IFF_NOARP = 0x80
IFF_MULTICAST = 0x1000
RTN_MULTICAST = 5
RT_TABLE_LOCAL = 255


def add_gre_link(ipr: IPRoute, config: DataPlaneConfig, local: IPv4Address) -> None:
    """Create the multipoint GRE link: ``local``, no remote, ``ttl 64``, the key."""
    gre: dict[str, object] = {"gre_local": str(local), "gre_ttl": TTL}
    if config.key is not None:
        gre.update(
            gre_ikey=config.key,
            gre_okey=config.key,
            gre_iflags=GRE_FLAG_KEY,
            gre_oflags=GRE_FLAG_KEY,
        )
    try:
        ipr.link("add", ifname=config.tunnel, kind="gre", **gre)
    except NetlinkError as exc:
        if exc.code in (errno.EOPNOTSUPP, errno.EAFNOSUPPORT):
            raise DataPlaneUnavailable(
                f"kernel data plane unavailable: cannot create GRE link {config.tunnel}: {exc}"
            ) from exc
        raise DataPlaneError(f"create GRE link {config.tunnel}: {exc}") from exc


def configure_link(
    ipr: IPRoute, rtnl: RequestSocket, ifindex: int, config: DataPlaneConfig
) -> None:
    """Alias, MTU, sysctls, resolution by us, flags, overlay addresses of a new link."""
    try:
        ipr.link("set", index=ifindex, ifalias=ALIAS, mtu=config.effective_mtu)
        _tune_sysctls(config.tunnel)
        for family in (socket.AF_INET, socket.AF_INET6):
            rtnl.request(neigh_table_request(family, ifindex, rtnl.next_seq()))
        # NOARP off: next hops without an entry are resolved (by us), see the plane's doc.
        ipr.link(
            "set",
            index=ifindex,
            flags=IFF_UP | IFF_MULTICAST,
            change=IFF_UP | IFF_MULTICAST | IFF_NOARP,
        )
        add_overlay_addresses(ipr, ifindex, config)
        if any(iface.version == 6 for iface in config.overlay):
            # addrconf gives a non-point-to-point GRE link no ff00::/8 route; IPv6
            # multicast needs one to leave (and be replicated) through the tunnel.
            ipr.route(
                "replace",
                dst="ff00::/8",
                oif=ifindex,
                table=RT_TABLE_LOCAL,
                type=RTN_MULTICAST,
                proto=ROUTE_PROTO,
            )
    except (NetlinkError, OSError) as exc:
        raise DataPlaneError(f"configure link {config.tunnel}: {exc}") from exc


def _tune_sysctls(tunnel: str) -> None:
    # A hub forwards spoke-to-spoke traffic out of the interface it came in by: no
    # ICMP redirects (NHRP redirects replace them), and none accepted. The kernel
    # ORs some of these with conf/all; our nftables table drops redirects for good.
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{tunnel}/send_redirects", "0")
    _write_sysctl(f"/proc/sys/net/ipv4/conf/{tunnel}/accept_redirects", "0")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{tunnel}/accept_redirects", "0")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{tunnel}/accept_ra", "0")
    _write_sysctl(f"/proc/sys/net/ipv6/conf/{tunnel}/dad_transmits", "0")


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:  # IPv6 disabled on the host, read-only /proc/sys
        log.debug("sysctl %s=%s: %s", path, value, exc)


def delete_stale_link(ipr: IPRoute, tunnel: str) -> list[str]:
    """Delete link ``tunnel`` if our alias marks it (what was removed); raise
    StaleStateError if a link of that name is someone else's."""
    removed: list[str] = []
    for link in ipr.get_links(ifname=tunnel):
        alias = link.get_attr("IFLA_IFALIAS") or ""
        info = link.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else "?"
        if not alias.startswith(ALIAS_PREFIX):
            raise StaleStateError(
                f"link {tunnel} ({kind}) exists and is not ours (alias {alias!r});"
                " remove it or choose another tunnel name"
            )
        ipr.link("del", index=link["index"])
        removed.append(f"link {tunnel} ({kind}, {alias})")
    return removed
