"""The NHRP wire codec against packets assembled octet by octet from RFC 2332 §5.

The packets here are built by hand (``build`` below, with its own RFC 1071 checksum),
not by the encoder, so decode is checked against the RFC layout and encode against the
same octets.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmvpn_runtime.checksum import internet_checksum
from dmvpn_runtime.nhrp.wire import (
    Afn,
    Cie,
    CieCode,
    CleartextAuthentication,
    DecodeError,
    DeviceCapabilities,
    EncodeError,
    End,
    ErrorCode,
    ExtensionType,
    ForwardTransitNhs,
    KeyedHashAuthentication,
    NatAddress,
    Packet,
    PacketType,
    ProtocolType,
    Reason,
    ResponderAddress,
    ReverseTransitNhs,
    UnknownExtension,
    VendorPrivate,
    decode,
    encode,
    extension_offsets,
    with_end,
)
from dmvpn_runtime.nhrp.wire.codec import _checksum_ok
from dmvpn_runtime.nhrp.wire.constants import FLAG_NAMES

V4 = {
    "nbma": ip_address("198.51.100.2"),
    "hub_nbma": ip_address("203.0.113.1"),
    "src": ip_address("10.255.255.2"),
    "dst": ip_address("10.255.255.1"),
}
V6 = {
    "nbma": ip_address("2001:db8::2"),
    "hub_nbma": ip_address("2001:db8::1"),
    "src": ip_address("fd00::2"),
    "dst": ip_address("fd00::1"),
}
FAMILIES = {
    "nbma4-proto4": (Afn.IPV4, ProtocolType.IPV4, V4["nbma"], V4["src"], V4["dst"]),
    "nbma4-proto6": (Afn.IPV4, ProtocolType.IPV6, V4["nbma"], V6["src"], V6["dst"]),
    "nbma6-proto4": (Afn.IPV6, ProtocolType.IPV4, V6["nbma"], V4["src"], V4["dst"]),
    "nbma6-proto6": (Afn.IPV6, ProtocolType.IPV6, V6["nbma"], V6["src"], V6["dst"]),
}


# --- an independent packet builder ------------------------------------------------------


def rfc1071(data: bytes) -> int:
    """RFC 1071 §4.1, the textbook loop."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def cie_raw(code=0, prefix=0, mtu=0, hold=0, nbma=b"", proto=b"", pref=0, unused=0,
            tl=None, sub=0, plen=None) -> bytes:  # fmt: skip
    return (
        struct.pack(
            "!BBHHHBBBB",
            code,
            prefix,
            unused,
            mtu,
            hold,
            len(nbma) if tl is None else tl,
            sub,
            len(proto) if plen is None else plen,
            pref,
        )
        + nbma
        + proto
    )


def ext_raw(ext_type: int, value: bytes = b"", c: bool = True, u: bool = False) -> bytes:
    word = ext_type | (0x8000 if c else 0) | (0x4000 if u else 0)
    return struct.pack("!HH", word, len(value)) + value


END = ext_raw(0)


def build(ptype: int, mandatory: bytes, body: bytes = b"", exts: bytes | None = None, *,
          afn=1, proto=0x0800, hop=1, shtl=4, sstl=0, version=1, snap=bytes(5), pktsz=None,
          extoff=None, checksum=None, tail=b"") -> bytes:  # fmt: skip
    """Fixed header + mandatory part (with addresses) + CIEs/payload + extensions."""
    rest = mandatory + body
    if extoff is None:
        extoff = 20 + len(rest) if exts is not None else 0
    rest += exts or b""
    size = 20 + len(rest) if pktsz is None else pktsz
    head = struct.pack(
        "!HH5sBHHHBBBB", afn, proto, snap, hop, size, 0, extoff, version, ptype, shtl, sstl
    )
    packet = bytearray(head + rest)
    struct.pack_into("!H", packet, 12, rfc1071(bytes(packet[:size])) if checksum is None
                     else checksum)  # fmt: skip
    return bytes(packet) + tail


def mand(src_len=4, dst_len=4, flags=0, request_id=0, addrs=b"") -> bytes:
    return struct.pack("!BBHI", src_len, dst_len, flags, request_id) + addrs


def v4_addrs() -> bytes:
    return V4["nbma"].packed + V4["src"].packed + V4["dst"].packed


