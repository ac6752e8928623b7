"""Decapsulation: GRE from the raw sockets, to the TAP device or to the sink.

Each received packet's GRE header is checked (version, flags, key): a fast path takes
the one shape peers send, ``gre.parse`` everything else. NHRP (0x2001) goes to the sink
as bytes, with whether it arrived through the protected interface; IPv4/IPv6 gets its
Ethernet header (source MAC: the sending peer's) written over the outer header it no
longer needs and goes to the device in one write. On a hub each delivered packet's
(source, destination) pair is remembered for the encapsulator's hairpin check.

Separate from the plane (lifecycle and control calls) because this is the per-packet
path of the other direction; the plane registers ``on_gre4``/``on_gre6`` for the sockets.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from ipaddress import ip_address

from ..base import DataPlaneConfig, DataPlaneSink, Drop
from . import gre
from .encapsulation import BUFFER, MEMORY_LIMIT
from .gre_socket import arrived_on
from .peers import PeerTable
from .tap import DEVICE_MAC, ETH_HEADER, UNKNOWN_PEER_MAC

_GRE_KEYED = gre.KEYED
_ETH4_UNKNOWN = DEVICE_MAC + UNKNOWN_PEER_MAC + b"\x08\x00"
_ETH6_UNKNOWN = DEVICE_MAC + UNKNOWN_PEER_MAC + b"\x86\xdd"
_TOO_BIG = (errno.EINVAL, errno.EMSGSIZE)
_U32 = struct.Struct("!I")
# Version/IHL, source address, then GRE flags, protocol and key of an IPv4 GRE packet.
_V4_GRE = struct.Struct("!B11xI4xHHI")


class Decapsulator:
    """Reads GRE from the raw sockets; see the module docstring.

    ``socks`` (by IP version), ``drops`` and ``events`` are the plane's, used in place;
    ``recent`` is the encapsulator's hairpin memory on a hub, else None.
    """

    def __init__(
        self,
        config: DataPlaneConfig,
        sink: DataPlaneSink,
        peers: PeerTable,
        socks: dict[int, socket.socket],
        recent: dict[bytes, tuple[int | str, float]] | None,
        drops: dict[str, int],
        events: dict[str, int],
    ) -> None:
        self.sink = sink
        self.device = -1  # the TAP descriptor, set while the plane is open
        self._socks = socks
        self._peers = peers.by_key
        self._recent = recent
        self._drops = drops
        self._events = events
        self._key = config.key
        self._batch = config.batch
        self._mtu = config.effective_mtu
        self._protected_ifname = config.protected_ifname
        self._protected_index = 0
        self._rx = bytearray(BUFFER)
        self._rx_mv = memoryview(self._rx)
        # An IPv6 raw socket delivers GRE without the IP header: receive it far enough
        # into the buffer that the Ethernet header fits in front of the payload.
        self._rx6_base = ETH_HEADER - (8 if self._key is not None else 4)

    def resolve_protected(self) -> None:
        """(Re)learn the protected interface's index: ipsec0 comes and goes with charon."""
        name = self._protected_ifname
        if name:
            try:
                self._protected_index = socket.if_nametoindex(name)
            except OSError:
                # Absent: nothing arrives protected; non-zero keeps PKTINFO reception on.
                self._protected_index = -1

    def on_gre4(self, now: float) -> None:
        self._receive(self._socks[4], 0, now)

    def on_gre6(self, now: float) -> None:
        self._receive(self._socks[6], self._rx6_base, now)

    def _receive(self, sock: socket.socket, base: int, now: float) -> None:
        buf, mv = self._rx, self._rx_mv
        view = mv[base:] if base else mv
        v4 = base == 0
        protected_index = self._protected_index
        pktinfo = protected_index != 0
        recv_into, recvfrom_into = sock.recv_into, sock.recvfrom_into
        head4 = _V4_GRE.unpack_from
        head6 = _GRE_KEYED.unpack_from
        key = self._key
        nokey = key is None
        expect = 0 if nokey else gre.FLAG_K
        hlen = 4 if nokey else 8
        write = os.write
        fd = self.device
        peers = self._peers
        recent = self._recent
        mtu = self._mtu
        protected = False
        src: int | str
        for _round in range(self._batch):
            try:
                if pktinfo:
                    n, anc, _flags, addr = sock.recvmsg_into([view], 64)
                    protected = arrived_on(anc, protected_index)
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
                recent[pair] = (src, now)
