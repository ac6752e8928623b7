"""Bytes <-> :class:`Packet`. The only place in the project that parses NHRP bytes.

Layouts are RFC 2332 §5 (fixed header, mandatory part, CIEs, extensions) and
draft-detienne-dmvpn §4 (Traffic Indication). Every failure is a :class:`DecodeError`
or :class:`EncodeError` naming the reason and the offset; nothing else escapes.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, TypeVar

from ...checksum import internet_checksum
from ..kept import ADDRESS_CACHE, Interned
from .constants import (
    AFN_ADDRESS_LEN,
    AUTH_TYPE_CLEARTEXT,
    CIE_FIXED_LEN,
    DEVICE_CAPABILITIES_LEN,
    EXT_COMPULSORY,
    EXT_HEADER_LEN,
    EXT_RESERVED_BIT,
    EXT_TYPE_MASK,
    EXTENSION_OFFSET_OFFSET,
    FIXED_HEADER_LEN,
    MANDATORY_FIXED_LEN,
    MAX_PACKET_LEN,
    NHRP_VERSION,
    PROTOCOL_ADDRESS_LEN,
    Afn,
    ExtensionType,
    PacketType,
    ProtocolType,
)
from .errors import DecodeError, EncodeError, Reason
from .model import (
    Address,
    Cie,
    CleartextAuthentication,
    DeviceCapabilities,
    End,
    Extension,
    ForwardTransitNhs,
    KeyedHashAuthentication,
    NatAddress,
    Packet,
    ResponderAddress,
    ReverseTransitNhs,
    UnknownExtension,
    VendorPrivate,
)

# afn, pro.type, pro.snap, hopcnt, pktsz, chksum, extoff, op.version, op.type, shtl, sstl
_HEADER: Final = struct.Struct("!HH5sBHHHBBBB")
# The fixed header and the mandatory part of types 1-6 in one (types 7 and 8 have unused(16),
# code(16), offset/unused(16) where flags and request id are); pro.snap as 1 + 4 octets.
_PREAMBLE: Final = struct.Struct("!HHBIBHHHBBBBBBHI")
_PREAMBLE_LEN: Final = FIXED_HEADER_LEN + MANDATORY_FIXED_LEN
# src proto len, dst proto len, flags, request id (types 1-6)
_MANDATORY: Final = struct.Struct("!BBHI")
# src proto len, dst proto len, unused, code, offset/unused (types 7 and 8)
_MANDATORY_7_8: Final = struct.Struct("!BBHHH")
# code, prefix len, unused, mtu, holding time, cli addr t/l, cli subaddr t/l, cli proto len, pref
_CIE: Final = struct.Struct("!BBHHHBBBB")
_EXT: Final = struct.Struct("!HH")
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_K = TypeVar("_K")
_T = TypeVar("_T")

_PACKET_TYPES: Final = {int(t): t for t in PacketType}
_AFNS: Final = {int(a): a for a in Afn}
_PROTOCOLS: Final = {int(p): p for p in ProtocolType}
_CHECKSUM_OFFSET: Final = 12
_ADDR_TL_RESERVED: Final = 0x80
_ADDR_TL_E164: Final = 0x40
_ADDR_LEN_MASK: Final = 0x3F

# Plain ints for the comparisons on the decode path: reading an IntEnum member costs
# about 70 ns on Python 3.11, an int constant about 20.
_EXT_END: Final = int(ExtensionType.END)
_EXT_RESPONDER: Final = int(ExtensionType.RESPONDER_ADDRESS)
_EXT_FORWARD: Final = int(ExtensionType.FORWARD_TRANSIT_NHS)
_EXT_REVERSE: Final = int(ExtensionType.REVERSE_TRANSIT_NHS)
_EXT_AUTH: Final = int(ExtensionType.AUTHENTICATION)
_EXT_VENDOR: Final = int(ExtensionType.VENDOR_PRIVATE)
_EXT_NAT: Final = int(ExtensionType.NAT_ADDRESS)
_ERROR_INDICATION: Final = int(PacketType.ERROR_INDICATION)
_TRAFFIC_INDICATION: Final = int(PacketType.TRAFFIC_INDICATION)


# --- decode --------------------------------------------------------------------------


_AFN_FAMILY: Final = {Afn.IPV4: IPv4Address, Afn.IPV6: IPv6Address}
_PROTO_FAMILY: Final = {ProtocolType.IPV4: IPv4Address, ProtocolType.IPV6: IPv6Address}


def intern_address(addr: Address) -> Address:
    """The codec's own object for ``addr`` (equal to it): what decode returns for the
    same octets. Addresses from configuration or a data plane interned this way hash
    and pack fast, and dict lookups against decoded ones match on identity. (Here, not
    in nhrp.kept: the engine calls it for every input, and this module is compiled.)"""
    if isinstance(addr, Interned):
        return addr
    interned = ADDRESS_CACHE[addr.packed]
    if interned is None:  # only no octets at all read as no address
        raise ValueError(f"not an address: {addr!r}")
    return interned


def _nbma_length(tl: int, afn: Afn, offset: int, what: str) -> int:
    """Length from an NBMA type/length octet (RFC 2332 §5.1 ar$shtl)."""
    if tl & _ADDR_TL_RESERVED:
        raise DecodeError(Reason.RESERVED_NONZERO, offset, f"{what} type/length bit 7 set")
    if tl & _ADDR_TL_E164:
        raise DecodeError(Reason.UNSUPPORTED_ADDRESS_TYPE, offset, f"{what} is E.164")
    length = tl & _ADDR_LEN_MASK
    if length not in (0, AFN_ADDRESS_LEN[afn]):
        raise DecodeError(
            Reason.ADDRESS_LENGTH, offset, f"{what} length {length} with afn {afn.value}"
        )
    return length


def _proto_length(length: int, proto: ProtocolType, offset: int, what: str) -> int:
    if length not in (0, PROTOCOL_ADDRESS_LEN[proto]):
        raise DecodeError(
            Reason.ADDRESS_LENGTH,
            offset,
            f"{what} length {length} with protocol type 0x{proto.value:04x}",
        )
    return length


# The valid address lengths (and NBMA type/length octets) by afn and protocol type.
_NBMA_OK: Final = {afn: (0, AFN_ADDRESS_LEN[afn]) for afn in Afn}
_PROTO_OK: Final = {proto: (0, PROTOCOL_ADDRESS_LEN[proto]) for proto in ProtocolType}


# Bound of each memo below: a hub sees the same few extension parts and CIEs again and
# again; clearing (rather than evicting one by one) keeps a miss cheap.
_MEMO_MAX: Final = 4096


class _Decoder:
    """Decodes the parts of packets with one afn, protocol type and source protocol
    length, and remembers what it decoded by its octets: whole extension parts, single
    extensions and CIE lists. In practice many packets carry byte-identical ones (request
    templates, the NAT extension naming the hub, the hub's transit CIE; a reply's
    responder CIE is its answer CIE), and values are never changed (model), so sharing
    them is safe. Errors are never remembered: they are raised again for the same bytes."""

    __slots__ = (
        "afn",
        "cies_seen",
        "extensions_seen",
        "nbma_ok",
        "proto",
        "proto_ok",
        "src_proto_len",
        "tlvs_seen",
        "token",
    )

    def __init__(self, afn: Afn, proto: ProtocolType, src_proto_len: int) -> None:
        self.afn = afn
        self.proto = proto
        self.src_proto_len = src_proto_len  # keyed-hash authentication reads the source
        # The valid type/length octets and protocol lengths: anything else is an error,
        # which _nbma_length/_proto_length then name.
        self.nbma_ok = _NBMA_OK[afn]
        self.proto_ok = _PROTO_OK[proto]
        self.cies_seen: dict[bytes, tuple[Cie, ...]] = {}  # by the octets of the list
        self.extensions_seen: dict[bytes, tuple[Extension, ...]] = {}  # whole parts
        self.tlvs_seen: dict[bytes, Extension] = {}  # one extension, header included
        # Decoded values keep the octets they came from: encode(decode(b)) == b, so a
        # CIE or extension echoed or forwarded is not encoded again.
        self.token = _encoder(afn, proto, src_proto_len).token

    def cie(self, data: bytes, pos: int, end: int) -> tuple[Cie, int]:
        if pos + CIE_FIXED_LEN > end:
            raise DecodeError(Reason.CIE_OVERRUN, pos, "CIE header runs past its part")
        nbma_tl: int
        sub_tl: int
        proto_len: int
        code, prefix, reserved, mtu, hold, nbma_tl, sub_tl, proto_len, pref = _CIE.unpack_from(
            data, pos
        )
        if nbma_tl not in self.nbma_ok:
            _nbma_length(nbma_tl, self.afn, pos + 8, "client NBMA address")  # raises
        if sub_tl:
            raise DecodeError(Reason.SUBADDRESS, pos + 9, "client NBMA subaddress")
        if proto_len not in self.proto_ok:
            _proto_length(proto_len, self.proto, pos + 10, "client protocol address")  # raises
        nbma_len = nbma_tl
        body = pos + CIE_FIXED_LEN
        nxt = body + nbma_len + proto_len
        if nxt > end:
            raise DecodeError(Reason.CIE_OVERRUN, pos, "CIE addresses run past its part")
        cie = Cie(
            code,
            prefix,
            mtu,
            hold,
            pref,
            ADDRESS_CACHE[data[body : body + nbma_len]],
            ADDRESS_CACHE[data[body + nbma_len : nxt]],
            reserved,
        )
        cie._wire = data[pos:nxt]
        cie._wire_ctx = self.token
        return cie, nxt

    def cie_list(self, data: bytes, pos: int, end: int) -> tuple[Cie, ...]:
        if pos == end:
            return ()
        raw = data[pos:end]
        cies = self.cies_seen.get(raw)
        if cies is None:
            found = []
            while pos < end:
                cie, pos = self.cie(data, pos, end)
                found.append(cie)
            cies = _remember(self.cies_seen, raw, tuple(found))
        return cies

    def responder_cie(self, data: bytes, pos: int, end: int) -> Cie:
        """The one CIE of a Responder Address extension (a list of one, for the memo)."""
        raw = data[pos:end]
        cies = self.cies_seen.get(raw)
        if cies is None:
            cie, nxt = self.cie(data, pos, end)
            if nxt != end:
                raise DecodeError(Reason.INVALID_EXTENSION, nxt, "responder address holds >1 CIE")
            cies = _remember(self.cies_seen, raw, (cie,))
        elif len(cies) != 1:
            nxt = pos + len(cies[0]._wire)  # type: ignore[arg-type]  # decoded: has octets
            raise DecodeError(Reason.INVALID_EXTENSION, nxt, "responder address holds >1 CIE")
        return cies[0]

    def extension(
        self, data: bytes, ext_type: int, compulsory: bool, pos: int, end: int
    ) -> Extension:
        """The extension whose value is data[pos:end]."""
        length = end - pos
        if ext_type == _EXT_END:
            return End(compulsory)
        if ext_type == _EXT_RESPONDER:
            cie = self.responder_cie(data, pos, end) if length else None
            return ResponderAddress(cie, compulsory)
        if ext_type == _EXT_FORWARD:
            return ForwardTransitNhs(self.cie_list(data, pos, end), compulsory)
        if ext_type == _EXT_REVERSE:
            return ReverseTransitNhs(self.cie_list(data, pos, end), compulsory)
        if ext_type == _EXT_AUTH:
            return self.authentication(data, compulsory, pos, end)
        if ext_type == _EXT_VENDOR:
            if length < 3:
                raise DecodeError(Reason.INVALID_EXTENSION, pos, "vendor-private shorter than OUI")
            vendor_id = int.from_bytes(data[pos : pos + 3], "big")
            return VendorPrivate(vendor_id, data[pos + 3 : end], compulsory)
        if ext_type == _EXT_NAT:
            # A CIE is at least 12 octets, so an 8-octet value is RFC 2735's (as Wireshark).
            if length == DEVICE_CAPABILITIES_LEN:
                source, target = struct.unpack_from("!II", data, pos)
                return DeviceCapabilities(source, target, compulsory)
            return NatAddress(self.cie_list(data, pos, end), compulsory)
        return UnknownExtension(ext_type, data[pos:end], compulsory)

    def authentication(self, data: bytes, compulsory: bool, pos: int, end: int) -> Extension:
        if end - pos < 4:
            raise DecodeError(Reason.INVALID_EXTENSION, pos, "authentication shorter than 4")
        if _U32.unpack_from(data, pos)[0] == AUTH_TYPE_CLEARTEXT:
            return CleartextAuthentication(data[pos + 4 : end], compulsory)
        reserved, spi = struct.unpack_from("!HH", data, pos)
        addr_end = pos + 4 + self.src_proto_len
        if addr_end > end:
            raise DecodeError(Reason.INVALID_EXTENSION, pos, "keyed-hash auth lacks source")
        source = ADDRESS_CACHE[data[pos + 4 : addr_end]]
        return KeyedHashAuthentication(spi, source, data[addr_end:end], reserved, compulsory)

    def extensions(self, data: bytes, pos: int, end: int) -> tuple[Extension, ...]:
        """The extension part data[pos:end]; its decoding reads nothing outside it."""
        raw = data[pos:end]
        exts = self.extensions_seen.get(raw)
        if exts is None:
            exts = _remember(self.extensions_seen, raw, self.decode_extensions(data, pos, end))
        return exts

    def decode_extensions(self, data: bytes, pos: int, end: int) -> tuple[Extension, ...]:
        exts: list[Extension] = []
        tlvs_seen = self.tlvs_seen
        while True:
            if pos + EXT_HEADER_LEN > end:
                if pos == end:
                    raise DecodeError(Reason.MISSING_END, pos, "extensions end without End")
                raise DecodeError(Reason.EXTENSION_OVERRUN, pos, "extension header truncated")
            word: int
            length: int
            word, length = _EXT.unpack_from(data, pos)
            if word & EXT_RESERVED_BIT:
                raise DecodeError(Reason.RESERVED_NONZERO, pos, "extension u bit set")
            ext_type = word & EXT_TYPE_MASK
            value = pos + EXT_HEADER_LEN
            value_end = value + length
            if value_end > end:
                raise DecodeError(
                    Reason.EXTENSION_OVERRUN, pos, f"extension type {ext_type} length {length}"
                )
            if ext_type == _EXT_END:
                if length:
                    raise DecodeError(Reason.INVALID_EXTENSION, pos, "End extension has a value")
                if value_end != end:
                    raise DecodeError(Reason.DATA_AFTER_END, value_end, "octets after End")
            tlv = data[pos:value_end]
            ext = tlvs_seen.get(tlv)
            if ext is None:
                compulsory = word >= EXT_COMPULSORY  # the top bit of the 16: a bool
                ext = self.extension(data, ext_type, compulsory, value, value_end)
                ext._wire = tlv
                ext._wire_ctx = self.token
                _remember(tlvs_seen, tlv, ext)
            exts.append(ext)
            if ext_type == _EXT_END:
                return tuple(exts)
            pos = value_end


def _remember(memo: dict[_K, _T], key: _K, value: _T) -> _T:
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[key] = value
    return value


# The decoders by (afn, protocol type, source protocol length), looked up with the
# header's plain ints (equal to the enum members, and hashing alike).
_DECODERS: Final[dict[tuple[int, int, int], _Decoder]] = {}


def _decoder(afn_v: int, pro_v: int, src_len: int) -> _Decoder:
    """The decoder for a header whose numbers are not in ``_DECODERS`` yet (made and kept).
    Raises for an unsupported afn or protocol type. A source protocol length the protocol
    does not have gets the family's decoder for length 0: decode then raises for it, after
    the checks that come first."""
    afn = _AFNS.get(afn_v)
    if afn is None:
        raise DecodeError(Reason.UNSUPPORTED_AFN, 0, f"afn {afn_v}")
    proto = _PROTOCOLS.get(pro_v)
    if proto is None:
        raise DecodeError(Reason.UNSUPPORTED_PROTOCOL, 2, f"protocol type 0x{pro_v:04x}")
    if src_len not in _PROTO_OK[proto]:
        src_len = 0
    dec = _DECODERS.get((afn, proto, src_len))
    if dec is None:
        dec = _DECODERS[afn, proto, src_len] = _Decoder(afn, proto, src_len)
    return dec


def clear_memos() -> None:
    """Forget what the decoders remember (benchmarks that price a cold codec)."""
    _DECODERS.clear()


def _checksum_ok(data: bytes) -> bool:
    """``internet_checksum(data) == 0``, four times faster.

    The ones' complement sum of 16-bit words is the packet read as one big-endian integer
    modulo 0xffff (2**16 = 1 mod 0xffff; a pad octet multiplies by 256, coprime with
    0xffff), and it folds to 0xffff -- a zero checksum -- exactly when that is 0 and the
    packet is not all zeros.
    """
    n = int.from_bytes(data, "big")
    return n % 0xFFFF == 0 and n != 0


def decode(data: bytes | bytearray | memoryview) -> Packet:
    """Decode one NHRP packet (bytes after the GRE header). Octets past ar$pktsz are ignored."""
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < FIXED_HEADER_LEN:
        raise DecodeError(Reason.TRUNCATED, size, f"fixed header needs 20, got {size}")
    # Shorter than the mandatory part: zeros are read there, and the size checks fail.
    head = data if size >= _PREAMBLE_LEN else data + bytes(_PREAMBLE_LEN - size)
    # Declared: struct gives Any, which compiled code compares and adds as objects.
    afn_v: int
    pro_v: int
    snap_high: int
    snap_low: int
    hops: int
    pktsz: int
    extoff: int
    version: int
    type_v: int
    shtl: int
    sstl: int
    src_len: int
    dst_len: int
    flags: int
    request_id: int
    (
        afn_v,
        pro_v,
        snap_high,
        snap_low,
        hops,
        pktsz,
        _cksum,
        extoff,
        version,
        type_v,
        shtl,
        sstl,
        src_len,
        dst_len,
        flags,
        request_id,
    ) = _PREAMBLE.unpack_from(head)
    if version != NHRP_VERSION:
        raise DecodeError(Reason.UNSUPPORTED_VERSION, 16, f"version {version}")
    if pktsz < _PREAMBLE_LEN:
        raise DecodeError(Reason.BAD_LENGTH, 10, f"packet size {pktsz} below the minimum")
    if pktsz > size:
        raise DecodeError(Reason.LENGTH_BEYOND_PACKET, 10, f"packet size {pktsz} but {size} octets")
    if pktsz != size:
        data = data[:pktsz]
    if not _checksum_ok(data):
        raise DecodeError(Reason.BAD_CHECKSUM, _CHECKSUM_OFFSET, f"checksum 0x{_cksum:04x}")
    ptype = _PACKET_TYPES.get(type_v)
    if ptype is None:
        raise DecodeError(Reason.UNKNOWN_PACKET_TYPE, 17, f"type {type_v}")
    dec = _DECODERS.get((afn_v, pro_v, src_len))
    if dec is None:
        dec = _decoder(afn_v, pro_v, src_len)  # raises for an unsupported afn or protocol
    if snap_high or snap_low:
        raise DecodeError(Reason.RESERVED_NONZERO, 4, "pro.snap set for an Ethertype protocol")
    if shtl not in dec.nbma_ok:  # valid type/length octets are the length itself
        _nbma_length(shtl, dec.afn, 18, "source NBMA address")  # raises
    nbma_len = shtl
    if sstl:
        raise DecodeError(Reason.SUBADDRESS, 19, "source NBMA subaddress")
    if extoff and not _PREAMBLE_LEN <= extoff <= pktsz:
        raise DecodeError(Reason.BAD_EXTENSION_OFFSET, 14, f"extension offset {extoff}")
    body_end = extoff or pktsz
    proto_ok = dec.proto_ok
    if src_len not in proto_ok:
        _proto_length(src_len, dec.proto, 20, "source protocol address")  # raises
    if dst_len not in proto_ok:
        _proto_length(dst_len, dec.proto, 21, "destination protocol address")  # raises
    pos = _PREAMBLE_LEN
    addr_end = pos + nbma_len + src_len + dst_len
    if addr_end > body_end:
        raise DecodeError(Reason.TRUNCATED, pos, "addresses run past the mandatory part")
    # The lengths are checked: one subscript each (empty octets read as None).
    src_at = pos + nbma_len
    dst_at = src_at + src_len
    src_nbma = ADDRESS_CACHE[data[pos:src_at]]
    src_proto = ADDRESS_CACHE[data[src_at:dst_at]]
    dst_proto = ADDRESS_CACHE[data[dst_at:addr_end]]

    cies: tuple[Cie, ...] = ()
    payload = b""
    reserved = error_code = error_offset = traffic_code = 0
    if type_v == _ERROR_INDICATION:
        # unused(16), code(16), offset(16) where types 1-6 have flags and request id
        reserved, error_code, error_offset = flags, request_id >> 16, request_id & 0xFFFF
        flags = request_id = 0
        payload = data[addr_end:body_end]
    elif type_v == _TRAFFIC_INDICATION:
        # unused(16), code(16), unused(16): the 32 unused bits are kept as one
        reserved = (flags << 16) | (request_id & 0xFFFF)
        traffic_code = request_id >> 16
        flags = request_id = 0
        payload = data[addr_end:body_end]
    else:
        # The memos looked up here first: a call less when they hold the octets (they hold
        # no empty tuples, and no octets at all are never in them).
        cies = dec.cies_seen.get(data[addr_end:body_end]) or dec.cie_list(data, addr_end, body_end)
    extensions: tuple[Extension, ...] = ()
    if extoff:
        extensions = dec.extensions_seen.get(data[extoff:pktsz]) or dec.extensions(
            data, extoff, pktsz
        )
    return Packet(
        ptype,
        dec.afn,
        dec.proto,
        hops,
        src_nbma,
        src_proto,
        dst_proto,
        flags,
        request_id,
        cies,
        error_code,
        error_offset,
        traffic_code,
        payload,
        reserved,
        extensions,
    )


def extension_offsets(data: bytes | bytearray | memoryview) -> list[int]:
    """Where each extension of the packet ``data`` starts, in octets from its start and
    in the order :func:`decode` lists them: what an Error Indication's offset names
    (RFC 2332 §5.2.7). Stops at the first extension that does not fit."""
    data = bytes(data)
    if len(data) < FIXED_HEADER_LEN:
        return []
    pktsz = min(_U16.unpack_from(data, 10)[0], len(data))
    pos = _U16.unpack_from(data, EXTENSION_OFFSET_OFFSET)[0]
    offsets: list[int] = []
    while pos and pos + EXT_HEADER_LEN <= pktsz:
        word, length = _EXT.unpack_from(data, pos)
        offsets.append(pos)
        if word & EXT_TYPE_MASK == _EXT_END:
            break
        pos += EXT_HEADER_LEN + length
    return offsets


# --- encode --------------------------------------------------------------------------


def _check_address(addr: Address | None, family: type, what: str) -> bytes:
    if addr is None:
        return b""
    if not isinstance(addr, family):
        raise EncodeError(
            Reason.ADDRESS_LENGTH, 0, f"{what} {addr} is not {family.__name__} as the header says"
        )
    return addr.packed  # kept by interned addresses (kept.py)


# The field of each extension class whose contents a caller could change later: the
# values are never changed, but one may hold a list where the model says tuple, or a bytearray.
_CONTENTS: Final = {
    ForwardTransitNhs: "cies",
    ReverseTransitNhs: "cies",
    NatAddress: "cies",
    CleartextAuthentication: "secret",
    KeyedHashAuthentication: "data",
    VendorPrivate: "data",
    UnknownExtension: "value",
}


def _immutable(ext: Extension) -> bool:
    """Whether an extension's octets can never change, so that they may be kept."""
    name = _CONTENTS.get(type(ext))
    return name is None or isinstance(getattr(ext, name), (tuple, bytes))


