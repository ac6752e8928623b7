"""The contract between dmvpnd and a data plane (kernel mGRE or userspace GRE).

The daemon owns an event loop (selectors or asyncio) and drives a data plane through
this interface, synchronously, from that one thread:

- ``open()`` builds the tunnel device, its addresses and the GRE sockets;
  ``close()`` removes everything ``open()`` made; ``cleanup_stale()`` removes what a
  crashed instance with the same tunnel name left behind.
- ``readers()`` lists file descriptors to register for reading; the loop calls
  ``on_readable(fd)`` when one is ready, and ``tick()`` now and then (timers).
- The engine's actions map onto ``send_nhrp``, ``add_mapping``/``remove_mapping``,
  ``add_route``/``remove_route`` and ``set_multicast_targets``.
- What the data plane sees goes to a :class:`DataPlaneSink` (NHRP payloads, hairpinned
  traffic, next hops without a mapping, per-peer usage); ``stats()`` is for metrics.

The data plane never parses NHRP and never routes: the kernel's FIB picks the next
hop, the mapping of that next hop picks the NBMA address.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, ClassVar, Protocol, Self

Address = IPv4Address | IPv6Address
Interface = IPv4Interface | IPv6Interface
Network = IPv4Network | IPv6Network

# Route protocol number marking the shortcut routes a data plane installs
# (`ip route show proto 157`); the route watcher leaves them out.
ROUTE_PROTO = 157

IFNAMSIZ = 16  # kernel limit including the terminating NUL
GRE_PROTO_NHRP = 0x2001  # NHRP over GRE (draft-detienne-dmvpn §4, RFC 2332 §3)
# Outer header bytes per NBMA family, plus the GRE header with and without key.
IP_HEADER = {4: 20, 6: 40}
GRE_HEADER = 4
GRE_KEY = 4


class Role(enum.StrEnum):
    HUB = "hub"
    SPOKE = "spoke"


class Drop(enum.StrEnum):
    """Why a packet was dropped (also the metric label)."""

    TRUNCATED = "truncated"  # shorter than its GRE header
    BAD_VERSION = "bad_version"  # GRE version is not 0
    BAD_FLAGS = "bad_flags"  # routing/strict/recursion/reserved bits set (RFC 2784 §2.3)
    BAD_CHECKSUM = "bad_checksum"  # C bit set and the checksum does not verify
    KEY_MISMATCH = "key_mismatch"  # key absent, present or different from ours
    UNKNOWN_PROTOCOL = "unknown_protocol"  # GRE protocol not IPv4, IPv6 or NHRP
    OVERSIZE = "oversize"  # decapsulated packet the device would not take
    DEVICE_ERROR = "device_error"  # other failure writing to the device
    UNKNOWN_PEER = "unknown_peer"  # frame to a link address no mapping owns (race)
    NO_TRANSPORT = "no_transport"  # peer's NBMA family has no local NBMA address
    SEND_ERROR = "send_error"  # the raw socket refused (buffer full, unreachable)
    NO_MULTICAST_TARGETS = "no_multicast_targets"  # multicast with nobody to send to
    NOT_IP = "not_ip"  # frame from the kernel that is neither IP nor ARP


class DataPlaneError(Exception):
    """A data-plane operation failed; the message says which and why."""


class DataPlaneUnavailable(DataPlaneError):
    """This kind of data plane cannot run on this host (kernel lacks a feature...)."""


class DataPlaneNotImplemented(DataPlaneUnavailable, NotImplementedError):
    """This kind of data plane is not written yet."""


class StaleStateError(DataPlaneError):
    """Kernel state with our tunnel name exists that we did not (or cannot) clean."""


def _as_address(value: Any) -> Address:
    return value if isinstance(value, IPv4Address | IPv6Address) else ip_address(value)


@dataclass(frozen=True, slots=True)
class DataPlaneConfig:
    """What a data plane needs to know; strings are accepted for every address.

    ``mtu`` is the tunnel (overlay) MTU; ``None`` derives it from ``nbma_mtu`` minus the
    outer IP header of the widest local NBMA family and the GRE header (with key).
    ``protected_ifname`` names the interface through which IPsec-protected GRE arrives
    (``ipsec0`` with strongSwan's kernel-libipsec); NHRP from it is reported as
    ``protected=True``.
    """

    tunnel: str
    local_nbma: tuple[Address, ...]
    overlay: tuple[Interface, ...]
    role: Role = Role.SPOKE
    key: int | None = None
    nbma_mtu: int = 1500
    mtu: int | None = None
    protected_ifname: str | None = None
    traffic_interval: float = 5.0  # seconds between sink.traffic() reports
    hairpin_memory: float = 2.0  # seconds a (src, dst) remembers its ingress peer
    route_table: int | None = None  # None: the main table
    batch: int = 64  # packets read per readiness event, per descriptor

    def __post_init__(self) -> None:
        # Normalise strings from YAML/JSON so the rest of the code sees one type.
        nbma = tuple(_as_address(a) for a in self.local_nbma)
        overlay = tuple(
            i if isinstance(i, IPv4Interface | IPv6Interface) else ip_interface(i)
            for i in self.overlay
        )
        object.__setattr__(self, "local_nbma", nbma)
        object.__setattr__(self, "overlay", overlay)
        object.__setattr__(self, "role", Role(self.role))
        problems = []
        if not 0 < len(self.tunnel.encode()) < IFNAMSIZ or "/" in self.tunnel:
            problems.append(f"tunnel: {self.tunnel!r} is not a valid interface name")
        if not nbma:
            problems.append("local_nbma: at least one address is needed")
        for version in (4, 6):
            if sum(1 for a in nbma if a.version == version) > 1:
                problems.append(f"local_nbma: more than one IPv{version} address")
        if self.key is not None and not 0 <= self.key <= 0xFFFFFFFF:
            problems.append(f"key: {self.key} is not a 32-bit unsigned integer")
        if not 576 <= self.nbma_mtu <= 65535:
            problems.append(f"nbma_mtu: {self.nbma_mtu} outside 576..65535")
        if self.mtu is not None and not 68 <= self.mtu <= 65535 - 48:
            problems.append(f"mtu: {self.mtu} outside 68..65487")
        if nbma and self.effective_mtu < 1280 and any(i.version == 6 for i in overlay):
            problems.append(f"mtu: {self.effective_mtu} is below IPv6's minimum of 1280")
        if self.batch < 1 or self.traffic_interval <= 0 or self.hairpin_memory <= 0:
            problems.append("batch, traffic_interval and hairpin_memory must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def overhead(self) -> int:
        """Encapsulation bytes on the widest local NBMA family."""
        outer = max(IP_HEADER[a.version] for a in self.local_nbma)
        return outer + GRE_HEADER + (GRE_KEY if self.key is not None else 0)

    @property
    def effective_mtu(self) -> int:
        return self.mtu if self.mtu is not None else self.nbma_mtu - self.overhead

    def nbma_for(self, version: int) -> Address | None:
        return next((a for a in self.local_nbma if a.version == version), None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from plain data (YAML, JSON); lists become tuples."""
        values = dict(data)
        for name in ("local_nbma", "overlay"):
            if name in values:
                raw = values[name]
                values[name] = tuple([raw] if isinstance(raw, str) else raw)
        return cls(**values)


class DataPlaneSink(Protocol):
    """Receives what the data plane sees. Called from the loop thread, must not block."""

    def nhrp_received(self, nbma_src: Address, data: bytes, protected: bool) -> None:
        """An NHRP packet (GRE protocol 0x2001 payload, undecoded) from ``nbma_src``."""

    def hairpin(
        self,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
    ) -> None:
        """Hub only: a packet from ``in_nbma`` left again towards ``out_nbma``.

        ``head`` is the start of the inner packet (at most 128 bytes), the material a
        Traffic Indication quotes. At most one notice per (src, dst) pair per second.
        """

    def no_mapping(self, next_hop: Address) -> None:
        """The kernel wants to reach overlay ``next_hop`` and no mapping exists.

        Packets wait in the kernel's neighbour queue for about 3 s; an
        ``add_mapping`` for ``next_hop`` in that time sends them. At most one notice
        per next hop per second.
        """

    def traffic(self, peer: Address, packets: int, octets: int, /) -> None:
        """Packets and bytes sent to NBMA ``peer`` since the previous report.

        Reported every ``traffic_interval`` seconds for peers that sent anything, so a
        busy shortcut is refreshed and an idle one is left to expire.
        """


class NullSink:
    """A sink that ignores everything (benchmarks, tools)."""

    def nhrp_received(self, nbma_src: Address, data: bytes, protected: bool) -> None:
        pass

    def hairpin(
        self,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
    ) -> None:
        pass

    def no_mapping(self, next_hop: Address) -> None:
        pass

    def traffic(self, peer: Address, packets: int, octets: int, /) -> None:
        pass


@dataclass(slots=True)
class PeerCounters:
    tx_packets: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    rx_bytes: int = 0


@dataclass(slots=True)
class DataPlaneStats:
    """Counters since ``open()``. Bytes count the passenger (inner) packet."""

    kind: str
    peers: dict[Address, PeerCounters] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "peers": {
                str(a): {
                    "tx_packets": c.tx_packets,
                    "tx_bytes": c.tx_bytes,
                    "rx_packets": c.rx_packets,
                    "rx_bytes": c.rx_bytes,
                }
                for a, c in self.peers.items()
            },
            "drops": dict(self.drops),
            "events": dict(self.events),
        }