def registration(exts: bytes | None = END, cies: bytes | None = None, **kw) -> bytes:
    """An IPv4 Registration Request, one CIE unless told otherwise."""
    body = cie_raw(prefix=255, hold=7200) if cies is None else cies
    return build(3, mand(flags=0x8002, request_id=1, addrs=v4_addrs()), body, exts, **kw)


# --- packet types and families -----------------------------------------------------------


def example(ptype: PacketType, family: str) -> Packet:
    afn, proto, nbma, src, dst = FAMILIES[family]
    common = {"afn": afn, "protocol_type": proto, "src_nbma": nbma, "src_proto": src,
              "dst_proto": dst, "hop_count": 7}  # fmt: skip
    if ptype == PacketType.ERROR_INDICATION:
        return Packet(ptype, **common, error_code=ErrorCode.LOOP_DETECTED, error_offset=20,
                      payload=b"\x00\x01quoted packet")  # fmt: skip
    if ptype == PacketType.TRAFFIC_INDICATION:
        return Packet(ptype, **common, traffic_code=0, payload=b"E\x00\x00\x1cdata",
                      extensions=with_end([CleartextAuthentication(b"secret")]))  # fmt: skip
    prefix = 32 if proto == ProtocolType.IPV4 else 128
    cie = Cie(code=CieCode.SUCCESS, prefix_length=prefix, mtu=1400, holding_time=600,
              preference=3, client_nbma=nbma, client_proto=src)  # fmt: skip
    return Packet(ptype, **common, flags=0x0002, request_id=0xDEADBEEF, cies=(cie, Cie()),
                  extensions=with_end([ResponderAddress(), ForwardTransitNhs()]))  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.json_name)
def test_every_type_in_every_family(ptype, family):
    packet = example(ptype, family)
    wire = encode(packet)
    afn, proto, nbma, src, dst = FAMILIES[family]
    nbma_len, proto_len = len(nbma.packed), len(src.packed)
    assert struct.unpack_from("!HH5sB", wire) == (afn, proto, bytes(5), 7)
    assert int.from_bytes(wire[10:12], "big") == len(wire)
    assert rfc1071(wire) == 0
    assert wire[16:20] == bytes([1, ptype, nbma_len, 0])
    assert wire[20:22] == bytes([proto_len, proto_len])
    addrs = 28 + nbma_len + 2 * proto_len
    assert wire[28:addrs] == nbma.packed + src.packed + dst.packed
    if ptype == PacketType.ERROR_INDICATION:
        assert wire[22:28] == struct.pack("!HHH", 0, 3, 20)
        assert wire[addrs:] == packet.payload
        assert wire[14:16] == b"\x00\x00"
    elif ptype == PacketType.TRAFFIC_INDICATION:
        assert wire[22:28] == bytes(6)  # unused(16) code(16)=0 unused(16)
        extoff = int.from_bytes(wire[14:16], "big")
        assert wire[addrs:extoff] == packet.payload
    else:
        assert wire[22:28] == struct.pack("!HI", 0x0002, 0xDEADBEEF)
        first = wire[addrs : addrs + 12]
        assert first == struct.pack("!BBHHHBBBB", 0, 8 * proto_len, 0, 1400, 600, nbma_len, 0,
                                    proto_len, 3)  # fmt: skip
    assert decode(wire) == packet
    assert encode(decode(wire)) == wire


def test_hand_built_ipv6_resolution_reply():
    cie = cie_raw(0, 128, 1400, 600, V6["hub_nbma"].packed, V6["dst"].packed, pref=9)
    addrs = V6["nbma"].packed + V6["src"].packed + V6["dst"].packed
    responder = ext_raw(3, cie_raw(0, 128, 0, 600, V6["hub_nbma"].packed, V6["dst"].packed))
    wire = build(2, mand(16, 16, 0xC800, 77, addrs), cie, responder + END, afn=2,
                 proto=0x86DD, shtl=16, hop=64)  # fmt: skip
    p = decode(wire)
    assert p.type == PacketType.RESOLUTION_REPLY
    assert (p.afn, p.protocol_type, p.hop_count) == (Afn.IPV6, ProtocolType.IPV6, 64)
    assert (p.flags, p.request_id) == (0xC800, 77)
    assert (p.src_nbma, p.src_proto, p.dst_proto) == (V6["nbma"], V6["src"], V6["dst"])
    assert p.cies == (Cie(0, 128, 1400, 600, 9, V6["hub_nbma"], V6["dst"]),)
    assert p.extensions == (
        ResponderAddress(Cie(0, 128, 0, 600, 0, V6["hub_nbma"], V6["dst"])),
        End(),
    )
    assert encode(p) == wire


