"""Resolution Request / Reply (RFC 2332 §5.2.1, §5.2.2) as ingress, NHS and egress.

Ingress: one pending request per target; retransmitted with the *same* request id at
1, 2, 4, 7, 7... s (RFC 2332 §5.2.0.1, FRR), abandoned after 30 s. A positive reply
installs a shortcut for the responder's prefix (policy may narrow it); a negative one
(CIE code 4, 12...) is cached for a short while.

NHS: a target covered by a registered client is forwarded to that client (Phase 3, so
the egress answers with its protected prefix and learns the requester) or answered from
the registration (``resolution_mode=answer``); other targets go up to our own NHS (a hub
that is also a client) or get code 12 (No Binding Exists). Forwarding appends our
Forward Transit record and decrements the hop count: finding ourselves in the record is
a loop (Error Indication code 3), a hop count that would reach 0 is code 15. Policy:
a denied pair gets code 4 (Administratively Prohibited).

Egress: answers with our NBMA, our overlay address as the next hop and the protected
prefix holding the target, and caches the requester's binding from the request, so
both directions go direct. The answer goes straight to the requester, or, when the
requester is behind a NAT (which may filter packets from strangers), back along the
path the request came (RFC 2332 §5.2.2); NHSs relay such replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..wire import (
    Address,
    Cie,
    CieCode,
    CleartextAuthentication,
    ErrorCode,
    Extension,
    ForwardTransitNhs,
    NatAddress,
    Packet,
    PacketType,
    ReverseTransitNhs,
    Template,
)
from ..wire.constants import (
    FLAG_NAT_CAPABLE,
    HOP_COUNT_OFFSET,
    RES_FLAG_AUTHORITATIVE,
    RES_FLAG_ROUTER,
    RES_FLAG_STABLE_SOURCE,
    UNIQUE_PREFIX_LENGTH,
)
from . import auth, error_indication, nat
from .actions import EventKind, MappingType
from .cache import CacheEntry, contains, host, network
from .config import ResolutionMode
from .core import EMPTY_NAT, EMPTY_REQUEST_EXTENSIONS, PROTOCOL_OF_VERSION, Core, relayed
from .shortcut import mapping_only_prefix
from .stats import Drop
from .timers import (
    DEFAULT_HOP_COUNT,
    NEGATIVE_CACHE,
    NEGATIVE_CACHE_MAX,
    RESOLUTION_GIVE_UP,
    RESOLUTION_RETRY_FIRST,
    RESOLUTION_RETRY_MAX,
)

# Enum members read per packet, as module constants (a class attribute read of an enum
# member costs several times a global read on 3.11).
_NEGATIVE: Final = MappingType.NEGATIVE
_REGISTERED: Final = MappingType.REGISTERED
_RESOLUTION_REQUEST: Final = PacketType.RESOLUTION_REQUEST
_RESOLUTION_REPLY: Final = PacketType.RESOLUTION_REPLY
_SUCCESS: Final = CieCode.SUCCESS
_FORWARD: Final = ResolutionMode.FORWARD


@dataclass(slots=True, eq=False)
class Pending:
    target: Address
    request_id: int
    nbma: Address
    data: bytes
    started: float
    interval: float
    reason: str

    def __init__(
        self,
        target: Address,
        request_id: int,
        nbma: Address,
        data: bytes,
        started: float,
        interval: float,
        reason: str,
    ) -> None:
        self.target = target
        self.request_id = request_id
        self.nbma = nbma
        self.data = data
        self.started = started
        self.interval = interval
        self.reason = reason


class Resolver:
    __slots__ = ("_relayed_memo", "_templates", "by_id", "by_target", "core")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.by_target: dict[Address, Pending] = {}
        self.by_id: dict[int, Pending] = {}
        self._templates: dict = {}
        self._relayed_memo: tuple = ()  # _relayed_extensions' last answer

    # -- ingress -------------------------------------------------------------------------
    def resolve(
        self, target: Address, now: float, reason: str, nbma: Address | None = None
    ) -> bool:
        """Ask for ``target``'s binding (through the active NHS, or ``nbma`` to refresh)."""
        return self.resolve_known(target, self.core.cache.get(target), now, reason, nbma)

    def resolve_known(
        self,
        target: Address,
        cached: CacheEntry | None,
        now: float,
        reason: str,
        nbma: Address | None = None,
    ) -> bool:
        """:meth:`resolve` with ``cached``, the cache's entry for ``target`` now, which the
        caller looked up (hashing an address is a Python call)."""
        core = self.core
        if target in self.by_target:
            core.stats.counters["resolution_already_pending"] += 1
            return False
        if cached is not None and cached.type is _NEGATIVE and cached.expires > now:
            core.stats.counters["resolution_negative_cached"] += 1
            return False
        version = target.version
        pt = PROTOCOL_OF_VERSION[version]
        own = core.own.get(pt)
        if own is None:
            return False
        if nbma is None:
            st = core.nhc.active_for(version)
            if st is None or st.nbma is None:
                core.stats.counters["resolution_no_nhs"] += 1
                return False
            nbma = st.nbma
        rid = core.next_request_id()
        pkt, data = self._template(pt, own, target, rid).fill(target, rid)
        core.send(nbma, pkt, data)
        pending = Pending(target, rid, nbma, data, now, RESOLUTION_RETRY_FIRST, reason)
        self.by_target[target] = pending
        self.by_id[rid] = pending
        # Keyed by the Pending (hashed by identity, an address in a Python call).
        core.arm(("res", pending), now + RESOLUTION_RETRY_FIRST)
        return True

    def _template(self, pt, own: Address, target: Address, request_id: int) -> Template:
        """Our requests: they change only with the config and our post-NAT address, so
        they are encoded once (the first from ``target`` and ``request_id``)."""
        core = self.core
        key = (core.generation, pt, core.post_nat)
        cached = self._templates.get(pt)
        if cached is not None and cached[0] == key:
            return cached[1]
        config = core.config
        natx = None
        if config.nat:
            natx = NatAddress((nat.cie(core.post_nat, own),)) if core.post_nat else EMPTY_NAT
        flags = (
            RES_FLAG_ROUTER
            | RES_FLAG_AUTHORITATIVE
            | RES_FLAG_STABLE_SOURCE
            | (FLAG_NAT_CAPABLE if config.nat else 0)
        )
        cies = (Cie(prefix_length=own.max_prefixlen, mtu=config.mtu, holding_time=config.holdtime),)
        exts = core.extensions(*EMPTY_REQUEST_EXTENSIONS, natx)
        template = Template(
            Packet(
                PacketType.RESOLUTION_REQUEST,
                core.afn,
                pt,
                DEFAULT_HOP_COUNT,
                core.nbma,
                own,
                target,
                flags,
                request_id,
                cies,
                extensions=exts,
            )
        )
        self._templates[pt] = (key, template)
        return template

    def on_timer(self, pending: Pending, now: float) -> None:
        core = self.core
        target = pending.target
        if self.by_target.get(target) is not pending:
            return
        if now - pending.started >= RESOLUTION_GIVE_UP:
            self._finish(pending)
            core.event(
                EventKind.RESOLUTION_FAILED,
                target=target,
                reason="timeout",
                trigger=pending.reason,
            )
            return
        core.resend(pending.nbma, pending.data, _RESOLUTION_REQUEST)
        pending.interval = min(pending.interval * 2, RESOLUTION_RETRY_MAX)
        core.arm(("res", pending), now + pending.interval)

    def _finish(self, pending: Pending) -> None:
        self.by_target.pop(pending.target, None)
        self.by_id.pop(pending.request_id, None)
        self.core.timers.cancel(("res", pending))

    def on_reply(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        pending = self.by_id.get(pkt.request_id)
        # Addresses from the codec are interned: identity settles most comparisons
        # without ipaddress's Python-level __eq__/__ne__.
        dst = pkt.dst_proto
        if pending is None or (pending.target is not dst and pending.target != dst):
            if core.config.is_nhs and pkt.src_proto not in core.own_addresses:
                self._forward_reply(pkt, src, now)
                return
            core.drop(Drop.UNMATCHED_REPLY, src, type="resolution_reply", request_id=pkt.request_id)
            return
        if not pkt.cies:
            core.drop(Drop.MALFORMED, src, type="resolution_reply", detail="no CIE")
            return
        cie = pkt.cies[0]
        target = pending.target
        self._finish(pending)
        if cie.code != _SUCCESS:
            self._negative(target, cie.code, cie.holding_time, src, now)
            return
        egress = cie.client_proto or target
        claimed = cie.client_nbma
        nbma = nat.reachable(claimed, nat.post_nat(nat.find(pkt), egress), src, core.post_nat)
        version = target.version
        plen = cie.prefix_length
        host_answer = plen == UNIQUE_PREFIX_LENGTH or plen >= target.max_prefixlen
        if host_answer:
            prefix = host(target)
            ours = target in core.own_addresses  # what a host prefix holds: its address
        else:
            prefix = network(target, plen)
            ours = self._covers_own(prefix)
        if nbma is None or egress.version != version or ours:
            core.drop(Drop.MALFORMED, src, type="resolution_reply", detail=f"bad answer {prefix}")
            return
        policy = core.config.policy
        allowed = (
            prefix
            if policy.trivial
            else policy.shortcut_prefix(core.side_of(version), target, prefix)
        )
        if allowed is None:
            core.stats.counters["policy_deny_install"] += 1
            core.event(EventKind.POLICY_DENY, role="ingress", target=target, prefix=prefix)
            self._negative(target, int(CieCode.ADMINISTRATIVELY_PROHIBITED), 0, src, now)
            return
        holding = cie.holding_time or core.config.holdtime
        pend = core.config.require_ipsec and not core.peer_up(nbma)
        if not pend and not core.allow_all:
            refusal = auth.refusal(
                core.authoriser.authorise_resolution_reply(
                    nbma, egress, (allowed, host(egress)), core.identity(nbma)
                )
            )
            if refusal is not None:
                core.stats.counters["resolution_reply_unauthorised"] += 1
                core.event(
                    EventKind.AUTH_FAILURE,
                    stage="authorise_resolution_reply",
                    nbma=nbma,
                    proto=egress,
                    prefix=allowed,
                    reason=refusal,
                )
                return
        # Policy left the answer's prefix as it was (always without a policy): a host
        # answer is a mapping only when it names the egress itself.
        if allowed is prefix:
            mapping_only = host_answer and (egress is target or egress == target)
        else:
            mapping_only = mapping_only_prefix(allowed, egress)
        core.shortcuts.install(
            target, allowed, egress, nbma, claimed, holding, now, src, pend, mapping_only
        )

    def _covers_own(self, prefix) -> bool:
        """An answer whose prefix holds our own overlay address would route us away (we
        have one per family: EngineConfig)."""
        own = self.core.own.get(PROTOCOL_OF_VERSION[prefix.version])
        return own is not None and contains(prefix, own)

    def _negative(self, target: Address, code: int, holding: int, src: Address, now: float) -> None:
        core = self.core
        lifetime = min(float(holding) or NEGATIVE_CACHE, NEGATIVE_CACHE_MAX)
        core.shortcuts.negative(target, now + lifetime, src, now)
        core.event(EventKind.RESOLUTION_FAILED, target=target, code=int(code))
        if code == CieCode.ADMINISTRATIVELY_PROHIBITED:
            core.stats.counters["resolution_prohibited"] += 1

    def on_error(self, request_id: int, code: int, src: Address, now: float) -> bool:
        pending = self.by_id.get(request_id)
        if pending is None:
            return False
        self._finish(pending)
        self._negative(pending.target, code, 0, src, now)
        return True

    # -- NHS and egress ------------------------------------------------------------------------
    def on_request(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        config = core.config
        if not core.res_limiter.allow(src, now):
            core.drop(Drop.RATE_LIMITED, src, type="resolution_request")
            return
        target, requester = pkt.dst_proto, pkt.src_proto
        if target is None or requester is None or pkt.src_nbma is None:
            core.drop(Drop.MALFORMED, src, type="resolution_request")
            return
        if not core.known(src, protected):
            core.drop(Drop.UNKNOWN_PEER, src, type="resolution_request")
            return
        covering = core.covering_protected(target)
        is_nhs = core.is_nhs
        if is_nhs:
            # A client holding the target more specifically than our own aggregate gets
            # it (a regional hub protecting 10.2.0.0/16 forwards for its spoke's
            # 10.2.1.0/24), by registration or by a route through it (RFC 2332 §5.2.1,
            # the routed path: Cisco and FRR spokes register no prefixes).
            held = core.holder(target, now)
            if held is not None and (covering is None or held[0] > covering.prefixlen):
                length, client, routed = held
                if routed:
                    core.stats.counters["resolution_by_route"] += 1
                self._serve(pkt, src, client, now, length)
                return
        if covering is not None:
            if not error_indication.refuse_unknown_compulsory(core, pkt, src, now):
                self._answer_as_egress(pkt, src, covering, now)
            return
        if is_nhs:
            st = core.nhc.active_for(target.version) if config.is_nhc else None
            if st is not None and st.nbma is not None and st.nbma != src:
                self._forward(pkt, src, st.nbma, now)
                return
        if not error_indication.refuse_unknown_compulsory(core, pkt, src, now):
            self._nak(pkt, src, CieCode.NO_BINDING_EXISTS, now)

    def _serve(
        self,
        pkt: Packet,
        src: Address,
        entry: CacheEntry,
        now: float,
        prefix_length: int,
    ) -> None:
        """NHS: the target belongs to a registered client, by its registration or a route
        through it ``prefix_length`` long (:meth:`Core.holder`)."""
        core = self.core
        requester = pkt.src_proto
        assert requester is not None and pkt.dst_proto is not None
        if not core.config.policy.trivial and not self._nhs_allows(requester, pkt.dst_proto, entry):
            core.stats.counters["policy_deny_resolution"] += 1
            core.event(
                EventKind.POLICY_DENY,
                role="nhs",
                requester=requester,
                target=pkt.dst_proto,
            )
            self._nak(pkt, src, CieCode.ADMINISTRATIVELY_PROHIBITED, now)
            return
        first_hop, natx = _first_hop_and_nat(pkt)
        where = (
            src
            if first_hop
            else nat.reachable(pkt.src_nbma, nat.post_nat(natx, requester), None, None)
        )
        if where is not None:
            core.nhs.record_resolver(entry, requester, where)
        nbma = entry.nbma
        assert nbma is not None
        # The octets, not the addresses: they differ on every forward, and ipaddress's
        # __ne__ is two Python calls where interned addresses keep their octets.
        forward = core.config.resolution_mode is _FORWARD
        if forward and nbma is not src and nbma.packed != src.packed:
            self._forward(pkt, src, nbma, now)
        else:
            self._answer_from(pkt, src, entry, now, prefix_length, natx)

    def _nhs_allows(self, requester: Address, target: Address, entry: CacheEntry) -> bool:
        """Hub policy for a requester (with its prefixes, registered here or routed through
        it) and a target; a client's overlay address stands for the whole client."""
        core = self.core
        policy = core.config.policy
        side: tuple = (host(requester),)
        client = core.cache.get(requester)
        if client is not None and client.type is _REGISTERED:
            side = core.client_networks(client)
        if target == entry.proto:
            return all(policy.allows(side, n) for n in core.client_networks(entry))
        return policy.allows(side, target)

    def _forward(self, pkt: Packet, src: Address, nbma: Address, now: float) -> None:
        core = self.core
        relayed_exts = self._relayed_extensions(pkt, src, now)
        if relayed_exts is None:
            return
        exts, first_hop = relayed_exts
        if pkt.hop_count <= 1:
            self._refuse_forward(pkt, src, Drop.HOP_COUNT_EXCEEDED, now, HOP_COUNT_OFFSET)
            return
        # with_observed adds nothing unless the request came from elsewhere than the NBMA
        # it claims (NAT).
        if first_hop and core.config.nat and src is not pkt.src_nbma and src != pkt.src_nbma:
            exts = tuple(
                nat.with_observed(e, pkt.src_proto, pkt.src_nbma, src)
                if isinstance(e, NatAddress)
                else e
                for e in exts
            )
        core.send(nbma, relayed(pkt, exts))
        core.stats.counters["resolution_forwarded"] += 1

    def _relayed_extensions(
        self, pkt: Packet, src: Address, now: float
    ) -> tuple[tuple[Extension, ...], bool] | None:
        """``pkt``'s extensions as we forward it (our Forward Transit record added,
        authentication ours) and whether no NHS forwarded it before us; None when we
        are in the record already (a loop, reported here).

        The codec hands out one tuple for the same extension octets, and the requests
        of a hub's clients carry the same ones: the last answer is kept, so that the same
        objects go out again (encoded from the octets the codec keeps with them)."""
        core = self.core
        pt = pkt.protocol_type
        memo = self._relayed_memo
        if memo and memo[0] is pkt.extensions and memo[1] == pt and memo[2] == core.generation:
            return memo[3]
        own = core.own[pt]
        first_hop = True
        exts = []
        for ext in pkt.extensions:
            if isinstance(ext, ForwardTransitNhs):
                crossed = ext.cies
                for c in crossed:
                    if c.client_proto == own or c.client_nbma == core.nbma:
                        self._refuse_forward(pkt, src, Drop.LOOP_DETECTED, now, ext)
                        return None
                first_hop = not crossed
                ext = ForwardTransitNhs((*crossed, core.responder[pt]), ext.compulsory)
            elif isinstance(ext, CleartextAuthentication):
                if core.auth_ext is None:
                    continue
                ext = core.auth_ext
            exts.append(ext)
        relayed_exts = (tuple(exts), first_hop)
        self._relayed_memo = (pkt.extensions, pt, core.generation, relayed_exts)
        return relayed_exts

    def _refuse_forward(
        self, pkt: Packet, src: Address, reason: Drop, now: float, at: int | Extension
    ) -> None:
        """A request we must not forward: counted, and an Error Indication (code 3 for a
        loop, 15 for the hop count) naming ``at`` (the offending extension or offset)."""
        self.core.drop(reason, src, target=pkt.dst_proto)
        code = (
            ErrorCode.LOOP_DETECTED
            if reason is Drop.LOOP_DETECTED
            else ErrorCode.HOP_COUNT_EXCEEDED
        )
        error_indication.send(self.core, pkt, None, self._error_to(pkt, src), code, now, at)

    def _error_to(self, pkt: Packet, src: Address) -> Address:
        """An Error Indication goes to the packet's source (RFC 2332 §5.2.7): straight to
        it when it is our client, else back to the hop it came from."""
        entry = self.core.cache.get(pkt.src_proto) if pkt.src_proto is not None else None
        if entry is not None and entry.type is _REGISTERED and entry.nbma is not None:
            return entry.nbma
        return src

    def _forward_reply(self, pkt: Packet, src: Address, now: float) -> None:
        """A reply on its way back to the requester (RFC 2332 §5.2.2: the reverse path).

        Next hop back: the requester if it registered with us; else the NHS before us in
        the Forward Transit record the reply echoes; else (we were the first NHS) the
        requester's own address from the packet."""
        core = self.core
        requester = pkt.src_proto
        assert requester is not None
        entry = core.cache.get(requester)
        nbma = None
        if entry is not None and entry.type is _REGISTERED:
            nbma = entry.nbma
        else:
            own = core.own[pkt.protocol_type]
            for ext in pkt.extensions:
                if isinstance(ext, ForwardTransitNhs):
                    hops = [c.client_proto for c in ext.cies]
                    if own in hops:
                        i = hops.index(own)
                        nbma = ext.cies[i - 1].client_nbma if i else None
                    break
            if nbma is None:
                nbma = nat.reachable(
                    pkt.src_nbma, nat.post_nat(nat.find(pkt), requester), None, None
                )
        if nbma is None or nbma == src:
            core.drop(Drop.UNMATCHED_REPLY, src, type="resolution_reply", request_id=pkt.request_id)
            return
        if pkt.hop_count <= 1:
            core.drop(Drop.HOP_COUNT_EXCEEDED, src, type="resolution_reply")
            return
        exts = []
        for ext in pkt.extensions:
            if isinstance(ext, ReverseTransitNhs):
                ext = ReverseTransitNhs(
                    (*ext.cies, core.responder[pkt.protocol_type]), ext.compulsory
                )
            elif isinstance(ext, CleartextAuthentication):
                if core.auth_ext is None:
                    continue
                ext = core.auth_ext
            exts.append(ext)
        core.send(nbma, relayed(pkt, tuple(exts)))
        core.stats.counters["resolution_reply_forwarded"] += 1

    def _answer_as_egress(self, pkt: Packet, src: Address, covering, now: float) -> None:
        core = self.core
        config = core.config
        target, requester = pkt.dst_proto, pkt.src_proto
        assert target is not None and requester is not None
        policy = config.policy
        if policy.trivial:
            prefix = covering
        elif target in core.own_addresses:  # our overlay address stands for all of us
            side = (host(requester),)
            ours = core.side_of(target.version)
            prefix = covering if all(policy.allows(side, n) for n in ours) else None
        else:
            prefix = policy.shortcut_prefix((host(requester),), target, covering)
        if prefix is None:
            core.stats.counters["policy_deny_answer"] += 1
            core.event(EventKind.POLICY_DENY, role="egress", requester=requester, target=target)
            self._nak(pkt, src, CieCode.ADMINISTRATIVELY_PROHIBITED, now)
            return
        first_hop, natx = _first_hop_and_nat(pkt)
        post = None
        where: Address | None
        if first_hop:
            where = src  # came straight from the requester (a refresh on the shortcut)
        else:
            post = nat.post_nat(natx, requester)
            where = nat.reachable(pkt.src_nbma, post, None, core.post_nat)
        assert where is not None
        if requester not in core.own_addresses:
            holding = (pkt.cies[0].holding_time if pkt.cies else 0) or config.holdtime
            core.shortcuts.learn(requester, where, pkt.src_nbma, holding, now)
        pt = pkt.protocol_type
        own = core.own[pt]
        cie = Cie(0, prefix.prefixlen, config.mtu, config.holdtime, 0, core.nbma, own)
        if natx is not None and config.nat and core.post_nat is not None:
            natx = NatAddress((*natx.cies, nat.cie(core.post_nat, own)), natx.compulsory)
        flags = pkt.flags | RES_FLAG_AUTHORITATIVE | (FLAG_NAT_CAPABLE if config.nat else 0)
        responder = core.responder_ext[pt]
        reply = core.reply(pkt, _RESOLUTION_REPLY, flags, (cie,), responder, natx)
        # Straight to the requester (as Cisco and FRR do: one packet fewer through the hub),
        # unless it is behind a NAT, which may filter a stranger's packets, or the packet
        # would leave unprotected where IPsec is required: then back the way the request
        # came (RFC 2332 §5.2.2), through the NHS the requester is registered with.
        natted = post is not None and post != pkt.src_nbma
        direct = not natted and (not config.require_ipsec or core.peer_up(where))
        core.send(src if first_hop or not direct else where, reply)
        core.stats.counters["resolution_answered"] += 1

    def _answer_from(
        self,
        pkt: Packet,
        src: Address,
        entry: CacheEntry,
        now: float,
        prefix_length: int,
        natx: NatAddress | None,
    ) -> None:
        """NHS, ``resolution_mode=answer``: reply with the client's registration or the
        routed prefix that led to the client, ``prefix_length`` long; ``natx``: the
        request's NAT extension."""
        core = self.core
        target = pkt.dst_proto
        assert target is not None and pkt.src_proto is not None
        plen = prefix_length
        policy = core.config.policy
        if not policy.trivial:
            narrowed = policy.shortcut_prefix((host(pkt.src_proto),), target, network(target, plen))
            if narrowed is None:
                self._nak(pkt, src, CieCode.ADMINISTRATIVELY_PROHIBITED, now)
                return
            plen = narrowed.prefixlen
        holding = max(1, min(int(entry.expires - now), 0xFFFF))
        cie = Cie(0, plen, 0, holding, 0, entry.claimed_nbma, entry.proto)
        if natx is not None and core.config.nat and entry.nbma is not None:
            natx = nat.with_observed(natx, entry.proto, entry.claimed_nbma, entry.nbma)
        flags = pkt.flags | RES_FLAG_AUTHORITATIVE | (FLAG_NAT_CAPABLE if core.config.nat else 0)
        responder = core.responder_ext[pkt.protocol_type]
        reply = core.reply(pkt, _RESOLUTION_REPLY, flags, (cie,), responder, natx)
        core.send(src, reply)
        core.stats.counters["resolution_answered"] += 1

    def _nak(self, pkt: Packet, src: Address, code: int, now: float) -> None:
        core = self.core
        assert pkt.dst_proto is not None
        cie = Cie(
            code,
            pkt.dst_proto.max_prefixlen,
            0,
            int(NEGATIVE_CACHE),
            0,
            None,
            pkt.dst_proto,
        )
        flags = pkt.flags | (FLAG_NAT_CAPABLE if core.config.nat else 0)
        responder = core.responder_ext[pkt.protocol_type]
        reply = core.reply(pkt, _RESOLUTION_REPLY, flags, (cie,), responder, nat.find(pkt))
        core.send(src, reply)
        core.stats.counters[f"resolution_nak_{int(code)}"] += 1


def _first_hop_and_nat(pkt: Packet) -> tuple[bool, NatAddress | None]:
    """Whether no NHS forwarded this request yet (its Forward Transit record is empty or
    absent), and its NAT extension: one pass over the extensions for both."""
    transit: ForwardTransitNhs | None = None
    natx: NatAddress | None = None
    for ext in pkt.extensions:
        if isinstance(ext, ForwardTransitNhs):
            if transit is None:
                transit = ext
        elif isinstance(ext, NatAddress) and natx is None:
            natx = ext
    return transit is None or not transit.cies, natx
