"""What the engine asks its drivers to do: values, one class per kind of action.

Every input method of :class:`~.engine.Engine` returns a list of these, in the order they
must be carried out (a mapping is added before the route that uses it, an SA is asked
for before the packet that needs it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from ..wire import Address, Packet

Network = IPv4Network | IPv6Network

#: The one timer key the engine arms: it keeps its own timer queue and asks for a single
#: wake-up at the earliest deadline (``ArmTimer`` replaces the previous one).
WAKE = "engine"


class MappingType(enum.StrEnum):
    """Kinds of protocol -> NBMA bindings (FRR ``nhrp_cache_type`` names where they exist)."""

    LOCAL = "local"  # our own addresses; never sent to the data plane
    STATIC = "static"  # configured
    NHS = "nhs"  # a configured next-hop server
    REGISTERED = "registered"  # learned by an NHS from a Registration Request
    CACHED = "cached"  # learned from a resolution (reply, or the request we answered)
    NEGATIVE = "negative"  # "no binding": suppresses resolution for a while


@dataclass(slots=True, unsafe_hash=True)
class SendPacket:
    """Send ``data`` (an encoded NHRP packet) in GRE to NBMA address ``nbma``."""

    nbma: Address
    data: bytes
    packet: Packet | None = field(default=None, compare=False, repr=False)  # for logs/tests


@dataclass(slots=True, unsafe_hash=True)
class AddMapping:
    """Overlay next hop ``proto`` is reached at ``nbma``; replaces any mapping of ``proto``."""

    proto: Address
    nbma: Address
    type: MappingType


@dataclass(slots=True, unsafe_hash=True)
class RemoveMapping:
    proto: Address
    nbma: Address
    type: MappingType


@dataclass(slots=True, unsafe_hash=True)
class AddRoute:
    """Install (or replace) a route for ``prefix`` via overlay next hop ``via``."""

    prefix: Network
    via: Address


@dataclass(slots=True, unsafe_hash=True)
class RemoveRoute:
    prefix: Network
    via: Address


@dataclass(slots=True, unsafe_hash=True)
class IpsecUp:
    """Bring (or keep) an SA up with NBMA peer ``nbma``; idempotent for the driver."""

    nbma: Address


@dataclass(slots=True, unsafe_hash=True)
class IpsecDown:
    """No mapping uses ``nbma`` any more: the SA may go (seed, "Dynamic Mappings")."""

    nbma: Address


@dataclass(slots=True, unsafe_hash=True)
class ArmTimer:
    """Call ``Engine.timer_fired(now, key)`` at ``deadline``; replaces an earlier one."""

    key: str
    deadline: float


@dataclass(slots=True, unsafe_hash=True)
class CancelTimer:
    key: str


@dataclass(slots=True, unsafe_hash=True)
class ResolveName:
    """Resolve DNS ``name``; answer with ``Engine.name_resolved``."""

    name: str


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
class Event:
    """A structured log event; ``fields`` hold strings, numbers and booleans only."""

    kind: EventKind
    fields: dict[str, Any] = field(default_factory=dict)


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
