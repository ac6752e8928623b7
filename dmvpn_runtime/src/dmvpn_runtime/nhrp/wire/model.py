"""The NHRP message model: immutable values the codec turns into bytes and back.

Everything the wire carries is here, including reserved bits, so that
``encode(decode(b)) == b`` for every valid packet. Lengths, the checksum and the
extension offset are derived on encode and are therefore not fields.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .constants import (
    Afn,
    ExtensionType,
    PacketType,
    ProtocolType,
)

Address = IPv4Address | IPv6Address

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_C = TypeVar("_C", bound="DataclassInstance")  # a dataclass (slot_init, slot_maker)
_E = TypeVar("_E")  # an extension class (Packet.find)


@functools.cache
def _unfrozen_twin(cls: type[Any]) -> type | None:
    """A class with the slots of the frozen slots dataclass ``cls`` and no frozen guard,
    or None if ``cls`` has a base class or slots other than its fields.

    An instance of either becomes the other by assigning its ``__class__``, which Python
    allows because the layouts are the same; a plain attribute store in the twin costs
    about a fifth of the slot descriptor call that fills a frozen instance. The twin
    never escapes: what is built in it is made a ``cls`` before anyone sees it."""
    if cls.__bases__ != (object,) or list(cls.__slots__) != [f.name for f in fields(cls)]:
        return None
    return type(f"_Unfrozen{cls.__name__}", (), {"__slots__": cls.__slots__})


# Assigns ``__class__`` past the frozen ``__setattr__`` guard.
_set_class = object.__dict__["__class__"].__set__

# From this many slots on, ``__init__`` fills an unfrozen twin: the two ``__class__``
# assignments cost about as much as four descriptor calls.
_TWIN_MIN_SLOTS = 6


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """What stores into the slot ``name`` of an instance of ``cls``, past a frozen
    ``__setattr__``: the slot descriptor's ``__set__``, called as ``(instance, value)``."""
    setter: Callable[[Any, Any], None] = getattr(cls, name).__set__
    return setter


def slot_init(cls: type[_C]) -> type[_C]:
    """Give a frozen slots dataclass an ``__init__`` that fills the slots through their
    descriptors, or for a class with many slots as an unfrozen twin (``_unfrozen_twin``):
    the generated one goes through the frozen ``__setattr__`` guard for every field, which
    makes building a packet or an action 2x dearer. Same signature, defaults and
    factories; instances stay frozen. Apply above ``@dataclass``."""
    scope: dict[str, Any] = {"MISSING": MISSING, "cls": cls, "set_class": _set_class}
    signature, factories, stores = ["self"], [], []
    for f in fields(cls):
        scope[f"set_{f.name}"] = slot_setter(cls, f.name)
        scope[f"default_{f.name}"] = f.default
        scope[f"factory_{f.name}"] = f.default_factory
        if not f.init:
            stores.append((f.name, f"default_{f.name}"))
            continue
        if f.default is not MISSING:
            signature.append(f"{f.name}=default_{f.name}")
        elif f.default_factory is not MISSING:
            signature.append(f"{f.name}=MISSING")
            factories.append(f"    if {f.name} is MISSING: {f.name} = factory_{f.name}()")
        else:
            signature.append(f.name)
        stores.append((f.name, f.name))
    through_descriptors = [f"set_{name}(self, {value})" for name, value in stores]
    twin = _unfrozen_twin(cls) if len(stores) >= _TWIN_MIN_SLOTS else None
    if twin is None:
        body = [f"    {line}" for line in through_descriptors] or ["    pass"]
    else:
        scope["twin"] = twin
        body = [
            "    if self.__class__ is not cls:  # a subclass's instance: another layout",
            *(f"        {line}" for line in through_descriptors),
            "        return",
            "    set_class(self, twin)",  # nothing below can raise: a cls again at the end
            *(f"    self.{name} = {value}" for name, value in stores),
            "    self.__class__ = cls",
        ]
    source = [f"def __init__({', '.join(signature)}):", *factories, *body]
    exec("\n".join(source), scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]  # the point: replace dataclass's
    return cls


