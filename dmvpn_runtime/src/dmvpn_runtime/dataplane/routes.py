"""The kernel's routes through the tunnel, for the engine's NHS.

RFC 2332 §5.2.1: an NHS forwards a Resolution Request along the routed path toward its
destination. Cisco and FRR spokes register only their own overlay address; the hub
knows their LANs from routing (static routes, or BGP and OSPF through FRR), as a route
out of the tunnel via the spoke's overlay address. dmvpnd hands these routes to
``Engine.routes_changed`` so that the hub forwards a resolution for such a LAN to that
spoke, which answers with its prefix.

``RouteWatcher`` keeps the main table's routes out of one device that have a next hop.
It reads them all (a dump the kernel filters by device and table) when it opens, and
again after a change notice (``RTMGRP_IPV4_ROUTE``, ``RTMGRP_IPV6_ROUTE``) that may
concern them, and reports the difference. Reading the device's table, rather than
applying each notice, keeps the rules simple where the kernel is subtle (a replaced
route moving to another device, several metrics for one prefix); reading only on a
notice that may concern it keeps a large table elsewhere (a full Internet table on the
WAN) from costing anything. Our own shortcut routes (``base.ROUTE_PROTO``) are left out:
they come from NHRP.

A multipath route (ECMP, as a dual-homed site learned over BGP or OSPF) counts when one
or more of its next hops go through the device; of those the watcher reports the lowest
address, so the choice stays put while the set of next hops does (the engine purges a
prefix's resolvers whenever its next hop changes).
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from .base import Address, Network
from .netlink import (
    NETLINK_ROUTE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    SO_RCVBUFFORCE,
    SOCKET_BUFFER,
    RequestSocket,
    align,
    attribute,
    attributes,
    message,
    messages,
)

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12  # dump requests carry filters the kernel applies
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
# struct rtnexthop of an RTA_MULTIPATH: length, flags, hops, ifindex; then attributes
RTNEXTHOP = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")
_FAMILIES = {
    socket.AF_INET: (IPv4Address, IPv4Network, 4),
    socket.AF_INET6: (IPv6Address, IPv6Network, 16),
}


@dataclass(frozen=True, slots=True)
class Route:
    prefix: Network
    via: Address
    metric: int


@dataclass(frozen=True, slots=True)
class RouteMessage:
    """What the watcher needs of one RTM_NEWROUTE or RTM_DELROUTE message."""

    kind: int
    prefix: Network | None  # None: malformed (host bits set, bad lengths)
    table: int
    protocol: int
    unicast: bool
    oif: int
    gateway: Address | None
    metric: int
    multipath: bool
    # of a multipath route: (device index, gateway) of each next hop; the gateway is None
    # without an RTA_GATEWAY of the route's family (none, or RTA_VIA of another family)
    nexthops: tuple[tuple[int, Address | None], ...] = ()


def route_messages(buf: bytes) -> Iterable[RouteMessage]:
    """The route messages of IPv4 and IPv6 in a netlink read (a dump or notices)."""
    for kind, _flags, _seq, start, end in messages(buf):
        if kind not in (RTM_NEWROUTE, RTM_DELROUTE) or end - start < RTMSG.size:
            continue
        family, dst_len, _src, _tos, table, protocol, _scope, rtype, _rflags = RTMSG.unpack_from(
            buf, start
        )
        shape = _FAMILIES.get(family)
        if shape is None:
            continue
        address, network, size = shape
        dst, gateway, oif, metric = bytes(size), None, 0, 0
        multipath = False
        nexthops: tuple[tuple[int, Address | None], ...] = ()
        for attr, value in attributes(buf, start + RTMSG.size, end):
            if attr == RTA_DST and len(value) == size:
                dst = value
            elif attr == RTA_GATEWAY and len(value) == size:
                gateway = address(value)
            elif attr == RTA_OIF and len(value) == 4:
                oif = _U32.unpack(value)[0]
            elif attr == RTA_PRIORITY and len(value) == 4:
                metric = _U32.unpack(value)[0]
            elif attr == RTA_TABLE and len(value) == 4:
                table = _U32.unpack(value)[0]
            elif attr == RTA_MULTIPATH:
                multipath, nexthops = True, multipath_nexthops(value, address, size)
        try:
            prefix: Network | None = network((int.from_bytes(dst, "big"), dst_len))
        except ValueError:  # host bits set: not a route the kernel would hold
            prefix = None
        yield RouteMessage(
            kind,
            prefix,
            table,
            protocol,
            rtype == RTN_UNICAST,
            oif,
            gateway,
            metric,
            multipath,
            nexthops,
        )


def multipath_nexthops(
    value: bytes, address: type[Address], size: int
) -> tuple[tuple[int, Address | None], ...]:
    """(device index, gateway) of each next hop in an RTA_MULTIPATH payload; the gateway
    is None unless an RTA_GATEWAY of ``size`` octets names it. A malformed entry ends the
    list (its length cannot be trusted to find the next); a malformed attribute inside
    one is skipped."""
    found: list[tuple[int, Address | None]] = []
    pos = 0
    while pos + RTNEXTHOP.size <= len(value):
        length, _flags, _hops, ifindex = RTNEXTHOP.unpack_from(value, pos)
        if length < RTNEXTHOP.size or pos + length > len(value):
            break
        gateway = None
        for attr, payload in attributes(value, pos + RTNEXTHOP.size, pos + length):
            if attr == RTA_GATEWAY and len(payload) == size:
                gateway = address(payload)
        found.append((ifindex, gateway))
        pos += align(length)
    return tuple(found)


def parse_routes(buf: bytes, ifindex: int, ignore_protocol: int) -> Iterable[Route]:
    """Unicast routes of the main table out of ``ifindex`` with a next hop, in a netlink
    read (a dump's messages); routes of protocol ``ignore_protocol`` are skipped."""
    for m in route_messages(buf):
        if (
            m.kind == RTM_NEWROUTE
            and m.unicast
            and m.prefix is not None
            and m.table == RT_TABLE_MAIN
            and m.protocol != ignore_protocol
        ):
            via = next_hop_through(m, ifindex)
            if via is not None:
                yield Route(m.prefix, via, m.metric)


def next_hop_through(m: RouteMessage, ifindex: int) -> Address | None:
    """The route's next hop out of ``ifindex``, None when it has none there. Of a
    multipath route's next hops through the device, the lowest address: a choice that
    holds while that set does, whatever order the kernel lists them in."""
    if m.multipath:
        through = [via for oif, via in m.nexthops if oif == ifindex and via is not None]
        return min(through, default=None)
    return m.gateway if m.oif == ifindex else None


def route_dump_request(seq: int, ifindex: int | None = None) -> bytes:
    """RTM_GETROUTE dump of every family's routes; with ``ifindex``, of the main table's
    routes out of that device only (filtered by the kernel: a socket with
    NETLINK_GET_STRICT_CHK, Linux 4.20 and later)."""
    body = RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)
    if ifindex is not None:
        body += attribute(RTA_OIF, _U32.pack(ifindex))
        body += attribute(RTA_TABLE, _U32.pack(RT_TABLE_MAIN))
    return message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def best_routes(routes: Iterable[Route]) -> dict[Network, Address]:
    """Prefix -> next hop of the route with the lowest metric (the one the kernel uses)."""
    best: dict[Network, Route] = {}
    for route in routes:
        held = best.get(route.prefix)
        if held is None or route.metric < held.metric:
            best[route.prefix] = route
    return {prefix: route.via for prefix, route in best.items()}


