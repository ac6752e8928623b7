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
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

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
from . import gre
from .tap import (
    DEVICE_MAC,
    ETH_HEADER,
    PEER_MAC,
    PEER_PREFIX,
    UNKNOWN_PEER_MAC,
    mac_text,
    open_tap,
    peer_mac,
)

log = logging.getLogger(__name__)

# Written to IFLA_IFALIAS so cleanup_stale() only ever deletes a device we made.
ALIAS = "flexmesh-dmvpn userspace"
# Route protocol number marking our routes (`ip route show proto 157`).
ROUTE_PROTO = 157
RTNH_F_ONLINK = 0x04
IFA_F_NODAD = 0x02
TXQLEN = 1000
SOCKET_BUFFER = 4 << 20
BUFFER = 65536 + 64
HAIRPIN_HEAD = 128
NOTICE_INTERVAL = 1.0  # at most one no_mapping / hairpin notice per key per second
MEMORY_LIMIT = 8192  # entries in each notice/hairpin table before it is reset

# Linux values the socket module does not export.
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0

ICMP_REDIRECT = 5
IPPROTO_IGMP = 2
ICMPV6_ROUTER_SOLICIT = 133
ICMPV6_NEIGHBOUR_SOLICIT = 135
ICMPV6_REDIRECT = 137
# IGMP, MLD and ND stay on the device: neighbours are static and the tunnel carries
# no multicast routing, so group membership means nothing to the peers.
LINK_LOCAL_ICMPV6 = frozenset({130, 131, 132, 143, 133, 134, 135, 136, 137})
UNSPECIFIED6 = bytes(16)

_GRE_KEYED = gre.KEYED
_GRE_BASE = gre.BASE