def test_subaddress_free_addresses_of_length_zero():
    wire = build(1, mand(0, 0, 0, 5), shtl=0)
    p = decode(wire)
    assert (p.src_nbma, p.src_proto, p.dst_proto, p.cies, p.extensions) == (None,) * 3 + ((), ())
    assert encode(p) == wire


def test_octets_past_packet_size_are_ignored_and_any_buffer_type_works():
    wire = registration()
    assert decode(wire + b"\xff" * 7) == decode(wire)
    assert decode(bytearray(wire)) == decode(memoryview(wire)) == decode(wire)


def test_odd_length_checksum_pads_with_zero():
    wire = build(8, struct.pack("!BBHHH", 4, 4, 0, 0, 0) + v4_addrs(), b"\x45\x00\x01")
    assert len(wire) % 2 == 1
    p = decode(wire)
    assert p.payload == b"\x45\x00\x01"
    assert encode(p) == wire
    assert rfc1071(encode(p)) == 0


def test_checksum_alias_ffff_is_accepted_and_encoded_as_zero():
    # Choose the last payload word so that the sum of everything but the checksum is
    # 0xffff: the computed checksum is then 0x0000, and 0xffff verifies too.
    base = build(8, struct.pack("!BBHHH", 4, 4, 0, 0, 0) + v4_addrs(), b"\x00\x00", checksum=0)
    word = rfc1071(base)  # ~sum: adding it makes the sum 0xffff
    wire = bytearray(base[:-2] + struct.pack("!H", word))
    assert rfc1071(bytes(wire)) == 0  # the sum is 0xffff with a zero checksum field
    wire[12:14] = b"\xff\xff"
    p = decode(bytes(wire))
    assert encode(p)[12:14] == b"\x00\x00"
    assert encode(p)[14:] == bytes(wire[14:])


def test_traffic_indication_unused_fields_are_kept():
    wire = build(8, struct.pack("!BBHHH", 4, 4, 0x1234, 0, 0x5678) + v4_addrs(), b"E")
    p = decode(wire)
    assert p.reserved == 0x12345678 and p.traffic_code == 0
    assert encode(p) == wire


def test_error_indication_fields():
    quoted = registration()
    wire = build(7, struct.pack("!BBHHH", 4, 4, 0, 15, 9) + v4_addrs(), quoted)
    p = decode(wire)
    assert (p.error_code, p.error_offset) == (ErrorCode.HOP_COUNT_EXCEEDED, 9)
    assert p.payload == quoted and decode(p.payload).request_id == 1
    assert encode(p) == wire


# --- numbers from the RFCs ---------------------------------------------------------------


def test_extension_offsets_name_each_extension_header_in_decode_order():
    exts = ext_raw(3, cie_raw(prefix=32)) + ext_raw(0x1234, b"xy", c=False) + ext_raw(5) + END
    data = registration(exts=exts)
    offsets = extension_offsets(data)
    start = len(registration(exts=None))  # the extensions follow the CIE
    assert offsets == [start, start + 4 + 12, start + 4 + 12 + 6, start + 4 + 12 + 6 + 4]
    types = [struct.unpack_from("!H", data, o)[0] & 0x3FFF for o in offsets]
    assert types == [e.type for e in decode(data).extensions] == [3, 0x1234, 5, 0]
    assert extension_offsets(registration(exts=None)) == []  # ar$extoff 0: none
    truncated = registration(exts=ext_raw(3, b"\x00" * 40) + END, pktsz=None)[:-10]
    assert extension_offsets(truncated) == [start]  # stops where they no longer fit
    assert extension_offsets(b"\x00" * 19) == []


def test_rfc_codes():
    assert [int(c) for c in CieCode] == [0, 4, 5, 12, 13, 14]
    assert ErrorCode.UNRECOGNIZED_EXTENSION == 1
    assert ErrorCode.LOOP_DETECTED == 3
    assert ErrorCode.HOP_COUNT_EXCEEDED == 15
    assert [int(e) for e in ErrorCode][:9] == [1, 3, 6, 7, 8, 9, 10, 11, 15]
    assert [int(t) for t in PacketType] == list(range(1, 9))
    assert {int(t) for t in ExtensionType} >= {0, 3, 4, 5, 7, 8, 9}


