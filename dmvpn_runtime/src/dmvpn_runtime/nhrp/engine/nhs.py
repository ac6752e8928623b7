"""Registration server (RFC 2332 §5.2.3, §5.2.4): accept, refresh and expire clients.

A Registration Request binds the client's overlay address (the CIE with prefix 0xFF or
the host length) and its protected prefixes (the other CIEs) to the NBMA address the
packet came from. Each CIE gets a code in the reply:

- 14 Unique Address Already Registered: the address is held by another NBMA, that
  binding has not expired, and either side asked for uniqueness (same NBMA = same
  claimed and same observed address, so two spokes behind one NAT never collide);
- 4 Administratively Prohibited: the :class:`~.auth.Authoriser` refused, or the CIE is
  malformed;
- 5 Insufficient Resources: the source's cache cap or the global cap is reached.

When an accepted registration moves a client to another NBMA (roaming), every node
that resolved the client through us is sent a Purge Request for the old binding.
"""

from __future__ import annotations

from typing import Final

from ..wire import (
    Address,
    Cie,
    CieCode,
    Packet,
    PacketType,
)
from ..wire.constants import REG_FLAG_UNIQUE, UNIQUE_PREFIX_LENGTH
from . import auth, nat
from .actions import AddRoute, EventKind, MappingType, RemoveRoute
from .cache import CacheEntry, host, network
from .core import Core
from .stats import Drop

MAX_RESOLVERS_PER_CLIENT: Final = 4096  # bound on the purge fan-out memory per client

_HELD: Final = CieCode.UNIQUE_ADDRESS_ALREADY_REGISTERED
_PROHIBITED: Final = CieCode.ADMINISTRATIVELY_PROHIBITED
_RESOURCES: Final = CieCode.INSUFFICIENT_RESOURCES