_ENCODER_TOKENS: Final = itertools.count()
_EMPTY_EXT_HEADER: Final = bytes(EXT_HEADER_LEN)


class _Encoder:
    """Encodes the parts of packets with one afn, protocol type and source protocol
    length. Each CIE and extension keeps the octets it encodes to (``_wire``, with the
    encoder they are valid for: the same value in a packet of another family is checked
    and encoded again); the decoder fills them in from the packet it read."""

    __slots__ = (
        "afn",
        "last_extensions",
        "nbma_family",
        "proto",
        "proto_family",
        "src_proto_len",
        "token",
    )

    def __init__(self, afn: Afn, proto: ProtocolType, src_proto_len: int) -> None:
        self.token = next(_ENCODER_TOKENS)  # never reused, even after clear_memos()
        self.afn = afn
        self.proto = proto
        self.nbma_family = _AFN_FAMILY[afn]
        self.proto_family = _PROTO_FAMILY[proto]
        self.src_proto_len = src_proto_len
        # The last extension part encoded whole from kept octets, and those octets: a hub
        # answering echoes the very same tuple in reply after reply (core.echo_extensions).
        self.last_extensions: tuple[tuple[Extension, ...], bytes] = ((), b"")

    def cie(self, out: bytearray, cie: Cie) -> None:
        token = self.token
        if cie._wire_ctx == token:
            out += cie._wire  # type: ignore[arg-type]  # set with _wire_ctx
            return
        nbma = _check_address(cie.client_nbma, self.nbma_family, "CIE client NBMA")
        proto = _check_address(cie.client_proto, self.proto_family, "CIE client protocol")
        wire = _CIE.pack(
            cie.code,
            cie.prefix_length,
            cie.reserved,
            cie.mtu,
            cie.holding_time,
            len(nbma),
            0,
            len(proto),
            cie.preference,
        )
        wire += nbma + proto
        out += wire
        cie._wire = wire
        cie._wire_ctx = token

    def extension(self, out: bytearray, ext: Extension) -> None:
        """Append the extension, header included."""
        try:
            encode_value = _VALUE_ENCODERS[type(ext)]
        except KeyError:
            raise EncodeError(Reason.INVALID_FIELD, 0, f"not an extension: {ext!r}") from None
        start = len(out)
        out += _EMPTY_EXT_HEADER  # filled in last, with the value's length
        if encode_value is not None:  # End has no value
            encode_value(self, out, ext)
        ext_type = ext.type
        if not 0 <= ext_type <= EXT_TYPE_MASK:
            raise EncodeError(Reason.INVALID_FIELD, start, f"extension type {ext_type}")
        flags = EXT_COMPULSORY if ext.compulsory else 0
        _EXT.pack_into(out, start, ext_type | flags, len(out) - start - EXT_HEADER_LEN)

    # The value of each kind of extension (``_VALUE_ENCODERS``), after its header.
    def _responder_value(self, out: bytearray, ext: ResponderAddress) -> None:
        if ext.cie is not None:
            self.cie(out, ext.cie)

    def _cies_value(
        self, out: bytearray, ext: ForwardTransitNhs | ReverseTransitNhs | NatAddress
    ) -> None:
        for cie in ext.cies:
            self.cie(out, cie)

    def _cleartext_value(self, out: bytearray, ext: CleartextAuthentication) -> None:
        out += _U32.pack(AUTH_TYPE_CLEARTEXT) + bytes(ext.secret)

    def _keyed_hash_value(self, out: bytearray, ext: KeyedHashAuthentication) -> None:
        if ext.reserved == 0 and ext.spi == AUTH_TYPE_CLEARTEXT:
            raise EncodeError(
                Reason.INVALID_EXTENSION, 0, "SPI 1 reads back as cleartext authentication"
            )
        source = _check_address(ext.source, self.proto_family, "auth source")
        if len(source) != self.src_proto_len:
            raise EncodeError(
                Reason.INVALID_EXTENSION, 0, "auth source must match the source protocol"
            )
        out += struct.pack("!HH", ext.reserved, ext.spi) + source + bytes(ext.data)

    def _vendor_value(self, out: bytearray, ext: VendorPrivate) -> None:
        out += ext.vendor_id.to_bytes(3, "big") + bytes(ext.data)

    def _capabilities_value(self, out: bytearray, ext: DeviceCapabilities) -> None:
        out += struct.pack("!II", ext.source, ext.target)

    def _unknown_value(self, out: bytearray, ext: UnknownExtension) -> None:
        if ext.ext_type in _KNOWN_EXT_TYPES:
            raise EncodeError(Reason.INVALID_EXTENSION, 0, f"type {ext.ext_type} has its own class")
        out += bytes(ext.value)

    def extensions(self, out: bytearray, exts: tuple[Extension, ...]) -> None:
        """Append the extension part to the packet ``out``."""
        last_exts, last_octets = self.last_extensions
        if exts is last_exts and last_octets:  # values whose octets were all kept
            out += last_octets
            return
        token = self.token
        start = len(out)
        kept = exts.__class__ is tuple
        last = len(exts) - 1
        for i, ext in enumerate(exts):
            if isinstance(ext, End) != (i == last):
                raise EncodeError(
                    Reason.MISSING_END, len(out), "extensions must end with exactly one End"
                )
            if ext._wire_ctx == token:  # not an extension at all: AttributeError, INVALID_FIELD
                out += ext._wire  # type: ignore[arg-type]  # set with _wire_ctx
                continue
            ext_start = len(out)
            self.extension(out, ext)
            if _immutable(ext):
                ext._wire = bytes(out[ext_start:])
                ext._wire_ctx = token
            else:
                kept = False
        if kept:  # the octets copied on a second sighting: most parts are encoded once
            self.last_extensions = (exts, bytes(out[start:]) if exts is last_exts else b"")