@pytest.mark.parametrize(
    ("ptype", "bits"),
    [
        (PacketType.RESOLUTION_REQUEST, {0x8000: "router", 0x4000: "authoritative",
                                         0x2000: "stable_destination", 0x1000: "unique",
                                         0x0800: "stable_source", 0x0002: "nat"}),
        (PacketType.RESOLUTION_REPLY, {0x8000: "router", 0x1000: "unique", 0x0002: "nat"}),
        (PacketType.REGISTRATION_REQUEST, {0x8000: "unique", 0x0002: "nat"}),
        (PacketType.REGISTRATION_REPLY, {0x8000: "unique", 0x0002: "nat"}),
        (PacketType.PURGE_REQUEST, {0x8000: "no_reply", 0x0002: "nat"}),
        (PacketType.PURGE_REPLY, {0x8000: "no_reply", 0x0002: "nat"}),
    ],
    ids=lambda x: x.json_name if isinstance(x, PacketType) else "",
)  # fmt: skip
def test_flags_by_type(ptype, bits):
    for bit, name in bits.items():
        assert FLAG_NAMES[ptype][bit] == name
        wire = build(ptype, mand(flags=bit, request_id=1, addrs=v4_addrs()))
        assert wire[22:24] == struct.pack("!H", bit)
        assert decode(wire).flags == bit
    wire = build(ptype, mand(flags=0xFFFF, addrs=v4_addrs()))  # unnamed bits survive
    assert decode(wire).flags == 0xFFFF and encode(decode(wire)) == wire


# --- extensions --------------------------------------------------------------------------

NAT_CIE = Cie(prefix_length=32, client_nbma=V4["hub_nbma"], client_proto=V4["dst"])
NAT_CIE_RAW = cie_raw(prefix=32, nbma=V4["hub_nbma"].packed, proto=V4["dst"].packed)


@pytest.mark.parametrize(
    ("raw", "ext"),
    [
        (ext_raw(3), ResponderAddress()),
        (ext_raw(3, NAT_CIE_RAW), ResponderAddress(NAT_CIE)),
        (ext_raw(4), ForwardTransitNhs()),
        (ext_raw(4, NAT_CIE_RAW * 2), ForwardTransitNhs((NAT_CIE, NAT_CIE))),
        (ext_raw(5, NAT_CIE_RAW, c=False), ReverseTransitNhs((NAT_CIE,), compulsory=False)),
        (ext_raw(7, b"\x00\x00\x00\x01cisco123"), CleartextAuthentication(b"cisco123")),
        (ext_raw(7, b"\x00\x00\x00\x01"), CleartextAuthentication(b"")),
        (
            ext_raw(7, b"\x00\x00\x01\x00" + V4["src"].packed + b"\xaa" * 16),
            KeyedHashAuthentication(spi=256, source=V4["src"], data=b"\xaa" * 16),
        ),
        (
            ext_raw(7, b"\x00\x07\x00\x01" + V4["src"].packed),
            KeyedHashAuthentication(spi=1, source=V4["src"], reserved=7),
        ),
        (ext_raw(8, b"\x00\x00\x0cdata", c=False), VendorPrivate(0x00000C, b"data")),
        (ext_raw(8, b"\xff\xff\xff", c=False), VendorPrivate(0xFFFFFF, b"")),
        (ext_raw(9, NAT_CIE_RAW, c=False), NatAddress((NAT_CIE,))),
        (ext_raw(9, b"", c=False), NatAddress(())),
        (ext_raw(9, struct.pack("!II", 1, 0), c=False), DeviceCapabilities(1, 0)),
        (ext_raw(10, b"\x01\x02", c=True), UnknownExtension(10, b"\x01\x02", True)),
        (ext_raw(0x1234, b"x", c=False), UnknownExtension(0x1234, b"x", False)),
        (ext_raw(2), UnknownExtension(2, b"", True)),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, bytes) else "",
)
def test_each_extension(raw, ext):
    wire = registration(raw + END)
    p = decode(wire)
    assert p.extensions == (ext, End())
    assert p.find(type(ext)) == ext and p.find_type(ext.type) == ext
    assert encode(p) == wire


def test_extension_order_and_compulsory_bits_are_kept():
    exts = ext_raw(9, NAT_CIE_RAW, c=False) + ext_raw(4) + ext_raw(3, c=False) + ext_raw(0, c=False)
    p = decode(registration(exts))
    assert [e.type for e in p.extensions] == [9, 4, 3, 0]
    assert [e.compulsory for e in p.extensions] == [False, True, False, False]
    assert encode(p) == registration(exts)


