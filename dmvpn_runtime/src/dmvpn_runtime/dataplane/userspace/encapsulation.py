"""Encapsulation: frames the kernel sends into the TAP device, out as GRE.

A unicast frame's destination MAC names the peer (the kernel resolved the next hop
through our neighbour entries): its GRE header is written over the tail of the Ethernet
header in place and the packet goes out in one ``sendto``. Group frames are ARP requests
or Neighbour Solicitations for an unmapped next hop (``sink.no_mapping``), link-local
control kept on the device, or multicast to replicate to the multicast targets.

On a hub it also detects hairpinning: decapsulation remembers in ``recent`` where each
(source, destination) pair came in, and a packet of that pair leaving towards another
peer becomes ``sink.hairpin``. Both notices are rate limited here.

Separate from the plane (lifecycle and control calls) because this is the per-packet
path of one direction; the plane registers ``on_device`` for the TAP descriptor.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv6Address, ip_address

from ..base import Address, DataPlaneConfig, DataPlaneSink, Drop, Role
from . import gre
from .peers import Peer, PeerTable
from .tap import ETH_HEADER, PEER_MAC, PEER_PREFIX

BUFFER = 65536 + 64  # a packet buffer: the largest IP packet and room for headers
HAIRPIN_HEAD = 128
NOTICE_INTERVAL = 1.0  # at most one no_mapping / hairpin notice per key per second
MEMORY_LIMIT = 8192  # entries in each notice/hairpin table before it is reset

ICMP_REDIRECT = 5
IPPROTO_IGMP = 2
ICMPV6_NEIGHBOUR_SOLICIT = 135
ICMPV6_REDIRECT = 137
# IGMP, MLD and ND stay on the device: neighbours are static and the tunnel carries
# no multicast routing, so group membership means nothing to the peers.
LINK_LOCAL_ICMPV6 = frozenset({130, 131, 132, 143, 133, 134, 135, 136, 137})
UNSPECIFIED6 = bytes(16)

_GRE_KEYED = gre.KEYED


class Encapsulator:
    """Reads frames from the TAP device and sends them as GRE; see the module docstring.

    ``drops`` and ``events`` are the plane's counters, counted into in place.
    """

    def __init__(
        self,
        config: DataPlaneConfig,
        sink: DataPlaneSink,
        peers: PeerTable,
        drops: dict[str, int],
        events: dict[str, int],
    ) -> None:
        self.sink = sink
        self.device = -1  # the TAP descriptor, set while the plane is open
        self._by_index = peers.by_index
        self._targets = peers.targets
        self._drops = drops
        self._events = events
        self._own = {i.ip for i in config.overlay}
        self._hub = config.role is Role.HUB
        self._key = config.key
        self._batch = config.batch
        self._hairpin_memory = config.hairpin_memory
        # (src, dst) -> ingress peer key, when; filled by decapsulation (hubs only).
        self.recent: dict[bytes, tuple[int | str, float]] = {}
        self._hairpin_sent: dict[bytes, float] = {}
        self._nomap_sent: dict[Address, float] = {}
        self._tx = bytearray(BUFFER)
        self._tx_mv = memoryview(self._tx)
        self._tx_gre_off = ETH_HEADER - (8 if self._key is not None else 4)

    def mapped(self, overlay: Address) -> None:
        """A mapping for ``overlay`` exists now: a later miss is news at once."""
        self._nomap_sent.pop(overlay, None)

    def expire(self, now: float) -> None:
        """Forget ingress pairs and notice times older than both memories."""
        horizon = now - max(self._hairpin_memory, NOTICE_INTERVAL)
        for table in (self.recent, self._hairpin_sent, self._nomap_sent):
            stale = [k for k, v in table.items() if (v[1] if isinstance(v, tuple) else v) < horizon]
            for k in stale:
                del table[k]

    def on_device(self, now: float) -> None:
        fd, buf, mv = self.device, self._tx, self._tx_mv
        iov = [buf]
        readv = os.readv
        by_index = self._by_index
        unpack_mac = PEER_MAC.unpack_from
        off = self._tx_gre_off
        gre4 = gre.header(gre.PROTO_IPV4, self._key)
        gre6 = gre.header(gre.PROTO_IPV6, self._key)
        recent = self.recent if self._hub else None
        for _round in range(self._batch):
            try:
                n = readv(fd, iov)
            except BlockingIOError:
                return
            prefix, index = unpack_mac(buf)
            b12 = buf[12]
            if prefix != PEER_PREFIX:
                self._group_frame(n, now)
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
                self._check_hairpin(peer, n, b12 == 0x08, now)

    def _check_hairpin(self, peer: Peer, n: int, v4: bool, now: float) -> None:
        buf = self._tx  # the Ethernet header is GRE by now; the IP packet is intact
        pair = bytes(buf[26:34] if v4 else buf[22:54])
        seen = self.recent.get(pair)
        if seen is None or seen[0] == peer.key:
            return
        if now - seen[1] > self._hairpin_memory:
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

    def _group_frame(self, n: int, now: float) -> None:
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
                self._resolution_wanted(IPv4Address(bytes(buf[38:42])), now)
            return
        if ethertype == 0x86DD:
            icmp = self._icmpv6_type(n)
            if icmp in LINK_LOCAL_ICMPV6:
                self._events["link_local_control"] += 1
                # Neighbour Solicitation from a real address (not DAD): target at 62.
                if icmp == ICMPV6_NEIGHBOUR_SOLICIT and buf[22:38] != UNSPECIFIED6 and n >= 78:
                    self._events["neighbour_solicitations"] += 1
                    self._resolution_wanted(IPv6Address(bytes(buf[62:78])), now)
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

    def _resolution_wanted(self, next_hop: Address, now: float) -> None:
        if next_hop in self._own:
            return
        last = self._nomap_sent.get(next_hop)
        if last is not None and now - last < NOTICE_INTERVAL:
            return
        if len(self._nomap_sent) >= MEMORY_LIMIT:
            self._nomap_sent.clear()
        self._nomap_sent[next_hop] = now
        self._events["no_mapping_notices"] += 1
        self.sink.no_mapping(next_hop)