_KNOWN_EXT_TYPES: Final = frozenset(
    {
        ExtensionType.END,
        ExtensionType.RESPONDER_ADDRESS,
        ExtensionType.FORWARD_TRANSIT_NHS,
        ExtensionType.REVERSE_TRANSIT_NHS,
        ExtensionType.AUTHENTICATION,
        ExtensionType.VENDOR_PRIVATE,
        ExtensionType.NAT_ADDRESS,
    }
)

# One subscript finds an extension's value encoder, each typed for its class (an if-chain
# on type(ext) reads fields mypy cannot narrow); None: End, which has no value.
_VALUE_ENCODERS: Final[dict[type, Callable[[_Encoder, bytearray, Any], None] | None]] = {
    End: None,
    ResponderAddress: _Encoder._responder_value,
    ForwardTransitNhs: _Encoder._cies_value,
    ReverseTransitNhs: _Encoder._cies_value,
    NatAddress: _Encoder._cies_value,
    CleartextAuthentication: _Encoder._cleartext_value,
    KeyedHashAuthentication: _Encoder._keyed_hash_value,
    VendorPrivate: _Encoder._vendor_value,
    DeviceCapabilities: _Encoder._capabilities_value,
    UnknownExtension: _Encoder._unknown_value,
}

# The encoders, one per (afn, protocol type, source protocol length) met (at most
# 2 * 2 * 2), made on first use (``_encoder``).
_ENCODERS: Final[dict[tuple[Afn, ProtocolType, int], _Encoder]] = {}


