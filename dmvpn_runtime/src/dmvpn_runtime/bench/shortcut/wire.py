"""What the rig's sockets see, as data: the probe datagram, GRE packets on a ``wan0``
and rtnetlink route and neighbour messages.

Pure functions on bytes, so the parsing is unit-tested without a lab; the sockets and
their time stamps are the rig's.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

PORT = 40_404
MAGIC = b"DSCB"
PROBE = struct.Struct("!4sHI")  # magic, sample, sequence number
PROBE_SIZE = 64

IPPROTO_GRE = 47
GRE_PROTO_IPV4 = 0x0800
GRE_PROTO_NHRP = 0x2001
NHRP_RESOLUTION_REQUEST = 1
NHRP_RESOLUTION_REPLY = 2
NHRP_TRAFFIC_INDICATION = 8
RTM_NEWROUTE = 24
RTM_NEWNEIGH = 28
RTA_DST = 1
RTA_GATEWAY = 5
NDA_DST = 1


def probe(sample: int, seq: int) -> bytes:
    return PROBE.pack(MAGIC, sample, seq).ljust(PROBE_SIZE, b"\0")


@dataclass(frozen=True)
class Gre:
    """One IPv4 GRE packet as a capture sees it."""

    src: bytes  # outer source (packed IPv4)
    dst: bytes
    nhrp_type: int | None = None  # NHRP packets
    probe: tuple[int, int] | None = None  # our probes: (sample, seq)


def parse_gre(frame: bytes) -> Gre | None:
    """Classify an IPv4 packet (from its IP header on); None unless GRE."""
    if len(frame) < 24 or frame[0] >> 4 != 4 or frame[9] != IPPROTO_GRE:
        return None
    p = (frame[0] & 15) * 4
    if len(frame) < p + 4:
        return None
    flags, proto = struct.unpack_from("!HH", frame, p)
    p += 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) + 4 * bool(flags & 0x1000)
    src, dst = bytes(frame[12:16]), bytes(frame[16:20])
    if proto == GRE_PROTO_NHRP and len(frame) >= p + 18:
        return Gre(src, dst, nhrp_type=frame[p + 17])
    if proto == GRE_PROTO_IPV4 and len(frame) >= p + 20 and frame[p + 9] == socket.IPPROTO_UDP:
        u = p + (frame[p] & 15) * 4
        if len(frame) >= u + 8 + PROBE.size and struct.unpack_from("!H", frame, u + 2)[0] == PORT:
            magic, sample, seq = PROBE.unpack_from(frame, u + 8)
            if magic == MAGIC:
                return Gre(src, dst, probe=(sample, seq))
    return Gre(src, dst)


# rtnetlink layouts: message header, route message, neighbour message, attribute header.
_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BBHiHBB")
_RTATTR = struct.Struct("=HH")


def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while start + _RTATTR.size <= end:
        alen, atype = _RTATTR.unpack_from(data, start)
        if alen < _RTATTR.size:
            break
        out.setdefault(atype, bytes(data[start + _RTATTR.size : start + alen]))
        start += (alen + 3) & ~3
    return out


def parse_rtnl(data: bytes) -> list[tuple[str, str, str | None]]:
    """IPv4 routes and neighbours added, from an rtnetlink message batch.

    ``("route", prefix, gateway)`` for RTM_NEWROUTE, ``("neigh", address, None)`` for
    RTM_NEWNEIGH (the userspace data plane's NBMA mappings are neighbour entries).
    """
    out: list[tuple[str, str, str | None]] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype = _NLMSG.unpack_from(data, off)[:2]
        if length < _NLMSG.size:
            break
        end = min(off + length, len(data))
        body = off + _NLMSG.size
        if mtype == RTM_NEWROUTE and end - body >= _RTMSG.size:
            family, dst_len = _RTMSG.unpack_from(data, body)[:2]
            attrs = _attrs(data, body + _RTMSG.size, end)
            dst, gateway = attrs.get(RTA_DST, bytes(4)), attrs.get(RTA_GATEWAY)
            if family == socket.AF_INET and len(dst) == 4:
                via = socket.inet_ntoa(gateway) if gateway and len(gateway) == 4 else None
                out.append(("route", f"{socket.inet_ntoa(dst)}/{dst_len}", via))
        elif mtype == RTM_NEWNEIGH and end - body >= _NDMSG.size:
            family = _NDMSG.unpack_from(data, body)[0]
            dst = _attrs(data, body + _NDMSG.size, end).get(NDA_DST, b"")
            if family == socket.AF_INET and len(dst) == 4:
                out.append(("neigh", socket.inet_ntoa(dst), None))
        off += (length + 3) & ~3
    return out