def slot_maker(cls: type[_C]) -> Callable[..., _C]:
    """A function that makes an instance of the frozen slots dataclass ``cls`` from all its
    fields, ``init=False`` ones included, positionally in field order and without defaults:
    for the decoder, which has every value at hand. It fills an unfrozen twin
    (``_unfrozen_twin``) and makes it a ``cls``: what ``cls(...)`` gives, 2.5x cheaper."""
    twin = _unfrozen_twin(cls)
    if twin is None:
        raise TypeError(f"{cls.__name__} is not a frozen slots dataclass with fields only")
    names = [f.name for f in fields(cls)]
    lines = [
        f"def make({', '.join(names)}):",
        "    made = twin()",
        *(f"    made.{name} = {name}" for name in names),
        "    made.__class__ = cls",
        "    return made",
    ]
    scope: dict[str, Any] = {"twin": twin, "cls": cls}
    exec("\n".join(lines), scope)
    make: Callable[..., _C] = scope["make"]
    make.__qualname__ = f"{cls.__qualname__}.<slot_maker>"
    return make


# ``_wire`` and ``_wire_ctx`` (on Cie and every extension): the octets the codec found or
# made for the value and the codec context they are valid in (an int: nothing for the
# collector to follow). A hub echoes and forwards decoded CIEs and extensions and a node
# reuses its request templates, so most are encoded once. Not part of the value
# (equality, hash, repr), and not copied by ``dataclasses.replace``.


@slot_init
@dataclass(frozen=True, slots=True)
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


@slot_init
@dataclass(frozen=True, slots=True)
class End:
    type: ClassVar[int] = ExtensionType.END
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class ResponderAddress:
    """Type 3: empty in a request, one CIE describing the responder in a reply."""

    type: ClassVar[int] = ExtensionType.RESPONDER_ADDRESS
    cie: Cie | None = None
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class ForwardTransitNhs:
    """Type 4: one CIE per NHS the request crossed."""

    type: ClassVar[int] = ExtensionType.FORWARD_TRANSIT_NHS
    cies: tuple[Cie, ...] = ()
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class ReverseTransitNhs:
    """Type 5: one CIE per NHS the reply crossed."""

    type: ClassVar[int] = ExtensionType.REVERSE_TRANSIT_NHS
    cies: tuple[Cie, ...] = ()
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class CleartextAuthentication:
    """Type 7, the form Cisco IOS, FRR and opennhrp send: u32 type 1 then the secret."""

    type: ClassVar[int] = ExtensionType.AUTHENTICATION
    secret: bytes = b""
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class KeyedHashAuthentication:
    """Type 7 per RFC 2332 §5.3.4: reserved(16) SPI(16) source address, auth data.

    SPI 1 with a zero reserved field is indistinguishable from the cleartext form and
    is decoded as cleartext (as Cisco-compatible peers expect); use other SPIs.
    """

    type: ClassVar[int] = ExtensionType.AUTHENTICATION
    spi: int = 0
    source: Address | None = None
    data: bytes = b""
    reserved: int = 0
    compulsory: bool = True
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class VendorPrivate:
    """Type 8: IEEE OUI (24 bits) then vendor data."""

    type: ClassVar[int] = ExtensionType.VENDOR_PRIVATE
    vendor_id: int = 0
    data: bytes = b""
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class NatAddress:
    """Type 9, Cisco NAT extension: a CIE list.

    In a request: the NHS's NBMA/protocol address as the sender sees it. In a reply the
    NHS adds a CIE carrying the requester's post-NAT NBMA address.
    """

    type: ClassVar[int] = ExtensionType.NAT_ADDRESS
    cies: tuple[Cie, ...] = ()
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
class DeviceCapabilities:
    """Type 9 in RFC 2735: an 8-octet value (told apart from the NAT extension by length)."""

    type: ClassVar[int] = ExtensionType.NAT_ADDRESS
    source: int = 0
    target: int = 0
    compulsory: bool = False
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _wire_ctx: int = field(default=-1, init=False, repr=False, compare=False)


@slot_init
@dataclass(frozen=True, slots=True)
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


@slot_init
@dataclass(frozen=True, slots=True)
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


# A packet from all its fields, ``init=False`` ones included, positionally (slot_maker):
# what the decoder builds, and what a node builds for each reply it sends or request it
# relays.
make_packet = slot_maker(Packet)


def with_end(extensions: tuple[Extension, ...] | list[Extension]) -> tuple[Extension, ...]:
    """The extension list terminated by End (compulsory bit set, as FRR sends it)."""
    exts = tuple(ext for ext in extensions if not isinstance(ext, End))
    return (*exts, End()) if exts else ()
