"""The state one engine's protocol modules share, and the helpers they all use.

Rule: everything here is plain data plus small helpers (send, emit, install a mapping).
Protocol decisions live in the concept modules (nhc, nhs, resolution, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TYPE_CHECKING, Any, Final

from ..wire import (
    Address,
    Afn,
    Cie,
    CleartextAuthentication,
    End,
    Extension,
    ForwardTransitNhs,
    NatAddress,
    Packet,
    PacketType,
    ProtocolType,
    ResponderAddress,
    ReverseTransitNhs,
    encode,
    intern_address,
)
from . import auth
from .actions import (
    Action,
    AddMapping,
    Event,
    EventKind,
    IpsecDown,
    IpsecUp,
    MappingType,
    RemoveMapping,
    SendPacket,
)
from .cache import Cache, CacheEntry, PrefixTable, host
from .config import EngineConfig
from .ratelimit import RateLimiter
from .routes import RouteTable
from .stats import Drop, Stats
from .timers import DEFAULT_HOP_COUNT, TimerQueue

if TYPE_CHECKING:
    from .nhc import Registrar
    from .nhs import RegistrationServer
    from .purge import Purger
    from .redirect import Redirector
    from .resolution import Resolver
    from .shortcut import Shortcuts

Network = IPv4Network | IPv6Network

PROTOCOL_OF_VERSION: Final = {4: ProtocolType.IPV4, 6: ProtocolType.IPV6}
_END: Final = End()  # immutable: one for every packet
_REGISTERED: Final = MappingType.REGISTERED  # read per mapping: cheaper than an enum member on 3.11
# The empty parts of every request: shared, so the codec encodes them once per process.
EMPTY_REQUEST_EXTENSIONS: Final = (ResponderAddress(), ForwardTransitNhs(), ReverseTransitNhs())
EMPTY_NAT: Final = NatAddress()


def relayed(pkt: Packet, extensions: tuple[Extension, ...] | None = None) -> Packet:
    """``pkt`` one hop further: hop count less one, optionally new extensions.

    Built from every field (``dataclasses.replace`` costs several times as much): this
    runs for every request an NHS forwards."""
    return Packet(
        pkt.type,
        pkt.afn,
        pkt.protocol_type,
        pkt.hop_count - 1,
        pkt.src_nbma,
        pkt.src_proto,
        pkt.dst_proto,
        pkt.flags,
        pkt.request_id,
        pkt.cies,
        pkt.error_code,
        pkt.error_offset,
        pkt.traffic_code,
        pkt.payload,
        pkt.reserved,
        pkt.extensions if extensions is None else extensions,
    )


@dataclass(slots=True)
class Peer:
    """One NBMA peer as IPsec sees it."""

    nbma: Address
    ipsec_up: bool = False
    identity: Any | None = None

    def __init__(self, nbma: Address, ipsec_up: bool = False, identity: Any | None = None) -> None:
        self.nbma = nbma
        self.ipsec_up = ipsec_up
        self.identity = identity


class Core:
    __slots__ = (
        "_request_id",
        "afn",
        "allow_all",
        "arm",
        "auth_ext",
        "authoriser",
        "cache",
        "config",
        "echo_memo",
        "egress",
        "err_limiter",
        "generation",
        "is_nhs",
        "mapped",
        "nbma",
        "nhc",
        "nhs",
        "out",
        "own",
        "own_addresses",
        "own_side",
        "peers",
        "post_nat",
        "purger",
        "redirector",
        "reg_limiter",
        "res_limiter",
        "resolver",
        "responder",
        "responder_ext",
        "routes",
        "running",
        "secret",
        "shortcuts",
        "stats",
        "timers",
        "tunnel",
    )
    # Wired by Engine after construction; the modules reach each other through here.
    nhc: Registrar
    nhs: RegistrationServer
    resolver: Resolver
    shortcuts: Shortcuts
    purger: Purger
    redirector: Redirector

    def __init__(self, config: EngineConfig, authoriser: auth.Authoriser, request_id: int) -> None:
        self.out: list[Action] = []
        self.stats = Stats()
        self.timers = TimerQueue()
        # Bound once: every input arms a timer or two, and a forwarding method costs a call.
        self.arm: Callable[[Hashable, float], None] = self.timers.arm
        self.cache = Cache()
        self.peers: dict[Address, Peer] = {}
        self.mapped: dict[Address, set[Address]] = {}  # NBMA -> overlay addresses installed
        self.authoriser = authoriser
        self.allow_all = isinstance(authoriser, auth.AllowAll)  # skip building its arguments
        self.running = False
        self.post_nat: Address | None = None  # our NBMA as the active NHS sees it
        self.echo_memo: tuple = ()  # echo_extensions' last answer
        self.routes = RouteTable()  # through the tunnel, as the driver reports them
        self._request_id = (request_id & 0xFFFFFFFF) or 1
        self.apply_config(config)

    # -- configuration-derived lookups -------------------------------------------------
    def apply_config(self, config: EngineConfig) -> None:
        self.config = config
        self.generation = getattr(self, "generation", 0) + 1  # invalidates cached packet parts
        # Interned: our own addresses are in every packet we send and every lookup.
        self.nbma = intern_address(config.nbma)
        self.afn = Afn.IPV4 if config.nbma.version == 4 else Afn.IPV6
        self.secret = config.auth_secret
        self.is_nhs = config.is_nhs  # read per request: config's is a property (a call)
        self.auth_ext: CleartextAuthentication | None = auth.extension(config.auth_secret)
        self.own: dict[ProtocolType, Address] = {}
        self.tunnel: dict[ProtocolType, Network] = {}
        self.responder: dict[ProtocolType, Cie] = {}
        self.responder_ext: dict[ProtocolType, ResponderAddress] = {}
        for iface in config.addresses:
            pt = PROTOCOL_OF_VERSION[iface.version]
            self.own[pt] = intern_address(iface.ip)
            self.tunnel[pt] = iface.network
            self.responder[pt] = Cie(
                prefix_length=iface.ip.max_prefixlen,
                mtu=config.mtu,
                holding_time=config.holdtime,
                client_nbma=self.nbma,
                client_proto=self.own[pt],
            )
            self.responder_ext[pt] = ResponderAddress(self.responder[pt])
        # A set: membership hashes (kept by interned addresses) instead of calling
        # ipaddress's __eq__ for each of our addresses.
        self.own_addresses = frozenset(self.own.values())
        # What we are the egress for: our overlay addresses and protected prefixes.
        self.egress: PrefixTable[bool] = PrefixTable()
        for iface in config.addresses:
            self.egress.insert(ip_network(iface.ip), True)
        for prefix in config.protected:
            self.egress.insert(prefix, True)
        self.own_side: dict[int, tuple[Network, ...]] = {
            v: tuple(ip_network(i.ip) for i in config.addresses if i.version == v)
            + tuple(p for p in config.protected if p.version == v)
            for v in (4, 6)
        }
        limits = config.limits
        self.reg_limiter = RateLimiter(
            limits.registrations_per_s, limits.registration_burst, limits.max_tracked_sources
        )
        self.res_limiter = RateLimiter(
            limits.resolutions_per_s, limits.resolution_burst, limits.max_tracked_sources
        )
        self.err_limiter = RateLimiter(
            limits.errors_per_s, limits.error_burst, limits.max_tracked_sources
        )

    def next_request_id(self) -> int:
        rid = self._request_id
        self._request_id = (rid % 0xFFFFFFFF) + 1
        return rid

    # -- output --------------------------------------------------------------------------
    def send(self, nbma: Address, packet: Packet, data: bytes | None = None) -> bytes:
        """Send ``packet``; ``data``: its octets when already made (a :class:`Template`)."""
        if data is None:
            data = encode(packet)
        self.out.append(SendPacket(nbma, data, packet))
        self.stats.tx[packet.type] += 1
        return data

    def resend(self, nbma: Address, data: bytes, ptype: PacketType) -> None:
        """A retransmission: the same octets, hence the same request id (RFC 2332 §5.2.0.1)."""
        self.out.append(SendPacket(nbma, data))
        self.stats.tx[ptype] += 1

    def event(self, kind: EventKind, **fields: Any) -> None:
        self.out.append(Event(kind, fields))

    def drop(self, reason: Drop | str, src: Address | None = None, **fields: Any) -> None:
        self.stats.drops[reason] += 1
        self.out.append(Event(EventKind.DROP, {"reason": str(reason), "src": src, **fields}))

    def extensions(self, *exts: Extension | None) -> tuple[Extension, ...]:
        """Our extension list: the given ones, authentication, End."""
        out = [e for e in exts if e is not None]
        if self.auth_ext is not None:
            out.append(self.auth_ext)
        return (*out, _END) if out else ()

    def echo_extensions(
        self, request: Packet, responder: ResponderAddress | None, natx: NatAddress | None
    ) -> tuple[Extension, ...]:
        """A reply's extensions: the request's in order (RFC 2332 §5.3: never reordered,
        none added). The Responder Address and NAT extensions are swapped for
        ``responder`` and ``natx`` (None drops them), transit records are echoed,
        authentication is ours, the rest is dropped.

        The codec hands out one tuple for the same extension octets, and a hub's
        clients send it the same ones, so the last answer is kept and reused while the
        request's tuple and the replacements are the very same objects."""
        exts = request.extensions
        memo = self.echo_memo
        if (
            memo
            and memo[0] is exts
            and memo[1] is responder
            and memo[2] is natx
            and memo[3] is self.auth_ext
        ):
            return memo[4]
        out: list[Extension] = []
        authed = False
        for ext in exts:
            if isinstance(ext, ResponderAddress):
                if responder is not None:
                    out.append(responder)
            elif isinstance(ext, NatAddress):
                if natx is not None:
                    out.append(natx)
            elif isinstance(ext, (ForwardTransitNhs, ReverseTransitNhs)):
                out.append(ext)
            elif isinstance(ext, CleartextAuthentication) and self.auth_ext is not None:
                out.append(self.auth_ext)
                authed = True
        if self.auth_ext is not None and not authed:
            out.append(self.auth_ext)
        echoed = (*out, _END) if out else ()
        self.echo_memo = (exts, responder, natx, self.auth_ext, echoed)
        return echoed

    def reply(
        self,
        request: Packet,
        ptype: PacketType,
        flags: int,
        cies: tuple[Cie, ...],
        responder: ResponderAddress | None,
        natx: NatAddress | None,
        dst_proto: Address | None = None,
    ) -> Packet:
        """The reply to ``request``: its afn, protocol type, source and destination
        addresses (or ``dst_proto``) and request id (RFC 2332 §5.2.2, §5.2.4, §5.2.6), a
        fresh hop count, and its extensions echoed (:meth:`echo_extensions`)."""
        return Packet(
            ptype,
            request.afn,
            request.protocol_type,
            DEFAULT_HOP_COUNT,
            request.src_nbma,
            request.src_proto,
            request.dst_proto if dst_proto is None else dst_proto,
            flags,
            request.request_id,
            cies,
            0,  # error_code, error_offset, traffic_code, payload, reserved: none in a reply
            0,
            0,
            b"",
            0,
            self.echo_extensions(request, responder, natx),
        )

    # -- mappings ------------------------------------------------------------------------
    def install(self, entry: CacheEntry) -> None:
        """Tell the data plane about ``entry``'s current binding."""
        nbma = entry.nbma
        assert nbma is not None
        # setdefault: one hashing of the address. A set in ``mapped`` is never empty (it
        # goes with its last user), so an empty one is new: the first mapping to ``nbma``.
        users = self.mapped.setdefault(nbma, set())
        if not users and entry.type is not _REGISTERED:
            self.out.append(IpsecUp(nbma))  # the client of a registration brought its own
        users.add(entry.proto)
        self.out.append(AddMapping(entry.proto, nbma, entry.type))
        entry.installed = True

    def uninstall(self, entry: CacheEntry, remove: bool = True) -> None:
        """Forget ``entry``'s binding in the data plane; the SA goes with the last user."""
        if not entry.installed:
            return
        nbma = entry.nbma
        assert nbma is not None
        entry.installed = False
        if remove:
            self.out.append(RemoveMapping(entry.proto, nbma, entry.type))
        users = self.mapped.get(nbma)
        if users is not None:
            users.discard(entry.proto)
            if users:
                return
            del self.mapped[nbma]
        if not self.nhc.is_nhs_nbma(nbma):
            self.out.append(IpsecDown(nbma))

    def rebind(self, entry: CacheEntry, nbma: Address, claimed: Address | None) -> None:
        """Replace the current binding: RemoveMapping of the old one, then AddMapping, so a
        driver that tracks (overlay, NBMA) pairs (multicast targets) stays right."""
        old = entry.nbma
        if entry.installed:
            self.uninstall(entry)
        entry.nbma = nbma
        entry.claimed_nbma = claimed
        self.install(entry)
        self.event(
            EventKind.MAPPING_CHANGE,
            proto=entry.proto,
            old=old,
            new=nbma,
            type=entry.type,
        )

    # -- peers -------------------------------------------------------------------------------
    def identity(self, nbma: Address | None) -> Any | None:
        peer = self.peers.get(nbma) if nbma is not None else None
        return peer.identity if peer is not None and peer.ipsec_up else None

    def peer_up(self, nbma: Address) -> bool:
        peer = self.peers.get(nbma)
        return peer is not None and peer.ipsec_up

    def known(self, nbma: Address, protected: bool) -> bool:
        """A packet from ``nbma`` may be acted on: an IPsec peer, an NHS, or a peer we map."""
        return protected or nbma in self.mapped or self.nhc.is_nhs_nbma(nbma) or self.peer_up(nbma)

    def side_of(self, version: int) -> tuple[Network, ...]:
        return self.own_side[version]

    # -- clients (NHS) ------------------------------------------------------------------------
    def holder(
        self, addr: Address, now: float | None = None
    ) -> tuple[int, CacheEntry, bool] | None:
        """The registered client holding ``addr`` by the longest match, the match's length,
        and whether a route (True) or the client's registration (its address or a prefix
        it registered) holds it. Clients expired at ``now`` do not count."""
        found = None
        registered = self.cache.covering_length(addr)
        if registered is not None and (now is None or registered[1].expires > now):
            found = (registered[0], registered[1], False)
        route = self.routes.lookup(addr)
        if route is not None and (found is None or route[0].prefixlen > found[0]):
            client = self.cache.get(route[1])
            if (
                client is not None
                and client.type is MappingType.REGISTERED
                and (now is None or client.expires > now)
            ):
                found = (route[0].prefixlen, client, True)
        return found

    def client_networks(self, client: CacheEntry) -> tuple[Network, ...]:
        """What a registered client stands for in the hub's policy: its overlay address,
        the prefixes it registered and those routed through it."""
        return (host(client.proto), *client.prefixes, *self.routes.through(client.proto))

    def covering_protected(self, addr: Address) -> Network | None:
        """Our overlay address or protected prefix holding ``addr``."""
        hit = self.egress.lookup(addr)
        return hit[0] if hit else None