def _encoder(afn: Afn, proto: ProtocolType, src_proto_len: int) -> _Encoder:
    enc = _ENCODERS.get((afn, proto, src_proto_len))
    if enc is None:
        enc = _ENCODERS[afn, proto, src_proto_len] = _Encoder(afn, proto, src_proto_len)
    return enc


# Model fields a packet type has no octets for: encode refuses them rather than drop them
# silently (which would break decode(encode(x)) == x).
_NOT_ON_WIRE: Final[dict[PacketType, tuple[str, ...]]] = {
    ptype: ("error_code", "error_offset", "traffic_code", "payload", "reserved")
    for ptype in PacketType
}
_NOT_ON_WIRE[PacketType.ERROR_INDICATION] = ("flags", "request_id", "cies", "traffic_code")
_NOT_ON_WIRE[PacketType.TRAFFIC_INDICATION] = (
    "flags",
    "request_id",
    "cies",
    "error_code",
    "error_offset",
)


_INDICATIONS: Final = (PacketType.ERROR_INDICATION, PacketType.TRAFFIC_INDICATION)
# The same, compared by identity in _encode: an enum member against an int or a tuple
# is a generic comparison in compiled code, a member against a member a pointer test.
_ERROR_TYPE: Final = PacketType.ERROR_INDICATION
_TRAFFIC_TYPE: Final = PacketType.TRAFFIC_INDICATION


