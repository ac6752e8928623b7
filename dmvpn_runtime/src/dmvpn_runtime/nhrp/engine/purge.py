"""Purge Request / Reply (RFC 2332 §5.2.5), both ways, with the N ("no reply") flag.

Sent:
- by an NHC to drop its own registration (on stop with N set; after roaming or a code 14
  with N clear). Cisco rule: the purge names the registration by *its request id*;
- by an NHS to every node that resolved a client through it, when that client's binding
  moves or is purged (N clear, retransmitted until a Purge Reply);
- by an NHS to every node that resolved through a client, when a route via that client
  moves to another next hop or goes: the CIEs name the routed prefixes only (the
  client's own binding still holds), so a dual-homed site that fails over by routing is
  not sent to the old spoke until its shortcuts expire (N clear, as above);
- by an egress node, on stop or roaming, to the peers that learned its binding (N set).

Received:
- by an NHS for a registered client: honoured only when the request id is the one of
  the client's current registration (anything else is counted and ignored);
- by anyone for cached bindings: every cached or negative entry and shortcut inside the
  purged prefixes goes, and a Purge Reply is sent unless N is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..wire import Address, Cie, Packet, PacketType
from ..wire.constants import PURGE_FLAG_NO_REPLY, UNIQUE_PREFIX_LENGTH
from .actions import EventKind, MappingType
from .cache import CacheEntry, network
from .core import PROTOCOL_OF_VERSION, Core, Network
from .stats import Drop
from .timers import DEFAULT_HOP_COUNT, PURGE_ATTEMPTS, PURGE_RETRY_FIRST


@dataclass(slots=True)
class PendingPurge:
    nbma: Address
    data: bytes
    attempts: int
    interval: float

    def __init__(self, nbma: Address, data: bytes, attempts: int, interval: float) -> None:
        self.nbma = nbma
        self.data = data
        self.attempts = attempts
        self.interval = interval


class Purger:
    __slots__ = ("core", "pending")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.pending: dict[int, PendingPurge] = {}

    # -- sending -------------------------------------------------------------------------
    def send(
        self,
        nbma: Address,
        src_proto: Address,
        dst_proto: Address,
        cies: tuple[Cie, ...],
        now: float,
        request_id: int = 0,
        no_reply: bool = False,
        **details: Any,
    ) -> None:
        """``details``: more fields for the ``purge`` event (why it is sent)."""
        core = self.core
        rid = request_id or core.next_request_id()
        pkt = Packet(
            PacketType.PURGE_REQUEST,
            core.afn,
            PROTOCOL_OF_VERSION[dst_proto.version],
            DEFAULT_HOP_COUNT,
            core.nbma,
            src_proto,
            dst_proto,
            PURGE_FLAG_NO_REPLY if no_reply else 0,
            rid,
            cies,
            extensions=core.extensions(),
        )
        data = core.send(nbma, pkt)
        core.event(
            EventKind.PURGE,
            direction="sent",
            to=nbma,
            request_id=rid,
            no_reply=no_reply,
            prefixes=[f"{c.client_proto}/{c.prefix_length}" for c in cies],
            **details,
        )
        if not no_reply:
            self.pending[rid] = PendingPurge(nbma, data, 1, PURGE_RETRY_FIRST)
            core.arm(("purge", rid), now + PURGE_RETRY_FIRST)

    def purge_resolvers(self, entry: CacheEntry, now: float) -> None:
        """NHS: tell everyone who resolved ``entry`` through us to forget it."""
        core = self.core
        resolvers = entry.resolved_by or {}
        entry.resolved_by = None
        # Its registered prefixes and those routed through it: a resolver may hold a
        # shortcut to either.
        routed = core.routes.through(entry.proto)
        cies = _cies_for(entry.proto, entry.claimed_nbma, (*entry.prefixes, *routed))
        core.redirector.forget(core.client_networks(entry))
        for proto, nbma in resolvers.items():
            own = core.own.get(PROTOCOL_OF_VERSION[proto.version])
            if own is not None:
                self.send(nbma, own, proto, cies, now)

    def purge_routes(self, moved: dict[Network, Address], now: float) -> None:
        """NHS: routes that went or changed next hop (``moved``: prefix -> its earlier next
        hop). A node that resolved through the earlier next hop's client may hold a
        shortcut via it for the prefix: each is sent one Purge Request for the prefixes of
        its family. The resolvers are not recorded with what they resolved, hence all of
        them; a purge of a prefix a node does not hold removes nothing there."""
        core = self.core
        by_resolver: dict[tuple[Address, Address], list[Cie]] = {}
        for prefix, via in moved.items():
            client = core.cache.get(via)
            if client is None or not client.resolved_by:
                continue
            cie = _prefix_cie(prefix, client.claimed_nbma)
            for proto, nbma in client.resolved_by.items():
                if proto.version == prefix.version:
                    by_resolver.setdefault((proto, nbma), []).append(cie)
        # The next hairpin towards a moved prefix may redirect at once, to the new egress.
        core.redirector.forget(tuple(moved))
        for (proto, nbma), cies in by_resolver.items():
            own = core.own.get(PROTOCOL_OF_VERSION[proto.version])
            if own is not None:
                self.send(nbma, own, proto, tuple(cies), now, reason="route_changed")
                core.stats.counters["purge_route_changed"] += 1

    def purge_own_binding(self, peers: dict[Address, Address], now: float) -> None:
        """Egress: peers (overlay -> NBMA) that learned our binding should drop it."""
        core = self.core
        for proto, nbma in peers.items():
            pt = PROTOCOL_OF_VERSION[proto.version]
            own = core.own.get(pt)
            if own is None:
                continue
            prefixes = tuple(p for p in core.config.protected if p.version == proto.version)
            self.send(nbma, own, proto, _cies_for(own, core.nbma, prefixes), now, no_reply=True)

    def on_timer(self, rid: int, now: float) -> None:
        core = self.core
        pending = self.pending.get(rid)
        if pending is None:
            return
        if pending.attempts >= PURGE_ATTEMPTS:
            del self.pending[rid]
            core.event(EventKind.PURGE, direction="unanswered", to=pending.nbma, request_id=rid)
            return
        pending.attempts += 1
        pending.interval *= 2
        core.resend(pending.nbma, pending.data, PacketType.PURGE_REQUEST)
        core.arm(("purge", rid), now + pending.interval)

    # -- receiving -----------------------------------------------------------------------
    def on_request(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        if pkt.src_proto is None:
            core.drop(Drop.MALFORMED, src, type="purge_request")
            return
        nets = []
        registrations: list[CacheEntry] = []
        for cie in pkt.cies:
            proto = cie.client_proto or pkt.src_proto
            plen = cie.prefix_length
            if plen == UNIQUE_PREFIX_LENGTH or plen > proto.max_prefixlen:
                plen = proto.max_prefixlen
            entry = core.cache.get(proto)
            if (
                core.config.is_nhs
                and entry is not None
                and entry.type is MappingType.REGISTERED
                and plen == proto.max_prefixlen
            ):
                registrations.append(entry)
            else:
                nets.append(network(proto, plen))
        for entry in registrations:
            if pkt.request_id != entry.request_id:
                # Cisco: the purge must name the registration it removes
                core.drop(
                    Drop.PURGE_MISMATCH,
                    src,
                    client=entry.proto,
                    request_id=pkt.request_id,
                    expected=entry.request_id,
                )
                return
        if nets and not registrations and not core.known(src, protected):
            core.drop(Drop.UNKNOWN_PEER, src, type="purge_request")
            return
        for entry in registrations:
            core.nhs.remove(entry, now, "purged", purge_resolvers=True)
        removed = core.shortcuts.purge(nets, now) if nets else 0
        core.event(
            EventKind.PURGE,
            direction="received",
            src=src,
            request_id=pkt.request_id,
            prefixes=[f"{c.client_proto}/{c.prefix_length}" for c in pkt.cies],
            removed=removed + len(registrations),
        )
        if not pkt.flags & PURGE_FLAG_NO_REPLY:
            reply = core.reply(pkt, PacketType.PURGE_REPLY, pkt.flags, pkt.cies, None, None)
            core.send(src, reply)

    def on_reply(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        if self.pending.pop(pkt.request_id, None) is None:
            core.drop(Drop.UNMATCHED_REPLY, src, type="purge_reply", request_id=pkt.request_id)
            return
        core.timers.cancel(("purge", pkt.request_id))
        core.event(EventKind.PURGE, direction="acknowledged", src=src, request_id=pkt.request_id)

    def on_error(self, request_id: int) -> bool:
        if self.pending.pop(request_id, None) is None:
            return False
        self.core.timers.cancel(("purge", request_id))
        return True


def _cies_for(proto: Address, nbma: Address | None, prefixes: tuple) -> tuple[Cie, ...]:
    return (
        Cie(prefix_length=proto.max_prefixlen, client_nbma=nbma, client_proto=proto),
        *(_prefix_cie(p, nbma) for p in prefixes),
    )


def _prefix_cie(prefix: Network, nbma: Address | None) -> Cie:
    return Cie(
        prefix_length=prefix.prefixlen, client_nbma=nbma, client_proto=prefix.network_address
    )
