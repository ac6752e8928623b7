"""An NHS forwards along the routed path (RFC 2332 §5.2.1): routes given by the driver.

Cisco and FRR spokes register only their overlay address; the hub routes their LANs
via that address. Without the routes the hub could only answer "no binding" for them.
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
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
    registration,
    resolution_request,
    sent,
    spoke_config,
    started,
)

from dmvpn_runtime.nhrp.engine import Engine, Policy, PolicyRule, SendPacket
from dmvpn_runtime.nhrp.wire import CieCode, ForwardTransitNhs, Packet, PacketType
from dmvpn_runtime.nhrp.wire.constants import PURGE_FLAG_NO_REPLY

BEHIND_OTHER = ip_network("10.2.0.0/24")  # the other spoke's LAN, not registered
TARGET = ip_address("10.2.0.7")
# Spokes that register only their own address, as Cisco and FRR spokes do.
BARE = ((SPOKE_PROTO, SPOKE_NBMA, (SPOKE_LAN,)), (OTHER_PROTO, OTHER_NBMA, ()))


def test_a_routed_prefix_is_forwarded_to_the_spoke_it_is_routed_through() -> None:
    hub = registered_hub(*BARE)
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    dst, fwd = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == OTHER_NBMA
    assert fwd.type == PacketType.RESOLUTION_REQUEST and fwd.dst_proto == TARGET
    assert [c.client_proto for c in fwd.find(ForwardTransitNhs).cies] == [HUB_PROTO]
    assert hub.stats()["counters"]["resolution_by_route"] == 1
    assert hub.stats()["gauges"]["routes"] == 1


def test_without_the_route_or_after_it_is_withdrawn_there_is_no_binding() -> None:
    hub = registered_hub(*BARE)
    _dst, nak = only_sent(feed(hub, 1.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert nak.cies[0].code == CieCode.NO_BINDING_EXISTS
    hub.routes_changed(2.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    hub.routes_changed(3.0, [], [BEHIND_OTHER])
    _dst, nak = only_sent(feed(hub, 4.0, SPOKE_NBMA, resolution_request(TARGET, request_id=501)))
    assert nak.cies[0].code == CieCode.NO_BINDING_EXISTS
    assert hub.stats()["gauges"]["routes"] == 0


def test_a_route_via_an_address_that_is_not_a_registered_client_is_not_followed() -> None:
    hub = registered_hub(*BARE)
    hub.routes_changed(1.0, [(BEHIND_OTHER, ip_address("172.16.0.99"))], [])
    _dst, nak = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert nak.cies[0].code == CieCode.NO_BINDING_EXISTS


def test_the_longest_match_wins_between_registrations_and_routes() -> None:
    # The requester registered 10.1.0.0/24; a wider route via the other spoke loses to it,
    # a narrower one inside it wins.
    hub = registered_hub(*BARE)
    hub.routes_changed(
        1.0,
        [(ip_network("10.0.0.0/8"), OTHER_PROTO), (ip_network("10.1.0.128/25"), OTHER_PROTO)],
        [],
    )
    lan_host = ip_address("10.1.0.7")
    dst, pkt = only_sent(feed(hub, 2.0, OTHER_NBMA, resolution_request(lan_host, OTHER_PROTO)))
    assert dst == SPOKE_NBMA and pkt.type == PacketType.RESOLUTION_REQUEST
    routed = ip_address("10.1.0.200")
    dst, pkt = only_sent(feed(hub, 3.0, SPOKE_NBMA, resolution_request(routed, request_id=9)))
    assert dst == OTHER_NBMA and pkt.type == PacketType.RESOLUTION_REQUEST


def test_answer_mode_answers_with_the_routed_prefix() -> None:
    hub = registered_hub(*BARE)
    hub.reconfigure(1.0, hub_config(resolution_mode="answer"))
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    dst, reply = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET)))
    cie = reply.cies[0]
    assert dst == SPOKE_NBMA and reply.type == PacketType.RESOLUTION_REPLY
    assert (cie.code, cie.prefix_length, cie.client_proto, cie.client_nbma) == (
        0,
        24,
        OTHER_PROTO,
        OTHER_NBMA,
    )


def test_routes_replace_earlier_ones_and_survive_a_restart_of_the_engine() -> None:
    hub = registered_hub(*BARE)
    hub.routes_changed(1.0, [(BEHIND_OTHER, ip_address("172.16.0.99"))], [])
    hub.routes_changed(1.5, [(BEHIND_OTHER, OTHER_PROTO)], [])  # a new next hop
    hub.stop(2.0)
    hub.start(3.0)
    for client, (proto, nbma, prefixes) in enumerate(BARE):
        feed(hub, 3.0, nbma, registration(proto, nbma, prefixes, request_id=40 + client))
    dst, _fwd = only_sent(feed(hub, 4.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == OTHER_NBMA  # the routing table is the kernel's, not the engine's state


def test_the_routes_view_names_the_client_each_next_hop_is() -> None:
    hub = registered_hub(*BARE)
    stranger = ip_address("172.16.0.99")
    hub.routes_changed(
        1.0, [(BEHIND_OTHER, OTHER_PROTO), (ip_network("10.9.0.0/16"), stranger)], []
    )
    assert [v.as_dict() for v in hub.routes()] == [
        {"prefix": "10.2.0.0/24", "via": str(OTHER_PROTO), "client_nbma": str(OTHER_NBMA)},
        {"prefix": "10.9.0.0/16", "via": str(stranger), "client_nbma": None},
    ]


def test_a_spoke_keeps_routes_but_does_not_forward() -> None:
    spoke = started(spoke_config())
    spoke.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    assert spoke.stats()["gauges"]["routes"] == 1
    # Not an NHS: a request for the routed LAN gets "no binding", not forwarded.
    request = resolution_request(TARGET, OTHER_PROTO, OTHER_NBMA)
    dst, nak = only_sent(feed(spoke, 2.0, HUB_NBMA, request))
    assert dst == HUB_NBMA and nak.type == PacketType.RESOLUTION_REPLY
    assert nak.cies[0].code == CieCode.NO_BINDING_EXISTS


@pytest.mark.parametrize(
    ("added", "removed"),
    [
        ([("10.2.0.0/24", OTHER_PROTO)], []),
        ([(BEHIND_OTHER, "172.16.0.12")], []),
        ([(BEHIND_OTHER, ip_address("fd00::1"))], []),
        ([], ["10.2.0.0/24"]),
    ],
)
def test_bad_routes_are_refused_with_a_type_error_and_nothing_changes(added, removed) -> None:
    hub = registered_hub(*BARE)
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    with pytest.raises(TypeError):
        hub.routes_changed(2.0, added, removed)
    assert hub.stats()["gauges"]["routes"] == 1
    dst, _fwd = only_sent(feed(hub, 3.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == OTHER_NBMA


# -- the hub's policy counts routed prefixes as the client's -------------------------------
SITE_POLICY = Policy(
    groups={"site1": ("10.1.0.0/24",), "site2": ("10.2.0.0/24",)},
    rules=(PolicyRule("deny", ("site1",), ("site2",)),),
)
# Both spokes register only their address; the hub routes both LANs through them.
ADDRESS_ONLY = ((SPOKE_PROTO, SPOKE_NBMA, ()), (OTHER_PROTO, OTHER_NBMA, ()))


def policy_hub() -> Engine:
    hub = registered_hub(*ADDRESS_ONLY)
    hub.reconfigure(0.5, hub_config(policy=SITE_POLICY))
    hub.routes_changed(1.0, [(SPOKE_LAN, SPOKE_PROTO), (BEHIND_OTHER, OTHER_PROTO)], [])
    return hub


def test_a_denied_pair_is_refused_though_the_requester_registered_no_prefix() -> None:
    # Without the routes the requester would be only its overlay address, which no rule
    # names, and the hub would forward.
    hub = policy_hub()
    dst, reply = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == SPOKE_NBMA and reply.type == PacketType.RESOLUTION_REPLY
    assert reply.cies[0].code == CieCode.ADMINISTRATIVELY_PROHIBITED
    assert hub.stats()["counters"]["policy_deny_resolution"] == 1


def test_no_redirect_for_a_denied_pair_between_routed_lans() -> None:
    hub = policy_hub()
    head = bytes(20)
    actions = hub.hairpin(
        2.0, SPOKE_NBMA, OTHER_NBMA, ip_address("10.1.0.5"), ip_address("10.2.0.7"), head
    )
    assert not [a for a in actions if isinstance(a, SendPacket)]
    assert hub.stats()["counters"]["redirect_policy_denied"] == 1
    # An allowed pair is still redirected.
    actions = hub.hairpin(
        3.0, SPOKE_NBMA, OTHER_NBMA, ip_address("10.1.0.5"), ip_address("10.9.0.7"), head
    )
    assert [a for a in actions if isinstance(a, SendPacket)]


def test_a_withdrawn_route_no_longer_speaks_for_the_client() -> None:
    hub = policy_hub()
    hub.routes_changed(2.0, [], [SPOKE_LAN])
    dst, fwd = only_sent(feed(hub, 3.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == OTHER_NBMA and fwd.type == PacketType.RESOLUTION_REQUEST


def test_a_roaming_client_is_purged_at_its_resolvers_with_its_routed_prefixes() -> None:
    hub = started(hub_config())
    for i, (proto, nbma, prefixes) in enumerate(BARE):  # without the U flag: may move
        feed(hub, 0.0, nbma, registration(proto, nbma, prefixes, unique=False, request_id=i))
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET))  # spoke resolves by route
    moved = ip_address("203.0.113.99")
    registered_again = registration(OTHER_PROTO, moved, (), unique=False, request_id=77)
    actions = feed(hub, 3.0, moved, registered_again)
    purges = [(d, p) for d, p in sent(actions) if p.type == PacketType.PURGE_REQUEST]
    assert len(purges) == 1, purges
    dst, purge = purges[0]
    assert dst == SPOKE_NBMA and purge.dst_proto == SPOKE_PROTO
    assert {(c.client_proto, c.prefix_length) for c in purge.cies} == {
        (OTHER_PROTO, 32),
        (BEHIND_OTHER.network_address, 24),
    }


# -- a route that moves or goes is purged where it was resolved -----------------------------
# A dual-homed site: its LAN is routed via one spoke, then (failover by routing) another.
THIRD_PROTO = ip_address("172.16.0.13")
THIRD_NBMA = ip_address("203.0.113.13")
DUAL_HOMED = (*BARE, (THIRD_PROTO, THIRD_NBMA, ()))


def hub_with_a_resolved_route() -> Engine:
    """The requester (SPOKE) resolved TARGET through the route via OTHER."""
    hub = registered_hub(*DUAL_HOMED)
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    dst, _fwd = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(TARGET)))
    assert dst == OTHER_NBMA
    return hub


def route_purges(actions: list) -> list[tuple]:
    """(NBMA, packet) of each Purge Request sent."""
    return [(d, p) for d, p in sent(actions) if p.type == PacketType.PURGE_REQUEST]


@pytest.mark.parametrize(
    ("added", "removed"),
    [([(BEHIND_OTHER, THIRD_PROTO)], []), ([], [BEHIND_OTHER])],
    ids=["moved", "withdrawn"],
)
def test_a_route_that_moves_or_goes_is_purged_where_it_was_resolved(added, removed) -> None:
    hub = hub_with_a_resolved_route()
    actions = hub.routes_changed(3.0, added, removed)
    ((dst, purge),) = route_purges(actions)
    assert dst == SPOKE_NBMA
    assert (purge.src_proto, purge.dst_proto) == (HUB_PROTO, SPOKE_PROTO)
    assert not purge.flags & PURGE_FLAG_NO_REPLY  # acknowledged, retransmitted until then
    # The prefix only: OTHER's own binding still holds.
    assert [(c.client_proto, c.prefix_length, c.client_nbma) for c in purge.cies] == [
        (BEHIND_OTHER.network_address, 24, OTHER_NBMA)
    ]
    (event,) = events(actions, "purge")
    assert event.fields["reason"] == "route_changed" and event.fields["to"] == SPOKE_NBMA
    assert event.fields["prefixes"] == ["10.2.0.0/24"]
    assert hub.stats()["counters"]["purge_route_changed"] == 1
    # The spoke's Purge Reply settles it: nothing is retransmitted.
    reply = Packet(
        PacketType.PURGE_REPLY,
        src_nbma=SPOKE_NBMA,
        src_proto=SPOKE_PROTO,
        dst_proto=HUB_PROTO,
        request_id=purge.request_id,
        cies=purge.cies,
    )
    feed(hub, 3.1, SPOKE_NBMA, reply)
    assert not sent(hub.timer_fired(10.0))


def test_after_the_move_the_next_resolution_goes_to_the_new_next_hop() -> None:
    hub = hub_with_a_resolved_route()
    hub.routes_changed(3.0, [(BEHIND_OTHER, THIRD_PROTO)], [])
    dst, fwd = only_sent(feed(hub, 4.0, SPOKE_NBMA, resolution_request(TARGET, request_id=9)))
    assert dst == THIRD_NBMA and fwd.type == PacketType.RESOLUTION_REQUEST


def test_a_route_nobody_resolved_through_moves_without_a_purge() -> None:
    hub = registered_hub(*DUAL_HOMED)
    hub.routes_changed(1.0, [(BEHIND_OTHER, OTHER_PROTO)], [])
    assert not sent(hub.routes_changed(2.0, [(BEHIND_OTHER, THIRD_PROTO)], []))
    assert not sent(hub.routes_changed(3.0, [], [BEHIND_OTHER]))
    assert "purge_route_changed" not in hub.stats()["counters"]


def test_a_resolver_of_the_old_next_hop_is_purged_even_for_a_prefix_it_did_not_ask_for() -> None:
    # Resolvers are not recorded with what they resolved: every resolver of the client is
    # told, in one purge naming each prefix that moved away from it.
    hub = hub_with_a_resolved_route()
    other_lan = ip_network("10.5.0.0/16")
    hub.routes_changed(2.5, [(other_lan, OTHER_PROTO)], [])
    actions = hub.routes_changed(3.0, [(BEHIND_OTHER, THIRD_PROTO)], [other_lan])
    ((dst, purge),) = route_purges(actions)
    assert dst == SPOKE_NBMA
    assert sorted((c.client_proto, c.prefix_length) for c in purge.cies) == [
        (BEHIND_OTHER.network_address, 24),
        (other_lan.network_address, 16),
    ]


def test_a_route_that_moves_back_within_one_change_is_not_purged() -> None:
    hub = hub_with_a_resolved_route()
    there_and_back = [(BEHIND_OTHER, THIRD_PROTO), (BEHIND_OTHER, OTHER_PROTO)]
    assert not sent(hub.routes_changed(3.0, there_and_back, []))
    # Withdrawn and added again via another next hop in one change: one purge, one CIE.
    ((_dst, purge),) = route_purges(
        hub.routes_changed(4.0, [(BEHIND_OTHER, THIRD_PROTO)], [BEHIND_OTHER])
    )
    assert [(c.client_proto, c.prefix_length) for c in purge.cies] == [
        (BEHIND_OTHER.network_address, 24)
    ]