def encode(packet: Packet) -> bytes:
    """Encode a packet, computing ar$pktsz, ar$extoff and the checksum."""
    try:
        return _encode(packet)
    except (struct.error, OverflowError, TypeError, AttributeError, ValueError) as exc:
        raise EncodeError(Reason.INVALID_FIELD, 0, str(exc)) from exc


def _encode(packet: Packet) -> bytes:
    ptype = _PACKET_TYPES.get(packet.type)
    afn = _AFNS.get(packet.afn)
    proto = _PROTOCOLS.get(packet.protocol_type)
    if ptype is None or afn is None or proto is None:
        raise EncodeError(
            Reason.INVALID_FIELD, 0, "type, afn and protocol_type must be supported values"
        )
    indication = ptype is _ERROR_TYPE or ptype is _TRAFFIC_TYPE
    if indication or (
        packet.error_code
        or packet.error_offset
        or packet.traffic_code
        or packet.payload
        or packet.reserved
    ):  # the common types checked inline: five getattr calls cost 0.7 us per packet
        for name in _NOT_ON_WIRE[ptype]:
            if getattr(packet, name):
                raise EncodeError(
                    Reason.INVALID_FIELD, 0, f"{name} is not carried by {ptype.json_name}"
                )
    proto_family = _PROTO_FAMILY[proto]
    src_nbma = _check_address(packet.src_nbma, _AFN_FAMILY[afn], "source NBMA")
    src_proto = _check_address(packet.src_proto, proto_family, "source protocol")
    dst_proto = _check_address(packet.dst_proto, proto_family, "destination protocol")
    enc = _encoder(afn, proto, len(src_proto))

    out = bytearray(_PREAMBLE_LEN)  # the fixed header goes in last, with the lengths
    if ptype is _ERROR_TYPE:
        _MANDATORY_7_8.pack_into(
            out,
            FIXED_HEADER_LEN,
            len(src_proto),
            len(dst_proto),
            packet.reserved,
            packet.error_code,
            packet.error_offset,
        )
    elif ptype is _TRAFFIC_TYPE:
        _MANDATORY_7_8.pack_into(
            out,
            FIXED_HEADER_LEN,
            len(src_proto),
            len(dst_proto),
            packet.reserved >> 16,
            packet.traffic_code,
            packet.reserved & 0xFFFF,
        )
    else:
        _MANDATORY.pack_into(
            out, FIXED_HEADER_LEN, len(src_proto), len(dst_proto), packet.flags, packet.request_id
        )
    out += src_nbma
    out += src_proto
    out += dst_proto
    if indication:
        out += bytes(packet.payload)
    else:
        token = enc.token
        for cie in packet.cies:
            if cie._wire_ctx == token:  # encoded before, or decoded: as enc.cie, a call less
                out += cie._wire  # type: ignore[arg-type]  # set with _wire_ctx
            else:
                enc.cie(out, cie)
    extoff = 0
    exts = packet.extensions
    if exts:
        extoff = len(out)
        last_exts, last_octets = enc.last_extensions
        if exts is last_exts and last_octets:  # as enc.extensions does first, a call less
            out += last_octets
        else:
            enc.extensions(out, exts)
    if len(out) > MAX_PACKET_LEN:
        raise EncodeError(Reason.BAD_LENGTH, 10, f"packet of {len(out)} octets")
    _HEADER.pack_into(
        out,
        0,
        afn,
        proto,
        b"\x00" * 5,
        packet.hop_count,
        len(out),
        0,
        extoff,
        NHRP_VERSION,
        ptype,
        len(src_nbma),
        0,
    )
    _U16.pack_into(out, _CHECKSUM_OFFSET, internet_checksum(out))
    return bytes(out)


