"""Read NHRP packets out of pcap and pcapng files; write small pcap/pcapng files.

Standard library only. The reader understands:

- containers: pcap (microsecond and nanosecond magic, either byte order) and pcapng
  (several sections and interfaces, either byte order; Enhanced, Simple and the
  obsolete Packet blocks);
- link types: RAW (101, and the historic 12 and 14), Ethernet (1, with any number of
  802.1Q / 802.1ad tags), Linux cooked capture v1 (113) and v2 (276), as written by
  ``tcpdump -i any``;
- IPv4 (options, no fragments) and IPv6 (hop-by-hop, routing, destination options, AH
  and unfragmented fragment headers are skipped), then GRE (RFC 2784 with the RFC 2890
  key and sequence number; a present checksum is verified) carrying protocol 0x2001. A
  frame whose link-layer protocol is 0x2001 itself (a capture on the GRE device) is
  NHRP without GRE.

:func:`read_frames` yields one :class:`Frame` per packet record, numbered from 1 as
Wireshark numbers them. A frame holds either the NHRP octets (``nhrp``) or an
``error``: a :class:`NotNhrp` (well-formed traffic that is not NHRP, such as ESP or GRE
carrying IP) or another :class:`CaptureError` (a malformed or truncated frame). Only a
file that is not a capture at all raises.

The writer side (:func:`gre_ipv4`, :func:`write_pcap`, ...) builds the frames tests and
tools feed to tshark: by default RAW link type, IPv4, GRE with key 42.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import BinaryIO

from .checksum import internet_checksum

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_RAW",
    "CaptureError",
    "Frame",
    "NotNhrp",
    "ethernet",
    "gre",
    "gre_ipv4",
    "ipv4",
    "ipv6",
    "is_capture",
    "read_capture_file",
    "read_frames",
    "write_pcap",
    "write_pcapng",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_HISTORIC = (12, 14)  # DLT_RAW on OpenBSD/BSD/OS, same content
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_NHRP = 0x2001
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ_OLD = 0x9100
IPPROTO_GRE = 47

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D

_GRE_C = 0x8000
_GRE_R = 0x4000
_GRE_K = 0x2000
_GRE_S = 0x1000
_GRE_RESERVED0 = 0x0FF8  # bits 4-12 (with R and the strict-route bit of RFC 1701)
_GRE_VERSION = 0x0007

# IPv6 extension headers that can be skipped to reach the upper layer.
_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_ESP = 50
_IPV6_AH = 51
_IPV6_NO_NEXT = 59
_IPV6_DEST_OPTS = 60
_IPV6_MOBILITY = 135


class CaptureError(Exception):
    """A frame (or a file) that cannot be read: ``reason``, ``offset`` in the frame."""

    def __init__(self, reason: str, offset: int, detail: str = "") -> None:
        self.reason = reason
        self.offset = offset
        self.detail = detail
        text = f"{reason} at offset {offset}"
        super().__init__(f"{text}: {detail}" if detail else text)


class NotNhrp(CaptureError):
    """A well-formed frame that carries no NHRP (other traffic in the same capture)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One packet record: ``index`` counts from 1 like Wireshark's frame numbers."""

    index: int
    nhrp: bytes | None = None
    error: CaptureError | None = None
    src: IPv4Address | IPv6Address | None = None  # outer (NBMA) addresses
    dst: IPv4Address | IPv6Address | None = None
    gre_key: int | None = None
    truncated: bool = False  # captured length below the length on the wire


# --- containers -------------------------------------------------------------------------


def is_capture(data: bytes) -> bool:
    """Whether ``data`` starts like a pcap or pcapng file."""
    if len(data) < 4:
        return False
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    return bool({magic_le, magic_be} & {_PCAP_MAGIC_US, _PCAP_MAGIC_NS} or magic_le == _PCAPNG_SHB)


def read_capture_file(path: str) -> Iterator[Frame]:
    """:func:`read_frames` over a file's content."""
    with open(path, "rb") as f:
        data = f.read()
    return read_frames(data)


