"""The resolved lab: what a spec becomes once every default and address is filled in."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class MountSpec:
    path: str
    seed: bool = False


@dataclass(frozen=True)
class WanNetwork:
    network: IPNet
    gateway: IPAddr

    @property
    def gateway_interface(self) -> IPIface:
        return ipaddress.ip_interface(f"{self.gateway}/{self.network.prefixlen}")


@dataclass(frozen=True)
class NhsRef:
    hub: str
    priority: int
    by: str  # "address" or "name"


@dataclass
class TunnelSpec:
    name: str
    overlay: list[IPNet]
    transport: int  # 4 or 6
    holdtime: int
    dataplane: str
    gre_key: int | None
    ipsec: str
    metrics: str | None
    nhs_by: str
    config: dict[str, Any]


@dataclass
class NodeSpec:
    """One lab host after resolution. ``role`` is hub, spoke, nat, host or lan-host."""

    name: str
    role: str
    key: str  # where it came from in the spec, e.g. "spokes[2]"
    nbma: list[IPIface] = field(default_factory=list)  # on wan0 (WAN or a NAT's inside)
    gateways: list[IPAddr] = field(default_factory=list)  # default routes, one per family
    overlay: list[IPAddr] = field(default_factory=list)
    lan: list[IPNet] = field(default_factory=list)
    lan_addresses: list[IPIface] = field(default_factory=list)  # on lan0
    lan_host: str | None = None
    parent: str | None = None  # lan-host: the node it sits behind
    behind: str | None = None  # spoke: the NAT router in front of it
    inside: list[IPNet] = field(default_factory=list)  # nat: private segments
    inside_addresses: list[IPIface] = field(default_factory=list)  # nat: on inside0
    nhs: list[NhsRef] = field(default_factory=list)
    protected: list[IPNet] = field(default_factory=list)
    daemon: list[str] | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_tunnel(self) -> bool:
        return self.role in ("hub", "spoke")

    def nbma_address(self, family: int) -> IPAddr | None:
        for iface in self.nbma:
            if iface.version == family:
                return iface.ip
        return None


@dataclass
class LabSpec:
    name: str
    domain: str
    tunnel: TunnelSpec
    wan: list[WanNetwork]
    mounts: list[MountSpec]
    nodes: dict[str, NodeSpec]  # in build order: hubs, spokes, nats, hosts, LAN hosts
    source: str
    raw: dict[str, Any]

    def node(self, name: str) -> NodeSpec:
        return self.nodes[name]

    def by_role(self, role: str) -> list[NodeSpec]:
        return [n for n in self.nodes.values() if n.role == role]

    @property
    def hubs(self) -> list[NodeSpec]:
        return self.by_role("hub")
