"""Traffic Indication, the Phase 3 redirect (draft-detienne-dmvpn §4).

Hub: when the data plane reports that a packet from spoke A to destination D went
back out on the tunnel (a hairpin), the hub tells A with a Traffic Indication that
quotes the start of that packet (hop count 1, destination protocol address = the
packet's source, as FRR; our authentication extension on it, FRR issue 16371). At most
one per ``redirect_interval`` per (source, destination) pair, the addresses cut to
``redirect_prefix_v4``/``_v6`` bits (FRR's documented hashlimit is per /24); none when
the hub's policy denies the pair.

Spoke: on a Traffic Indication from a peer it knows, it resolves the *destination* of
the quoted packet, unless shortcuts are off, its own policy denies it, or a shortcut
for it exists already.
"""

from __future__ import annotations

from ...ippacket import inner_addresses
from ..wire import Address, Packet, PacketType, TrafficCode
from .actions import EventKind
from .cache import Network, host, network
from .core import PROTOCOL_OF_VERSION, Core
from .ratelimit import Interval
from .stats import Drop
from .timers import TRAFFIC_INDICATION_HOP_COUNT, TRAFFIC_INDICATION_MAX_PAYLOAD


class Redirector:
    __slots__ = ("core", "limiter")

    def __init__(self, core: Core) -> None:
        self.core = core
        # per (source, destination) pair of prefixes
        self.limiter: Interval[tuple[Network, Network]] = Interval(core.config.redirect_interval)

    def reconfigure(self) -> None:
        self.limiter.interval = self.core.config.redirect_interval

    # -- hub --------------------------------------------------------------------------------
    def hairpin(
        self,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
        now: float,
    ) -> None:
        core = self.core
        config = core.config
        counters = core.stats.counters
        if not config.is_nhs or not config.redirect:
            counters["redirect_disabled"] += 1
            return
        pt = PROTOCOL_OF_VERSION[inner_src.version]
        own = core.own.get(pt)
        if own is None or inner_dst.version != inner_src.version:
            counters["redirect_wrong_protocol"] += 1
            return
        if not config.policy.trivial:
            # The sender is the client whose address or prefix (registered, or routed
            # through it) holds the source (NAT-safe: never looked up by NBMA, which spokes
            # behind one NAT share).
            side: tuple = (host(inner_src),)
            held = core.holder(inner_src)
            if held is not None:
                side = (*side, *core.client_networks(held[1]))
            if not config.policy.allows(side, inner_dst):
                counters["redirect_policy_denied"] += 1
                core.event(
                    EventKind.POLICY_DENY,
                    role="nhs",
                    stage="redirect",
                    src=inner_src,
                    dst=inner_dst,
                )
                return
        bits = config.redirect_prefix_v4 if inner_src.version == 4 else config.redirect_prefix_v6
        key = (
            network(inner_src, bits),
            network(inner_dst, bits),
        )
        if not self.limiter.allow(key, now):
            counters["redirect_rate_limited"] += 1
            return
        ti = Packet(
            PacketType.TRAFFIC_INDICATION,
            core.afn,
            pt,
            TRAFFIC_INDICATION_HOP_COUNT,
            core.nbma,
            own,
            inner_src,
            traffic_code=TrafficCode.REDIRECT,
            payload=bytes(head[:TRAFFIC_INDICATION_MAX_PAYLOAD]),
            extensions=core.extensions(),
        )
        core.send(in_nbma, ti)
        core.event(EventKind.REDIRECT, to=in_nbma, src=inner_src, dst=inner_dst)

    def forget(self, prefixes: tuple[Network, ...]) -> None:
        """A binding moved or went: the next hairpin towards it may redirect at once."""
        self.limiter.forget(lambda key: any(key[1].overlaps(p) for p in prefixes))

    # -- spoke ------------------------------------------------------------------------------
    def on_traffic_indication(self, pkt: Packet, src: Address, protected: bool, now: float) -> None:
        core = self.core
        config = core.config
        if not core.known(src, protected):
            core.drop(Drop.UNKNOWN_PEER, src, type="traffic_indication")
            return
        if not config.is_nhc or not config.shortcuts:
            core.drop(Drop.SHORTCUTS_DISABLED, src, type="traffic_indication")
            return
        addrs = inner_addresses(pkt.payload)
        if pkt.traffic_code != TrafficCode.REDIRECT or addrs is None:
            core.drop(Drop.MALFORMED, src, type="traffic_indication", code=pkt.traffic_code)
            return
        dst = addrs[1]
        if core.own.get(PROTOCOL_OF_VERSION[dst.version]) is None:
            core.drop(Drop.WRONG_PROTOCOL, src, type="traffic_indication")
            return
        if core.covering_protected(dst) is not None:
            core.stats.counters["redirect_for_own_prefix"] += 1
            return
        if not config.policy.allows(core.side_of(dst.version), dst):
            core.stats.counters["policy_deny_resolution"] += 1
            core.event(EventKind.POLICY_DENY, role="nhc", stage="redirect", dst=dst)
            return
        hit = core.shortcuts.table.lookup(dst)
        if hit is not None and not hit[1].host and hit[1].expires > now:
            core.stats.counters["redirect_shortcut_exists"] += 1
            return
        core.resolver.resolve(dst, now, "redirect")