def read_frames(data: bytes) -> Iterator[Frame]:
    """One :class:`Frame` per packet record of a pcap or pcapng file's content.

    Raises :class:`CaptureError` at once if ``data`` is not a capture file; a file that
    ends in the middle of a record yields a last frame with a ``truncated_file`` error.
    """
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        return _read_pcapng(data)
    return _read_pcap(data)


def _read_pcap(data: bytes) -> Iterator[Frame]:
    if len(data) < 24:
        raise CaptureError("not_a_capture", 0, "shorter than a pcap file header")
    for endian in ("<", ">"):
        magic = struct.unpack_from(endian + "I", data)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise CaptureError("not_a_capture", 0, f"unknown magic 0x{data[:4].hex()}")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0xFFFF  # upper bits: FCS info
    return _pcap_records(data, endian, linktype)


def _pcap_records(data: bytes, endian: str, linktype: int) -> Iterator[Frame]:
    record = struct.Struct(endian + "IIII")
    pos, index = 24, 0
    while pos < len(data):
        index += 1
        if pos + record.size > len(data):
            yield Frame(index, error=CaptureError("truncated_file", 0, "partial record header"))
            return
        _sec, _frac, caplen, origlen = record.unpack_from(data, pos)
        pos += record.size
        if pos + caplen > len(data):
            yield Frame(index, error=CaptureError("truncated_file", 0, "partial record"))
            return
        yield _frame(index, linktype, data[pos : pos + caplen], caplen < origlen)
        pos += caplen


def _read_pcapng(data: bytes) -> Iterator[Frame]:
    if len(data) < 28:
        raise CaptureError("not_a_capture", 0, "shorter than a pcapng section header")
    bom = data[8:12]
    if bom == b"\x1a\x2b\x3c\x4d":
        endian = ">"
    elif bom == b"\x4d\x3c\x2b\x1a":
        endian = "<"
    else:
        raise CaptureError("not_a_capture", 8, "pcapng byte-order magic missing")
    return _pcapng_blocks(data, endian)


def _pcapng_blocks(data: bytes, endian: str) -> Iterator[Frame]:
    interfaces: list[int] = []  # link type per interface id, per section
    pos, index = 0, 0
    while pos < len(data):
        if pos + 12 > len(data):
            yield Frame(index + 1, error=CaptureError("truncated_file", 0, "partial block"))
            return
        if struct.unpack_from("<I", data, pos)[0] == _PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            endian = ">" if bom == b"\x1a\x2b\x3c\x4d" else "<"
            interfaces = []
        block_type, total = struct.unpack_from(endian + "II", data, pos)
        if total < 12 or total % 4 or pos + total > len(data):
            yield Frame(index + 1, error=CaptureError("truncated_file", 0, "bad block length"))
            return
        body = data[pos + 8 : pos + total - 4]
        pos += total
        if block_type == 1:  # Interface Description Block
            if len(body) >= 2:
                interfaces.append(struct.unpack_from(endian + "H", body)[0])
            continue
        if block_type not in (2, 3, 6):
            continue  # section header, statistics, name resolution, custom, ...
        index += 1
        if block_type == 6:  # Enhanced Packet Block
            if len(body) < 20:
                yield Frame(index, error=CaptureError("bad_block", 0, "short packet block"))
                continue
            iface, _hi, _lo, caplen, origlen = struct.unpack_from(endian + "IIIII", body)
            start = 20
        elif block_type == 2:  # obsolete Packet Block
            if len(body) < 20:
                yield Frame(index, error=CaptureError("bad_block", 0, "short packet block"))
                continue
            iface, _drops, _hi, _lo, caplen, origlen = struct.unpack_from(endian + "HHIIII", body)
            start = 20
        else:  # Simple Packet Block: interface 0, captured length from the block length
            if len(body) < 4:
                yield Frame(index, error=CaptureError("bad_block", 0, "short packet block"))
                continue
            iface, origlen, start = 0, struct.unpack_from(endian + "I", body)[0], 4
            caplen = min(origlen, len(body) - 4)
        if iface >= len(interfaces):
            yield Frame(index, error=CaptureError("bad_block", 0, f"unknown interface {iface}"))
            continue
        if start + caplen > len(body):
            yield Frame(index, error=CaptureError("bad_block", 0, "packet data past its block"))
            continue
        yield _frame(index, interfaces[iface], body[start : start + caplen], caplen < origlen)


