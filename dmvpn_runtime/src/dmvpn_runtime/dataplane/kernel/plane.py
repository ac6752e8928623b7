"""The kernel data plane: a multipoint ip_gre link driven over netlink.

What the kernel does and what the plane adds (docs/dataplane-kernel.md has the
long form):

- **Tunnel**: one ``gre`` link named after the tunnel, ``local`` = our IPv4 NBMA
  address, no ``remote`` (multipoint), ``ttl 64``, the GRE key in both directions. The
  link has ``header_ops`` because it has no remote, so its link-layer address is an
  IPv4 address: the neighbour entry of an overlay next hop carries the NBMA address
  (``lladdr``) the kernel puts in the outer header.
- **Mappings**: ``NUD_PERMANENT`` neighbour entries (``ip neigh replace OVERLAY lladdr
  NBMA dev TUN nud permanent``): permanent rather than ``noarp`` because the
  neighbour garbage collector may drop unused ``noarp`` entries.
- **No mapping**: ``IFF_NOARP`` is cleared on the link and its ARP and ND parameters
  are ``app_probes 3, ucast_probes 0, mcast_probes 0`` (what FRR's nhrpd does with
  ``app_probes 1``). A next hop without an entry is then resolved by *us*: the kernel
  queues the packets, sends ``RTM_GETNEIGH`` to the ``RTNLGRP_NEIGH`` group once a
  second, three times, and gives up after about 3 s. Each request becomes a
  ``sink.no_mapping`` (rate-limited to one per second per next hop).
- **NHRP**: an ``AF_PACKET``/``SOCK_DGRAM`` socket bound to the link for protocol
  0x2001. ip_gre hands GRE payloads of any protocol to packet sockets with the outer
  source as ``sll_addr`` (``ipgre_header_parse``); sending with ``sll_addr`` = NBMA
  address makes ``ipgre_header`` build the outer header.
- **Hairpin (hub)**: an nftables rule in our own table logs the first 128 bytes of
  packets forwarded from the tunnel back into it to an NFLOG group, rate-limited per
  (source, destination) by a dynamic set; the NFLOG message's hardware address is the
  outer source (the ingress spoke), the egress spoke is the mapping of the next hop
  the kernel's FIB picks for the inner destination.
- **Multicast** (``map multicast dynamic``): replicated in software. Multicast and
  broadcast leaving through the tunnel are logged whole to the same NFLOG group and
  dropped; each copy goes to every multicast target through the packet socket (GRE
  protocol 0x0800/0x86dd). IGMP, MLD and ND stay local.
- **Counters**: two dynamic nftables sets with a counter per element, keyed by the
  peer's NBMA address, updated by GRE leaving (``ip daddr``) and arriving (``ip
  saddr``) with our local address and key; read every ``traffic_interval`` with an
  nf_tables set-element dump. Minus the outer headers and our own NHRP they are the
  data counters. Only creating the table runs the ``nft`` program.
- **Redirects**: ICMP/ICMPv6 redirects through the tunnel are dropped (NHRP decides
  who talks directly).

Limits: IPv4 NBMA only -- Linux's ip6gre has no working multipoint transmit (no remote
means ``ip6_tnl_xmit_ctl`` refuses every packet, and packet sockets get no outer
source), so a configuration with an IPv6 NBMA address is refused with
:class:`DataPlaneUnavailable`. Passenger (overlay) IPv4 and IPv6 both work.

Where things are
----------------
This module holds the plane itself: opening and closing, the event-loop entry points
(neighbour events, NHRP, NFLOG: hairpin notices and multicast replication), the
control calls (mappings, routes, multicast targets, NHRP out) and the counters it
reports. ``link`` creates and configures the GRE link and removes a stale one;
``nftables`` writes, creates, finds, deletes and reads our table; ``sockets`` opens the
netlink and packet sockets; ``messages`` builds and parses what goes over them;
``counters`` turns the kernel's GRE counters into data counters; ``udp_checksum``
completes the checksum of multicast copies; ``availability`` probes whether this host
can run the plane at all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any, ClassVar

from pyroute2 import IPRoute

from ...ippacket import inner_addresses
from ..base import (
    ROUTE_PROTO,
    Address,
    DataPlane,
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneSink,
    DataPlaneStats,
    DataPlaneUnavailable,
    Drop,
    Network,
    StaleStateError,
    as_address,
    as_network,
)
from ..netlink import NETLINK_ROUTE, NLM_F_CREATE, NLM_F_REPLACE, RequestSocket
from .availability import available, unavailable_reason
from .counters import PeerTraffic
from .link import add_gre_link, configure_link, delete_stale_link
from .messages import (
    NUD_FAILED,
    RTM_DELNEIGH,
    RTM_GETNEIGH,
    RTM_NEWNEIGH,
    NflogPacket,
    neigh_request,
    parse_neigh_events,
    parse_nflog,
)
from .nftables import (
    HAIRPIN_HEAD,
    PREFIX_HAIRPIN,
    PREFIX_MULTICAST,
    create_table,
    nft_delete_table,
    read_set_counters,
    table_name,
)
from .sockets import (
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_NHRP,
    PACKET_OUTGOING,
    open_neigh_events,
    open_nflog,
    open_nhrp_socket,
)
from .udp_checksum import complete_checksum

log = logging.getLogger(__name__)

NOTICE_INTERVAL = 1.0  # at most one no_mapping / hairpin notice per key per second
MEMORY_LIMIT = 8192  # entries in a rate-limit table before it is pruned hard
RTNH_F_ONLINK = 0x4


class KernelDataPlane(DataPlane):
    """mGRE link + neighbour entries + nftables; IPv4 NBMA, IPv4/IPv6 overlay."""

    kind: ClassVar[str] = "kernel"

    def __init__(self, config: DataPlaneConfig, sink: DataPlaneSink) -> None:
        super().__init__(config, sink)
        reason = unavailable_reason(config)
        if reason is not None:
            raise DataPlaneUnavailable(reason)
        nbma = config.nbma_for(4)
        assert nbma is not None  # unavailable_reason() refused IPv6-only
        self._local: IPv4Address = nbma  # type: ignore[assignment]
        self._table = table_name(config.tunnel)
        self._ifindex = 0
        self._created_link = False
        self._created_table = False
        self._group = 0
        self._ipr: Any = None
        self._rtnl: RequestSocket | None = None
        self._events: socket.socket | None = None
        self._nflog: socket.socket | None = None
        self._packet: socket.socket | None = None
        self._mappings: dict[Address, IPv4Address] = {}
        self._traffic = PeerTraffic(overhead=20 + 4 + (4 if config.key is not None else 0))
        self._routes: set[Network] = set()
        self._targets: list[Address] = []
        self._no_mapping_sent: dict[Address, float] = {}
        self._hairpin_sent: dict[tuple[Address, Address], float] = {}
        self._drops: Counter[str] = Counter()
        self._events_count: Counter[str] = Counter()
        self._next_report = 0.0
        self._handlers: dict[int, Any] = {}

    # -- availability ------------------------------------------------------------
    @staticmethod
    def available(config: DataPlaneConfig | None = None) -> bool:
        return available(config)

    @staticmethod
    def unavailable_reason(config: DataPlaneConfig | None = None) -> str | None:
        return unavailable_reason(config)

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> None:
        if self._ifindex:
            return
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        cfg = self.config
        self._ipr = IPRoute(groups=0)  # requests only: no event subscription
        if self._ipr.link_lookup(ifname=cfg.tunnel):
            raise StaleStateError(
                f"a link named {cfg.tunnel} already exists; run cleanup_stale() first"
                " (it removes it only if we made it)"
            )
        self._rtnl = RequestSocket(NETLINK_ROUTE)
        self._nflog, self._group = open_nflog(cfg.tunnel)
        add_gre_link(self._ipr, cfg, self._local)
        self._created_link = True
        self._ifindex = self._ipr.link_lookup(ifname=cfg.tunnel)[0]
        configure_link(self._ipr, self._rtnl, self._ifindex, cfg)
        self._events = open_neigh_events()
        self._packet = open_nhrp_socket(cfg.tunnel)
        create_table(cfg, self._group)
        self._created_table = True
        self._handlers = {
            self._packet.fileno(): self._read_packet,
            self._events.fileno(): self._read_events,
            self._nflog.fileno(): self._read_nflog,
        }
        self._next_report = time.monotonic() + cfg.traffic_interval
        log.info(
            "kernel data plane %s: gre local %s key %s mtu %d nflog group %d",
            cfg.tunnel,
            self._local,
            cfg.key,
            cfg.effective_mtu,
            self._group,
        )

    def close(self) -> None:
        for name in ("_packet", "_events", "_nflog"):
            sock = getattr(self, name)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
                setattr(self, name, None)
        self._handlers = {}
        if self._created_table:
            try:
                nft_delete_table(self._table)
            except DataPlaneError as exc:
                log.warning("%s", exc)
            self._created_table = False
        if self._created_link and self._ipr is not None:
            # Addresses, neighbour entries and routes through the link go with it.
            try:
                self._ipr.link("del", ifname=self.config.tunnel)
            except Exception as exc:  # already gone is fine
                log.debug("delete link %s: %s", self.config.tunnel, exc)
            self._created_link = False
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None
        self._ifindex = 0
        self._mappings.clear()
        self._routes.clear()

    def cleanup_stale(self) -> list[str]:
        with IPRoute(groups=0) as ipr:
            removed = delete_stale_link(ipr, self.config.tunnel)
        if nft_delete_table(self._table):
            removed.append(f"nftables table inet {self._table}")
        for item in removed:
            log.info("removed stale %s", item)
        return removed

    # -- event loop ----------------------------------------------------------------
    def readers(self) -> list[int]:
        return list(self._handlers)

    def on_readable(self, fd: int) -> None:
        handler = self._handlers.get(fd)
        if handler is not None:
            handler()

    def _recv_batch(self, sock: socket.socket, size: int) -> Iterator[tuple[bytes, Any]]:
        for _slot in range(self.config.batch):
            try:
                yield sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # netlink overrun: events were lost
                    self._events_count["netlink_overruns"] += 1
                    continue
                log.warning("read: %s", exc)
                return

    def _read_packet(self) -> None:
        assert self._packet is not None
        protected = self.config.protected_ifname is not None
        peer_of = self._traffic.peer
        for data, addr in self._recv_batch(self._packet, 65536):
            if addr[2] == PACKET_OUTGOING or len(addr[4]) != 4:
                continue
            src = IPv4Address(addr[4])
            self._events_count["nhrp_in"] += 1
            peer = peer_of(src)
            peer.nhrp_rx_pkts += 1
            peer.nhrp_rx_bytes += len(data)
            self.sink.nhrp_received(src, data, protected)

    def _read_events(self) -> None:
        assert self._events is not None
        now = time.monotonic()
        for buf, _addr in self._recv_batch(self._events, 65536):
            for event in parse_neigh_events(buf):
                if event.ifindex != self._ifindex or event.dst is None:
                    continue
                if event.kind == RTM_GETNEIGH:
                    self._on_resolution_request(event.dst, now)
                elif event.kind == RTM_DELNEIGH and event.dst in self._mappings:
                    self._restore_mapping(event.dst)
                elif (
                    event.kind == RTM_NEWNEIGH
                    and event.state & NUD_FAILED
                    and event.dst in self._no_mapping_sent
                ):
                    # The kernel gave up on a next hop we reported: its packets are gone.
                    self._events_count["resolution_failed"] += 1

    def _on_resolution_request(self, next_hop: Address, now: float) -> None:
        self._events_count["resolution_requests"] += 1
        if next_hop in self._mappings:  # raced with add_mapping; the entry is there
            return
        last = self._no_mapping_sent.get(next_hop)
        if last is not None and now - last < NOTICE_INTERVAL:
            return
        self._no_mapping_sent[next_hop] = now
        self._events_count["no_mapping_notices"] += 1
        self.sink.no_mapping(next_hop)

    def _restore_mapping(self, overlay: Address) -> None:
        # Someone (link down/up, `ip neigh flush`) removed an entry we still hold.
        nbma = self._mappings[overlay]
        try:
            self._write_neigh(overlay, nbma)
            self._events_count["mappings_restored"] += 1
        except OSError as exc:
            log.warning("restore mapping %s -> %s: %s", overlay, nbma, exc)

    def _read_nflog(self) -> None:
        assert self._nflog is not None
        now = time.monotonic()
        for buf, _addr in self._recv_batch(self._nflog, 262144):
            for pkt in parse_nflog(buf):
                if pkt.group != self._group:
                    continue
                if pkt.prefix == PREFIX_MULTICAST and pkt.outdev == self._ifindex:
                    self._replicate(pkt.payload)
                elif pkt.prefix == PREFIX_HAIRPIN and pkt.indev == self._ifindex:
                    self._on_hairpin(pkt, now)

    def _replicate(self, packet: bytes) -> None:
        self._events_count["multicast_frames"] += 1
        if not packet:
            return
        proto = ETH_P_IP if packet[0] >> 4 == 4 else ETH_P_IPV6
        if not self._targets:
            self._drops[Drop.NO_MULTICAST_TARGETS] += 1
            return
        packet = complete_checksum(packet)
        for target in self._targets:
            if self._send(target, proto, packet):
                self._events_count["multicast_copies"] += 1

    def _on_hairpin(self, pkt: NflogPacket, now: float) -> None:
        pair = inner_addresses(pkt.payload)
        if pair is None:
            return
        src, dst = pair
        last = self._hairpin_sent.get(pair)
        if last is not None and now - last < NOTICE_INTERVAL:
            return
        in_nbma: Address | None = None
        if pkt.hwaddr is not None and len(pkt.hwaddr) == 4:
            in_nbma = IPv4Address(pkt.hwaddr)
        else:
            in_nbma = self._nbma_towards(src)
        out_nbma = self._nbma_towards(dst)
        if in_nbma is None or out_nbma is None or in_nbma == out_nbma:
            self._events_count["hairpin_unresolved"] += 1
            return
        self._hairpin_sent[pair] = now
        self._events_count["hairpin_notices"] += 1
        self.sink.hairpin(in_nbma, out_nbma, src, dst, pkt.payload[:HAIRPIN_HEAD])

    def _nbma_towards(self, dst: Address) -> Address | None:
        """The NBMA address of the next hop the kernel's FIB picks for ``dst``."""
        try:
            routes = self._ipr.route("get", dst=str(dst))
        except Exception as exc:  # unreachable and the like
            log.debug("route get %s: %s", dst, exc)
            return None
        for route in routes:
            if route.get_attr("RTA_OIF") != self._ifindex:
                continue
            gateway = route.get_attr("RTA_GATEWAY")
            hop = as_address(gateway) if gateway else dst
            return self._mappings.get(hop)
        return None

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for table in (self._no_mapping_sent, self._hairpin_sent):
            if len(table) > MEMORY_LIMIT:
                table.clear()
            else:
                for key in [k for k, t in table.items() if now - t >= 2 * NOTICE_INTERVAL]:
                    del table[key]
        if self._ifindex and now >= self._next_report:
            self._next_report = now + self.config.traffic_interval
            self._read_counters()
            for nbma, packets, octets in self._traffic.unreported():
                self.sink.traffic(nbma, packets, octets)

    def _read_counters(self) -> None:
        if not self._created_table:
            return
        try:
            tx = read_set_counters(self._table, "tx4")
            rx = read_set_counters(self._table, "rx4")
        except OSError as exc:
            self._events_count["counter_read_errors"] += 1
            log.debug("read counters of %s: %s", self._table, exc)
            return
        self._traffic.update(tx, rx)

    # -- actions -----------------------------------------------------------------
    def _send(self, nbma: Address, proto: int, data: bytes) -> bool:
        if self._packet is None:
            self._drops[Drop.SEND_ERROR] += 1
            return False
        if nbma.version != 4:
            self._drops[Drop.NO_TRANSPORT] += 1
            return False
        try:
            self._packet.sendto(data, (self.config.tunnel, proto, 0, 0, nbma.packed))
        except OSError as exc:
            self._drops[Drop.SEND_ERROR] += 1
            log.debug("send to %s: %s", nbma, exc)
            return False
        return True

    def send_nhrp(self, nbma_dst: Address | str, data: bytes) -> None:
        dst = as_address(nbma_dst)
        if self._send(dst, ETH_P_NHRP, data):
            self._events_count["nhrp_out"] += 1
            peer = self._traffic.peer(dst)  # type: ignore[arg-type]
            peer.nhrp_tx_pkts += 1
            peer.nhrp_tx_bytes += len(data)

    def _write_neigh(self, overlay: Address, nbma: IPv4Address) -> None:
        assert self._rtnl is not None
        flags = NLM_F_REPLACE | NLM_F_CREATE
        seq = self._rtnl.next_seq()
        self._rtnl.request(
            neigh_request(RTM_NEWNEIGH, flags, seq, self._ifindex, overlay, nbma.packed)
        )

    def add_mapping(self, overlay: Address | str, nbma: Address | str) -> None:
        proto, where = as_address(overlay), as_address(nbma)
        if where.version != 4:
            raise DataPlaneError(
                f"map {proto} -> {where}: the kernel data plane has no IPv6 NBMA transport"
            )
        if not self._ifindex:
            raise DataPlaneError("add_mapping before open()")
        try:
            self._write_neigh(proto, where)  # type: ignore[arg-type]
        except OSError as exc:
            raise DataPlaneError(f"map {proto} -> {where}: {exc}") from exc
        self._mappings[proto] = where  # type: ignore[assignment]
        self._no_mapping_sent.pop(proto, None)

    def remove_mapping(self, overlay: Address | str) -> None:
        proto = as_address(overlay)
        if self._mappings.pop(proto, None) is None or self._rtnl is None:
            return
        msg = neigh_request(RTM_DELNEIGH, 0, self._rtnl.next_seq(), self._ifindex, proto, None)
        try:
            self._rtnl.request(msg)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                raise DataPlaneError(f"unmap {proto}: {exc}") from exc

    def _route_keys(self, prefix: Network) -> dict[str, Any]:
        keys: dict[str, Any] = {
            "dst": str(prefix),
            "oif": self._ifindex,
            "proto": ROUTE_PROTO,
        }
        if self.config.route_table is not None:
            keys["table"] = self.config.route_table
        return keys

    def add_route(self, prefix: Network | str, via_overlay: Address | str) -> None:
        net, via = as_network(prefix), as_address(via_overlay)
        if not self._ifindex:
            raise DataPlaneError("add_route before open()")
        if net.version != via.version:
            raise DataPlaneError(f"route {net} via {via}: next hop of another family")
        try:
            # onlink: an overlay next hop outside our own overlay prefix (/32 designs).
            self._ipr.route(
                "replace", gateway=str(via), flags=RTNH_F_ONLINK, **self._route_keys(net)
            )
        except Exception as exc:
            raise DataPlaneError(f"route {net} via {via}: {exc}") from exc
        self._routes.add(net)

    def remove_route(self, prefix: Network | str) -> None:
        net = as_network(prefix)
        self._routes.discard(net)
        if not self._ifindex:
            return
        try:
            self._ipr.route("del", **self._route_keys(net))
        except Exception as exc:
            if getattr(exc, "code", None) not in (errno.ESRCH, errno.ENOENT):
                raise DataPlaneError(f"remove route {net}: {exc}") from exc

    def set_multicast_targets(self, nbmas: list[Address | str]) -> None:
        self._targets = list(dict.fromkeys(as_address(a) for a in nbmas))

    def mappings(self) -> dict[Address, Address]:
        return dict(self._mappings)

    def stats(self) -> DataPlaneStats:
        self._read_counters()
        stats = DataPlaneStats(kind=self.kind)
        stats.peers.update(self._traffic.counters())
        stats.drops = {str(k): v for k, v in self._drops.items()}
        stats.events = dict(self._events_count)
        stats.events.update(self._link_counters())
        return stats

    def _link_counters(self) -> dict[str, int]:
        if not self._ifindex or self._ipr is None:
            return {}
        try:
            link = self._ipr.link("get", index=self._ifindex)[0]
        except Exception:
            return {}
        s = link.get_attr("IFLA_STATS64") or {}
        return {
            f"link_{k}": int(s.get(k, 0))
            for k in ("tx_errors", "tx_dropped", "rx_errors", "rx_dropped")
        }

    # -- introspection for tests and tools ---------------------------------------------
    @property
    def ifindex(self) -> int:
        return self._ifindex

    def routes(self) -> set[Network]:
        return set(self._routes)
