"""A simulated DMVPN: N engines on a fake NBMA network with one shared fake clock.

The network has latency, random loss (seeded), partitions, nodes that crash and
restart, NAT boxes and an optional IPsec model. Each node has a tiny data plane that
behaves like the real ones where the engine can tell: it routes by longest prefix
(static routes, the engine's routes, the on-link tunnel prefix), sends to the NBMA of
the next hop's mapping, and reports to its engine exactly what a data plane reports:
no mapping for a next hop, a hairpin (in from the tunnel and out again), traffic to a
peer. Tests drive it with data flows and assert on what users see: where packets go,
which registrations exist, which events were logged.

NAT boxes model IPsec NAT traversal: GRE from inside leaves with the NAT's public
address; inbound traffic is accepted only from an outside address an inside node has
sent to (endpoint-dependent filtering). With several inside nodes talking to the same
outside peer, NAT-T's per-SA UDP ports tell them apart; here the box picks the inside
node that owns the packet's overlay destination (NHRP replies: the source protocol
address; other NHRP packets: the destination; data: the inner destination). Hairpin
through the NAT's public address is not supported, as on many real NATs, so nodes
behind one NAT must use each other's private addresses.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any

from dmvpn_runtime.nhrp.engine import (
    AddMapping,
    AddRoute,
    ArmTimer,
    CancelTimer,
    Engine,
    EngineConfig,
    Event,
    IpsecDown,
    IpsecUp,
    MappingType,
    NhsConfig,
    RemoveMapping,
    RemoveRoute,
    ResolveName,
    Role,
    SendPacket,
)
from dmvpn_runtime.nhrp.wire import Packet, PacketType, decode

Address = IPv4Address | IPv6Address


def ip_head(src: Address, dst: Address, length: int = 84) -> bytes:
    """The first octets of a data packet (what a Traffic Indication quotes)."""
    if src.version == 4:
        return (
            bytes([0x45, 0, length >> 8, length & 0xFF, 0, 0, 0x40, 0, 64, 1, 0, 0])
            + src.packed
            + dst.packed
            + b"\x08\x00"
            + bytes(6)
        )
    return bytes([0x60, 0, 0, 0, 0, length, 58, 64]) + src.packed + dst.packed + bytes(8)


@dataclass
class WireRecord:
    """One NHRP packet put on the simulated wire."""

    time: float
    sender: str
    receiver: str | None
    nbma: Address  # destination NBMA as the sender gave it
    observed: Address  # source NBMA as the receiver sees it
    packet: Packet
    data: bytes
    fate: str = "sent"  # sent, delivered, or why it was lost


@dataclass
class Trace:
    """Where one data packet went."""

    src: Address
    dst: Address
    path: list[str] = field(default_factory=list)
    delivered: bool = False
    dropped: str | None = None

    @property
    def direct(self) -> bool:
        return self.delivered and len(self.path) == 2


@dataclass
class NatBox:
    name: str
    public: Address
    inside: list[Node] = field(default_factory=list)
    conntrack: set[tuple[str, Address]] = field(default_factory=set)


class Node:
    def __init__(self, net: Net, name: str, config: EngineConfig, authoriser: Any = None):
        self.net = net
        self.name = name
        self.config = config
        self.authoriser = authoriser
        self.nat: NatBox | None = None
        self.alive = False
        self.engine = self._new_engine()
        self.routes: dict[Any, Address | None] = {}  # static data-plane routes
        self.eroutes: dict[Any, Address] = {}  # routes the engine installed
        self.mappings: dict[Address, tuple[Address, MappingType]] = {}
        self.events: list[tuple[float, Event]] = []
        self.actions: list[tuple[float, Any]] = []
        self.ipsec_wanted: set[Address] = set()
        self._token = 0
        self.wake: float | None = None

    def _new_engine(self) -> Engine:
        self.net.request_ids += 100_000  # a restarted node does not reuse request ids
        return Engine(self.config, self.authoriser, request_id=self.net.request_ids)

    @property
    def nbma(self) -> Address:
        return self.config.nbma

    @property
    def public(self) -> Address:
        return self.nat.public if self.nat else self.config.nbma

    def overlay(self, version: int = 4) -> Address:
        iface = self.config.address(version)
        assert iface is not None
        return iface.ip

    def owns(self, addr: Address) -> bool:
        if any(i.ip == addr for i in self.config.addresses):
            return True
        return any(p.version == addr.version and addr in p for p in self.config.protected)

    def owned_length(self, addr: Address) -> int:
        if any(i.ip == addr for i in self.config.addresses):
            return addr.max_prefixlen
        return max(
            (p.prefixlen for p in self.config.protected if p.version == addr.version and addr in p),
            default=-1,
        )

    def lookup(self, dst: Address) -> tuple[Any, Address | None] | None:
        best = None
        candidates: list[tuple[Any, Address | None]] = [
            (i.network, None) for i in self.config.addresses
        ]
        candidates += list(self.routes.items()) + list(self.eroutes.items())
        for prefix, via in candidates:
            better = best is None or prefix.prefixlen > best[0].prefixlen
            if prefix.version == dst.version and dst in prefix and better:
                best = (prefix, via)
        return best

    # -- what tests look at --------------------------------------------------------------------
    def event_kinds(self, since: float = 0.0) -> list[str]:
        return [str(e.kind) for t, e in self.events if t >= since]

    def events_of(self, kind: str, since: float = 0.0) -> list[dict]:
        return [dict(e.fields, time=t) for t, e in self.events if e.kind == kind and t >= since]

    def registered_clients(self) -> set[Address]:
        return {
            v.proto
            for v in self.engine.cache_entries()
            if v.type == "registered" and v.expires and v.expires > self.net.now
        }

    def nhs_state(self, proto: Address | str) -> str:
        proto = ip_address(proto)
        return next(s.state for s in self.engine.nhs_states() if s.proto == proto)

    def shortcut_routes(self) -> dict[Any, Address]:
        return dict(self.eroutes)

    def __repr__(self) -> str:
        return f"<Node {self.name}>"


class Net:
    def __init__(
        self,
        seed: int = 1,
        latency: float = 0.005,
        loss: float = 0.0,
        ipsec: bool = False,
        dpd_delay: float = 10.0,
        ike_delay: float = 0.2,
        ike_retry: float = 5.0,
        dns_delay: float = 0.05,
    ) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.ipsec = ipsec
        self.dpd_delay = dpd_delay
        self.ike_delay = ike_delay
        self.ike_retry = ike_retry
        self.dns_delay = dns_delay
        self.request_ids = 0
        self.nodes: dict[str, Node] = {}
        self.nats: dict[Address, NatBox] = {}
        self.dns: dict[str, list[Address]] = {}
        self.partitions: set[frozenset[str]] = set()
        self.isolated: set[str] = set()
        self.wire: list[WireRecord] = []
        self.sas: set[frozenset[str]] = set()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.lost_to_loss = 0

    # -- building ------------------------------------------------------------------------------
    def add(self, name: str, config: EngineConfig, authoriser: Any = None, nat: str | None = None):
        node = Node(self, name, config, authoriser)
        self.nodes[name] = node
        if nat is not None:
            box = next(b for b in self.nats.values() if b.name == nat)
            box.inside.append(node)
            node.nat = box
        return node

    def add_nat(self, name: str, public: str) -> NatBox:
        box = NatBox(name, ip_address(public))
        self.nats[box.public] = box
        return box

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    # -- clock ---------------------------------------------------------------------------------
    def at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), fn))

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        self.at(self.now + delay, fn)

    def run(self, until: float | None = None, duration: float | None = None) -> None:
        end = until if until is not None else self.now + (duration or 0.0)
        while self._queue and self._queue[0][0] <= end:
            when, _seq, fn = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            fn()
        self.now = max(self.now, end)

    # -- node lifecycle ------------------------------------------------------------------------
    def start(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            node = self.nodes[name]
            node.alive = True
            self.apply(node, node.engine.start(self.now))
        if self.ipsec:
            self._ike_tick_scheduled()

    def stop(self, name: str) -> None:
        """Graceful: the engine says goodbye, then the node is gone."""
        node = self.nodes[name]
        self.apply(node, node.engine.stop(self.now))
        self._down(node)

    def crash(self, name: str) -> None:
        self._down(self.nodes[name])

    def restart(self, name: str, config: EngineConfig | None = None) -> None:
        node = self.nodes[name]
        if config is not None:
            node.config = config
        node.engine = node._new_engine()
        node.eroutes.clear()
        node.mappings.clear()
        node.ipsec_wanted.clear()
        self.start(name)

    def _down(self, node: Node) -> None:
        node.alive = False
        node._token += 1
        if self.ipsec:
            for sa in [sa for sa in self.sas if node.name in sa]:
                self.sas.discard(sa)
                (other_name,) = sa - {node.name}
                other = self.nodes[other_name]
                self.after(self.dpd_delay, lambda o=other, n=node: self._notify_down(o, n))

    def reconfigure(self, name: str, config: EngineConfig) -> None:
        node = self.nodes[name]
        node.config = config
        self.apply(node, node.engine.reconfigure(self.now, config))

    # -- network faults ------------------------------------------------------------------------
    def partition(self, a: str, b: str) -> None:
        self.partitions.add(frozenset({a, b}))

    def heal(self, a: str, b: str) -> None:
        self.partitions.discard(frozenset({a, b}))

    def isolate(self, name: str) -> None:
        self.isolated.add(name)

    def rejoin(self, name: str) -> None:
        self.isolated.discard(name)

    # -- actions -------------------------------------------------------------------------------
    def apply(self, node: Node, actions: Iterable[Any]) -> None:
        for action in actions:
            node.actions.append((self.now, action))
            if isinstance(action, SendPacket):
                self._transmit(node, action.nbma, nhrp=action.data)
            elif isinstance(action, AddMapping):
                node.mappings[action.proto] = (action.nbma, action.type)
            elif isinstance(action, RemoveMapping):
                node.mappings.pop(action.proto, None)
            elif isinstance(action, AddRoute):
                node.eroutes[action.prefix] = action.via
            elif isinstance(action, RemoveRoute):
                node.eroutes.pop(action.prefix, None)
            elif isinstance(action, ArmTimer):
                node._token += 1
                node.wake = action.deadline
                token = node._token
                self.at(action.deadline, lambda n=node, t=token: self._wake(n, t))
            elif isinstance(action, CancelTimer):
                node._token += 1
                node.wake = None
            elif isinstance(action, ResolveName):
                self.after(self.dns_delay, lambda n=node, nm=action.name: self._dns(n, nm))
            elif isinstance(action, Event):
                node.events.append((self.now, action))
            elif isinstance(action, IpsecUp):
                node.ipsec_wanted.add(action.nbma)
                if self.ipsec:
                    self.after(self.ike_delay, lambda n=node, a=action.nbma: self._ike(n, a))
            elif isinstance(action, IpsecDown):
                node.ipsec_wanted.discard(action.nbma)
                if self.ipsec:
                    self._ike_delete(node, action.nbma)

    def _wake(self, node: Node, token: int) -> None:
        if node.alive and node._token == token:
            node.wake = None
            self.apply(node, node.engine.timer_fired(self.now))

    def _dns(self, node: Node, name: str) -> None:
        if node.alive:
            answer = [ip_address(a) for a in self.dns.get(name, [])]
            self.apply(node, node.engine.name_resolved(self.now, name, answer))

    # -- IPsec model ---------------------------------------------------------------------------
    def _peer_for(self, node: Node, nbma: Address) -> Node | None:
        box = self.nats.get(nbma)
        if box is not None:
            inside = [n for n in box.inside if (n.name, node.public) in box.conntrack]
            return inside[0] if len(inside) == 1 else None
        return next((n for n in self.nodes.values() if n.nbma == nbma and n is not node), None)

    def _seen_as(self, node: Node, by: Node) -> Address:
        if node.nat is not None and node.nat is not by.nat:
            return node.nat.public
        return node.nbma

    def _ike(self, node: Node, nbma: Address) -> None:
        """IKE from ``node`` to ``nbma``: opens the initiator's NAT; a responder behind a
        NAT answers only if it has sent to the initiator before (endpoint filtering)."""
        peer = self._peer_for(node, nbma)
        if not node.alive or peer is None or not peer.alive or self._blocked(node, peer):
            return
        sa = frozenset({node.name, peer.name})
        if sa in self.sas:
            return
        if node.nat is not None and node.nat is not peer.nat:
            node.nat.conntrack.add((node.name, peer.public))
        if (
            peer.nat is not None
            and peer.nat is not node.nat
            and (peer.name, node.public) not in peer.nat.conntrack
        ):
            return  # filtered; the responder's own IKE may open the way later
        self.sas.add(sa)
        self.apply(node, node.engine.ipsec_up(self.now, nbma, identity=peer.name))
        self.apply(peer, peer.engine.ipsec_up(self.now, self._seen_as(node, peer), node.name))

    def _ike_delete(self, node: Node, nbma: Address) -> None:
        peer = self._peer_for(node, nbma)
        if peer is None:
            return
        sa = frozenset({node.name, peer.name})
        if sa in self.sas:
            self.sas.discard(sa)
            self.apply(peer, peer.engine.ipsec_down(self.now, self._seen_as(node, peer)))

    def _notify_down(self, node: Node, gone: Node) -> None:
        if node.alive:
            self.apply(node, node.engine.ipsec_down(self.now, self._seen_as(gone, node)))

    def _ike_tick_scheduled(self) -> None:
        if getattr(self, "_ike_ticking", False):
            return
        self._ike_ticking = True

        def tick() -> None:
            for node in self.nodes.values():
                if node.alive:
                    for nbma in list(node.ipsec_wanted):
                        self._ike(node, nbma)
            self.after(self.ike_retry, tick)

        self.after(self.ike_retry, tick)

    def _protected(self, a: Node, b: Node) -> bool:
        return self.ipsec and frozenset({a.name, b.name}) in self.sas

    # -- the wire ------------------------------------------------------------------------------
    def _blocked(self, a: Node, b: Node) -> bool:
        return (
            a.name in self.isolated
            or b.name in self.isolated
            or frozenset({a.name, b.name}) in self.partitions
        )

    def _receiver(self, sender: Node, nbma: Address, owner: Address | None) -> tuple[Any, str]:
        box = self.nats.get(nbma)
        if box is not None:
            if sender.nat is box:
                return None, "nat_hairpin"
            inside = [n for n in box.inside if (n.name, sender.public) in box.conntrack]
            if not inside:
                return None, "nat_filtered"
            if owner is not None:  # NAT-T: the SA's UDP port names the inside node
                inside = [n for n in inside if n.owns(owner)]
            if len(inside) != 1:
                return None, "nat_ambiguous"
            return inside[0], ""
        node = next((n for n in self.nodes.values() if n.nbma == nbma), None)
        if node is None:
            return None, "no_such_nbma"
        if node.nat is not None and node.nat is not sender.nat:
            return None, "private_address"
        return node, ""

    def _transmit(
        self,
        sender: Node,
        nbma: Address,
        nhrp: bytes | None = None,
        data: tuple[Trace, bytes] | None = None,
    ) -> None:
        if not sender.alive:
            return
        packet = decode(nhrp) if nhrp is not None else None
        if packet is not None:
            replies = (PacketType.RESOLUTION_REPLY, PacketType.REGISTRATION_REPLY)
            owner = packet.src_proto if packet.type in replies else packet.dst_proto
        else:
            assert data is not None
            owner = data[0].dst
        receiver, why = self._receiver(sender, nbma, owner)
        observed = sender.nbma
        if receiver is not None and sender.nat is not None and receiver.nat is not sender.nat:
            observed = sender.nat.public
            sender.nat.conntrack.add((sender.name, receiver.public))
        record = None
        if packet is not None:
            assert nhrp is not None
            record = WireRecord(
                self.now,
                sender.name,
                receiver.name if receiver else None,
                nbma,
                observed,
                packet,
                nhrp,
            )
            self.wire.append(record)
        if receiver is None:
            self._lost(record, data, why)
            return
        if self._blocked(sender, receiver):
            self._lost(record, data, "partition")
            return
        if self.loss and self.rng.random() < self.loss:
            self.lost_to_loss += 1
            self._lost(record, data, "loss")
            return

        def deliver() -> None:
            if not receiver.alive:
                self._lost(record, data, "receiver_down")
                return
            protected = self._protected(sender, receiver)
            if record is not None:
                record.fate = "delivered"
                self.apply(
                    receiver,
                    receiver.engine.packet_received(self.now, observed, record.data, protected),
                )
            else:
                assert data is not None
                self._forward(receiver, data[0], data[1], came_from=observed)

        self.after(self.latency, deliver)

    def _lost(self, record: WireRecord | None, data: Any, why: str) -> None:
        if record is not None:
            record.fate = why
        if data is not None:
            data[0].dropped = why

    # -- the data plane ------------------------------------------------------------------------
    def send(self, name: str, src: str | Address, dst: str | Address) -> Trace:
        """A data packet from ``src`` (behind node ``name``) to ``dst``."""
        trace = Trace(ip_address(src), ip_address(dst))
        node = self.nodes[name]
        self._forward(node, trace, ip_head(trace.src, trace.dst), came_from=None)
        return trace

    def ping(self, name: str, src: str | Address, dst: str | Address, wait: float = 0.5) -> Trace:
        trace = self.send(name, src, dst)
        self.run(duration=wait)
        return trace

    def flow(self, name: str, src: str, dst: str, every: float, until: float) -> list[Trace]:
        """Send a packet every ``every`` seconds until ``until``; the traces, as they go."""
        traces: list[Trace] = []

        def one() -> None:
            if self.now <= until:
                traces.append(self.send(name, src, dst))
                self.after(every, one)

        self.after(0.0, one)
        return traces

    def _forward(self, node: Node, trace: Trace, head: bytes, came_from: Address | None) -> None:
        if not node.alive:
            trace.dropped = "node_down"
            return
        trace.path.append(node.name)
        dst = trace.dst
        route = node.lookup(dst)
        if node.owns(dst) and (route is None or route[0].prefixlen <= node.owned_length(dst)):
            trace.delivered = True
            return
        if len(trace.path) > 8:
            trace.dropped = "ttl"
            return
        if route is None:
            trace.dropped = "no_route"
            return
        next_hop = route[1] or dst
        mapping = node.mappings.get(next_hop)
        if mapping is None:
            trace.dropped = "no_mapping"
            self.apply(node, node.engine.no_mapping(self.now, next_hop))
            return
        nbma, mtype = mapping
        if came_from is not None:
            self.apply(node, node.engine.hairpin(self.now, came_from, nbma, trace.src, dst, head))
        if mtype is MappingType.CACHED:
            self.apply(node, node.engine.traffic_used(self.now, nbma))
        self._transmit(node, nbma, data=(trace, head))


# -- topologies -----------------------------------------------------------------------------------


OVERLAY4 = "172.16.0.0/24"


def hub_config(i: int = 1, **kw: Any) -> EngineConfig:
    args: dict[str, Any] = {
        "nbma": ip_address(f"198.51.100.{i}"),
        "addresses": (ip_interface(f"172.16.0.{i}/24"),),
        "role": Role.NHS,
        "holdtime": 600,
    }
    args.update(kw)
    return EngineConfig(**args)


def spoke_config(
    j: int,
    hubs: Iterable[int] = (1,),
    nbma: str | None = None,
    **kw: Any,
) -> EngineConfig:
    args: dict[str, Any] = {
        "nbma": ip_address(nbma or f"203.0.113.{10 + j}"),
        "addresses": (ip_interface(f"172.16.0.{10 + j}/24"),),
        "protected": (ip_network(f"10.{j}.0.0/24"),),
        "nhs": tuple(
            NhsConfig(ip_address(f"172.16.0.{i}"), ip_address(f"198.51.100.{i}"), priority=p)
            for p, i in enumerate(hubs)
        ),
        "holdtime": 600,
        "nhs_routes": (ip_network("10.0.0.0/8"),),
    }
    args.update(kw)
    return EngineConfig(**args)


def star(
    net: Net,
    spokes: int = 2,
    hubs: int = 1,
    hub_kw: dict | None = None,
    spoke_kw: dict | None = None,
    nat: dict[int, str] | None = None,
    start: bool = True,
) -> tuple[list[Node], list[Node]]:
    """Hubs hub1.. (172.16.0.1..) and spokes s1.. (172.16.0.11.., LAN 10.j.0.0/24).

    Hubs route each spoke's LAN via the spoke's overlay address, as a routing protocol
    would; spokes route 10.0.0.0/8 via the active NHS (the engine's ``nhs_routes``).
    ``nat`` puts spoke j behind the NAT box of that name (private NBMA 192.168.j.2).
    """
    hub_nodes = [net.add(f"hub{i}", hub_config(i, **(hub_kw or {}))) for i in range(1, hubs + 1)]
    spoke_nodes = []
    for j in range(1, spokes + 1):
        behind = (nat or {}).get(j)
        cfg = spoke_config(
            j,
            hubs=range(1, hubs + 1),
            nbma=f"192.168.{j}.2" if behind else None,
            **(spoke_kw or {}),
        )
        spoke_nodes.append(net.add(f"s{j}", cfg, nat=behind))
    for hub in hub_nodes:
        for j, spoke in enumerate(spoke_nodes, start=1):
            hub.routes[ip_network(f"10.{j}.0.0/24")] = spoke.overlay()
    if start:
        net.start()
    return hub_nodes, spoke_nodes


def dual_stack_star(net: Net, nbma6: bool, **spoke_kw: Any) -> None:
    """hub1 and spokes s1, s2 with IPv6 and IPv4 overlays (fd00::/64, 172.16.0.0/24) and
    LANs (fd10:j::/64, 10.j.0.0/24), over IPv6 or IPv4 transport; the hub routes each
    spoke's LANs via its overlay addresses. Started."""

    def nbma(i: int) -> Address:
        return ip_address(f"2001:db8::{i}") if nbma6 else ip_address(f"198.51.100.{i}")

    net.add(
        "hub1",
        EngineConfig(
            nbma(1),
            (ip_interface("fd00::1/64"), ip_interface("172.16.0.1/24")),
            role=Role.NHS,
        ),
    )
    for j in (1, 2):
        node = net.add(
            f"s{j}",
            EngineConfig(
                nbma(10 + j),
                (ip_interface(f"fd00::{10 + j}/64"), ip_interface(f"172.16.0.{10 + j}/24")),
                protected=(ip_network(f"fd10:{j}::/64"), ip_network(f"10.{j}.0.0/24")),
                nhs=(
                    NhsConfig(ip_address("fd00::1"), nbma(1)),
                    NhsConfig(ip_address("172.16.0.1"), nbma(1)),
                ),
                nhs_routes=(ip_network("fd10::/16"), ip_network("10.0.0.0/8")),
                **spoke_kw,
            ),
        )
        net["hub1"].routes[ip_network(f"fd10:{j}::/64")] = node.overlay(6)
        net["hub1"].routes[ip_network(f"10.{j}.0.0/24")] = node.overlay(4)
    net.start()


def v6_interface(text: str) -> IPv6Interface:
    return IPv6Interface(text)


def v4_interface(text: str) -> IPv4Interface:
    return IPv4Interface(text)
