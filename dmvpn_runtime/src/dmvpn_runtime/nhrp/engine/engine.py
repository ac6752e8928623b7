"""The NHRP engine: the one public class. Sans-I/O (see docs/engine.md).

Every input is a method that takes ``now`` (monotonic seconds) and returns the list
of actions to carry out, in order. The engine never reads a clock, a socket or the
kernel. It keeps its own timer queue and asks for one wake-up: after any input, an
``ArmTimer(WAKE, deadline)`` replaces the previous one (``CancelTimer(WAKE)`` when
nothing is due); call :meth:`Engine.timer_fired` at that time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from ..wire import Address, DecodeError, ErrorCode, Packet, PacketType, decode, intern_address
from ..wire.constants import ExtensionType
from . import auth, error_indication
from .actions import (
    WAKE,
    Action,
    AddRoute,
    ArmTimer,
    CancelTimer,
    EventKind,
    MappingType,
    RemoveRoute,
)
from .auth import AllowAll, Authoriser
from .cache import INSTALLED_TYPES, CacheEntry
from .config import EngineConfig
from .core import Core, Network, Peer
from .nhc import Registrar
from .nhs import RegistrationServer
from .purge import Purger
from .redirect import Redirector
from .resolution import Resolver
from .shortcut import Shortcuts
from .stats import Drop
from .views import CacheEntryView, NhsView, PeerView, RouteView, ShortcutView, expiry

_REQUEST_REPLY_EXTS: Final = frozenset(
    {
        ExtensionType.END,
        ExtensionType.RESPONDER_ADDRESS,
        ExtensionType.FORWARD_TRANSIT_NHS,
        ExtensionType.REVERSE_TRANSIT_NHS,
        ExtensionType.VENDOR_PRIVATE,  # RFC 2332 §5.3.3: may appear anywhere
    }
)
_PURGE_REPLY_EXTS: Final = frozenset({ExtensionType.END, ExtensionType.VENDOR_PRIVATE})
_ALLOWED_CACHE: Final[dict[tuple[bool, bool], dict[PacketType, frozenset]]] = {}


def _allowed_reply_exts(with_auth: bool, nat: bool) -> dict[PacketType, frozenset]:
    """Extension types a reply may carry, by reply type: those our requests carry (shared
    by engines). One lookup tells a reply from a request and gives what it may carry."""
    key = (with_auth, nat)
    if key not in _ALLOWED_CACHE:
        extra = {ExtensionType.AUTHENTICATION} if with_auth else set()
        purge = _PURGE_REPLY_EXTS | extra
        if nat:
            extra.add(ExtensionType.NAT_ADDRESS)
        reply = _REQUEST_REPLY_EXTS | extra
        _ALLOWED_CACHE[key] = {
            PacketType.RESOLUTION_REPLY: reply,
            PacketType.REGISTRATION_REPLY: reply,
            PacketType.PURGE_REPLY: purge,
        }
    return _ALLOWED_CACHE[key]


# Requests whose unknown compulsory extensions are refused before their handler runs.
_CHECKED_REQUESTS: Final = (PacketType.REGISTRATION_REQUEST, PacketType.PURGE_REQUEST)
_MAX_TIMER_ROUNDS: Final = 64  # a handler may arm a timer that is already due; bound the loop


class Engine:
    """One node's NHRP protocol state for one tunnel (NHC, NHS or both; IPv4 and IPv6)."""

    __slots__ = ("_allowed_exts", "_armed", "_core", "_handlers")

    def __init__(
        self,
        config: EngineConfig,
        authoriser: Authoriser | None = None,
        request_id: int = 1,
    ) -> None:
        """``request_id``: the first request id; the daemon passes one that differs from
        the previous run's (RFC 2332 §5.2.3 asks ids not to repeat after a restart)."""
        core = self._core = Core(config, authoriser or AllowAll(), request_id)
        core.nhc = Registrar(core)
        core.nhs = RegistrationServer(core)
        core.resolver = Resolver(core)
        core.shortcuts = Shortcuts(core)
        core.purger = Purger(core)
        core.redirector = Redirector(core)
        self._armed: float | None = None
        self._handlers = {
            PacketType.RESOLUTION_REQUEST: core.resolver.on_request,
            PacketType.RESOLUTION_REPLY: core.resolver.on_reply,
            PacketType.REGISTRATION_REQUEST: core.nhs.on_request,
            PacketType.REGISTRATION_REPLY: self._on_registration_reply,
            PacketType.PURGE_REQUEST: core.purger.on_request,
            PacketType.PURGE_REPLY: core.purger.on_reply,
            PacketType.ERROR_INDICATION: self._on_error_indication,
            PacketType.TRAFFIC_INDICATION: core.redirector.on_traffic_indication,
        }
        self._update_reply_exts()

    @property
    def config(self) -> EngineConfig:
        return self._core.config

    @property
    def running(self) -> bool:
        return self._core.running

    # -- inputs ----------------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        core = self._core
        if core.running:
            return []
        core.running = True
        self._install_static()
        core.nhc.start(now)
        return self._flush()

    def stop(self, now: float) -> list[Action]:
        """Leave cleanly: purge our registrations (N flag set), tell peers that learned us,
        remove every route and mapping we installed."""
        core = self._core
        if not core.running:
            return []
        learned = core.shortcuts.learned_peers()
        core.nhc.stop(now)
        if learned:
            core.purger.purge_own_binding(learned, now)
        core.shortcuts.stop()
        for entry in list(core.cache.entries.values()):
            if entry.type is MappingType.REGISTERED:
                core.cache.pop(entry.proto)
                core.nhs.unroute(entry)
                core.uninstall(entry)
        for entry in list(core.cache.entries.values()):
            if entry.type is MappingType.STATIC:
                core.cache.pop(entry.proto)
                core.uninstall(entry)
        core.resolver.by_target.clear()
        core.resolver.by_id.clear()
        core.purger.pending.clear()
        core.timers.clear()
        core.running = False
        return self._flush()

    def packet_received(
        self, now: float, nbma_src: Address, data: bytes, protected: bool = False
    ) -> list[Action]:
        """An NHRP packet (the GRE payload) from NBMA address ``nbma_src``; ``protected``
        when it arrived inside IPsec."""
        core = self._core
        if not core.running:
            core.stats.drops[Drop.NOT_RUNNING] += 1
            return []
        nbma_src = intern_address(nbma_src)
        try:
            pkt = decode(data)
        except DecodeError as exc:
            core.drop(f"decode_{exc.reason.value}", nbma_src, detail=str(exc))
            return self._flush()
        self._receive(pkt, data, nbma_src, protected, now)
        return self._flush()

    def timer_fired(self, now: float, key: str = WAKE) -> list[Action]:
        core = self._core
        self._armed = None
        if not core.running:
            return []
        for _round in range(_MAX_TIMER_ROUNDS):
            due = core.timers.pop_due(now)
            if not due:
                break
            for k in due:
                self._on_timer(k, now)
        return self._flush()

    def hairpin(
        self,
        now: float,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
    ) -> list[Action]:
        """NHS: a data packet from ``in_nbma`` was forwarded back out to ``out_nbma``."""
        if not self._core.running:
            return []
        self._core.redirector.hairpin(
            intern_address(in_nbma),
            intern_address(out_nbma),
            intern_address(inner_src),
            intern_address(inner_dst),
            head,
            now,
        )
        return self._flush()

    def no_mapping(self, now: float, next_hop: Address) -> list[Action]:
        """The data plane has no NBMA for overlay next hop ``next_hop``: resolve it."""
        core = self._core
        if not core.running:
            return []
        next_hop = intern_address(next_hop)
        entry = core.cache.get(next_hop)
        if next_hop in core.own_addresses or (entry is not None and entry.installed):
            core.stats.counters["no_mapping_ignored"] += 1
            return self._flush()
        policy = core.config.policy
        if not policy.trivial and not policy.allows(core.side_of(next_hop.version), next_hop):
            core.stats.counters["policy_deny_resolution"] += 1
            core.event(EventKind.POLICY_DENY, role="nhc", stage="no_mapping", dst=next_hop)
            return self._flush()
        core.resolver.resolve_known(next_hop, entry, now, "no_mapping")
        return self._flush()

    def traffic_used(self, now: float, peer: Address) -> list[Action]:
        """Traffic went to ``peer`` (an NBMA address, as the data plane reports it, or an
        overlay next hop): shortcuts through it are refreshed rather than left to expire."""
        if not self._core.running:
            return []
        self._core.shortcuts.used(intern_address(peer), now)
        return self._flush()

    def ipsec_up(self, now: float, nbma: Address, identity: Any | None = None) -> list[Action]:
        """An SA with ``nbma`` is up; ``identity`` (e.g. the peer certificate's names) is
        what an :class:`Authoriser` gets to decide with."""
        core = self._core
        nbma = intern_address(nbma)
        core.peers[nbma] = Peer(nbma, True, identity)
        if not core.running:
            return []
        core.shortcuts.on_ipsec_up(nbma, identity, now)
        core.nhc.on_ipsec_up(nbma, now)
        return self._flush()

    def ipsec_down(self, now: float, nbma: Address) -> list[Action]:
        """The SA with ``nbma`` is gone (DPD, delete): its dynamic mappings go too."""
        core = self._core
        nbma = intern_address(nbma)
        peer = core.peers.get(nbma)
        if peer is not None:
            peer.ipsec_up = False
            peer.identity = None
        if not core.running:
            return []
        core.shortcuts.on_ipsec_down(nbma)
        core.nhs.on_ipsec_down(nbma, now)
        core.nhc.on_ipsec_down(nbma, now)
        return self._flush()

    def routes_changed(
        self,
        now: float,
        added: Iterable[tuple[Network, Address]],
        removed: Iterable[Network],
    ) -> list[Action]:
        """The routing table's routes through the tunnel changed: ``added`` (prefix,
        overlay next hop) replace any route of that prefix, ``removed`` prefixes are gone.

        An NHS forwards a Resolution Request for a destination that no registration
        covers to the registered client that is the next hop of the longest route
        holding it (RFC 2332 §5.2.1, the routed path), as Cisco and FRR hubs do for
        spokes that register only their own address; its policy counts the prefixes
        routed through a client as the client's. When a route moves to another next hop
        or goes, the NHS sends a Purge Request for its prefix to every node that resolved
        through the earlier next hop, which may hold a shortcut via it (a route that ends
        where it started changes nothing). Kept while stopped: the routes are the
        kernel's. Raises TypeError, changing nothing, for a malformed route."""
        core = self._core
        moved = core.routes.update(added, removed)
        if not core.running:
            return []
        if moved and core.config.is_nhs:
            core.purger.purge_routes(moved, now)
        return self._flush()

    def name_resolved(self, now: float, name: str, addresses: Iterable[Address]) -> list[Action]:
        """Answer to ``ResolveName(name)``; an empty list means it did not resolve."""
        if not self._core.running:
            return []
        self._core.nhc.on_name(name, [intern_address(a) for a in addresses], now)
        return self._flush()

    def reconfigure(self, now: float, config: EngineConfig) -> list[Action]:
        """A new configuration; registrations, mappings and shortcuts it still allows stay."""
        core = self._core
        old = core.config
        old_nbma = core.nbma
        core.apply_config(config)
        self._update_reply_exts()
        if not core.running:
            return []
        if old_nbma != config.nbma:
            core.post_nat = None
            learned = core.shortcuts.learned_peers()
            if learned:  # they map our old address: tell them before re-registering
                core.purger.purge_own_binding(learned, now)
        self._install_static(old)
        if old.is_nhs and not config.is_nhs:
            for entry in core.nhs.clients():
                core.nhs.remove(entry, now, "role_changed", purge_resolvers=False)
        reregister = (
            old.addresses,
            old.protected,
            old.unique,
            old.holdtime,
            old.register_prefixes,
            old.nat,
        ) != (
            config.addresses,
            config.protected,
            config.unique,
            config.holdtime,
            config.register_prefixes,
            config.nat,
        )
        old_active = dict(core.nhc.active)
        core.nhc.reconfigure(old_nbma, now, reregister)
        if old.nhs_routes != config.nhs_routes:
            self._reroute(old, old_active)
        core.redirector.reconfigure()
        core.shortcuts.recheck()
        return self._flush()

    def clear_cache(self, now: float, target: Address | None = None) -> list[Action]:
        """Operator "clear": forget dynamic bindings (cached, negative and, on an NHS,
        registered) of ``target``, or all of them; shortcuts through them go too. Clients
        register again at their next refresh."""
        core = self._core
        if not core.running:
            return []
        for entry in list(core.cache.entries.values()):
            if target is not None and entry.proto != target:
                continue
            if entry.type is MappingType.REGISTERED:
                core.nhs.remove(entry, now, "cleared", purge_resolvers=False)
            elif entry.type in (MappingType.CACHED, MappingType.NEGATIVE):
                core.shortcuts.forget_entry(entry, "cleared")
        if target is not None:
            core.shortcuts.remove_covering(target, "cleared")
        return self._flush()

    def clear_shortcuts(self, now: float) -> list[Action]:
        """Operator "clear": remove every shortcut route and the bindings answers brought."""
        if not self._core.running:
            return []
        self._core.shortcuts.clear("cleared")
        return self._flush()

    # -- state (read-only) ---------------------------------------------------------------------
    def cache_entries(self) -> list[CacheEntryView]:
        views = []
        for e in self._core.cache.entries.values():
            # A list comprehension: no generator to resume for each flag.
            flags = tuple(
                [
                    name
                    for name, on in (
                        ("unique", e.unique),
                        ("used", e.used),
                        # identity first: interned addresses, ipaddress's __ne__ is Python
                        (
                            "nat",
                            e.claimed_nbma is not None
                            and e.nbma is not e.claimed_nbma
                            and e.nbma != e.claimed_nbma,
                        ),
                        ("installed", e.installed),
                        ("pending", e.new is not None),
                        ("learned", e.learned),
                    )
                    if on
                ]
            )
            views.append(
                CacheEntryView(
                    str(e.type),
                    e.proto,
                    e.nbma,
                    e.claimed_nbma,
                    expiry(e.expires),
                    e.prefix_length,
                    e.prefixes,
                    flags,
                )
            )
        return views

    def nhs_states(self) -> list[NhsView]:
        nhc = self._core.nhc
        return [
            NhsView(
                st.config.proto,
                st.nbma,
                st.config.name,
                st.config.priority,
                st.state,
                st.registered_until if st.registered else None,
                st.misses,
                st.post_nat,
                nhc.active.get(st.config.proto.version) is st,
                tuple(f"{p} code {c}" for p, c in st.refused_prefixes.items()),
            )
            for st in nhc.nhss
        ]

    def shortcuts(self) -> list[ShortcutView]:
        core = self._core
        out = []
        for sc in core.shortcuts.by_prefix.values():
            entry = core.cache.get(sc.via)
            out.append(
                ShortcutView(
                    sc.prefix,
                    sc.via,
                    entry.nbma if entry is not None else None,
                    sc.expires,
                    sc.used,
                    sc.route,
                )
            )
        return out

    def routes(self) -> list[RouteView]:
        """The routes through the tunnel (``routes_changed``), each with the NBMA of the
        registered client its next hop is (an NHS forwards along those only)."""
        core = self._core
        views = []
        for prefix, via in core.routes.items():
            client = core.cache.get(via)
            if client is not None and client.type is not MappingType.REGISTERED:
                client = None  # the NBMA shown is a registered client's only
            views.append(RouteView(prefix, via, client.nbma if client is not None else None))
        return sorted(views, key=lambda v: (v.prefix.version, v.prefix))

    def peers(self) -> list[PeerView]:
        core = self._core
        nbmas = set(core.mapped) | {p.nbma for p in core.peers.values() if p.ipsec_up}
        return [
            PeerView(
                n,
                core.peer_up(n),
                len(core.mapped.get(n, ())),
                core.nhc.is_nhs_nbma(n),
            )
            for n in sorted(nbmas, key=lambda a: (a.version, int(a)))
        ]

    def stats(self) -> dict[str, dict[str, int]]:
        core = self._core
        snap = core.stats.snapshot()
        by_type: dict[str, int] = {}
        for e in core.cache.entries.values():
            by_type[str(e.type)] = by_type.get(str(e.type), 0) + 1
        snap["cache_entries"] = by_type
        snap["gauges"] = {
            "shortcuts": len(core.shortcuts.by_prefix),
            "pending_resolutions": len(core.resolver.by_target),
            "routes": len(core.routes),
            "timers": len(core.timers),
        }
        return snap

    def next_deadline(self) -> float | None:
        return self._core.timers.next_deadline()

    # -- internals -----------------------------------------------------------------------------
    def _flush(self) -> list[Action]:
        core = self._core
        out = core.out
        core.out = []
        deadline = core.timers.next_deadline() if core.running else None
        if deadline != self._armed:
            if deadline is None:
                out.append(CancelTimer(WAKE))
            else:
                out.append(ArmTimer(WAKE, deadline))
            self._armed = deadline
        return out

    def _update_reply_exts(self) -> None:
        config = self._core.config
        self._allowed_exts = _allowed_reply_exts(config.auth_secret is not None, config.nat)

    def _receive(self, pkt: Packet, data: bytes, src: Address, protected: bool, now: float) -> None:
        core = self._core
        core.stats.rx[pkt.type] += 1
        if pkt.afn != core.afn:
            core.drop(Drop.WRONG_AFN, src, afn=int(pkt.afn))
            return
        if pkt.protocol_type not in core.own:
            core.drop(Drop.WRONG_PROTOCOL, src, protocol=hex(pkt.protocol_type))
            return
        if core.config.require_ipsec and not protected:
            core.drop(Drop.UNPROTECTED, src, type=pkt.type.json_name)
            return
        # No secret: nothing to check (auth.check would say so, one call later).
        failure = auth.check(pkt, core.secret) if core.secret is not None else None
        if failure is not None:
            core.drop(failure, src, type=pkt.type.json_name)
            core.event(EventKind.AUTH_FAILURE, src=src, reason=failure, type=pkt.type.json_name)
            error_indication.send(
                core, pkt, data, src, ErrorCode.AUTHENTICATION_FAILURE, now, auth.find(pkt)
            )
            return
        ptype = pkt.type
        allowed = self._allowed_exts.get(ptype)
        if allowed is not None and pkt.src_proto in core.own_addresses:
            for ext in pkt.extensions:
                if ext.type not in allowed:
                    core.drop(
                        Drop.UNEXPECTED_EXTENSION, src, type=ptype.json_name, ext_type=ext.type
                    )
                    return
        elif ptype in _CHECKED_REQUESTS and error_indication.refuse_unknown_compulsory(
            core, pkt, src, now
        ):
            return
        self._handlers[ptype](pkt, src, protected, now)

    def _on_registration_reply(
        self, pkt: Packet, src: Address, protected: bool, now: float
    ) -> None:
        self._core.nhc.on_reply(pkt, src, now)

    def _on_error_indication(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        error_indication.on_indication(self._core, pkt, src, protected, now)

    def _on_timer(self, key: Any, now: float) -> None:
        core = self._core
        kind = key[0]
        if kind == "nhs" or kind == "nhs-exp" or kind == "dns":
            core.nhc.on_timer(kind, key[1], now)
        elif kind == "reg":
            core.nhs.on_timer(key[1], now)
        elif kind == "res":
            core.resolver.on_timer(key[1], now)
        elif kind == "purge":
            core.purger.on_timer(key[1], now)
        else:  # "sc", "map", "pend"
            core.shortcuts.on_timer(kind, key[1], now)

    def _install_static(self, old: EngineConfig | None = None) -> None:
        core = self._core
        if not core.config.static and (old is None or not old.static):
            return  # nothing configured now or before
        wanted = {m.proto: m.nbma for m in core.config.static}
        for entry in list(core.cache.entries.values()):
            if entry.type is MappingType.STATIC and wanted.get(entry.proto) != entry.nbma:
                core.cache.pop(entry.proto)
                core.uninstall(entry)
        for proto, nbma in wanted.items():
            held = core.cache.get(proto)
            if held is not None and held.type is MappingType.STATIC:
                continue
            if held is not None:
                if held.type in INSTALLED_TYPES and held.type is not MappingType.CACHED:
                    continue  # an NHS or a registration holds it
                core.shortcuts.forget_entry(held, "static")
            static = CacheEntry(
                proto, MappingType.STATIC, nbma, nbma, prefix_length=proto.max_prefixlen
            )
            core.cache.add(static)
            core.install(static)

    def _reroute(self, old: EngineConfig, old_active: dict) -> None:
        core = self._core
        for prefix in old.nhs_routes:
            st = old_active.get(prefix.version)
            if st is not None and prefix not in core.config.nhs_routes:
                core.out.append(RemoveRoute(prefix, st.config.proto))
        for prefix in core.config.nhs_routes:
            st = core.nhc.active.get(prefix.version)
            if st is not None and prefix not in old.nhs_routes:
                core.out.append(AddRoute(prefix, st.config.proto))