# --- link, network and GRE layers ------------------------------------------------------


def _frame(index: int, linktype: int, raw: bytes, truncated: bool) -> Frame:
    try:
        nhrp, src, dst, key = _link(linktype, raw)
    except CaptureError as exc:
        return Frame(index, error=exc, truncated=truncated)
    return Frame(index, nhrp, None, src, dst, key, truncated)


_Layers = tuple[
    bytes, IPv4Address | IPv6Address | None, IPv4Address | IPv6Address | None, int | None
]


def _link(linktype: int, raw: bytes) -> _Layers:
    """(NHRP octets, outer source, outer destination, GRE key) of one frame."""
    if linktype == LINKTYPE_RAW or linktype in LINKTYPE_RAW_HISTORIC:
        if not raw:
            raise CaptureError("truncated", 0, "empty frame")
        version = raw[0] >> 4
        ethertype = {4: ETH_P_IP, 6: ETH_P_IPV6}.get(version)
        if ethertype is None:
            raise CaptureError("bad_ip", 0, f"IP version {version}")
        return _network(ethertype, raw, 0)
    if linktype == LINKTYPE_ETHERNET:
        if len(raw) < 14:
            raise CaptureError("truncated", 0, "Ethernet header")
        ethertype, pos = struct.unpack_from("!H", raw, 12)[0], 14
        while ethertype in (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ_OLD):
            if pos + 4 > len(raw):
                raise CaptureError("truncated", pos, "VLAN tag")
            ethertype = struct.unpack_from("!H", raw, pos + 2)[0]
            pos += 4
        return _network(ethertype, raw, pos)
    if linktype == LINKTYPE_LINUX_SLL:
        if len(raw) < 16:
            raise CaptureError("truncated", 0, "Linux cooked header")
        return _network(struct.unpack_from("!H", raw, 14)[0], raw, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(raw) < 20:
            raise CaptureError("truncated", 0, "Linux cooked v2 header")
        return _network(struct.unpack_from("!H", raw, 0)[0], raw, 20)
    raise NotNhrp("unsupported_linktype", 0, f"link type {linktype}")


def _network(ethertype: int, raw: bytes, pos: int) -> _Layers:
    if ethertype == ETH_P_IP:
        return _ipv4(raw, pos)
    if ethertype == ETH_P_IPV6:
        return _ipv6(raw, pos)
    if ethertype == ETH_P_NHRP:  # captured on the GRE device: no IP/GRE header left
        return raw[pos:], None, None, None
    raise NotNhrp("not_ip", pos, f"ethertype 0x{ethertype:04x}")


def _ipv4(raw: bytes, pos: int) -> _Layers:
    if pos + 20 > len(raw):
        raise CaptureError("truncated", pos, "IPv4 header")
    vihl, _tos, total, _id, frag, _ttl, proto = struct.unpack_from("!BBHHHBB", raw, pos)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise CaptureError("bad_ip", pos, f"IPv4 version/IHL 0x{vihl:02x}")
    if total < ihl:
        raise CaptureError("bad_ip", pos + 2, f"IPv4 total length {total}")
    if pos + ihl > len(raw):
        raise CaptureError("truncated", pos, "IPv4 options")
    src = IPv4Address(raw[pos + 12 : pos + 16])
    dst = IPv4Address(raw[pos + 16 : pos + 20])
    if frag & 0x3FFF:  # more fragments, or not the first one
        raise CaptureError("fragmented", pos + 6, "IPv4 fragment (not reassembled)")
    end = min(pos + total, len(raw))  # drops Ethernet padding; a short capture keeps all
    if proto != IPPROTO_GRE:
        raise NotNhrp("not_gre", pos + 9, f"IP protocol {proto}")
    nhrp, key = _gre(raw[pos + ihl : end], pos + ihl)
    return nhrp, src, dst, key


def _ipv6(raw: bytes, pos: int) -> _Layers:
    if pos + 40 > len(raw):
        raise CaptureError("truncated", pos, "IPv6 header")
    if raw[pos] >> 4 != 6:
        raise CaptureError("bad_ip", pos, f"IP version {raw[pos] >> 4}")
    payload_len, nxt = struct.unpack_from("!HB", raw, pos + 4)
    src = IPv6Address(raw[pos + 8 : pos + 24])
    dst = IPv6Address(raw[pos + 24 : pos + 40])
    end = min(pos + 40 + payload_len, len(raw)) if payload_len else len(raw)  # 0: jumbogram
    cur = pos + 40
    while True:
        if nxt == IPPROTO_GRE:
            break
        if nxt in (_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTS, _IPV6_MOBILITY, _IPV6_AH):
            if cur + 2 > end:
                raise CaptureError("truncated", cur, f"IPv6 extension header {nxt}")
            hdr_len = raw[cur + 1]
            length = (hdr_len + 2) * 4 if nxt == _IPV6_AH else (hdr_len + 1) * 8
            if cur + length > end:
                raise CaptureError("truncated", cur, f"IPv6 extension header {nxt}")
            nxt = raw[cur]
            cur += length
        elif nxt == _IPV6_FRAGMENT:
            if cur + 8 > end:
                raise CaptureError("truncated", cur, "IPv6 fragment header")
            offset_flags = struct.unpack_from("!H", raw, cur + 2)[0]
            if offset_flags & 0xFFF9:  # offset != 0 or M set: a real fragment
                raise CaptureError("fragmented", cur, "IPv6 fragment (not reassembled)")
            nxt = raw[cur]
            cur += 8
        elif nxt == _IPV6_ESP:
            raise NotNhrp("encrypted", cur, "ESP")
        else:
            raise NotNhrp("not_gre", cur, f"IPv6 next header {nxt}")
    nhrp, key = _gre(raw[cur:end], cur)
    return nhrp, src, dst, key


def _gre(data: bytes, base: int) -> tuple[bytes, int | None]:
    """The NHRP octets in a GRE packet, and its key (or None)."""
    if len(data) < 4:
        raise CaptureError("truncated", base, "GRE header")
    flags, proto = struct.unpack_from("!HH", data)
    if flags & _GRE_VERSION:
        raise NotNhrp("not_nhrp", base, f"GRE version {flags & _GRE_VERSION}")
    if flags & (_GRE_R | _GRE_RESERVED0):
        raise CaptureError("bad_gre", base, f"GRE reserved bits 0x{flags:04x}")
    pos = 4
    if flags & _GRE_C:
        if len(data) < 8:
            raise CaptureError("truncated", base, "GRE checksum")
        if internet_checksum(data) != 0:
            raise CaptureError("bad_gre_checksum", base + 4, "GRE checksum")
        pos += 4
    key = None
    if flags & _GRE_K:
        if pos + 4 > len(data):
            raise CaptureError("truncated", base + pos, "GRE key")
        key = struct.unpack_from("!I", data, pos)[0]
        pos += 4
    if flags & _GRE_S:
        if pos + 4 > len(data):
            raise CaptureError("truncated", base + pos, "GRE sequence number")
        pos += 4
    if proto != ETH_P_NHRP:
        raise NotNhrp("not_nhrp", base + 2, f"GRE protocol 0x{proto:04x}")
    return data[pos:], key


# --- writing ----------------------------------------------------------------------------


def gre(
    payload: bytes,
    key: int | None = 42,
    seq: int | None = None,
    checksum: bool = False,
    proto: int = ETH_P_NHRP,
) -> bytes:
    """A GRE packet (RFC 2784/2890) around ``payload``."""
    flags = (_GRE_C if checksum else 0) | (_GRE_K if key is not None else 0)
    flags |= _GRE_S if seq is not None else 0
    head = struct.pack("!HH", flags, proto)
    if checksum:
        head += b"\x00\x00\x00\x00"
    if key is not None:
        head += struct.pack("!I", key)
    if seq is not None:
        head += struct.pack("!I", seq)
    packet = bytearray(head + payload)
    if checksum:
        struct.pack_into("!H", packet, 4, internet_checksum(packet))
    return bytes(packet)


def ipv4(
    payload: bytes,
    src: str | IPv4Address = "198.51.100.2",
    dst: str | IPv4Address = "203.0.113.1",
    proto: int = IPPROTO_GRE,
    ttl: int = 64,
    ident: int = 1,
) -> bytes:
    """An IPv4 packet (no options, header checksum set)."""
    header = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            ident,
            0,
            ttl,
            proto,
            0,
            IPv4Address(src).packed,
            IPv4Address(dst).packed,
        )
    )
    struct.pack_into("!H", header, 10, internet_checksum(header))
    return bytes(header) + payload


