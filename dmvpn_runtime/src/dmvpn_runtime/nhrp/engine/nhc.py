"""Registration client (RFC 2332 §5.2.3; FRR nhrp_nhs.c): one state machine per NHS.

Per NHS::

    resolving --name resolved--> registering --reply 0--> registered --holdtime/3--> (refresh)
                                   |   ^                    |
                   no reply (2..64 s backoff, same id)    reply != 0: refused, back off
                                   |
                       3 misses: NHS down (traffic uses the next NHS by priority);
                       an answer brings it back up

The client registers its overlay address (prefix 0xFF with the U flag, RFC 2332 §5.2.3)
and, unless ``register_prefixes`` is off, one CIE per protected prefix with its length.
RFC 2332 wants a single CIE when U is set; a strict NHS may ignore the extra CIEs, and
``register_prefixes=False`` restores the letter of the RFC.

The NHS that answers with our post-NAT address (NAT extension) tells us how others
reach us; resolution requests then carry it. A registration the NHS refuses with code
14 may be our own stale one (new NBMA after roaming or a NAT rebinding): we purge it
with that registration's request id (Cisco rule) and try again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..wire import (
    Address,
    Cie,
    CieCode,
    NatAddress,
    Packet,
    PacketType,
    Template,
    intern_address,
)
from ..wire.constants import FLAG_NAT_CAPABLE, REG_FLAG_UNIQUE, UNIQUE_PREFIX_LENGTH
from . import nat
from .actions import (
    AddRoute,
    EventKind,
    IpsecDown,
    IpsecUp,
    MappingType,
    RemoveRoute,
    ResolveName,
)
from .cache import CacheEntry
from .config import NhsConfig
from .core import EMPTY_REQUEST_EXTENSIONS, PROTOCOL_OF_VERSION, Core
from .stats import Drop
from .timers import (
    DNS_RETRY,
    NHS_DOWN_AFTER_MISSES,
    REFRESH_DIVISOR,
    REGISTRATION_HOP_COUNT,
    REGISTRATION_RETRY_FIRST,
    REGISTRATION_RETRY_MAX,
)

if TYPE_CHECKING:
    from ..wire import Extension


@dataclass(slots=True, eq=False)
class NhsState:
    config: NhsConfig
    index: int
    nbma: Address | None
    request_id: int = 0
    data: bytes | None = None  # the outstanding request; retries resend these octets
    waiting: bool = False
    acked_request_id: int = 0  # the registration the NHS holds (for the Cisco purge rule)
    acked_nbma: Address | None = None  # our NBMA in that registration
    registered: bool = False
    registered_until: float = 0.0
    retry: float = REGISTRATION_RETRY_FIRST
    misses: int = 0
    down: bool = False
    refused: int = 0  # last refusal code
    # CIEs the NHS refused in its last accepting reply ("prefix/len" -> code): logged when
    # they change, not on every refresh (FRR refuses prefix CIEs every time).
    refused_prefixes: dict[str, int] = field(default_factory=dict)
    post_nat: Address | None = None
    stale: bool = False  # IPsec went down: register as soon as it is back
    entry: CacheEntry | None = None  # the NHS mapping
    removed: bool = False
    template: tuple | None = None  # (key, our encoded request: Registrar._template)

    @property
    def state(self) -> str:
        if self.nbma is None:
            return "resolving"
        if self.down:
            return "down"
        if self.registered:
            return "registered"
        if self.refused:
            return "refused"
        return "registering"


class Registrar:
    __slots__ = ("_nhs_nbmas", "active", "active_for", "core", "nhss")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.nhss: list[NhsState] = []
        self._nhs_nbmas: dict[Address, int] = {}
        self.active: dict[int, NhsState | None] = {4: None, 6: None}
        # The active NHS of an address family: the dict's own method, bound once (every
        # Resolution Request we send asks for it; a forwarding method costs a call).
        self.active_for: Callable[[int], NhsState | None] = self.active.get

    # -- queries -----------------------------------------------------------------------
    def is_nhs_nbma(self, nbma: Address) -> bool:
        return nbma in self._nhs_nbmas

    def by_nbma(self, nbma: Address) -> list[NhsState]:
        return [st for st in self.nhss if st.nbma == nbma and not st.removed]

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, now: float) -> None:
        if not self.core.config.is_nhc:
            return
        for cfg in self.core.config.nhs:
            self._add(cfg, now)
        self._select()

    def stop(self, now: float) -> None:
        for st in list(self.nhss):
            self._remove(st, now, purge=True)
        self._select()

    def reconfigure(self, old_nbma: Address, now: float, reregister: bool) -> None:
        """Apply a new config: keep NHSs that did not change, re-register when our
        registration content or NBMA changed."""
        config = self.core.config
        wanted = list(config.nhs) if config.is_nhc else []
        keep: list[NhsState] = []
        for st in self.nhss:
            match = next(
                (
                    c
                    for c in wanted
                    if (c.proto, c.nbma, c.name)
                    == (st.config.proto, st.config.nbma, st.config.name)
                ),
                None,
            )
            if match is None:
                self._remove(st, now, purge=True)
                continue
            wanted.remove(match)
            st.config = match
            keep.append(st)
        self.nhss = keep
        for i, st in enumerate(self.nhss):
            st.index = i
        roamed = old_nbma != self.core.nbma
        for st in keep:
            if st.nbma is None:
                continue
            if roamed and st.acked_request_id:
                self._purge_own(st, old_nbma, no_reply=False, now=now)
            if roamed or reregister:
                st.retry = REGISTRATION_RETRY_FIRST
                self.register(st, now)
        for cfg in wanted:
            self._add(cfg, now)
        self._select()

    def _add(self, cfg: NhsConfig, now: float) -> None:
        st = NhsState(cfg, len(self.nhss), cfg.nbma)
        self.nhss.append(st)
        if st.nbma is not None:
            self._bind(st, st.nbma)
            self.register(st, now)
        else:
            self.core.out.append(ResolveName(cfg.name or ""))
            self.core.arm(("dns", id(st)), now + DNS_RETRY)

    def _remove(self, st: NhsState, now: float, purge: bool) -> None:
        core = self.core
        if purge and st.registered and st.nbma is not None and st.acked_request_id:
            self._purge_own(st, core.nbma, no_reply=True, now=now)
        if st.registered:
            core.event(
                EventKind.REGISTRATION_DOWN, role="nhc", nhs=st.config.proto, reason="removed"
            )
        st.registered = st.waiting = False
        st.removed = True
        self._unbind(st)
        for key in (("nhs", id(st)), ("nhs-exp", id(st)), ("dns", id(st))):
            core.timers.cancel(key)
        if st in self.nhss:
            self.nhss.remove(st)

    def _bind(self, st: NhsState, nbma: Address) -> None:
        core = self.core
        st.nbma = nbma = intern_address(nbma)  # in every packet to and from the NHS
        self._nhs_nbmas[nbma] = self._nhs_nbmas.get(nbma, 0) + 1
        proto = intern_address(st.config.proto)
        old = core.cache.get(proto)
        if old is not None:
            core.uninstall(old)
            core.cache.pop(proto)
        entry = CacheEntry(proto, MappingType.NHS, nbma, nbma, prefix_length=proto.max_prefixlen)
        core.cache.add(entry)
        core.install(entry)
        st.entry = entry

    def _unbind(self, st: NhsState) -> None:
        core = self.core
        if st.nbma is not None:
            n = self._nhs_nbmas.get(st.nbma, 0) - 1
            if n > 0:
                self._nhs_nbmas[st.nbma] = n
            else:
                self._nhs_nbmas.pop(st.nbma, None)
        if st.entry is not None:
            core.uninstall(st.entry)
            if core.cache.get(st.entry.proto) is st.entry:
                core.cache.pop(st.entry.proto)
            st.entry = None

    # -- sending ---------------------------------------------------------------------------
    def register(self, st: NhsState, now: float) -> None:
        core = self.core
        if st.nbma is None or st.removed:
            return
        request = self._request(st, core.next_request_id())
        if request is None:
            return
        packet, data = request
        st.request_id = packet.request_id
        st.data = core.send(st.nbma, packet, data)
        st.waiting = True
        st.stale = False
        core.arm(("nhs", id(st)), now + st.retry)

    def _request(self, st: NhsState, request_id: int) -> tuple[Packet, bytes] | None:
        core = self.core
        proto = st.config.proto
        pt = PROTOCOL_OF_VERSION[proto.version]
        own = core.own.get(pt)
        if own is None or st.nbma is None:
            return None
        key = (core.generation, st.nbma)
        if st.template is None or st.template[0] != key:
            st.template = (key, self._template(st, own, request_id))
        return st.template[1].fill(proto, request_id)

    def _template(self, st: NhsState, own: Address, request_id: int) -> Template:
        """Our registrations to ``st``: they change with the config, so they are encoded
        once (the first with ``request_id``) and only the request id changes."""
        core, config = self.core, self.core.config
        assert st.nbma is not None
        holdtime = config.holdtime
        cies = [
            Cie(
                prefix_length=UNIQUE_PREFIX_LENGTH if config.unique else own.max_prefixlen,
                mtu=config.mtu,
                holding_time=holdtime,
                client_nbma=core.nbma,
                client_proto=own,
            )
        ]
        if config.register_prefixes:
            cies.extend(
                Cie(
                    prefix_length=p.prefixlen,
                    mtu=config.mtu,
                    holding_time=holdtime,
                    client_nbma=core.nbma,
                    client_proto=p.network_address,
                )
                for p in config.protected
                if p.version == own.version
            )
        flags = (REG_FLAG_UNIQUE if config.unique else 0) | (FLAG_NAT_CAPABLE if config.nat else 0)
        exts: list[Extension | None] = list(EMPTY_REQUEST_EXTENSIONS)
        if config.nat:
            exts.append(NatAddress((nat.cie(st.nbma, st.config.proto),)))
        return Template(
            Packet(
                PacketType.REGISTRATION_REQUEST,
                core.afn,
                PROTOCOL_OF_VERSION[own.version],
                REGISTRATION_HOP_COUNT,
                core.nbma,
                own,
                st.config.proto,
                flags,
                request_id,
                tuple(cies),
                extensions=core.extensions(*exts),
            )
        )

    def _purge_own(self, st: NhsState, claimed: Address | None, no_reply: bool, now: float) -> None:
        """Ask the NHS to drop our registration, named by its request id (Cisco rule)."""
        core = self.core
        proto = st.config.proto
        own = core.own.get(PROTOCOL_OF_VERSION[proto.version])
        if own is None or st.nbma is None:
            return
        cie = Cie(
            prefix_length=UNIQUE_PREFIX_LENGTH if core.config.unique else own.max_prefixlen,
            client_nbma=claimed,
            client_proto=own,
        )
        core.purger.send(st.nbma, own, proto, (cie,), now, st.acked_request_id, no_reply)

    # -- receiving -------------------------------------------------------------------------
    def on_reply(self, pkt: Packet, src: Address, now: float) -> None:
        core = self.core
        rid = pkt.request_id
        st = None
        for candidate in self.nhss:
            if candidate.waiting and candidate.request_id == rid:
                st = candidate
                break
        if st is None:
            core.drop(Drop.UNMATCHED_REPLY, src, type="registration_reply", request_id=rid)
            return
        own = core.own.get(pkt.protocol_type)
        cie = None
        for c in pkt.cies:  # (comparing an address with None is slow in ipaddress)
            if c.client_proto is None or c.client_proto == own:
                cie = c
                break
        if cie is None:
            core.drop(Drop.MALFORMED, src, type="registration_reply", detail="no CIE for us")
            return
        st.waiting = False
        st.misses = 0
        st.retry = REGISTRATION_RETRY_FIRST
        if st.down:
            st.down = False
            core.event(EventKind.NHS_UP, nhs=st.config.proto, nbma=st.nbma)
            self._select()
        if cie.code != CieCode.SUCCESS:
            self._refused(st, cie.code, now)
            return
        st.refused = 0
        holding = cie.holding_time or core.config.holdtime
        first = not st.registered
        st.registered = True
        st.registered_until = now + holding
        st.acked_request_id = st.request_id
        st.acked_nbma = core.nbma
        self._learn_nat(st, pkt, own)
        if first:
            core.event(
                EventKind.REGISTRATION_UP,
                role="nhc",
                nhs=st.config.proto,
                nbma=st.nbma,
                holdtime=holding,
            )
        refusals = {f"{c.client_proto}/{c.prefix_length}": c.code for c in pkt.cies if c.code}
        for prefix, code in refusals.items():
            core.stats.counters["registration_cie_refused"] += 1
            if st.refused_prefixes.get(prefix) != code:
                core.event(
                    EventKind.REGISTRATION_REFUSED, nhs=st.config.proto, prefix=prefix, code=code
                )
        st.refused_prefixes = refusals
        core.arm(("nhs", id(st)), now + holding / REFRESH_DIVISOR)
        core.arm(("nhs-exp", id(st)), st.registered_until)

    def _learn_nat(self, st: NhsState, pkt: Packet, own: Address | None) -> None:
        core = self.core
        natx = nat.find(pkt) if core.config.nat else None
        if natx is None:
            return
        post = nat.post_nat(natx, own)
        if post is not None and post == core.nbma:
            post = None
        if post is not st.post_nat and (post is None or st.post_nat is None or post != st.post_nat):
            st.post_nat = post
            core.event(
                EventKind.NAT_DETECTED,
                nhs=st.config.proto,
                post_nat=post,
                nbma=core.nbma,
            )
        if self.active.get(st.config.proto.version) is st or core.post_nat is None:
            core.post_nat = post

    def _refused(self, st: NhsState, code: int, now: float) -> None:
        core = self.core
        first = not st.refused
        st.refused = code
        core.event(EventKind.REGISTRATION_REFUSED, nhs=st.config.proto, code=code)
        if code == CieCode.UNIQUE_ADDRESS_ALREADY_REGISTERED and st.acked_request_id:
            # Maybe our own earlier binding (we roamed, or our NAT rebound).
            self._purge_own(st, st.acked_nbma, no_reply=False, now=now)
            if first:
                self.register(st, now)
                return
        self._backoff(st)
        core.arm(("nhs", id(st)), now + st.retry)

    def _backoff(self, st: NhsState) -> None:
        nxt = st.retry * 2
        if nxt > REGISTRATION_RETRY_MAX:
            nxt = REGISTRATION_RETRY_FIRST
            if st.nbma is not None:  # FRR: tear the SA down and start again
                self.core.out.append(IpsecDown(st.nbma))
                self.core.out.append(IpsecUp(st.nbma))
        st.retry = nxt

    def on_error(self, request_id: int, code: int, now: float) -> bool:
        """An Error Indication about one of our requests: an answer, not a miss."""
        st = next((s for s in self.nhss if s.waiting and s.request_id == request_id), None)
        if st is None:
            return False
        st.waiting = False
        st.misses = 0
        self._refused(st, code, now)
        return True

    # -- timers --------------------------------------------------------------------------------
    def on_timer(self, kind: str, ident: int, now: float) -> None:
        st = next((s for s in self.nhss if id(s) == ident), None)
        if st is None:
            return
        core = self.core
        if kind == "dns":
            if st.config.name:
                core.out.append(ResolveName(st.config.name))
                core.arm(("dns", id(st)), now + DNS_RETRY)
            return
        if kind == "nhs-exp":
            if st.registered and now >= st.registered_until:
                st.registered = False
                core.event(
                    EventKind.REGISTRATION_DOWN,
                    role="nhc",
                    nhs=st.config.proto,
                    reason="expired",
                )
            return
        if not st.waiting:
            self.register(st, now)  # refresh point, or retry after a refusal
            return
        st.misses += 1
        if st.misses >= NHS_DOWN_AFTER_MISSES and not st.down:
            st.down = True
            core.event(EventKind.NHS_DOWN, nhs=st.config.proto, nbma=st.nbma, misses=st.misses)
            self._select()
            if st.config.name:  # the hub may have moved (seed Req. 6)
                core.out.append(ResolveName(st.config.name))
        self._backoff(st)
        if st.nbma is not None and st.data is not None:
            core.resend(st.nbma, st.data, PacketType.REGISTRATION_REQUEST)
        core.arm(("nhs", id(st)), now + st.retry)

    # -- notices ---------------------------------------------------------------------------------
    def on_name(self, name: str, addresses: list[Address], now: float) -> None:
        core = self.core
        for st in self.nhss:
            if st.config.name != name:
                continue
            usable = [a for a in addresses if a.version == core.nbma.version]
            if not usable:
                core.arm(("dns", id(st)), now + DNS_RETRY)
                continue
            if st.nbma in usable:
                continue
            core.timers.cancel(("dns", id(st)))
            self._unbind(st)
            self._bind(st, usable[0])
            st.registered = False
            st.waiting = False
            st.retry = REGISTRATION_RETRY_FIRST
            self.register(st, now)
        self._select()

    def on_ipsec_down(self, nbma: Address, now: float) -> None:
        for st in self.by_nbma(nbma):
            if st.registered:
                st.registered = False
                self.core.event(
                    EventKind.REGISTRATION_DOWN,
                    role="nhc",
                    nhs=st.config.proto,
                    reason="ipsec_down",
                )
            st.stale = True
            self.core.out.append(IpsecUp(nbma))  # the SA to an NHS is permanent
            if not st.waiting:
                self.core.arm(("nhs", id(st)), now + REGISTRATION_RETRY_FIRST)

    def on_ipsec_up(self, nbma: Address, now: float) -> None:
        for st in self.by_nbma(nbma):
            if st.stale or not (st.registered or st.waiting):
                st.retry = REGISTRATION_RETRY_FIRST
                self.register(st, now)

    # -- NHS choice --------------------------------------------------------------------------------
    def _select(self) -> None:
        """The active NHS per family: best priority among those not down (else among all)."""
        best: dict[int, tuple[tuple[int, int, int], NhsState]] = {}
        for st in self.nhss:
            if st.nbma is None:
                continue
            rank = (st.down, st.config.priority, st.index)
            version = st.config.proto.version
            current = best.get(version)
            if current is None or rank < current[0]:
                best[version] = (rank, st)
        for version in (4, 6):
            chosen = best.get(version)
            new = chosen[1] if chosen is not None else None
            old = self.active.get(version)
            if new is not old:
                self._activate(version, old, new)

    def _activate(self, version: int, old: NhsState | None, new: NhsState | None) -> None:
        core = self.core
        self.active[version] = new
        core.event(
            EventKind.NHS_ACTIVE,
            family="ipv4" if version == 4 else "ipv6",
            nhs=new.config.proto if new else None,
            previous=old.config.proto if old else None,
        )
        if new is not None and new.post_nat is not None:
            core.post_nat = new.post_nat
        for prefix in core.config.nhs_routes:
            if prefix.version != version:
                continue
            sc = core.shortcuts.by_prefix.get(prefix)
            if sc is not None and sc.route:
                continue
            if new is not None:
                core.out.append(AddRoute(prefix, new.config.proto))
            elif old is not None:
                core.out.append(RemoveRoute(prefix, old.config.proto))
