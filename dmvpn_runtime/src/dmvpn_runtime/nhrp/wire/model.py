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
import dataclasses
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, TypeVar

from .constants import (
    Afn,
    ExtensionType,
    PacketType,
    ProtocolType,
)

Address = IPv4Address | IPv6Address

_E = TypeVar("_E")  # an extension class (Packet.find)

# The extension type numbers, read by each class's ``type``: a module constant is a C
# static in a compiled build, where a class attribute of an enum is a lookup by name.
_END: Final = ExtensionType.END
_RESPONDER_ADDRESS: Final = ExtensionType.RESPONDER_ADDRESS
_FORWARD_TRANSIT_NHS: Final = ExtensionType.FORWARD_TRANSIT_NHS
_REVERSE_TRANSIT_NHS: Final = ExtensionType.REVERSE_TRANSIT_NHS
_AUTHENTICATION: Final = ExtensionType.AUTHENTICATION
_VENDOR_PRIVATE: Final = ExtensionType.VENDOR_PRIVATE
_NAT_ADDRESS: Final = ExtensionType.NAT_ADDRESS


class Value:
    """Base of the model's classes and the engine's actions: pickled and copied by their
    constructor's arguments (a compiled class has no default way to be made without
    them). The codec's kept octets are not among them."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        fields = dataclasses.fields(self)  # type: ignore[arg-type]  # on dataclasses only
        return self.__class__, tuple(getattr(self, f.name) for f in fields if f.init)


# ``_wire`` and ``_wire_ctx`` (on Cie and every extension): the octets the codec found or
# made for the value and the codec context they are valid in (an int: nothing for the
# collector to follow). A hub echoes and forwards decoded CIEs and extensions and a node
# reuses its request templates, so most are encoded once. Not part of the value
# (equality, hash, repr), and not copied by ``dataclasses.replace``.


@dataclass(slots=True, unsafe_hash=True)
class Cie(Value):
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

    def __init__(
        self,
        code: int = 0,
        prefix_length: int = 0,
        mtu: int = 0,
        holding_time: int = 0,
        preference: int = 0,
        client_nbma: Address | None = None,
        client_proto: Address | None = None,
        reserved: int = 0,
    ) -> None:
        self.code = code
        self.prefix_length = prefix_length
        self.mtu = mtu
        self.holding_time = holding_time
        self.preference = preference
        self.client_nbma = client_nbma
        self.client_proto = client_proto
        self.reserved = reserved
        self._wire = None
        self._wire_ctx = -1


# --- Extensions ------------------------------------------------------------------
# Each extension knows its type number; ``compulsory`` is the C bit (RFC 2332 §5.3).


@dataclass(slots=True, unsafe_hash=True)
class End(Value):
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, compulsory: bool = True) -> None:
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _END


@dataclass(slots=True, unsafe_hash=True)
class ResponderAddress(Value):
    """Type 3: empty in a request, one CIE describing the responder in a reply."""

    cie: Cie | None = None
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, cie: Cie | None = None, compulsory: bool = True) -> None:
        self.cie = cie
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _RESPONDER_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class _TransitNhs(Value):
    """Types 4 and 5: one CIE per NHS the packet crossed. Subclasses add only the type
    (and are not dataclasses again, which would replace the ``__init__``)."""

    cies: tuple[Cie, ...] = ()
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, cies: tuple[Cie, ...] = (), compulsory: bool = True) -> None:
        self.cies = cies
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1


class ForwardTransitNhs(_TransitNhs):
    """Type 4: one CIE per NHS the request crossed."""

    __slots__ = ()

    @property
    def type(self) -> int:
        return _FORWARD_TRANSIT_NHS


class ReverseTransitNhs(_TransitNhs):
    """Type 5: one CIE per NHS the reply crossed."""

    __slots__ = ()

    @property
    def type(self) -> int:
        return _REVERSE_TRANSIT_NHS


@dataclass(slots=True, unsafe_hash=True)
class CleartextAuthentication(Value):
    """Type 7, the form Cisco IOS, FRR and opennhrp send: u32 type 1 then the secret."""

    secret: bytes = b""
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, secret: bytes = b"", compulsory: bool = True) -> None:
        self.secret = secret
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _AUTHENTICATION


@dataclass(slots=True, unsafe_hash=True)
class KeyedHashAuthentication(Value):
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

    def __init__(
        self,
        spi: int = 0,
        source: Address | None = None,
        data: bytes = b"",
        reserved: int = 0,
        compulsory: bool = True,
    ) -> None:
        self.spi = spi
        self.source = source
        self.data = data
        self.reserved = reserved
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _AUTHENTICATION


@dataclass(slots=True, unsafe_hash=True)
class VendorPrivate(Value):
    """Type 8: IEEE OUI (24 bits) then vendor data."""

    vendor_id: int = 0
    data: bytes = b""
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, vendor_id: int = 0, data: bytes = b"", compulsory: bool = False) -> None:
        self.vendor_id = vendor_id
        self.data = data
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _VENDOR_PRIVATE


@dataclass(slots=True, unsafe_hash=True)
class NatAddress(Value):
    """Type 9, Cisco NAT extension: a CIE list.

    In a request: the NHS's NBMA/protocol address as the sender sees it. In a reply the
    NHS adds a CIE carrying the requester's post-NAT NBMA address.
    """

    cies: tuple[Cie, ...] = ()
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, cies: tuple[Cie, ...] = (), compulsory: bool = False) -> None:
        self.cies = cies
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _NAT_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class DeviceCapabilities(Value):
    """Type 9 in RFC 2735: an 8-octet value (told apart from the NAT extension by length)."""

    source: int = 0
    target: int = 0
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, source: int = 0, target: int = 0, compulsory: bool = False) -> None:
        self.source = source
        self.target = target
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

    @property
    def type(self) -> int:
        return _NAT_ADDRESS


@dataclass(slots=True, unsafe_hash=True)
class UnknownExtension(Value):
    """Any other extension, kept opaque so it survives decode -> encode unchanged."""

    ext_type: int = 0
    value: bytes = b""
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)

    def __init__(self, ext_type: int = 0, value: bytes = b"", compulsory: bool = False) -> None:
        self.ext_type = ext_type
        self.value = value
        self.compulsory = compulsory
        self._wire = None
        self._wire_ctx = -1

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
class Packet(Value):
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

    def __init__(
        self,
        type: PacketType,
        afn: Afn = Afn.IPV4,
        protocol_type: ProtocolType = ProtocolType.IPV4,
        hop_count: int = 1,
        src_nbma: Address | None = None,
        src_proto: Address | None = None,
        dst_proto: Address | None = None,
        flags: int = 0,
        request_id: int = 0,
        cies: tuple[Cie, ...] = (),
        error_code: int = 0,
        error_offset: int = 0,
        traffic_code: int = 0,
        payload: bytes = b"",
        reserved: int = 0,
        extensions: tuple[Extension, ...] = (),
    ) -> None:
        self.type = type
        self.afn = afn
        self.protocol_type = protocol_type
        self.hop_count = hop_count
        self.src_nbma = src_nbma
        self.src_proto = src_proto
        self.dst_proto = dst_proto
        self.flags = flags
        self.request_id = request_id
        self.cies = cies
        self.error_code = error_code
        self.error_offset = error_offset
        self.traffic_code = traffic_code
        self.payload = payload
        self.reserved = reserved
        self.extensions = extensions

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