# --- templates -----------------------------------------------------------------------

_REQUEST_ID_OFFSET: Final = FIXED_HEADER_LEN + 4  # after the two lengths and the flags


class Template:
    """A request sent again and again with only its destination protocol address and
    request id changed: a node's Resolution Requests (its target changes) and
    Registration Requests (its request id does), whose other fields follow the
    configuration. :meth:`fill` patches the two fields and the checksum into the
    template's octets, a fraction of what encoding the packet costs, and gives the
    packet that the octets encode (``encode(packet) == octets``)."""

    __slots__ = ("_blank", "_dst_at", "_proto_family", "octets", "packet")

    def __init__(self, packet: Packet) -> None:
        """``packet``: the first request of the kind (types 1-6, with a destination),
        encoded here; :meth:`fill` gives it back as it is or with another destination
        and request id."""
        if packet.type in _INDICATIONS or packet.dst_proto is None:
            raise EncodeError(
                Reason.INVALID_FIELD, 0, "a template needs a request id and a destination"
            )
        self.octets = encode(packet)  # checks the packet once
        self.packet = packet
        self._blank: bytearray | None = None  # made on the first patch (many never get one)
        self._dst_at = 0
        self._proto_family = _PROTO_FAMILY[packet.protocol_type]

    def _make_blank(self) -> bytearray:
        """The octets to patch, with a zero checksum (the sum is taken with it zero)."""
        blank = bytearray(self.octets)
        blank[_CHECKSUM_OFFSET : _CHECKSUM_OFFSET + 2] = b"\x00\x00"
        nbma_len, src_len = blank[18], blank[FIXED_HEADER_LEN]
        self._dst_at = FIXED_HEADER_LEN + MANDATORY_FIXED_LEN + nbma_len + src_len
        self._blank = blank
        return blank

    def fill(self, dst_proto: Address, request_id: int) -> tuple[Packet, bytes]:
        """The packet to ``dst_proto`` with ``request_id``, and its octets."""
        p = self.packet
        if request_id == p.request_id and dst_proto is p.dst_proto:
            return p, self.octets  # the first use, or a retransmission
        dst = _check_address(dst_proto, self._proto_family, "destination protocol")
        if not 0 <= request_id <= 0xFFFFFFFF:
            raise EncodeError(Reason.INVALID_FIELD, _REQUEST_ID_OFFSET, "request id out of range")
        out = (self._blank or self._make_blank())[:]
        _U32.pack_into(out, _REQUEST_ID_OFFSET, request_id)
        out[self._dst_at : self._dst_at + len(dst)] = dst
        _U16.pack_into(out, _CHECKSUM_OFFSET, internet_checksum(out))
        octets = bytes(out)
        packet = Packet(
            p.type,
            p.afn,
            p.protocol_type,
            p.hop_count,
            p.src_nbma,
            p.src_proto,
            dst_proto,
            p.flags,
            request_id,
            p.cies,
            0,  # error_code, error_offset, traffic_code, payload, reserved: a request's
            0,
            0,
            b"",
            0,
            p.extensions,
        )
        return packet, octets
