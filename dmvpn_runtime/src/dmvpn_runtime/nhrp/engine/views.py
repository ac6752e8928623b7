"""Read-only snapshots of engine state, as the control socket serves them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from ..wire import Address

Network = IPv4Network | IPv6Network


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class _View:
    def as_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


@dataclass(frozen=True)
class CacheEntryView(_View):
    type: str
    proto: Address
    nbma: Address | None
    claimed_nbma: Address | None
    expires: float | None  # monotonic seconds; None: does not expire
    prefix_length: int
    prefixes: tuple[Network, ...]
    flags: tuple[str, ...]  # unique, used, nat, installed, pending, learned


@dataclass(frozen=True)
class NhsView(_View):
    proto: Address
    nbma: Address | None
    name: str | None
    priority: int
    state: str  # resolving, registering, registered, refused, down
    registered_until: float | None
    misses: int
    post_nat: Address | None
    active: bool
    refused: tuple[str, ...] = ()  # "prefix/len code N" the NHS refused in its last reply


@dataclass(frozen=True)
class ShortcutView(_View):
    prefix: Network
    via: Address
    nbma: Address | None
    expires: float
    used: bool
    route: bool  # False: a mapping only, or waiting for IPsec


@dataclass(frozen=True)
class RouteView(_View):
    prefix: Network
    via: Address
    client_nbma: Address | None  # the registered client ``via`` is; None: not one


@dataclass(frozen=True)
class PeerView(_View):
    nbma: Address
    ipsec_up: bool
    mappings: int
    nhs: bool


def expiry(value: float) -> float | None:
    return None if math.isinf(value) else value
