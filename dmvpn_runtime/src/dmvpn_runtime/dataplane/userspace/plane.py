"""The userspace data plane: a TAP device + GRE over raw IP sockets.

Theory of operation
-------------------
The overlay addresses live on a TAP device (Ethernet framing). Every mapping
``overlay -> NBMA`` becomes a permanent neighbour entry ``overlay lladdr <peer MAC>``,
one locally administered MAC per NBMA peer. The kernel routes as it always does
(connected overlay prefix, shortcut routes, policy rules, ECMP) and resolves the
chosen next hop through that neighbour table, so the destination MAC of a frame read
from the device *is* the kernel's choice of next hop, already mapped: the data plane
only looks the MAC up and sends the IP payload in GRE to that peer's NBMA address.

A next hop without a mapping shows up as an ARP request (IPv4) or a Neighbour
Solicitation (IPv6) on the device: we answer nothing and tell the sink
``no_mapping(next_hop)``; the kernel keeps the packets queued for ~3 s and sends
them once ``add_mapping`` installs the entry. Other broadcast and multicast frames
are replicated to the multicast targets.

Received GRE is checked (version, flags, key), NHRP (0x2001) goes to the sink as
bytes, IPv4/IPv6 is written to the device behind an Ethernet header.

Per-packet work is kept to one read and one send: frames are read into one
preallocated buffer and the GRE header is written over the tail of the Ethernet
header in place (GRE with key is 8 bytes, Ethernet 14), and received packets get
their Ethernet header written over the outer header they no longer need.

Where things are
----------------
This module holds the plane itself: opening and closing, the event-loop entry points,
the control calls (mappings, routes, multicast targets, NHRP out) and the counters.
The per-packet paths are ``encapsulation`` (device -> GRE, group frames, hairpin and
no-mapping notices) and ``decapsulation`` (GRE -> device or sink); ``peers`` is the
table both look peers up in; ``netlink`` sets the device's kernel state and our routes;
``gre_socket`` opens the raw sockets, ``tap`` the device, ``gre`` frames and parses.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..base import (
    Address,
    DataPlane,
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneSink,
    DataPlaneStats,
    Drop,
    Network,
    PeerCounters,
    Role,
    StaleStateError,
    as_address,
    as_network,
)
from ..neighbours import NeighbourTable
from . import gre, netlink
from .decapsulation import Decapsulator
from .encapsulation import Encapsulator
from .gre_socket import open_gre_socket
from .peers import Peer, PeerTable
from .tap import open_tap

log = logging.getLogger(__name__)

# Counted by both per-packet paths into one dict; stats() lists them in this order.
EVENTS = (
    "nhrp_in",
    "nhrp_out",
    "arp_requests",
    "neighbour_solicitations",
    "link_local_control",
    "redirects_suppressed",
    "no_mapping_notices",
    "hairpin_notices",
    "multicast_frames",
    "multicast_copies",
    "rx_unmapped_packets",
    "rx_unmapped_bytes",
    "rx_over_mtu",
)


class UserspaceDataPlane(DataPlane):
    """TAP + GRE over raw sockets; see the module docstring."""

    kind = "userspace"

    def __init__(self, config: DataPlaneConfig, sink: DataPlaneSink) -> None:
        super().__init__(config, sink)
        self._ipr: IPRoute | None = None
        self._tap = -1
        self._created = False  # only a device we created may be deleted by close()
        self._ifindex = 0
        self._neigh: NeighbourTable | None = None  # raw rtnetlink: mappings are the hot path
        self._socks: dict[int, socket.socket] = {}
        self._handlers: dict[int, Callable[[float], None]] = {}  # called with the time
        self._peers = PeerTable()
        self._routes: set[Network] = set()
        self._drops = {d.value: 0 for d in Drop}
        self._events: dict[str, int] = dict.fromkeys(EVENTS, 0)
        self._key = config.key
        self._encap = Encapsulator(config, sink, self._peers, self._drops, self._events)
        recent = self._encap.recent if config.role is Role.HUB else None
        self._decap = Decapsulator(
            config, sink, self._peers, self._socks, recent, self._drops, self._events
        )
        self._now = time.monotonic()
        self._next_traffic = self._now + config.traffic_interval

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        if self._tap >= 0:
            return
        cfg = self.config
        try:
            self._ipr = IPRoute()
            if self._ipr.link_lookup(ifname=cfg.tunnel):
                raise StaleStateError(
                    f"interface {cfg.tunnel} exists: another instance runs, or call"
                    " cleanup_stale() to remove what a crashed one left"
                )
            self._tap = open_tap(cfg.tunnel)
            self._encap.device = self._decap.device = self._tap
            self._created = True
            self._ifindex = self._ipr.link_lookup(ifname=cfg.tunnel)[0]
            self._neigh = NeighbourTable(self._ifindex)
            netlink.configure_device(self._ipr, self._ifindex, cfg)
            for address in cfg.local_nbma:
                self._open_socket(address)
            self._decap.resolve_protected()
        except DataPlaneError:
            self.close()
            raise
        except (OSError, NetlinkError) as exc:
            self.close()
            raise DataPlaneError(f"cannot open userspace data plane {cfg.tunnel}: {exc}") from exc
        self._handlers[self._tap] = self._encap.on_device
        log.info(
            "userspace data plane %s up: mtu %d, key %s, nbma %s",
            cfg.tunnel,
            cfg.effective_mtu,
            cfg.key,
            ", ".join(map(str, cfg.local_nbma)),
        )

    def _open_socket(self, address: Address) -> None:
        sock = open_gre_socket(address, pktinfo=bool(self.config.protected_ifname))
        self._socks[address.version] = sock
        receive = self._decap.on_gre4 if address.version == 4 else self._decap.on_gre6
        self._handlers[sock.fileno()] = receive

    def close(self) -> None:
        self._handlers.clear()
        if self._neigh is not None:
            self._neigh.close()
            self._neigh = None
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        if self._tap >= 0:
            os.close(self._tap)  # a non-persistent TAP (and its routes) goes with it
            self._tap = self._encap.device = self._decap.device = -1
        if self._ipr is not None:
            try:
                if self._created and self._ipr.link_lookup(ifname=self.config.tunnel):
                    netlink.delete_if_ours(self._ipr, self.config.tunnel)
            except (OSError, NetlinkError) as exc:
                log.warning("close %s: %s", self.config.tunnel, exc)
            self._ipr.close()
            self._ipr = None
        self._created = False
        self._peers.by_overlay.clear()
        self._routes.clear()

    def cleanup_stale(self) -> list[str]:
        own = self._ipr is None
        ipr = self._ipr if self._ipr is not None else IPRoute()
        self._ipr = ipr
        try:
            if self._tap >= 0 or not ipr.link_lookup(ifname=self.config.tunnel):
                return []
            return netlink.delete_if_ours(ipr, self.config.tunnel)
        finally:
            if own:
                ipr.close()
                self._ipr = None

    # -- event loop ------------------------------------------------------------------
    def readers(self) -> list[int]:
        return list(self._handlers)

    def on_readable(self, fd: int) -> None:
        self._now = time.monotonic()
        self._handlers[fd](self._now)
        if self._now >= self._next_traffic:
            self._report_traffic()

    def tick(self, now: float | None = None) -> None:
        self._now = time.monotonic() if now is None else now
        self._decap.resolve_protected()
        if self._now >= self._next_traffic:
            self._report_traffic()
        self._encap.expire(self._now)

    def _report_traffic(self) -> None:
        self._next_traffic = self._now + self.config.traffic_interval
        for peer in list(self._peers.by_key.values()):
            packets = peer.tx_packets - peer.reported_packets
            if packets:
                octets = peer.tx_bytes - peer.reported_bytes
                peer.reported_packets, peer.reported_bytes = peer.tx_packets, peer.tx_bytes
                self.sink.traffic(peer.nbma, packets, octets)

    # -- actions -----------------------------------------------------------------------
    def send_nhrp(self, nbma_dst: Address | str, data: bytes) -> None:
        dst = as_address(nbma_dst)
        sock = self._socks.get(dst.version)
        if sock is None:
            self._drops[Drop.NO_TRANSPORT] += 1
            raise DataPlaneError(f"no local IPv{dst.version} NBMA address to reach {dst}")
        try:
            sock.sendto(gre.header(gre.PROTO_NHRP, self._key) + data, (str(dst), 0))
        except OSError as exc:
            self._drops[Drop.SEND_ERROR] += 1
            raise DataPlaneError(f"send NHRP to {dst}: {exc}") from exc
        self._events["nhrp_out"] += 1

    def _peer(self, nbma: Address) -> Peer:
        sock = self._socks.get(nbma.version)
        return self._peers.peer_for(nbma, sock.sendto if sock is not None else None)

    def add_mapping(self, overlay: Address | str, nbma: Address | str) -> None:
        proto, where = as_address(overlay), as_address(nbma)
        self._require_open()
        self._require_transport(where)
        peer = self._peer(where)
        try:
            self._neigh.replace(proto, peer.mac)
        except OSError as exc:
            self._peers.release(peer)
            raise DataPlaneError(f"map {proto} -> {where}: {exc}") from exc
        self._peers.map(proto, peer)
        self._encap.mapped(proto)

    def remove_mapping(self, overlay: Address | str) -> None:
        proto = as_address(overlay)
        self._require_open()
        peer = self._peers.by_overlay.pop(proto, None)
        try:
            self._neigh.delete(proto)
        except OSError as exc:
            raise DataPlaneError(f"unmap {proto}: {exc}") from exc
        if peer is not None:
            self._peers.unmap(proto, peer)

    def add_route(self, prefix: Network | str, via_overlay: Address | str) -> None:
        net, via = as_network(prefix), as_address(via_overlay)
        if net.version != via.version:
            raise DataPlaneError(f"route {net} via {via}: address families differ")
        ipr = self._require_open()
        try:
            ipr.route("replace", **self._route_keys(net), gateway=str(via))
        except NetlinkError as exc:
            raise DataPlaneError(f"route {net} via {via}: {exc}") from exc
        self._routes.add(net)

    def remove_route(self, prefix: Network | str) -> None:
        net = as_network(prefix)
        ipr = self._require_open()
        try:
            ipr.route("del", **self._route_keys(net))
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise DataPlaneError(f"remove route {net}: {exc}") from exc
        self._routes.discard(net)

    def _route_keys(self, net: Network) -> dict[str, object]:
        return netlink.route_keys(net, self._ifindex, self.config.route_table)

    def set_multicast_targets(self, nbmas: list[Address | str]) -> None:
        addresses = list(dict.fromkeys(as_address(v) for v in nbmas))
        for value in addresses:
            self._require_transport(value)
        self._peers.set_targets([self._peer(value) for value in addresses])

    def _require_transport(self, nbma: Address) -> None:
        if nbma.version not in self._socks:
            raise DataPlaneError(
                f"NBMA address {nbma}: no local IPv{nbma.version} NBMA address to send from"
            )

    def _require_open(self) -> IPRoute:
        if self._ipr is None or self._tap < 0:
            raise DataPlaneError(f"data plane {self.config.tunnel} is not open")
        return self._ipr

    # -- introspection -------------------------------------------------------------------
    def mappings(self) -> dict[Address, Address]:
        return {overlay: peer.nbma for overlay, peer in self._peers.by_overlay.items()}

    def stats(self) -> DataPlaneStats:
        return DataPlaneStats(
            kind=self.kind,
            peers={
                p.nbma: PeerCounters(p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes)
                for p in self._peers.by_key.values()
            },
            drops=dict(self._drops),
            events=dict(self._events),
        )

    @property
    def ifindex(self) -> int:
        return self._ifindex
