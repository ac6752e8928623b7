"""Static mappings, NHS routes, role changes and goodbyes."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
    SPOKE_LAN,
    SPOKE_NBMA,
    SPOKE_PROTO,
    events,
    feed,
    hub_config,
    of,
    only_sent,
    registration,
    resolution_request,
    spoke_config,
    started,
)
from test_engine_resolution import reply_for

from dmvpn_runtime.nhrp.engine import (
    AddMapping,
    AddRoute,
    Engine,
    IpsecUp,
    MappingType,
    NhsConfig,
    RemoveMapping,
    RemoveRoute,
    Role,
    StaticMapping,
)
from dmvpn_runtime.nhrp.wire import CieCode, PacketType, encode

PEER = StaticMapping(ip_address("172.16.0.50"), ip_address("203.0.113.50"))
LANS = ip_network("10.0.0.0/8")


def test_static_mappings_are_installed_replaced_and_removed() -> None:
    engine = Engine(spoke_config(static=(PEER,)))
    actions = engine.start(0.0)
    assert AddMapping(PEER.proto, PEER.nbma, MappingType.STATIC) in actions
    assert IpsecUp(PEER.nbma) in actions
    moved = StaticMapping(PEER.proto, ip_address("203.0.113.51"))
    actions = engine.reconfigure(1.0, spoke_config(static=(moved,)))
    assert RemoveMapping(PEER.proto, PEER.nbma, MappingType.STATIC) in actions
    assert AddMapping(PEER.proto, moved.nbma, MappingType.STATIC) in actions
    assert RemoveMapping(moved.proto, moved.nbma, MappingType.STATIC) in engine.stop(2.0)


def test_nhs_routes_follow_the_config() -> None:
    engine = Engine(spoke_config(nhs_routes=(LANS,)))
    assert AddRoute(LANS, HUB_PROTO) in engine.start(0.0)
    extra = ip_network("192.168.0.0/16")
    actions = engine.reconfigure(1.0, spoke_config(nhs_routes=(extra,)))
    assert RemoveRoute(LANS, HUB_PROTO) in actions and AddRoute(extra, HUB_PROTO) in actions


def test_a_hub_that_stops_serving_forgets_its_clients() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration())
    both_as_client = hub_config(
        role=Role.NHC, nhs=(NhsConfig(ip_address("172.16.0.9"), ip_address("198.51.100.9")),)
    )
    actions = hub.reconfigure(2.0, both_as_client)
    assert RemoveMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED) in actions


def test_registration_reply_refusing_one_prefix_is_logged() -> None:
    spoke = Engine(spoke_config())
    _dst, req = only_sent(spoke.start(0.0))
    cies = (req.cies[0], replace(req.cies[1], code=CieCode.UNIQUE_ADDRESS_ALREADY_REGISTERED))
    reply = replace(req, type=PacketType.REGISTRATION_REPLY, cies=cies)
    actions = spoke.packet_received(0.1, HUB_NBMA, encode(reply))
    assert events(actions, "registration_up")
    refused = events(actions, "registration_refused")
    assert refused and refused[0].fields["code"] == 14
    (nhs,) = spoke.nhs_states()
    assert nhs.state == "registered" and nhs.refused == (f"{SPOKE_LAN} code 14",)


def test_a_prefix_refused_on_every_refresh_is_logged_once_and_counted_each_time() -> None:
    """FRR's NHS answers every prefix CIE with code 4: the log says so when it starts or
    changes, not every holdtime/3; the counter keeps counting."""
    spoke = Engine(spoke_config())
    actions, now, logged = spoke.start(0.0), 0.0, []
    for code in (4, 4, 14, 0):  # the first registration, then three refreshes
        _dst, req = only_sent(actions)
        cies = (req.cies[0], replace(req.cies[1], code=code))
        reply = replace(req, type=PacketType.REGISTRATION_REPLY, cies=cies)
        answered = spoke.packet_received(now + 0.1, HUB_NBMA, encode(reply))
        logged += events(answered, "registration_refused")
        now = spoke.next_deadline()  # the refresh, at holdtime/3
        actions = spoke.timer_fired(now)
    assert [e.fields["code"] for e in logged] == [4, 14]
    assert spoke.stats()["counters"]["registration_cie_refused"] == 3
    assert spoke.nhs_states()[0].refused == ()  # accepted at last


def test_unanswered_purges_give_up() -> None:
    hub = started(hub_config())
    requester, r_nbma = ip_address("172.16.0.20"), ip_address("203.0.113.20")
    feed(hub, 0.0, r_nbma, registration(requester, r_nbma, ()))
    feed(hub, 0.0, SPOKE_NBMA, registration(unique=False))
    feed(hub, 1.0, r_nbma, resolution_request(ip_address("10.1.0.9"), requester, r_nbma))
    feed(
        hub,
        2.0,
        ip_address("203.0.113.99"),
        registration(nbma=ip_address("203.0.113.99"), unique=False),
    )
    fired = []
    while (deadline := hub.next_deadline()) is not None and deadline < 100:
        fired += hub.timer_fired(deadline)
    purges = sum(1 for a in fired if type(a).__name__ == "SendPacket")
    assert purges == 3  # the purge is retransmitted, then given up as "unanswered"
    assert any(e.fields.get("direction") == "unanswered" for e in events(fired))


def test_hub_registration_replaces_a_cached_binding() -> None:
    both = hub_config(
        role=Role.BOTH, nhs=(NhsConfig(ip_address("172.16.0.9"), ip_address("198.51.100.9")),)
    )
    hub = started(both)

    from dmvpn_runtime.nhrp.wire import decode

    req = next(
        decode(a.data) for a in hub.no_mapping(1.0, SPOKE_PROTO) if type(a).__name__ == "SendPacket"
    )
    feed(
        hub,
        1.1,
        ip_address("198.51.100.9"),
        reply_for(req, prefix_length=32, proto=SPOKE_PROTO, nbma=SPOKE_NBMA),
    )
    assert next(e for e in hub.cache_entries() if e.proto == SPOKE_PROTO).type == "cached"
    actions = feed(hub, 2.0, SPOKE_NBMA, registration())
    assert AddMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED) in actions
    assert next(e for e in hub.cache_entries() if e.proto == SPOKE_PROTO).type == "registered"
    assert of(actions, RemoveMapping)


def test_operator_clear_of_one_address_all_bindings_and_shortcuts() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration())
    actions = hub.clear_cache(2.0, SPOKE_PROTO)
    assert RemoveMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED) in actions
    assert not hub.cache_entries()
    spoke = started(spoke_config())
    _dst, req = only_sent(spoke.no_mapping(1.0, ip_address("10.2.0.7")))
    feed(spoke, 1.1, HUB_NBMA, reply_for(req))
    assert spoke.shortcuts()
    actions = spoke.clear_shortcuts(2.0)
    assert of(actions, RemoveRoute) and of(actions, RemoveMapping)
    assert not spoke.shortcuts()
    assert [e.type for e in spoke.cache_entries()] == ["nhs"]  # the NHS mapping stays
    spoke.clear_cache(3.0)
    assert [e.type for e in spoke.cache_entries()] == ["nhs"]  # configuration is not cleared