class _Peer:
    """One remote NBMA address: its MAC, socket, prebuilt headers and counters."""

    __slots__ = (
        "eth4",
        "eth6",
        "index",
        "key",
        "mac",
        "multicast",
        "nbma",
        "overlays",
        "reported_bytes",
        "reported_packets",
        "rx_bytes",
        "rx_packets",
        "sendto",
        "sockaddr",
        "tx_bytes",
        "tx_packets",
    )

    def __init__(self, nbma: Address, index: int, sendto: Callable[..., int] | None) -> None:
        self.nbma = nbma
        self.key = _peer_key(nbma)
        self.index = index
        self.mac = peer_mac(index)
        self.sockaddr = (str(nbma), 0)
        self.sendto = sendto
        self.eth4 = DEVICE_MAC + self.mac + b"\x08\x00"
        self.eth6 = DEVICE_MAC + self.mac + b"\x86\xdd"
        self.overlays: set[Address] = set()
        self.multicast = False
        self.tx_packets = self.tx_bytes = self.rx_packets = self.rx_bytes = 0
        self.reported_packets = self.reported_bytes = 0


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
        self._handlers: dict[int, Callable[[], None]] = {}
        self._peers: dict[int | str, _Peer] = {}  # by _peer_key()
        self._by_index: dict[int, _Peer] = {}
        self._next_index = 1
        self._mapping: dict[Address, _Peer] = {}
        self._targets: list[_Peer] = []
        self._routes: set[Network] = set()
        self._own = {i.ip for i in config.overlay}
        self._drops = {d.value: 0 for d in Drop}
        self._events: dict[str, int] = dict.fromkeys(
            (
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
            ),
            0,
        )
        self._hub = config.role is Role.HUB
        self._key = config.key
        self._batch = config.batch
        self._protected_index = 0
        self._recent: dict[bytes, tuple[int | str, float]] = {}  # (src,dst) -> ingress, when
        self._hairpin_sent: dict[bytes, float] = {}
        self._nomap_sent: dict[Address, float] = {}
        self._now = time.monotonic()
        self._next_traffic = self._now + config.traffic_interval
        self._tx = bytearray(BUFFER)
        self._tx_mv = memoryview(self._tx)
        self._rx = bytearray(BUFFER)
        self._rx_mv = memoryview(self._rx)
        # An IPv6 raw socket delivers GRE without the IP header: receive it far enough
        # into the buffer that the Ethernet header fits in front of the payload.
        self._rx6_base = ETH_HEADER - (8 if self._key is not None else 4)
        self._tx_gre_off = ETH_HEADER - (8 if self._key is not None else 4)

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
            self._created = True
            self._ifindex = self._ipr.link_lookup(ifname=cfg.tunnel)[0]
            self._neigh = NeighbourTable(self._ifindex)
            self._configure_device()
            for address in cfg.local_nbma:
                self._open_socket(address)
            self._resolve_protected()
        except DataPlaneError:
            self.close()
            raise
        except (OSError, NetlinkError) as exc:
            self.close()
            raise DataPlaneError(f"cannot open userspace data plane {cfg.tunnel}: {exc}") from exc
        self._handlers[self._tap] = self._on_device
        log.info(
            "userspace data plane %s up: mtu %d, key %s, nbma %s",
            cfg.tunnel,
            cfg.effective_mtu,
            cfg.key,
            ", ".join(map(str, cfg.local_nbma)),
        )

    def _configure_device(self) -> None:
        cfg, ipr, index = self.config, self._ipr, self._ifindex
        assert ipr is not None
        has6 = any(i.version == 6 for i in cfg.overlay)
        # No DAD (nobody on this link answers), no router solicitations, no redirects:
        # NHRP, not ICMP, tells spokes about better next hops (Cisco: no ip redirects).
        self._sysctl("ipv4", "send_redirects", "0")
        self._sysctl("ipv4", "accept_redirects", "0")
        if has6:
            self._sysctl("ipv6", "accept_dad", "0")
            self._sysctl("ipv6", "router_solicitations", "0")
            self._sysctl("ipv6", "accept_redirects", "0")
        else:
            self._sysctl("ipv6", "disable_ipv6", "1")
        ipr.link(
            "set",
            index=index,
            address=mac_text(DEVICE_MAC),
            mtu=cfg.effective_mtu,
            txqlen=TXQLEN,
            ifalias=ALIAS,
        )
        ipr.link("set", index=index, state="up")
        for iface in cfg.overlay:
            ipr.addr(
                "add",
                index=index,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                flags=IFA_F_NODAD if iface.version == 6 else 0,
            )

    def _resolve_protected(self) -> None:
        """(Re)learn the protected interface's index: ipsec0 comes and goes with charon."""
        name = self.config.protected_ifname
        if name:
            try:
                self._protected_index = socket.if_nametoindex(name)
            except OSError:
                # Absent: nothing arrives protected; non-zero keeps PKTINFO reception on.
                self._protected_index = -1

    def _sysctl(self, family: str, name: str, value: str) -> None:
        path = f"/proc/sys/net/{family}/conf/{self.config.tunnel}/{name}"
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(value)
        except OSError as exc:  # IPv6 disabled on the host, read-only /proc/sys
            log.warning("cannot set %s: %s", path, exc)

    def _open_socket(self, address: Address) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_GRE)
        self._socks[address.version] = sock
        # Binding filters received GRE to our NBMA address and fixes the source.
        try:
            sock.bind((str(address), 0))
        except OSError as exc:
            raise DataPlaneError(
                f"local NBMA address {address} is not an address of this host: {exc}"
            ) from exc
        sock.setblocking(False)
        for option, fallback in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, fallback, SOCKET_BUFFER)
        if address.version == 4:
            # DF clear on the outer header, as Cisco does without `tunnel path-mtu-
            # discovery`: the tunnel MTU already accounts for GRE, a smaller path
            # fragments the outer packet instead of black-holing it.
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            if self.config.protected_ifname:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            self._handlers[sock.fileno()] = self._on_gre4
        else:
            if self.config.protected_ifname:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            self._handlers[sock.fileno()] = self._on_gre6

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
            self._tap = -1
        if self._ipr is not None:
            try:
                if self._created and self._ipr.link_lookup(ifname=self.config.tunnel):
                    self._delete_if_ours()
            except (OSError, NetlinkError) as exc:
                log.warning("close %s: %s", self.config.tunnel, exc)
            self._ipr.close()
            self._ipr = None
        self._created = False
        self._mapping.clear()
        self._routes.clear()

    def cleanup_stale(self) -> list[str]:
        own = self._ipr is None
        ipr = self._ipr if self._ipr is not None else IPRoute()
        self._ipr = ipr
        try:
            if self._tap >= 0 or not ipr.link_lookup(ifname=self.config.tunnel):
                return []
            return self._delete_if_ours()
        finally:
            if own:
                ipr.close()
                self._ipr = None

    def _delete_if_ours(self) -> list[str]:
        assert self._ipr is not None
        name = self.config.tunnel
        (link,) = self._ipr.get_links(ifname=name)
        alias = link.get("IFLA_IFALIAS")
        if alias != ALIAS:
            raise StaleStateError(
                f"interface {name} exists but is not ours (alias {alias!r}); not touching it"
            )
        # Routes and neighbour entries through the device go with it.
        self._ipr.link("del", index=link["index"])
        log.info("removed stale interface %s", name)
        return [f"link {name}"]

    # -- event loop ------------------------------------------------------------------
    def readers(self) -> list[int]:
        return list(self._handlers)

    def on_readable(self, fd: int) -> None:
        self._now = time.monotonic()
        self._handlers[fd]()
        if self._now >= self._next_traffic:
            self._report_traffic()

    def tick(self, now: float | None = None) -> None:
        self._now = time.monotonic() if now is None else now
        self._resolve_protected()
        if self._now >= self._next_traffic:
            self._report_traffic()
        horizon = self._now - max(self.config.hairpin_memory, NOTICE_INTERVAL)
        for table in (self._recent, self._hairpin_sent, self._nomap_sent):
            stale = [k for k, v in table.items() if (v[1] if isinstance(v, tuple) else v) < horizon]
            for k in stale:
                del table[k]

    def _report_traffic(self) -> None:
        self._next_traffic = self._now + self.config.traffic_interval
        for peer in list(self._peers.values()):
            packets = peer.tx_packets - peer.reported_packets
            if packets:
                octets = peer.tx_bytes - peer.reported_bytes
                peer.reported_packets, peer.reported_bytes = peer.tx_packets, peer.tx_bytes
                self.sink.traffic(peer.nbma, packets, octets)

    # -- encapsulation: frames the kernel sends into the device --------------------------
    def _on_device(self) -> None:
        fd, buf, mv = self._tap, self._tx, self._tx_mv
        iov = [buf]
        readv = os.readv
        by_index = self._by_index
        unpack_mac = PEER_MAC.unpack_from
        off = self._tx_gre_off
        gre4 = gre.header(gre.PROTO_IPV4, self._key)
        gre6 = gre.header(gre.PROTO_IPV6, self._key)
        recent = self._recent if self._hub else None
        for _round in range(self._batch):
            try:
                n = readv(fd, iov)
            except BlockingIOError:
                return
            prefix, index = unpack_mac(buf)
            b12 = buf[12]
            if prefix != PEER_PREFIX:
                self._group_frame(n)
                continue
            peer = by_index.get(index)
            if peer is None:
                self._drops[Drop.UNKNOWN_PEER] += 1
                continue
            # IPv4 (0x0800) or IPv6 (0x86DD); unicast ARP cannot occur with static entries.
            # The GRE header is written over the end of the Ethernet header.
            if b12 == 0x08 and buf[13] == 0:
                # ICMP redirect from a hub forwarding spoke to spoke: NHRP's job, drop.
                if buf[23] == 1 and buf[14 + ((buf[14] & 15) << 2)] == ICMP_REDIRECT:
                    self._events["redirects_suppressed"] += 1
                    continue
                buf[off:14] = gre4
            elif b12 == 0x86 and buf[13] == 0xDD:
                if buf[20] == 58 and buf[54] == ICMPV6_REDIRECT:
                    self._events["redirects_suppressed"] += 1
                    continue
                buf[off:14] = gre6
            else:
                self._drops[Drop.NOT_IP] += 1
                continue
            sendto = peer.sendto
            if sendto is None:
                self._drops[Drop.NO_TRANSPORT] += 1
                continue
            try:
                sendto(mv[off:n], peer.sockaddr)
            except OSError:  # ENOBUFS/EAGAIN under load, EHOSTUNREACH, ...
                self._drops[Drop.SEND_ERROR] += 1
                continue
            peer.tx_packets += 1
            peer.tx_bytes += n - ETH_HEADER
            if recent:
                self._check_hairpin(peer, n, b12 == 0x08)

    def _check_hairpin(self, peer: _Peer, n: int, v4: bool) -> None:
        buf = self._tx  # the Ethernet header is GRE by now; the IP packet is intact
        pair = bytes(buf[26:34] if v4 else buf[22:54])
        seen = self._recent.get(pair)
        if seen is None or seen[0] == peer.key:
            return
        now = self._now
        if now - seen[1] > self.config.hairpin_memory:
            return
        if now - self._hairpin_sent.get(pair, -NOTICE_INTERVAL) < NOTICE_INTERVAL:
            return
        if len(self._hairpin_sent) >= MEMORY_LIMIT:
            self._hairpin_sent.clear()
        self._hairpin_sent[pair] = now
        self._events["hairpin_notices"] += 1
        half = len(pair) // 2
        self.sink.hairpin(
            ip_address(seen[0]),
            peer.nbma,
            ip_address(pair[:half]),
            ip_address(pair[half:]),
            bytes(buf[ETH_HEADER : min(n, ETH_HEADER + HAIRPIN_HEAD)]),
        )

    def _group_frame(self, n: int) -> None:
        """Broadcast/multicast from the kernel: resolution requests or replication."""
        buf = self._tx
        if not buf[0] & 1:
            self._drops[Drop.UNKNOWN_PEER] += 1
            return
        ethertype = (buf[12] << 8) | buf[13]
        if ethertype == 0x0806:
            # ARP request: operation 1, target protocol address at 38..42.
            if n >= 42 and buf[20:22] == b"\x00\x01":
                self._events["arp_requests"] += 1
                self._resolution_wanted(IPv4Address(bytes(buf[38:42])))
            return
        if ethertype == 0x86DD:
            icmp = self._icmpv6_type(n)
            if icmp in LINK_LOCAL_ICMPV6:
                self._events["link_local_control"] += 1
                # Neighbour Solicitation from a real address (not DAD): target at 62.
                if icmp == ICMPV6_NEIGHBOUR_SOLICIT and buf[22:38] != UNSPECIFIED6 and n >= 78:
                    self._events["neighbour_solicitations"] += 1
                    self._resolution_wanted(IPv6Address(bytes(buf[62:78])))
                return
        elif ethertype != 0x0800:
            self._drops[Drop.NOT_IP] += 1
            return
        elif buf[23] == IPPROTO_IGMP:
            self._events["link_local_control"] += 1
            return
        self._events["multicast_frames"] += 1
        if not self._targets:
            self._drops[Drop.NO_MULTICAST_TARGETS] += 1
            return
        if self._key is not None:
            _GRE_KEYED.pack_into(buf, 6, gre.FLAG_K, ethertype, self._key)
        else:
            buf[10] = buf[11] = 0
        packet = self._tx_mv[self._tx_gre_off : n]
        for peer in self._targets:
            if peer.sendto is None:
                self._drops[Drop.NO_TRANSPORT] += 1
                continue
            try:
                peer.sendto(packet, peer.sockaddr)
            except OSError:
                self._drops[Drop.SEND_ERROR] += 1
                continue
            self._events["multicast_copies"] += 1
            peer.tx_packets += 1
            peer.tx_bytes += n - ETH_HEADER

    def _icmpv6_type(self, n: int) -> int:
        """ICMPv6 type of an IPv6 frame, looking through one hop-by-hop header (MLD)."""
        buf = self._tx
        nxt, at = buf[20], 54
        if nxt == 0 and n >= 56:
            nxt, at = buf[54], 54 + (buf[55] + 1) * 8
        return buf[at] if nxt == 58 and n > at else -1

    def _resolution_wanted(self, next_hop: Address) -> None:
        if next_hop in self._own:
            return
        last = self._nomap_sent.get(next_hop)
        if last is not None and self._now - last < NOTICE_INTERVAL:
            return
        if len(self._nomap_sent) >= MEMORY_LIMIT:
            self._nomap_sent.clear()
        self._nomap_sent[next_hop] = self._now
        self._events["no_mapping_notices"] += 1
        self.sink.no_mapping(next_hop)

    # -- decapsulation: GRE from the raw sockets ------------------------------------------
    def _on_gre4(self) -> None:
        self._receive(self._socks[4], 0)

    def _on_gre6(self) -> None:
        self._receive(self._socks[6], self._rx6_base)

    def _receive(self, sock: socket.socket, base: int) -> None:
        buf, mv = self._rx, self._rx_mv
        view = mv[base:] if base else mv
        v4 = base == 0
        pktinfo = self._protected_index != 0
        recv_into, recvfrom_into = sock.recv_into, sock.recvfrom_into
        head4 = _V4_GRE.unpack_from
        head6 = _GRE_KEYED.unpack_from
        key = self._key
        nokey = key is None
        expect = 0 if nokey else gre.FLAG_K
        hlen = 4 if nokey else 8
        write = os.write
        fd = self._tap
        peers = self._peers
        recent = self._recent if self._hub else None
        mtu = self.config.effective_mtu
        protected = False
        src: int | str
        for _round in range(self._batch):
            try:
                if pktinfo:
                    n, anc, _flags, addr = sock.recvmsg_into([view], 64)
                    protected = self._arrived_protected(anc)
                    src = addr[0]
                elif v4:
                    n = recv_into(view)
                else:
                    n, addr = recvfrom_into(view)
                    src = addr[0]
            except BlockingIOError:
                return
            end = base + n
            # Fast path: the one header shape peers send (an IPv4 header without options;
            # K bit and our key, or no bits at all). Unpacking 4 bytes past a keyless GRE
            # header is harmless: they belong to the passenger. Everything else: gre.parse.
            if v4:
                if n >= 28:
                    vihl, src, flags, proto, k = head4(buf)
                    ok = vihl == 0x45 and flags == expect and (nokey or k == key)
                else:
                    src, ok = _U32.unpack_from(buf, 12)[0] if n >= 16 else 0, False
                g = (buf[0] & 15) << 2
            else:
                g = base
                if n >= 8:
                    flags, proto, k = head6(buf, g)
                    ok = flags == expect and (nokey or k == key)
                else:
                    ok = False
            if ok:
                p = g + hlen
            else:
                parsed = gre.parse(buf, g, end, key)
                if isinstance(parsed, gre.Drop):
                    self._drops[parsed] += 1
                    continue
                proto, p = parsed
            peer = peers.get(src)
            if proto == 0x0800:
                eth = peer.eth4 if peer is not None else _ETH4_UNKNOWN
            elif proto == 0x86DD:
                eth = peer.eth6 if peer is not None else _ETH6_UNKNOWN
            elif proto == gre.PROTO_NHRP:
                self._events["nhrp_in"] += 1
                self.sink.nhrp_received(ip_address(src), bytes(buf[p:end]), protected)
                continue
            else:
                self._drops[Drop.UNKNOWN_PROTOCOL] += 1
                continue
            if end - p > mtu:
                # Linux ip_gre delivers these too (the sender's MTU is larger than ours);
                # counted so a mismatch shows. Only a refused write drops (OVERSIZE).
                self._events["rx_over_mtu"] += 1
            start = p - ETH_HEADER
            buf[start:p] = eth
            try:
                write(fd, mv[start:end])
            except OSError as exc:
                reason = Drop.OVERSIZE if exc.errno in _TOO_BIG else Drop.DEVICE_ERROR
                self._drops[reason] += 1
                continue
            if peer is not None:
                peer.rx_packets += 1
                peer.rx_bytes += end - p
            else:
                self._events["rx_unmapped_packets"] += 1
                self._events["rx_unmapped_bytes"] += end - p
            if recent is not None:
                # Remember where (src, dst) came in, for hairpin detection on egress.
                pair = bytes(buf[p + 12 : p + 20] if proto == 0x0800 else buf[p + 8 : p + 40])
                if len(recent) >= MEMORY_LIMIT:
                    recent.clear()
                recent[pair] = (src, self._now)

    def _arrived_protected(self, ancillary: list[tuple[int, int, bytes]]) -> bool:
        for level, kind, data in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                return _U32_NATIVE.unpack_from(data, 0)[0] == self._protected_index
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                return _U32_NATIVE.unpack_from(data, 16)[0] == self._protected_index
        return False

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

    def _peer(self, nbma: Address) -> _Peer:
        sock = self._socks.get(nbma.version)
        peer = self._peers.get(_peer_key(nbma))
        if peer is None:
            peer = _Peer(nbma, self._next_index, sock.sendto if sock is not None else None)
            self._next_index += 1
            self._peers[peer.key] = peer
            self._by_index[peer.index] = peer
        return peer

    def _release(self, peer: _Peer) -> None:
        if not peer.overlays and not peer.multicast:
            del self._peers[peer.key]
            del self._by_index[peer.index]

    def add_mapping(self, overlay: Address | str, nbma: Address | str) -> None:
        proto, where = as_address(overlay), as_address(nbma)
        self._require_open()
        self._require_transport(where)
        peer = self._peer(where)
        old = self._mapping.get(proto)
        try:
            self._neigh.replace(proto, peer.mac)
        except OSError as exc:
            self._release(peer)
            raise DataPlaneError(f"map {proto} -> {where}: {exc}") from exc
        if old is not None and old is not peer:
            old.overlays.discard(proto)
            self._release(old)
        peer.overlays.add(proto)
        self._mapping[proto] = peer
        self._nomap_sent.pop(proto, None)

    def remove_mapping(self, overlay: Address | str) -> None:
        proto = as_address(overlay)
        self._require_open()
        peer = self._mapping.pop(proto, None)
        try:
            self._neigh.delete(proto)
        except OSError as exc:
            raise DataPlaneError(f"unmap {proto}: {exc}") from exc
        if peer is not None:
            peer.overlays.discard(proto)
            self._release(peer)

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
        keys: dict[str, object] = {
            "dst": str(net.network_address),
            "dst_len": net.prefixlen,
            "oif": self._ifindex,
            "proto": ROUTE_PROTO,
            # The next hop need not be inside a connected overlay prefix (/32 overlays).
            "flags": RTNH_F_ONLINK,
            "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
        }
        if self.config.route_table is not None:
            keys["table"] = self.config.route_table
        return keys

    def set_multicast_targets(self, nbmas: list[Address | str]) -> None:
        wanted: list[_Peer] = []
        addresses = list(dict.fromkeys(as_address(v) for v in nbmas))
        for value in addresses:
            self._require_transport(value)
        for value in addresses:
            peer = self._peer(value)
            peer.multicast = True
            wanted.append(peer)
        keep = {id(peer) for peer in wanted}  # a set: hubs have thousands of targets
        for peer in self._targets:
            if id(peer) not in keep:
                peer.multicast = False
                self._release(peer)
        self._targets = wanted

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
        return {overlay: peer.nbma for overlay, peer in self._mapping.items()}

    def stats(self) -> DataPlaneStats:
        return DataPlaneStats(
            kind=self.kind,
            peers={
                p.nbma: PeerCounters(p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes)
                for p in self._peers.values()
            },
            drops=dict(self._drops),
            events=dict(self._events),
        )

    @property
    def ifindex(self) -> int:
        return self._ifindex


_ETH4_UNKNOWN = DEVICE_MAC + UNKNOWN_PEER_MAC + b"\x08\x00"
_ETH6_UNKNOWN = DEVICE_MAC + UNKNOWN_PEER_MAC + b"\x86\xdd"
_TOO_BIG = (errno.EINVAL, errno.EMSGSIZE)
_U32_NATIVE = struct.Struct("=I")
_U32 = struct.Struct("!I")
# Version/IHL, source address, then GRE flags, protocol and key of an IPv4 GRE packet.
_V4_GRE = struct.Struct("!B11xI4xHHI")


def _peer_key(nbma: Address) -> int | str:
    """How received packets name their source: the IPv4 source as an integer (read from
    the IP header), the IPv6 source as the text recvfrom() returns."""
    if nbma.version == 4:
        return int(nbma)
    return socket.inet_ntop(socket.AF_INET6, nbma.packed)
