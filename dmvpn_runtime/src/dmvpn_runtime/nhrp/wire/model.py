"""The NHRP message model: the values the codec turns into bytes and back.

Everything the wire carries is here, including reserved bits, so that
``encode(decode(b)) == b`` for every valid packet. Lengths, the checksum and the
extension offset are derived on encode and are therefore not fields.

A value is never changed once made: the decoder shares what it decoded between packets
with the same octets, and a hub echoes and forwards decoded CIEs and extensions. Change
one with ``dataclasses.replace``. The classes are not frozen only because a frozen
dataclass pays a guard on every field it fills, which doubled the cost of building a
packet; and plain slots classes are what a compiled build (``make native``) makes
native. Each one's ``__init__`` is written out for the same reason: mypyc compiles
one that is written, not one that ``dataclass`` generates.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from .constants import (
    Afn,
    ExtensionType,
    PacketType,
    ProtocolType,
)

Address = IPv4Address | IPv6Address

_E = TypeVar("_E")  # an extension class (Packet.find)


# ``_wire`` and ``_wire_ctx`` (on Cie and every extension): the octets the codec found or
# made for the value and the codec context they are valid in (an int: nothing for the
# collector to follow). A hub echoes and forwards decoded CIEs and extensions and a node
# reuses its request templates, so most are encoded once. Not part of the value
# (equality, hash, repr), and not copied by ``dataclasses.replace``.


@dataclass(slots=True, unsafe_hash=True)
class Cie:
    """Client Information Entry (RFC 2332 §5.2.0.1)."""

    code: int = 0
    prefix_length: int = 0
    mtu: int = 0
    holding_time: int = 0
    preference: int = 0
    client_nbma: Address | None = None
    client_proto: Address | None = None
    reserved: int = 0  # the 16 unused bits after the prefix length
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


# --- Extensions ------------------------------------------------------------------
# Each extension knows its type number; ``compulsory`` is the C bit (RFC 2332 §5.3).


@dataclass(slots=True, unsafe_hash=True)
class End:
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.END


@dataclass(slots=True, unsafe_hash=True)
class ResponderAddress:
    """Type 3: empty in a request, one CIE describing the responder in a reply."""

    cie: Cie | None = None
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.RESPONDER_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class ForwardTransitNhs:
    """Type 4: one CIE per NHS the request crossed."""

    cies: tuple[Cie, ...] = ()
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.FORWARD_TRANSIT_NHS


@dataclass(slots=True, unsafe_hash=True)
class ReverseTransitNhs:
    """Type 5: one CIE per NHS the reply crossed."""

    cies: tuple[Cie, ...] = ()
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.REVERSE_TRANSIT_NHS


@dataclass(slots=True, unsafe_hash=True)
class CleartextAuthentication:
    """Type 7, the form Cisco IOS, FRR and opennhrp send: u32 type 1 then the secret."""

    secret: bytes = b""
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.AUTHENTICATION


@dataclass(slots=True, unsafe_hash=True)
class KeyedHashAuthentication:
    """Type 7 per RFC 2332 §5.3.4: reserved(16) SPI(16) source address, auth data.

    SPI 1 with a zero reserved field is indistinguishable from the cleartext form and
    is decoded as cleartext (as Cisco-compatible peers expect); use other SPIs.
    """

    spi: int = 0
    source: Address | None = None
    data: bytes = b""
    reserved: int = 0
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.AUTHENTICATION


@dataclass(slots=True, unsafe_hash=True)
class VendorPrivate:
    """Type 8: IEEE OUI (24 bits) then vendor data."""

    vendor_id: int = 0
    data: bytes = b""
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.VENDOR_PRIVATE


@dataclass(slots=True, unsafe_hash=True)
class NatAddress:
    """Type 9, Cisco NAT extension: a CIE list.

    In a request: the NHS's NBMA/protocol address as the sender sees it. In a reply the
    NHS adds a CIE carrying the requester's post-NAT NBMA address.
    """

    cies: tuple[Cie, ...] = ()
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.NAT_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class DeviceCapabilities:
    """Type 9 in RFC 2735: an 8-octet value (told apart from the NAT extension by length)."""

    source: int = 0
    target: int = 0
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:
        return ExtensionType.NAT_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class UnknownExtension:
    """Any other extension, kept opaque so it survives decode -> encode unchanged."""

    ext_type: int = 0
    value: bytes = b""
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def type(self) -> int:  # same attribute as the known extensions
        return self.ext_type


Extension = (
    End
    | ResponderAddress
    | ForwardTransitNhs
    | ReverseTransitNhs
    | CleartextAuthentication
    | KeyedHashAuthentication
    | VendorPrivate
    | NatAddress
    | DeviceCapabilities
    | UnknownExtension
)


# --- Packets -----------------------------------------------------------------------


@dataclass(slots=True, unsafe_hash=True)
class Packet:
    """One NHRP packet of any type.

    Types 1-6 use ``flags``, ``request_id`` and ``cies``; type 7 (Error Indication)
    uses ``error_code``, ``error_offset`` and ``payload`` (the offending packet); type 8
    (Traffic Indication) uses ``traffic_code`` and ``payload`` (the start of the data
    packet that triggered it). ``reserved`` holds the unused mandatory-part bits of types
    7 and 8. ``extensions`` is the wire list, End included: empty means no extension
    part at all (ar$extoff = 0).
    """

    type: PacketType
    afn: Afn = Afn.IPV4
    protocol_type: ProtocolType = ProtocolType.IPV4
    hop_count: int = 1
    src_nbma: Address | None = None
    src_proto: Address | None = None
    dst_proto: Address | None = None
    flags: int = 0
    request_id: int = 0
    cies: tuple[Cie, ...] = ()
    error_code: int = 0
    error_offset: int = 0
    traffic_code: int = 0
    payload: bytes = b""
    reserved: int = 0
    extensions: tuple[Extension, ...] = field(default=())

    def find(self, ext_class: builtins.type[_E]) -> _E | None:
        """The first extension of that class, or None."""
        for ext in self.extensions:
            if isinstance(ext, ext_class):
                return ext
        return None

    def find_type(self, ext_type: int) -> Extension | None:
        """The first extension with that type number, or None."""
        for ext in self.extensions:
            if ext.type == ext_type:
                return ext
        return None


def with_end(extensions: tuple[Extension, ...] | list[Extension]) -> tuple[Extension, ...]:
    """The extension list terminated by End (compulsory bit set, as FRR sends it)."""
    exts = tuple(ext for ext in extensions if not isinstance(ext, End))
    return (*exts, End()) if exts else ()
