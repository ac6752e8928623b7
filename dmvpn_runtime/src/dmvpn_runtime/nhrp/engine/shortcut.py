"""Shortcuts and the cached bindings under them (seed "Dynamic Mappings"; FRR nhrp_shortcut.c).

A shortcut is a route for a prefix (the responder's protected prefix, narrowed by
policy) via the responder's overlay address, whose binding (a ``cached`` mapping) goes
to the data plane first. A resolution of an overlay address itself gives a mapping only.

Lifetime: at 2/3 of the holding time a shortcut that carried traffic since it was
installed or refreshed is refreshed with a Resolution Request sent straight to the
egress; one that did not is left to expire. When it expires its route goes; a cached
mapping goes when its own holding time is over and no shortcut uses it; the SA goes
with the last mapping of that NBMA. A purge or an IPsec-down notice removes bindings
and their routes at once.

With ``require_ipsec`` a new binding waits (the *new* half of the cache entry) until
IPsec to its NBMA is up and the authoriser accepts the peer's identity; only then does
the data plane hear of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Final

from ..wire import Address
from . import auth
from .actions import AddRoute, EventKind, IpsecUp, MappingType, RemoveRoute
from .cache import Binding, CacheEntry, PrefixTable, host
from .core import Core
from .timers import PENDING_BINDING_TIMEOUT, SHORTCUT_REFRESH_AT

Network = IPv4Network | IPv6Network

# Enum members read per resolution, as module constants (cheaper reads on 3.11).
_CACHED: Final = MappingType.CACHED
_NEGATIVE: Final = MappingType.NEGATIVE
_SHORTCUT_UP: Final = EventKind.SHORTCUT_UP


@dataclass(slots=True, eq=False)
class Shortcut:
    prefix: Network
    target: Address  # what was resolved; a refresh asks for it again
    via: Address  # the egress's overlay address
    expires: float
    refresh_at: float
    route: bool = False  # AddRoute emitted (never for a mapping-only shortcut)
    host: bool = False  # the prefix is the egress itself: mapping only
    used: bool = False
    refreshing: bool = False
    created: float = 0.0

    def __init__(
        self,
        prefix: Network,
        target: Address,
        via: Address,
        expires: float,
        refresh_at: float,
        route: bool = False,
        host: bool = False,
        used: bool = False,
        refreshing: bool = False,
        created: float = 0.0,
    ) -> None:
        self.prefix = prefix
        self.target = target
        self.via = via
        self.expires = expires
        self.refresh_at = refresh_at
        self.route = route
        self.host = host
        self.used = used
        self.refreshing = refreshing
        self.created = created


def mapping_only_prefix(prefix: Network, via: Address) -> bool:
    """Whether a shortcut for ``prefix`` via ``via`` is a mapping only (no route): the
    prefix is ``via``'s host prefix."""
    return prefix.prefixlen == via.max_prefixlen and prefix.network_address == via