class DataPlane(abc.ABC):
    """One tunnel's data plane. Not thread-safe: call everything from the loop thread."""

    kind: ClassVar[str]

    def __init__(self, config: DataPlaneConfig, sink: DataPlaneSink) -> None:
        self.config = config
        self.sink = sink

    # -- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None:
        """Create the device, addresses and sockets. Raises DataPlaneError."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove everything open() created. Idempotent."""

    @abc.abstractmethod
    def cleanup_stale(self) -> list[str]:
        """Remove leftovers of a crashed instance with this tunnel name; say what."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- event loop ------------------------------------------------------------------
    @abc.abstractmethod
    def readers(self) -> list[int]:
        """File descriptors to watch for reading (stable between open and close)."""

    @abc.abstractmethod
    def on_readable(self, fd: int) -> None:
        """Handle a ready descriptor: reads a bounded batch, never blocks."""

    @abc.abstractmethod
    def tick(self, now: float | None = None) -> None:
        """Timers: traffic reports and memory expiry. Call about once a second."""

    # -- actions from the engine -------------------------------------------------------
    @abc.abstractmethod
    def send_nhrp(self, nbma_dst: Address | str, data: bytes) -> None:
        """Send an NHRP packet (already encoded) in GRE to ``nbma_dst``."""

    @abc.abstractmethod
    def add_mapping(self, overlay: Address | str, nbma: Address | str) -> None:
        """Overlay next hop ``overlay`` is reached at ``nbma`` (replaces an old one)."""

    @abc.abstractmethod
    def remove_mapping(self, overlay: Address | str) -> None:
        """Forget the mapping of ``overlay`` (absent is not an error)."""

    @abc.abstractmethod
    def add_route(self, prefix: Network | str, via_overlay: Address | str) -> None:
        """Install (or replace) ``prefix`` via overlay next hop ``via_overlay``."""

    @abc.abstractmethod
    def remove_route(self, prefix: Network | str) -> None:
        """Remove our route for ``prefix`` (absent is not an error)."""

    @abc.abstractmethod
    def set_multicast_targets(self, nbmas: list[Address | str]) -> None:
        """Where multicast and broadcast go: every spoke (hub) or the NHSs (spoke)."""

    @abc.abstractmethod
    def mappings(self) -> dict[Address, Address]:
        """Current overlay -> NBMA mappings."""

    @abc.abstractmethod
    def stats(self) -> DataPlaneStats:
        """Per-peer packets/bytes in/out, drops by reason, event counters."""


def as_address(value: Address | str) -> Address:
    return _as_address(value)


def as_network(value: Network | str) -> Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    return ip_network(value, strict=True)
