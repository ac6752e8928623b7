"""What the engine asks its drivers to do: values, one class per kind of action.

Never changed once made. Plain slots dataclasses with their ``__init__`` written out, as
the packet model (wire.model): what a compiled build (``make native``) makes native.

Every input method of :class:`~.engine.Engine` returns a list of these, in the order they
must be carried out (a mapping is added before the route that uses it, an SA is asked
for before the packet that needs it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Final

from ..wire import Address, Packet
from ..wire.model import Value

Network = IPv4Network | IPv6Network

#: The one timer key the engine arms: it keeps its own timer queue and asks for a single
#: wake-up at the earliest deadline (``ArmTimer`` replaces the previous one).
WAKE: Final = "engine"


class MappingType(enum.StrEnum):
    """Kinds of protocol -> NBMA bindings (FRR ``nhrp_cache_type`` names where they exist)."""

    LOCAL = "local"  # our own addresses; never sent to the data plane
    STATIC = "static"  # configured
    NHS = "nhs"  # a configured next-hop server
    REGISTERED = "registered"  # learned by an NHS from a Registration Request
    CACHED = "cached"  # learned from a resolution (reply, or the request we answered)
    NEGATIVE = "negative"  # "no binding": suppresses resolution for a while


@dataclass(slots=True, unsafe_hash=True)
class SendPacket(Value):
    """Send ``data`` (an encoded NHRP packet) in GRE to NBMA address ``nbma``."""

    nbma: Address
    data: bytes
    packet: Packet | None = field(default=None, compare=False, repr=False)  # for logs/tests

    def __init__(self, nbma: Address, data: bytes, packet: Packet | None = None) -> None:
        self.nbma = nbma
        self.data = data
        self.packet = packet


# Actions that come in pairs (add and remove, up and down) share their fields through a
# base; each pair's classes are not dataclasses again, which would replace the __init__.


@dataclass(slots=True, unsafe_hash=True)
class _MappingAction(Value):
    proto: Address
    nbma: Address
    type: MappingType

    def __init__(self, proto: Address, nbma: Address, type: MappingType) -> None:
        self.proto = proto
        self.nbma = nbma
        self.type = type


class AddMapping(_MappingAction):
    """Overlay next hop ``proto`` is reached at ``nbma``; replaces any mapping of ``proto``."""

    __slots__ = ()


class RemoveMapping(_MappingAction):
    __slots__ = ()


@dataclass(slots=True, unsafe_hash=True)
class _RouteAction(Value):
    prefix: Network
    via: Address

    def __init__(self, prefix: Network, via: Address) -> None:
        self.prefix = prefix
        self.via = via


class AddRoute(_RouteAction):
    """Install (or replace) a route for ``prefix`` via overlay next hop ``via``."""

    __slots__ = ()


class RemoveRoute(_RouteAction):
    __slots__ = ()


@dataclass(slots=True, unsafe_hash=True)
class _IpsecAction(Value):
    nbma: Address

    def __init__(self, nbma: Address) -> None:
        self.nbma = nbma


class IpsecUp(_IpsecAction):
    """Bring (or keep) an SA up with NBMA peer ``nbma``; idempotent for the driver."""

    __slots__ = ()


class IpsecDown(_IpsecAction):
    """No mapping uses ``nbma`` any more: the SA may go (seed, "Dynamic Mappings")."""

    __slots__ = ()


@dataclass(slots=True, unsafe_hash=True)
class ArmTimer(Value):
    """Call ``Engine.timer_fired(now, key)`` at ``deadline``; replaces an earlier one."""

    key: str
    deadline: float

    def __init__(self, key: str, deadline: float) -> None:
        self.key = key
        self.deadline = deadline


@dataclass(slots=True, unsafe_hash=True)
class CancelTimer(Value):
    key: str

    def __init__(self, key: str) -> None:
        self.key = key


@dataclass(slots=True, unsafe_hash=True)
class ResolveName(Value):
    """Resolve DNS ``name``; answer with ``Engine.name_resolved``."""

    name: str

    def __init__(self, name: str) -> None:
        self.name = name


class EventKind(enum.StrEnum):
    REGISTRATION_UP = "registration_up"
    REGISTRATION_DOWN = "registration_down"
    REGISTRATION_REFUSED = "registration_refused"
    NHS_UP = "nhs_up"
    NHS_DOWN = "nhs_down"
    NHS_ACTIVE = "nhs_active"
    NAT_DETECTED = "nat_detected"
    MAPPING_CHANGE = "mapping_change"
    SHORTCUT_UP = "shortcut_up"
    SHORTCUT_DOWN = "shortcut_down"
    RESOLUTION_FAILED = "resolution_failed"
    REDIRECT = "redirect"
    PURGE = "purge"
    POLICY_DENY = "policy_deny"
    AUTH_FAILURE = "auth_failure"
    ERROR_INDICATION = "error_indication"
    DROP = "drop"


@dataclass(slots=True, unsafe_hash=True)
class Event(Value):
    """A structured log event; ``fields`` hold strings, numbers and booleans only."""

    kind: EventKind
    fields: dict[str, Any] = field(default_factory=dict)

    def __init__(self, kind: EventKind, fields: dict[str, Any] | None = None) -> None:
        self.kind = kind
        self.fields = dict() if fields is None else fields


Action = (
    SendPacket
    | AddMapping
    | RemoveMapping
    | AddRoute
    | RemoveRoute
    | IpsecUp
    | IpsecDown
    | ArmTimer
    | CancelTimer
    | ResolveName
    | Event
)