def ipv6(
    payload: bytes,
    src: str | IPv6Address = "2001:db8::2",
    dst: str | IPv6Address = "2001:db8::1",
    proto: int = IPPROTO_GRE,
    hop_limit: int = 64,
    extension_headers: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """An IPv6 packet; ``extension_headers`` are (header type, header octets) in order.

    Each header's first octet (its next-header field) is filled in here.
    """
    chain = list(extension_headers)
    body = bytearray()
    for i, (_htype, hdr) in enumerate(chain):
        following = chain[i + 1][0] if i + 1 < len(chain) else proto
        body += bytes([following]) + hdr[1:]
    first = chain[0][0] if chain else proto
    body += payload
    return (
        struct.pack("!IHBB", 0x60000000, len(body), first, hop_limit)
        + IPv6Address(src).packed
        + IPv6Address(dst).packed
        + bytes(body)
    )


def ethernet(
    payload: bytes,
    ethertype: int = ETH_P_IP,
    vlans: Iterable[int] = (),
    src: bytes = b"\x02\x00\x00\x00\x00\x02",
    dst: bytes = b"\x02\x00\x00\x00\x00\x01",
    pad: bool = True,
) -> bytes:
    """An Ethernet II frame, with 802.1Q tags for ``vlans``; padded to 60 octets."""
    head = dst + src
    for vid in vlans:
        head += struct.pack("!HH", ETH_P_8021Q, vid & 0x0FFF)
    frame = head + struct.pack("!H", ethertype) + payload
    if pad and len(frame) < 60:
        frame += bytes(60 - len(frame))
    return frame


def gre_ipv4(
    nhrp: bytes, src: str = "198.51.100.2", dst: str = "203.0.113.1", key: int | None = 42
) -> bytes:
    """NHRP in GRE (key 42 by default) in IPv4: a RAW link-type frame."""
    return ipv4(gre(nhrp, key=key), src, dst)


def _as_frames(frames: Iterable[bytes]) -> list[bytes]:
    return [bytes(f) for f in frames]


def write_pcap(
    out: BinaryIO, frames: Iterable[bytes], linktype: int = LINKTYPE_RAW, start: int = 1_700_000_000
) -> None:
    """A little-endian microsecond pcap of ``frames`` (one second apart)."""
    out.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, 65535, linktype))
    for i, frame in enumerate(_as_frames(frames)):
        out.write(struct.pack("<IIII", start + i, 0, len(frame), len(frame)))
        out.write(frame)


def write_pcapng(
    out: BinaryIO,
    frames: Iterable[bytes],
    linktype: int = LINKTYPE_RAW,
    start: int = 1_700_000_000,
    big_endian: bool = False,
) -> None:
    """A pcapng file: one section, one interface, one Enhanced Packet Block per frame."""
    e = ">" if big_endian else "<"

    def block(block_type: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        total = 12 + len(body)
        return struct.pack(e + "II", block_type, total) + body + struct.pack(e + "I", total)

    out.write(block(_PCAPNG_SHB, struct.pack(e + "IHHq", _PCAPNG_BOM, 1, 0, -1)))
    out.write(block(1, struct.pack(e + "HHI", linktype, 0, 65535)))
    for i, frame in enumerate(_as_frames(frames)):
        ts = (start + i) * 1_000_000
        head = struct.pack(e + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        out.write(block(6, head + frame))