class Shortcuts:
    __slots__ = ("by_prefix", "by_via", "core", "pending", "table")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.by_prefix: dict[Network, Shortcut] = {}
        self.table: PrefixTable[Shortcut] = PrefixTable()
        self.by_via: dict[Address, set[Network]] = {}
        self.pending: dict[Address, set[Address]] = {}  # NBMA -> overlay with a new binding

    # -- install ---------------------------------------------------------------------------
    def install(
        self,
        target: Address,
        prefix: Network,
        via: Address,
        nbma: Address,
        claimed: Address | None,
        holding: float,
        now: float,
        source: Address,
        pending: bool,
        mapping_only: bool,
    ) -> None:
        """``mapping_only``: ``prefix`` is ``via``'s host prefix (:func:`mapping_only_prefix`;
        the caller often knows it without reading the prefix)."""
        core = self.core
        expires = now + holding
        # No expiry timer for the binding: the shortcut's own timer covers it.
        entry = self._bind(
            core.cache.get(via), via, nbma, claimed, expires, source, now, pending, timer=False
        )
        if entry is None:
            return
        refresh_at = now + holding * SHORTCUT_REFRESH_AT
        new = Shortcut(prefix, target, via, expires, refresh_at, host=mapping_only, created=now)
        # setdefault: a new prefix, the usual case, is hashed once (a network takes 1 us);
        # a refresh pays for a Shortcut it does not keep.
        sc = self.by_prefix.setdefault(prefix, new)
        # Addresses from the codec are interned: identity settles most comparisons
        # without ipaddress's Python-level __eq__/__ne__.
        if sc is not new and sc.via is not via and sc.via != via:
            self._remove(sc, "replaced", keep_route=True)
            sc = self.by_prefix[prefix] = new
        fresh = sc is new
        if fresh:
            self.table.insert(prefix, sc)
            self.by_via.setdefault(via, set()).add(prefix)
        else:
            sc.expires = expires
            sc.refresh_at = refresh_at
            sc.used = sc.refreshing = False
        if not mapping_only and not sc.route and entry.installed:
            core.out.append(AddRoute(prefix, via))
            sc.route = True
        # Keyed by the shortcut itself: it hashes by identity, a network in 1 us (ipaddress).
        core.arm(("sc", sc), sc.refresh_at)
        if fresh:
            core.event(
                _SHORTCUT_UP,
                prefix=prefix,
                via=via,
                nbma=nbma,
                holdtime=int(holding),
                route=not mapping_only,
                pending=not entry.installed,
            )

    def learn(
        self, proto: Address, nbma: Address, claimed: Address | None, holding: float, now: float
    ) -> None:
        """Egress: cache the requester's binding from the request we answer."""
        core = self.core
        pending = core.config.require_ipsec and not core.peer_up(nbma)
        if not pending and not core.allow_all:
            refusal = auth.refusal(
                core.authoriser.authorise_resolution_reply(
                    nbma, proto, (host(proto),), core.identity(nbma)
                )
            )
            if refusal is not None:
                core.stats.counters["learned_binding_unauthorised"] += 1
                return
        existing = core.cache.get(proto)
        entry = self._bind(
            existing, proto, nbma, claimed, now + holding, nbma, now, pending, timer=True
        )
        if entry is not None and existing is None:
            entry.learned = True

    def _bind(
        self,
        entry: CacheEntry | None,
        proto: Address,
        nbma: Address,
        claimed: Address | None,
        expires: float,
        source: Address,
        now: float,
        pending: bool,
        timer: bool,
    ) -> CacheEntry | None:
        """The cache entry for ``proto`` bound to ``nbma`` (current, or new if pending);
        ``entry``: the cache's entry for ``proto`` now, which the caller looked up;
        ``timer``: arm its own expiry (when no shortcut's timer will look after it)."""
        core = self.core
        cache = core.cache
        if entry is not None:
            if entry.type is _NEGATIVE:
                self.forget_entry(entry, "answered")
                entry = None
            elif entry.type is not _CACHED:
                return entry  # configured or registered bindings are not overridden
        if entry is not None:
            if entry.expires < expires:
                entry.expires = expires
                if timer:
                    core.arm(("map", proto), expires)
            if (entry.nbma is nbma or entry.nbma == nbma) and entry.new is None:
                return entry
            if pending:
                self._defer(entry, nbma, claimed, expires, source, now)
            else:
                entry.new = None
                core.rebind(entry, nbma, claimed)
            return entry
        limits = core.config.limits
        if (
            cache.from_source(source) >= limits.cache_entries_per_source
            or len(cache.entries) >= limits.max_cache_entries
        ):
            core.stats.counters["cache_cap_reached"] += 1
            return None
        entry = CacheEntry(
            proto,
            _CACHED,
            None if pending else nbma,
            claimed,
            expires,
            proto.max_prefixlen,
            source=source,
            created=now,
        )
        cache.add(entry)
        if pending:
            self._defer(entry, nbma, claimed, expires, source, now)
        else:
            core.install(entry)
        if timer:
            core.arm(("map", proto), expires)
        return entry

    def _defer(
        self,
        entry: CacheEntry,
        nbma: Address,
        claimed: Address | None,
        expires: float,
        source: Address,
        now: float,
    ) -> None:
        entry.new = Binding(nbma, claimed, expires, source)
        self.pending.setdefault(nbma, set()).add(entry.proto)
        self.core.out.append(IpsecUp(nbma))
        self.core.arm(("pend", entry.proto), now + PENDING_BINDING_TIMEOUT)

    def negative(self, target: Address, expires: float, source: Address, now: float) -> None:
        core = self.core
        entry = core.cache.get(target)
        if entry is not None:
            if entry.type is not MappingType.CACHED and entry.type is not MappingType.NEGATIVE:
                return
            self.forget_entry(entry, "negative")
        if core.cache.from_source(source) >= core.config.limits.cache_entries_per_source:
            core.stats.counters["cache_cap_reached"] += 1
            return
        for sc in [self.by_prefix[p] for p in list(self.by_prefix)]:
            if sc.target == target:  # a refresh was refused: the shortcut is wrong now
                self._remove(sc, "negative")
        entry = CacheEntry(target, MappingType.NEGATIVE, None, None, expires, source=source)
        core.cache.add(entry)
        core.arm(("map", target), expires)

    # -- use and timers ----------------------------------------------------------------------
    def used(self, addr: Address, now: float) -> None:
        """Traffic went to ``addr``: an NBMA peer (as the data plane reports it) or an
        overlay next hop / destination."""
        core = self.core
        if addr in core.mapped or addr in core.peers:
            # An NBMA peer: the shortcut next hops mapped to it (few; a hub's thousands of
            # registrations are not scanned, as reports come for every peer).
            vias = [
                via
                for via in self.by_via
                if (entry := core.cache.get(via)) is not None and entry.nbma == addr
            ]
        else:
            vias = [addr]
            hit = self.table.lookup(addr)
            if hit is not None:
                self._mark(hit[1], now)
        for via in vias:
            entry = core.cache.get(via)
            if entry is not None:
                entry.used = True
            for prefix in list(self.by_via.get(via, ())):
                self._mark(self.by_prefix[prefix], now)

    def _mark(self, sc: Shortcut, now: float) -> None:
        sc.used = True
        if not sc.refreshing and now >= sc.refresh_at and now < sc.expires:
            self._refresh(sc, now)  # went idle past the refresh point, now busy again

    def _refresh(self, sc: Shortcut, now: float) -> None:
        entry = self.core.cache.get(sc.via)
        nbma = entry.nbma if entry is not None else None
        sc.refreshing = True
        # Seed: the refresh goes over the direct tunnel, to the egress itself.
        self.core.resolver.resolve(sc.target, now, "refresh", nbma)

    def on_timer(self, kind: str, key: Any, now: float) -> None:
        core = self.core
        if kind == "sc":
            sc: Shortcut = key
            if self.by_prefix.get(sc.prefix) is not sc:
                return
            if now >= sc.expires:
                self._remove(sc, "expired")
                self._maybe_forget(sc.via, now)
            else:
                if sc.used and not sc.refreshing:
                    self._refresh(sc, now)
                core.arm(("sc", sc), sc.expires)
        elif kind == "map":
            entry = core.cache.get(key)
            if entry is None or entry.type not in (MappingType.CACHED, MappingType.NEGATIVE):
                return
            if entry.expires > now:
                core.arm(("map", key), entry.expires)
                return
            self._maybe_forget(key, now)
        elif kind == "pend":
            entry = core.cache.get(key)
            if entry is not None and entry.new is not None:
                self._drop_new(entry, "ipsec_timeout")

    def _maybe_forget(self, via: Address, now: float) -> None:
        entry = self.core.cache.get(via)
        if entry is None or entry.type not in (MappingType.CACHED, MappingType.NEGATIVE):
            return
        live = [self.by_prefix[p] for p in self.by_via.get(via, ())]
        for sc in live:
            if sc.expires <= now:
                self._remove(sc, "expired")
        if entry.expires <= now and not self.by_via.get(via):
            self.forget_entry(entry, "expired")
        elif self.by_via.get(via):
            latest = max(self.by_prefix[p].expires for p in self.by_via[via])
            self.core.arm(("map", via), max(entry.expires, latest))

    # -- removal -------------------------------------------------------------------------
    def _remove(self, sc: Shortcut, reason: str, keep_route: bool = False) -> None:
        core = self.core
        if self.by_prefix.get(sc.prefix) is not sc:
            return
        del self.by_prefix[sc.prefix]
        self.table.remove(sc.prefix)
        vias = self.by_via.get(sc.via)
        if vias is not None:
            vias.discard(sc.prefix)
            if not vias:
                del self.by_via[sc.via]
        core.timers.cancel(("sc", sc))
        if sc.route and not keep_route:
            st = core.nhc.active_for(sc.prefix.version)
            if sc.prefix in core.config.nhs_routes and st is not None:
                core.out.append(AddRoute(sc.prefix, st.config.proto))
            else:
                core.out.append(RemoveRoute(sc.prefix, sc.via))
        if vias is None or not vias:  # the binding now lives on its own holding time
            entry = core.cache.get(sc.via)
            if entry is not None and entry.type is MappingType.CACHED:
                core.arm(("map", sc.via), entry.expires)
        core.event(EventKind.SHORTCUT_DOWN, prefix=sc.prefix, via=sc.via, reason=reason)

    def forget_entry(self, entry: CacheEntry, reason: str) -> None:
        """Remove a binding and every shortcut through it (routes first)."""
        core = self.core
        for prefix in list(self.by_via.get(entry.proto, ())):
            self._remove(self.by_prefix[prefix], reason)
        if entry.new is not None:
            self._unpend(entry.new.nbma, entry.proto)
            entry.new = None
        if core.cache.get(entry.proto) is entry:
            core.cache.pop(entry.proto)
        core.uninstall(entry)
        for key in (("map", entry.proto), ("pend", entry.proto)):
            core.timers.cancel(key)

    def purge(self, nets: list[Network], now: float) -> int:
        """Drop cached/negative bindings and shortcuts inside any of ``nets``."""
        core = self.core
        removed = 0
        for net in nets:
            for _prefix, sc in self.table.overlapping(net):
                # Of net's version (overlapping): typeshed's subnet_of wants both typed alike.
                if sc.prefix.subnet_of(net):  # type: ignore[arg-type]
                    self._remove(sc, "purged")
                    removed += 1
            for entry in list(core.cache.entries.values()):
                if (
                    entry.type in (MappingType.CACHED, MappingType.NEGATIVE)
                    and entry.proto.version == net.version
                    and entry.proto in net
                ):
                    self.forget_entry(entry, "purged")
                    removed += 1
        return removed

    def on_ipsec_down(self, nbma: Address) -> None:
        core = self.core
        for proto in list(core.mapped.get(nbma, ())):
            entry = core.cache.get(proto)
            if entry is not None and entry.type is MappingType.CACHED and entry.nbma == nbma:
                self.forget_entry(entry, "ipsec_down")
        for proto in list(self.pending.get(nbma, ())):
            entry = core.cache.get(proto)
            if entry is not None and entry.new is not None:
                self._drop_new(entry, "ipsec_down")

    def on_ipsec_up(self, nbma: Address, identity: Any, now: float) -> None:
        """Promote bindings that waited for this peer, if the authoriser agrees."""
        core = self.core
        for proto in list(self.pending.pop(nbma, ())):
            entry = core.cache.get(proto)
            if entry is None or entry.new is None or entry.new.nbma != nbma:
                continue
            prefixes = (
                host(proto),
                *(self.by_prefix[p].prefix for p in self.by_via.get(proto, ())),
            )
            refusal = auth.refusal(
                core.authoriser.authorise_resolution_reply(nbma, proto, prefixes, identity)
            )
            if refusal is not None:
                core.event(
                    EventKind.AUTH_FAILURE,
                    stage="authorise_resolution_reply",
                    nbma=nbma,
                    proto=proto,
                    reason=refusal,
                )
                self._drop_new(entry, "unauthorised")
                continue
            new, entry.new = entry.new, None
            core.timers.cancel(("pend", proto))
            if entry.installed:
                core.rebind(entry, new.nbma, new.claimed_nbma)
            else:
                entry.nbma, entry.claimed_nbma = new.nbma, new.claimed_nbma
                core.install(entry)
            for prefix in self.by_via.get(proto, ()):
                sc = self.by_prefix[prefix]
                if not sc.host and not sc.route:
                    core.out.append(AddRoute(prefix, proto))
                    sc.route = True

    def _drop_new(self, entry: CacheEntry, reason: str) -> None:
        assert entry.new is not None
        self._unpend(entry.new.nbma, entry.proto)
        entry.new = None
        self.core.timers.cancel(("pend", entry.proto))
        if not entry.installed:
            self.forget_entry(entry, reason)

    def _unpend(self, nbma: Address, proto: Address) -> None:
        protos = self.pending.get(nbma)
        if protos is not None:
            protos.discard(proto)
            if not protos:
                del self.pending[nbma]

    def recheck(self) -> None:
        """After a config change: drop shortcuts policy or config no longer allows."""
        core = self.core
        config = core.config
        for sc in list(self.by_prefix.values()):
            if sc.host:
                continue
            side = core.side_of(sc.prefix.version)
            if (
                not config.shortcuts
                or config.policy.shortcut_prefix(side, sc.target, sc.prefix) != sc.prefix
            ):
                self._remove(sc, "policy" if config.shortcuts else "disabled")

    def remove_covering(self, addr: Address, reason: str) -> int:
        hit = self.table.lookup(addr)
        if hit is None:
            return 0
        self._remove(hit[1], reason)
        return 1

    def clear(self, reason: str) -> None:
        """Every shortcut and the bindings that came with answers (not learned ones)."""
        core = self.core
        for sc in list(self.by_prefix.values()):
            self._remove(sc, reason)
        for entry in list(core.cache.entries.values()):
            if entry.type is MappingType.CACHED and not entry.learned:
                self.forget_entry(entry, reason)

    def stop(self) -> None:
        core = self.core
        for sc in list(self.by_prefix.values()):
            self._remove(sc, "stopped")
        for entry in list(core.cache.entries.values()):
            if entry.type in (MappingType.CACHED, MappingType.NEGATIVE):
                self.forget_entry(entry, "stopped")

    def learned_peers(self) -> dict[Address, Address]:
        """Peers whose requests we answered and still map (to tell them when we go)."""
        return {
            e.proto: e.nbma
            for e in self.core.cache.entries.values()
            if e.learned and e.installed and e.nbma is not None
        }