class RouteWatcher:
    """The routes through one device, and what changed in them since the last read."""

    def __init__(self, ifname: str, ignore_protocol: int) -> None:
        self.ifname = ifname
        self.ignore_protocol = ignore_protocol
        self.routes: dict[Network, Address] = {}
        self._ifindex = 0
        self._events: socket.socket | None = None
        self._dump: RequestSocket | None = None
        self._strict = False  # the kernel filters our dumps

    def open(self) -> int:
        """Subscribe to route changes; returns the descriptor to watch for them."""
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
        sock.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        sock.setblocking(False)
        self._events = sock
        self._dump = RequestSocket(NETLINK_ROUTE)
        try:
            self._dump.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            self._strict = True
        except OSError:  # an older kernel: dump everything and filter here
            self._strict = False
        return sock.fileno()

    def close(self) -> None:
        for sock in (self._events, self._dump):
            if sock is not None:
                sock.close()
        self._events = self._dump = None

    def drain(self) -> bool:
        """Read the pending change notices; True when one may concern the device's
        routes (read the table again). A hub that also carries a large routing table
        elsewhere reads ours only when ours may have changed."""
        relevant = False
        while self._events is not None:
            try:
                buf = self._events.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: notices were lost, which a full read repairs
                return True
            relevant = relevant or any(self._concerns_us(m) for m in route_messages(buf))
        return relevant

    def _concerns_us(self, m: RouteMessage) -> bool:
        # A route of ours replaced by one through another device comes as a new route
        # of that device only: a prefix we hold counts whatever the device. A multipath
        # route counts when one of its next hops uses the device (ECMP elsewhere, two
        # WAN uplinks carrying a full table, causes no read).
        return m.table == RT_TABLE_MAIN and (
            m.oif == self._ifindex
            or any(oif == self._ifindex for oif, _via in m.nexthops)
            or m.prefix in self.routes
        )

    def read(self) -> tuple[list[tuple[Network, Address]], list[Network]]:
        """Read the table again: the routes added or changed (prefix, next hop) and the
        prefixes gone, since the last read. OSError when the kernel cannot be read."""
        if self._dump is None:
            raise OSError("route watcher is not open")
        self._ifindex = socket.if_nametoindex(self.ifname)
        try:
            found = self._dump_routes()
        except OSError:
            if not self._strict:
                raise
            self._strict = False  # the kernel refused the filter: filter here
            found = self._dump_routes()
        now = best_routes(found)
        added = [(p, via) for p, via in now.items() if self.routes.get(p) != via]
        removed = [p for p in self.routes if p not in now]
        self.routes = now
        return added, removed

    def _dump_routes(self) -> list[Route]:
        assert self._dump is not None
        request = route_dump_request(self._dump.next_seq(), self._ifindex if self._strict else None)
        found: list[Route] = []
        for buf in self._dump.dump(request):
            found.extend(parse_routes(buf, self._ifindex, self.ignore_protocol))
        return found

    @property
    def kernel_filtered(self) -> bool:
        """The kernel filters the dumps (only this device's main-table routes come)."""
        return self._strict
