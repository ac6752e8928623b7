"""What an engine is told about its node: immutable, validated on construction.

Maps onto the daemon's YAML (docs/config.md): ``role: spoke`` is :attr:`Role.NHC`,
``role: hub`` is :attr:`Role.NHS`, a hub with ``nhs`` entries is :attr:`Role.BOTH`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from ..wire import Address
from ..wire.constants import AUTH_CLEARTEXT_MAX_SECRET
from . import timers
from .policy import Policy

Interface = IPv4Interface | IPv6Interface
Network = IPv4Network | IPv6Network


class Role(enum.StrEnum):
    NHC = "nhc"  # spoke: registers with NHSs, resolves, installs shortcuts
    NHS = "nhs"  # hub: serves registrations and resolutions, sends redirects
    BOTH = "both"  # a hub that registers with upper hubs


class ResolutionMode(enum.StrEnum):
    """What an NHS does with a Resolution Request for a client registered with it."""

    FORWARD = "forward"  # Phase 3 (Cisco): the egress answers with its prefix, learns us
    ANSWER = "answer"  # RFC 2332 §5.2.1: the serving NHS answers from its registrations


@dataclass(frozen=True)
class NhsConfig:
    """A next-hop server: overlay address plus an NBMA address or a DNS name (seed Req. 6)."""

    proto: Address
    nbma: Address | None = None
    name: str | None = None
    priority: int = 0  # lower is preferred, as Cisco

    def __post_init__(self) -> None:
        if (self.nbma is None) == (self.name is None):
            raise ValueError(f"NHS {self.proto}: give exactly one of nbma and name")
        if not 0 <= self.priority <= 255:
            raise ValueError(f"NHS {self.proto}: priority {self.priority} not in 0..255")


@dataclass(frozen=True)
class StaticMapping:
    proto: Address
    nbma: Address


@dataclass(frozen=True)
class Limits:
    """Protection against one misbehaving or hostile NBMA source (defaults as dmvpnd's)."""

    registrations_per_s: float = 20.0
    registration_burst: int = 40
    resolutions_per_s: float = 50.0
    resolution_burst: int = 100
    errors_per_s: float = 1.0  # Error Indications we send to one source
    error_burst: int = 5
    cache_entries_per_source: int = 1024
    max_cache_entries: int = 1_000_000
    max_tracked_sources: int = 1_000_000  # rate-limiter buckets kept


@dataclass(frozen=True)
class EngineConfig:
    nbma: Address  # our NBMA address (behind NAT: the private one)
    addresses: tuple[Interface, ...]  # overlay address per family, with the tunnel prefix
    role: Role = Role.NHC
    protected: tuple[Network, ...] = ()  # prefixes behind this node
    nhs: tuple[NhsConfig, ...] = ()
    static: tuple[StaticMapping, ...] = ()
    holdtime: int = timers.DEFAULT_HOLDTIME
    unique: bool = True  # U flag on registrations; False is Cisco "no-unique"
    register_prefixes: bool = True  # one CIE per protected prefix in registrations
    auth_secret: bytes | None = None  # Cisco cleartext form, at most 8 octets
    nat: bool = True  # send and honour the Cisco NAT extension
    redirect: bool = True  # NHS: Traffic Indication on hairpin
    redirect_interval: float = timers.REDIRECT_INTERVAL
    redirect_prefix_v4: int = 24  # rate-limit key granularity (FRR doc: per /24)
    redirect_prefix_v6: int = 64
    shortcuts: bool = True  # NHC: act on Traffic Indications, install shortcuts
    resolution_mode: ResolutionMode = ResolutionMode.FORWARD
    policy: Policy = field(default_factory=Policy)
    limits: Limits = field(default_factory=Limits)
    nhs_routes: tuple[Network, ...] = ()  # routed via the active NHS (falls back by priority)
    # NHS: route each client's registered protected prefixes via its overlay address, so
    # hub-and-spoke traffic flows (and hairpins, for Phase 3) before any routing protocol.
    route_registered_prefixes: bool = True
    require_ipsec: bool = False  # drop unprotected packets; bindings wait for IPsec up
    mtu: int = 0  # CIE MTU we announce (0: unspecified)

    def __post_init__(self) -> None:
        if isinstance(self.auth_secret, str):
            object.__setattr__(self, "auth_secret", self.auth_secret.encode())
        for name in ("addresses", "protected", "nhs", "static", "nhs_routes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "resolution_mode", ResolutionMode(self.resolution_mode))
        versions = [a.version for a in self.addresses]
        if not versions:
            raise ValueError("at least one overlay address is required")
        if len(set(versions)) != len(versions):
            raise ValueError("one overlay address per address family")
        if self.auth_secret is not None and not 0 < len(self.auth_secret) <= (
            AUTH_CLEARTEXT_MAX_SECRET
        ):
            raise ValueError("auth_secret: 1 to 8 octets (Cisco truncates longer ones)")
        if not 1 <= self.holdtime <= 0xFFFF:
            raise ValueError(f"holdtime {self.holdtime} not in 1..65535")
        if self.role is Role.NHC and not self.nhs:
            raise ValueError("an NHC needs at least one NHS")
        for nhs in self.nhs:
            if nhs.nbma is not None and nhs.nbma.version != self.nbma.version:
                raise ValueError(f"NHS {nhs.proto}: NBMA family differs from ours")
            if nhs.proto.version not in versions:
                raise ValueError(f"NHS {nhs.proto}: no overlay address of that family")
        for prefix in self.protected:
            if prefix.version not in versions:
                raise ValueError(f"protected prefix {prefix}: no overlay address of that family")

    @property
    def is_nhs(self) -> bool:
        return self.role is not Role.NHC

    @property
    def is_nhc(self) -> bool:
        return self.role is not Role.NHS

    def address(self, version: int) -> Interface | None:
        for iface in self.addresses:
            if iface.version == version:
                return iface
        return None