class RegistrationServer:
    __slots__ = ("core",)

    def __init__(self, core: Core) -> None:
        self.core = core

    def on_request(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        config = core.config
        if not config.is_nhs:
            core.drop(Drop.NOT_NHS, src, type="registration_request")
            return
        if not core.reg_limiter.allow(src, now):
            core.drop(Drop.RATE_LIMITED, src, type="registration_request")
            return
        proto = pkt.src_proto
        cies = pkt.cies
        if proto is None or not cies:
            core.drop(Drop.MALFORMED, src, type="registration_request", detail="no address")
            return
        claimed = pkt.src_nbma or src
        unique = bool(pkt.flags & REG_FLAG_UNIQUE)
        host_len = proto.max_prefixlen
        n = len(cies)
        codes = [0] * n
        nets: list = [None] * n
        addr_i = -1
        for i, cie in enumerate(cies):
            cp = cie.client_proto or proto
            plen = cie.prefix_length
            if cp == proto and plen in (UNIQUE_PREFIX_LENGTH, host_len):
                if addr_i < 0:
                    addr_i = i
                continue
            if cp.version == proto.version and plen < host_len:
                nets[i] = network(cp, plen)
            else:
                codes[i] = _PROHIBITED
        if addr_i < 0:
            codes = [_PROHIBITED] * n
            self._reply(pkt, src, claimed, codes, config.holdtime)
            core.event(
                EventKind.REGISTRATION_REFUSED,
                role="nhs",
                client=proto,
                reason="no address CIE",
            )
            return
        holding = cies[addr_i].holding_time or config.holdtime
        cache = core.cache
        existing = cache.get(proto)
        code = 0
        reason = ""
        if existing is not None:
            etype = existing.type
            if etype is MappingType.REGISTERED:
                same = existing.claimed_nbma == claimed and existing.nbma == src
                if not same and (existing.unique or unique) and existing.expires > now:
                    code, reason = _HELD, f"held by {existing.nbma}"
            elif etype in (MappingType.NHS, MappingType.STATIC) and existing.nbma != src:
                # Configured for another NBMA (the same NBMA may register: chained hubs).
                code, reason = _HELD, f"{etype} mapping"
        if not code and proto in core.own_addresses:
            code, reason = _HELD, "our own address"
        prefixes = [net for net in nets if net is not None]
        if not code and not core.allow_all:
            refusal = auth.refusal(
                core.authoriser.authorise_registration(
                    src, proto, (host(proto), *prefixes), core.identity(src)
                )
            )
            if refusal is not None:
                code, reason = _PROHIBITED, refusal
        if not code and prefixes:
            for i, net in enumerate(nets):
                if net is None:
                    continue
                owner = cache.prefixes.get(net)
                if owner is not None and owner is not existing and owner.expires > now:
                    codes[i] = _HELD
        if not code:
            accepted = sum(1 for i, net in enumerate(nets) if net is not None and not codes[i])
            current = cache.from_source(src)
            if existing is not None and existing.source == src:
                current -= 1 + len(existing.prefixes)
            if current + 1 + accepted > config.limits.cache_entries_per_source or (
                existing is None and len(cache) >= config.limits.max_cache_entries
            ):
                code, reason = _RESOURCES, "cache cap"
        if code:
            codes = [c or code for c in codes]
            codes[addr_i] = code
            core.stats.counters[f"registration_code_{int(code)}"] += 1
            core.event(
                EventKind.REGISTRATION_REFUSED,
                role="nhs",
                client=proto,
                nbma=src,
                code=int(code),
                reason=reason,
            )
        else:
            accepted_nets = tuple(
                net for i, net in enumerate(nets) if net is not None and not codes[i]
            )
            self._accept(pkt, proto, src, claimed, unique, holding, accepted_nets, existing, now)
        self._reply(pkt, src, claimed, codes, holding)

    def _accept(
        self,
        pkt: Packet,
        proto: Address,
        src: Address,
        claimed: Address,
        unique: bool,
        holding: int,
        prefixes: tuple,
        existing: CacheEntry | None,
        now: float,
    ) -> None:
        core = self.core
        cache = core.cache
        expires = now + holding
        if existing is not None and existing.type is MappingType.REGISTERED:
            if existing.nbma != src or existing.claimed_nbma != claimed:
                old_prefixes = existing.prefixes
                resolvers = existing.resolved_by
                existing.resolved_by = None
                old = CacheEntry(proto, existing.type, existing.nbma, existing.claimed_nbma)
                old.prefixes = old_prefixes
                old.resolved_by = resolvers
                core.rebind(existing, src, claimed)
                if resolvers:
                    core.purger.purge_resolvers(old, now)
            existing.expires = expires
            existing.request_id = pkt.request_id
            existing.unique = unique
            if existing.prefixes != prefixes:
                self._route_prefixes(proto, existing.prefixes, prefixes)
                cache.set_prefixes(existing, prefixes)
            if existing.source != src:
                cache.set_source(existing, src)
        elif existing is not None and existing.type in (MappingType.NHS, MappingType.STATIC):
            # Already mapped at this NBMA by configuration: keep that mapping, learn the
            # client's prefixes so resolutions for them reach it.
            existing.request_id = pkt.request_id
            if existing.prefixes != prefixes:
                cache.set_prefixes(existing, prefixes)
            return
        else:
            if existing is not None:  # a cached or negative entry: the registration wins
                core.shortcuts.forget_entry(existing, "registered")
            entry = CacheEntry(
                proto,
                MappingType.REGISTERED,
                src,
                claimed,
                expires,
                proto.max_prefixlen,
                unique,
                pkt.request_id,
                src,
                created=now,
            )
            cache.add(entry)
            if prefixes:
                cache.set_prefixes(entry, prefixes)
            core.install(entry)
            self._route_prefixes(proto, (), prefixes)
            core.event(
                EventKind.REGISTRATION_UP,
                role="nhs",
                client=proto,
                nbma=src,
                claimed_nbma=claimed,
                holdtime=holding,
                prefixes=prefixes,
            )
        core.arm(("reg", proto), expires)

    def _reply(
        self, pkt: Packet, src: Address, claimed: Address, codes: list, holding: int
    ) -> None:
        core = self.core
        if any(codes) or any(c.holding_time != holding for c in pkt.cies):
            cies = tuple(
                Cie(
                    code,
                    c.prefix_length,
                    c.mtu,
                    holding if not code else c.holding_time,
                    c.preference,
                    c.client_nbma,
                    c.client_proto,
                )
                for c, code in zip(pkt.cies, codes, strict=True)
            )
        else:
            cies = pkt.cies  # the common case: everything accepted as asked
        natx = nat.find(pkt)
        if natx is not None and core.config.nat:
            natx = nat.with_observed(natx, pkt.src_proto, claimed, src)
        # Our own address as the destination, whatever the request had there: a client
        # that registers before it knows its NHS's address puts its own there (FRR
        # "nhs dynamic", RFC 2332 §5.2.3) and learns ours from the reply, as FRR's hub
        # tells it. For a request addressed to us this changes nothing.
        own = core.own[pkt.protocol_type]
        responder = core.responder_ext[pkt.protocol_type]
        reply = core.reply(
            pkt, PacketType.REGISTRATION_REPLY, pkt.flags, cies, responder, natx, own
        )
        core.send(src, reply)

    # -- removal --------------------------------------------------------------------------
    def on_timer(self, proto: Address, now: float) -> None:
        entry = self.core.cache.get(proto)
        if entry is None or entry.type is not MappingType.REGISTERED:
            return
        if entry.expires <= now:
            self.remove(entry, now, "expired", purge_resolvers=False)
        else:
            self.core.arm(("reg", proto), entry.expires)

    def remove(self, entry: CacheEntry, now: float, reason: str, purge_resolvers: bool) -> None:
        core = self.core
        if core.cache.get(entry.proto) is entry:
            core.cache.pop(entry.proto)
        self._route_prefixes(entry.proto, entry.prefixes, ())
        core.uninstall(entry)
        core.timers.cancel(("reg", entry.proto))
        if purge_resolvers and entry.resolved_by:
            core.purger.purge_resolvers(entry, now)
        core.event(
            EventKind.REGISTRATION_DOWN,
            role="nhs",
            client=entry.proto,
            nbma=entry.nbma,
            reason=reason,
        )

    def _route_prefixes(self, via: Address, old: tuple, new: tuple) -> None:
        """Routes of a client's protected prefixes via its overlay address (routes after
        the mapping they need, removals before the mapping goes)."""
        core = self.core
        if not core.config.route_registered_prefixes:
            return
        for prefix in old:
            if prefix not in new:
                core.out.append(RemoveRoute(prefix, via))
        for prefix in new:
            if prefix not in old and core.covering_protected(prefix.network_address) is None:
                core.out.append(AddRoute(prefix, via))

    def unroute(self, entry: CacheEntry) -> None:
        self._route_prefixes(entry.proto, entry.prefixes, ())

    def on_ipsec_down(self, nbma: Address, now: float) -> None:
        cache = self.core.cache
        gone = [
            e
            for proto in self.core.mapped.get(nbma, ())
            if (e := cache.get(proto)) is not None
            and e.type is MappingType.REGISTERED
            and e.nbma == nbma
        ]
        for entry in gone:
            self.remove(entry, now, "ipsec_down", purge_resolvers=False)

    def record_resolver(self, entry: CacheEntry, proto: Address, nbma: Address) -> None:
        """Remember who learned ``entry`` through us, to purge them if it moves."""
        if entry.resolved_by is None:
            entry.resolved_by = {}
        # The length first: it is cheaper than hashing the address, and usually settles it.
        if len(entry.resolved_by) < MAX_RESOLVERS_PER_CLIENT or proto in entry.resolved_by:
            entry.resolved_by[proto] = nbma

    def clients(self) -> list[CacheEntry]:
        return [e for e in self.core.cache.entries.values() if e.type is MappingType.REGISTERED]
