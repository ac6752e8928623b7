"""Traffic Indication: what the hub sends, what a spoke does with it."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
    OTHER_LAN,
    OTHER_NBMA,
    OTHER_PROTO,
    SPOKE_LAN,
    SPOKE_NBMA,
    SPOKE_PROTO,
    events,
    feed,
    hub_config,
    only_sent,
    registered_hub,
    sent,
    spoke_config,
    started,
)

from dmvpn_runtime.ippacket import inner_addresses
from dmvpn_runtime.nhrp.engine import Policy, PolicyRule
from dmvpn_runtime.nhrp.wire import Packet, PacketType

SRC, DST = ip_address("10.1.0.5"), ip_address("10.2.0.7")
HEAD = bytes([0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0]) + SRC.packed + DST.packed + bytes(200)
CLIENTS = ((SPOKE_PROTO, SPOKE_NBMA, (SPOKE_LAN,)), (OTHER_PROTO, OTHER_NBMA, (OTHER_LAN,)))


def test_hairpin_sends_a_traffic_indication_quoting_the_packet() -> None:
    hub = registered_hub(*CLIENTS)
    dst, ti = only_sent(hub.hairpin(1.0, SPOKE_NBMA, OTHER_NBMA, SRC, DST, HEAD))
    assert dst == SPOKE_NBMA
    assert ti.type == PacketType.TRAFFIC_INDICATION and ti.hop_count == 1
    assert (ti.src_nbma, ti.src_proto, ti.dst_proto) == (HUB_NBMA, HUB_PROTO, SRC)
    assert ti.payload == HEAD[:128] and ti.traffic_code == 0


def test_rate_limit_is_per_pair_of_prefixes() -> None:
    hub = registered_hub(*CLIENTS)
    assert sent(hub.hairpin(1.0, SPOKE_NBMA, OTHER_NBMA, SRC, DST, HEAD))
    # Same /24 pair: suppressed until the interval (15 s) is over.
    assert not sent(
        hub.hairpin(
            5.0, SPOKE_NBMA, OTHER_NBMA, ip_address("10.1.0.6"), ip_address("10.2.0.8"), HEAD
        )
    )
    assert sent(hub.hairpin(5.0, SPOKE_NBMA, OTHER_NBMA, SRC, ip_address("10.3.0.1"), HEAD))
    assert sent(hub.hairpin(16.5, SPOKE_NBMA, OTHER_NBMA, SRC, DST, HEAD))
    assert hub.stats()["counters"]["redirect_rate_limited"] == 1


def test_no_redirect_when_disabled_or_denied() -> None:
    hub = started(hub_config(redirect=False))
    assert not sent(hub.hairpin(1.0, SPOKE_NBMA, OTHER_NBMA, SRC, DST, HEAD))
    deny = Policy(rules=(PolicyRule("deny", ("10.1.0.0/24",), ("10.2.0.0/24",)),))
    hub = started(hub_config(policy=deny))
    actions = hub.hairpin(1.0, SPOKE_NBMA, OTHER_NBMA, SRC, DST, HEAD)
    assert not sent(actions) and events(actions, "policy_deny")


def traffic_indication(payload: bytes = HEAD[:128]) -> Packet:
    return Packet(
        PacketType.TRAFFIC_INDICATION,
        hop_count=1,
        src_nbma=HUB_NBMA,
        src_proto=HUB_PROTO,
        dst_proto=SRC,
        payload=payload,
    )


def test_spoke_resolves_the_destination_of_the_quoted_packet() -> None:
    spoke = started(spoke_config())
    dst, req = only_sent(feed(spoke, 1.0, HUB_NBMA, traffic_indication()))
    assert dst == HUB_NBMA and req.type == PacketType.RESOLUTION_REQUEST
    assert req.dst_proto == DST and req.src_proto == SPOKE_PROTO
    # A second indication while the request is pending asks nothing more.
    assert not sent(feed(spoke, 1.2, HUB_NBMA, traffic_indication()))


def test_spoke_ignores_indications_it_cannot_or_may_not_act_on() -> None:
    spoke = started(spoke_config(shortcuts=False))
    assert not sent(feed(spoke, 1.0, HUB_NBMA, traffic_indication()))
    assert spoke.stats()["drops"]["shortcuts_disabled"] == 1
    spoke = started(spoke_config())
    assert not sent(feed(spoke, 1.0, HUB_NBMA, traffic_indication(b"\x00" * 10)))
    assert spoke.stats()["drops"]["malformed"] == 1
    deny = Policy(rules=(PolicyRule("deny", ("10.1.0.0/24",), ("10.2.0.0/24",)),))
    spoke = started(spoke_config(policy=deny))
    actions = feed(spoke, 1.0, HUB_NBMA, traffic_indication())
    assert not sent(actions) and events(actions, "policy_deny")


def test_inner_addresses_of_ipv4_and_ipv6_packets() -> None:
    assert inner_addresses(HEAD) == (SRC, DST)
    a, b = ip_address("fd10:1::5"), ip_address("fd10:2::7")
    v6 = bytes([0x60]) + bytes(7) + a.packed + b.packed
    assert inner_addresses(v6) == (a, b)
    assert inner_addresses(b"\x45" + bytes(10)) is None
    assert inner_addresses(replace(traffic_indication(), payload=b"").payload) is None