def test_end_alone_and_no_extension_part():
    assert decode(registration(END)).extensions == (End(),)
    assert decode(registration(None)).extensions == ()
    assert registration(None)[14:16] == b"\x00\x00"


def test_cie_fields_and_unused_bits():
    cie = cie_raw(CieCode.UNIQUE_ADDRESS_ALREADY_REGISTERED, 255, 1500, 7200, pref=200,
                  unused=0xBEEF)  # fmt: skip
    p = decode(registration(cies=cie))
    assert p.cies == (Cie(14, 255, 1500, 7200, 200, None, None, reserved=0xBEEF),)
    assert encode(p) == registration(cies=cie)


# --- decode errors: every reason, at its offset ------------------------------------------

CIE_AT = 40  # first CIE of ``registration()``: 20 + 8 + 4 + 4 + 4
EXT_AT = 52  # its extension part


def with_u16(data: bytes, offset: int, value: int, fix: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into("!H", out, offset, value)
    if fix:
        out[12:14] = b"\x00\x00"
        size = int.from_bytes(out[10:12], "big")
        struct.pack_into("!H", out, 12, rfc1071(bytes(out[:size])))
    return bytes(out)


def with_u8(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[offset] = value
    return with_u16(bytes(out), 12, 0)


DECODE_ERRORS = {
    "empty": (b"", Reason.TRUNCATED, 0),
    "short fixed header": (registration()[:19], Reason.TRUNCATED, 19),
    "addresses past the mandatory part": (
        build(3, mand(addrs=v4_addrs()[:6])), Reason.TRUNCATED, 28),
    "version 2": (registration(version=2), Reason.UNSUPPORTED_VERSION, 16),
    "version 0": (registration(version=0), Reason.UNSUPPORTED_VERSION, 16),
    "packet size below 28": (registration(pktsz=27), Reason.BAD_LENGTH, 10),
    "packet size beyond the octets": (registration()[:-1], Reason.LENGTH_BEYOND_PACKET, 10),
    "packet size field too big": (registration(pktsz=1000), Reason.LENGTH_BEYOND_PACKET, 10),
    "bad checksum": (registration(checksum=0x1234), Reason.BAD_CHECKSUM, 12),
    "type 9": (build(9, mand(addrs=v4_addrs())), Reason.UNKNOWN_PACKET_TYPE, 17),
    "type 0": (build(0, mand(addrs=v4_addrs())), Reason.UNKNOWN_PACKET_TYPE, 17),
    "afn 3": (registration(afn=3), Reason.UNSUPPORTED_AFN, 0),
    "protocol 0x0806": (registration(proto=0x0806), Reason.UNSUPPORTED_PROTOCOL, 2),
    "snap set": (registration(snap=b"\x00\x00\x00\x00\x01"), Reason.RESERVED_NONZERO, 4),
    "shtl bit 7": (registration(shtl=0x84), Reason.RESERVED_NONZERO, 18),
    "source NBMA is E.164": (registration(shtl=0x44), Reason.UNSUPPORTED_ADDRESS_TYPE, 18),
    "source NBMA 16 octets with afn 1": (
        build(3, mand(addrs=bytes(16) + bytes(8)), shtl=16), Reason.ADDRESS_LENGTH, 18),
    "source NBMA 4 octets with afn 2": (registration(afn=2), Reason.ADDRESS_LENGTH, 18),
    "source NBMA 5 octets": (registration(shtl=5), Reason.ADDRESS_LENGTH, 18),
    "source subaddress": (registration(sstl=4), Reason.SUBADDRESS, 19),
    "source protocol 16 octets with 0x0800": (
        build(3, mand(16, 4, addrs=bytes(24))), Reason.ADDRESS_LENGTH, 20),
    "destination protocol 3 octets": (
        build(3, mand(4, 3, addrs=bytes(11))), Reason.ADDRESS_LENGTH, 21),
    "protocol 4 octets with 0x86dd": (registration(proto=0x86DD), Reason.ADDRESS_LENGTH, 20),
    "extension offset inside the header": (registration(extoff=20), Reason.BAD_EXTENSION_OFFSET,
                                           14),
    "extension offset past the packet": (registration(extoff=200), Reason.BAD_EXTENSION_OFFSET,
                                         14),
    "CIE header cut by the extension offset": (
        registration(extoff=CIE_AT + 8), Reason.CIE_OVERRUN, CIE_AT),
    "CIE addresses past its part": (
        registration(cies=cie_raw(nbma=b"\x01\x02\x03\x04")[:-2]),
        Reason.CIE_OVERRUN,
        CIE_AT,
    ),
    "CIE client NBMA E.164": (registration(cies=cie_raw(tl=0x44) + bytes(4)),
                              Reason.UNSUPPORTED_ADDRESS_TYPE, CIE_AT + 8),
    "CIE client NBMA bit 7": (registration(cies=cie_raw(tl=0x80)), Reason.RESERVED_NONZERO,
                              CIE_AT + 8),
    "CIE client NBMA 6 octets": (registration(cies=cie_raw(nbma=bytes(6))),
                                 Reason.ADDRESS_LENGTH, CIE_AT + 8),
    "CIE client subaddress": (registration(cies=cie_raw(sub=4) + bytes(4)), Reason.SUBADDRESS,
                              CIE_AT + 9),
    "CIE client protocol 16 octets with 0x0800": (
        registration(cies=cie_raw(proto=bytes(16))), Reason.ADDRESS_LENGTH, CIE_AT + 10),
    "extension header truncated": (registration(END[:2]), Reason.EXTENSION_OVERRUN, EXT_AT),
    "extension length past the packet": (
        registration(ext_raw(4)[:2] + b"\x00\x08" + END), Reason.EXTENSION_OVERRUN, EXT_AT),
    "missing End": (registration(ext_raw(4)), Reason.MISSING_END, EXT_AT + 4),
    "no extension at all at a non-zero offset": (registration(b""), Reason.MISSING_END, EXT_AT),
    "data after End": (registration(END + b"\x00\x00"), Reason.DATA_AFTER_END, EXT_AT + 4),
    "End with a value": (registration(ext_raw(0, b"\x00\x00")), Reason.INVALID_EXTENSION,
                         EXT_AT),
    "extension u bit": (registration(ext_raw(4, u=True) + END), Reason.RESERVED_NONZERO, EXT_AT),
    "responder address with two CIEs": (
        registration(ext_raw(3, NAT_CIE_RAW * 2) + END), Reason.INVALID_EXTENSION,
        EXT_AT + 4 + len(NAT_CIE_RAW)),
    "CIE in an extension past its value": (
        registration(ext_raw(4, NAT_CIE_RAW[:-1]) + END), Reason.CIE_OVERRUN, EXT_AT + 4),
    "vendor-private shorter than the OUI": (
        registration(ext_raw(8, b"\x00\x0c") + END), Reason.INVALID_EXTENSION, EXT_AT + 4),
    "authentication shorter than 4": (
        registration(ext_raw(7, b"\x00\x00\x01") + END), Reason.INVALID_EXTENSION, EXT_AT + 4),
    "keyed-hash authentication without its source": (
        registration(ext_raw(7, b"\x00\x00\x01\x00\x0a") + END), Reason.INVALID_EXTENSION,
        EXT_AT + 4),
}  # fmt: skip


@pytest.mark.parametrize(("data", "reason", "offset"), DECODE_ERRORS.values(), ids=DECODE_ERRORS)
def test_decode_error(data, reason, offset):
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert (info.value.reason, info.value.offset) == (reason, offset), str(info.value)
    assert str(info.value).startswith(f"{reason.value} at offset {offset}")


def test_every_decode_reason_is_reachable():
    reached = {reason for _data, reason, _offset in DECODE_ERRORS.values()}
    assert reached == set(Reason) - {Reason.INVALID_FIELD}  # encode only


def test_single_octet_corruption_is_caught_by_the_checksum():
    wire = registration(ext_raw(9, NAT_CIE_RAW, c=False) + END)
    for i in range(len(wire)):
        if i in (10, 11):
            continue
        bad = bytearray(wire)
        bad[i] ^= 0x10
        with pytest.raises(DecodeError):
            decode(bytes(bad))


# --- encode errors -----------------------------------------------------------------------

BASE = decode(registration())

ENCODE_ERRORS = {
    "no End": (replace(BASE, extensions=(ForwardTransitNhs(),)), Reason.MISSING_END),
    "End not last": (replace(BASE, extensions=(End(), ForwardTransitNhs())), Reason.MISSING_END),
    "two Ends": (replace(BASE, extensions=(End(), End())), Reason.MISSING_END),
    "SPI 1 keyed hash": (
        replace(BASE, extensions=(KeyedHashAuthentication(1, V4["src"]), End())),
        Reason.INVALID_EXTENSION),
    "keyed hash source family": (
        replace(BASE, extensions=(KeyedHashAuthentication(2, V6["src"]), End())),
        Reason.ADDRESS_LENGTH),
    "keyed hash without source": (
        replace(BASE, extensions=(KeyedHashAuthentication(2, None), End())),
        Reason.INVALID_EXTENSION),
    "opaque extension with a known type": (
        replace(BASE, extensions=(UnknownExtension(9, b""), End())), Reason.INVALID_EXTENSION),
    "extension type beyond 14 bits": (
        replace(BASE, extensions=(UnknownExtension(0x4000, b""), End())), Reason.INVALID_FIELD),
    "not an extension": (replace(BASE, extensions=("x", End())), Reason.INVALID_FIELD),
    "vendor id beyond 24 bits": (
        replace(BASE, extensions=(VendorPrivate(1 << 24), End())), Reason.INVALID_FIELD),
    "IPv6 source NBMA with afn 1": (replace(BASE, src_nbma=V6["nbma"]), Reason.ADDRESS_LENGTH),
    "IPv4 destination with 0x86dd": (
        replace(BASE, protocol_type=ProtocolType.IPV6), Reason.ADDRESS_LENGTH),
    "CIE client of the wrong family": (
        replace(BASE, cies=(Cie(client_proto=V6["src"]),)), Reason.ADDRESS_LENGTH),
    "a string for an address": (replace(BASE, src_proto="10.0.0.1"), Reason.ADDRESS_LENGTH),
    "hop count 256": (replace(BASE, hop_count=256), Reason.INVALID_FIELD),
    "negative request id": (replace(BASE, request_id=-1), Reason.INVALID_FIELD),
    "flags beyond 16 bits": (replace(BASE, flags=0x10000), Reason.INVALID_FIELD),
    "holding time beyond 16 bits": (
        replace(BASE, cies=(Cie(holding_time=70000),)), Reason.INVALID_FIELD),
    "packet type 9": (replace(BASE, type=9), Reason.INVALID_FIELD),
    "afn 3": (replace(BASE, afn=3), Reason.INVALID_FIELD),
    "payload on a registration": (replace(BASE, payload=b"x"), Reason.INVALID_FIELD),
    "error code on a registration": (replace(BASE, error_code=1), Reason.INVALID_FIELD),
    "reserved on a registration": (replace(BASE, reserved=1), Reason.INVALID_FIELD),
    "CIEs on an error indication": (
        replace(BASE, type=PacketType.ERROR_INDICATION, extensions=()), Reason.INVALID_FIELD),
    "request id on a traffic indication": (
        replace(BASE, type=PacketType.TRAFFIC_INDICATION, cies=(), flags=0),
        Reason.INVALID_FIELD),
    "reserved beyond 16 bits on an error indication": (
        Packet(PacketType.ERROR_INDICATION, reserved=0x10000), Reason.INVALID_FIELD),
    "packet beyond 65535 octets": (
        Packet(PacketType.TRAFFIC_INDICATION, payload=bytes(65536)), Reason.BAD_LENGTH),
}  # fmt: skip


@pytest.mark.parametrize(("packet", "reason"), ENCODE_ERRORS.values(), ids=ENCODE_ERRORS)
def test_encode_error(packet, reason):
    with pytest.raises(EncodeError) as info:
        encode(packet)
    assert info.value.reason == reason, str(info.value)


def test_with_end():
    assert with_end([]) == ()
    assert with_end([ForwardTransitNhs(), End(False)]) == (ForwardTransitNhs(), End())


# --- the decoder's checksum test agrees with RFC 1071 -----------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fast_checksum_verification_is_rfc1071(data, complete):
    if complete:  # append the checksum that makes the whole verify (or the 0xffff alias)
        data = data[: len(data) // 2 * 2]
        data += struct.pack("!H", rfc1071(data))
    assert _checksum_ok(data) == (rfc1071(data) == 0) == (internet_checksum(data) == 0)


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\x00\x00", b"\xff", b"\xff\xff", b"\x00\xff", b"\xff\xff" * 9]
)
def test_fast_checksum_verification_edges(data):
    assert _checksum_ok(data) == (rfc1071(data) == 0)
