"""The registration server, packet by packet."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
    OTHER_NBMA,
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
    sent,
    started,
)

from dmvpn_runtime.nhrp.engine import (
    AddMapping,
    AddRoute,
    IpsecDown,
    Limits,
    MappingType,
    RemoveMapping,
    RemoveRoute,
)
from dmvpn_runtime.nhrp.wire import (
    CieCode,
    End,
    ForwardTransitNhs,
    NatAddress,
    PacketType,
    ResponderAddress,
    ReverseTransitNhs,
)

NATTED = ip_address("198.51.100.200")


def code_of(actions) -> list[int]:
    return [c.code for c in only_sent(actions)[1].cies]


def test_accepted_registration_maps_the_client_and_echoes_extensions_in_order() -> None:
    hub = started(hub_config())
    actions = feed(hub, 1.0, SPOKE_NBMA, registration())
    assert AddMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED) in actions
    dst, reply = only_sent(actions)
    assert dst == SPOKE_NBMA and reply.type == PacketType.REGISTRATION_REPLY
    assert reply.request_id == 100 and [c.code for c in reply.cies] == [0, 0]
    assert [type(e) for e in reply.extensions] == [
        ResponderAddress,
        ForwardTransitNhs,
        ReverseTransitNhs,
        NatAddress,
        End,
    ]
    responder = reply.find(ResponderAddress).cie
    assert (responder.client_nbma, responder.client_proto) == (HUB_NBMA, HUB_PROTO)
    # Not NATed: the NAT extension is echoed as it came.
    assert len(reply.find(NatAddress).cies) == 1
    entry = next(e for e in hub.cache_entries() if e.proto == SPOKE_PROTO)
    assert entry.type == "registered" and entry.expires == 601.0
    assert entry.prefixes == (SPOKE_LAN,) and "unique" in entry.flags
    assert events(actions, "registration_up")


def test_a_client_that_does_not_know_our_address_learns_it_from_the_reply() -> None:
    """FRR's "nhs dynamic" spoke registers with its own address as the destination and
    takes the NHS's overlay address from the reply's destination field."""
    hub = started(hub_config())
    request = replace(registration(), dst_proto=SPOKE_PROTO)
    _dst, reply = only_sent(feed(hub, 1.0, SPOKE_NBMA, request))
    assert [c.code for c in reply.cies] == [0, 0]
    assert (reply.src_proto, reply.dst_proto) == (SPOKE_PROTO, HUB_PROTO)


def test_natted_client_gets_its_post_nat_address_in_the_reply() -> None:
    hub = started(hub_config())
    dst, reply = only_sent(feed(hub, 1.0, NATTED, registration()))
    assert dst == NATTED  # the reply goes where the request came from
    cies = reply.find(NatAddress).cies
    assert (cies[-1].client_nbma, cies[-1].client_proto) == (NATTED, SPOKE_PROTO)
    entry = next(e for e in hub.cache_entries() if e.proto == SPOKE_PROTO)
    assert (entry.nbma, entry.claimed_nbma) == (NATTED, SPOKE_NBMA)


def test_refresh_from_the_same_nbma_extends_without_new_mapping() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration(request_id=1))
    actions = feed(hub, 200.0, SPOKE_NBMA, registration(request_id=2))
    assert code_of(actions) == [0, 0]
    assert not of(actions, AddMapping) and not events(actions, "registration_up")
    entry = next(e for e in hub.cache_entries() if e.proto == SPOKE_PROTO)
    assert entry.expires == 800.0


def test_unique_address_held_by_another_nbma_gets_code_14() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration())
    actions = feed(hub, 2.0, OTHER_NBMA, registration(nbma=OTHER_NBMA))
    assert code_of(actions) == [14, 14]
    assert not of(actions, AddMapping)
    # A non-unique request for a unique holder is refused too (RFC 2332 §5.2.3).
    actions = feed(hub, 3.0, OTHER_NBMA, registration(nbma=OTHER_NBMA, unique=False))
    assert code_of(actions)[0] == 14
    # Once the holder expired, the address is free.
    hub.timer_fired(700.0)
    actions = feed(hub, 700.0, OTHER_NBMA, registration(nbma=OTHER_NBMA))
    assert code_of(actions) == [0, 0]


def test_non_unique_roaming_replaces_the_binding_and_purges_resolvers() -> None:
    hub = started(hub_config())
    requester = ip_address("172.16.0.20")
    feed(
        hub,
        0.0,
        ip_address("203.0.113.20"),
        registration(requester, ip_address("203.0.113.20"), ()),
    )
    feed(hub, 0.0, SPOKE_NBMA, registration(unique=False))
    # Someone resolves the client through the hub...
    feed(
        hub,
        1.0,
        ip_address("203.0.113.20"),
        resolution_request(ip_address("10.1.0.9"), requester, ip_address("203.0.113.20")),
    )
    # ...then the client comes back from another address.
    actions = feed(hub, 2.0, OTHER_NBMA, registration(nbma=OTHER_NBMA, unique=False))
    reply = next(p for _d, p in sent(actions) if p.type == PacketType.REGISTRATION_REPLY)
    assert [c.code for c in reply.cies] == [0, 0]
    assert AddMapping(SPOKE_PROTO, OTHER_NBMA, MappingType.REGISTERED) in actions
    assert IpsecDown(SPOKE_NBMA) in actions  # nothing maps the old address any more
    change = events(actions, "mapping_change")[0].fields
    assert (change["old"], change["new"]) == (SPOKE_NBMA, OTHER_NBMA)
    purges = [(d, p) for d, p in sent(actions) if p.type == PacketType.PURGE_REQUEST]
    assert len(purges) == 1
    dst, purge = purges[0]
    assert dst == ip_address("203.0.113.20") and purge.dst_proto == requester
    assert {(c.client_proto, c.prefix_length) for c in purge.cies} == {
        (SPOKE_PROTO, 32),
        (SPOKE_LAN.network_address, 24),
    }


def test_authoriser_refusal_gets_code_4_and_sees_the_ipsec_identity() -> None:
    seen = []

    class OnlyCertified:
        def authorise_registration(self, nbma, proto, prefixes, ipsec_identity):
            seen.append((nbma, proto, tuple(prefixes), ipsec_identity))
            return ipsec_identity == "CN=spoke1" or "certificate does not cover"

        def authorise_resolution_reply(self, nbma, proto, prefixes, ipsec_identity):
            return True

    hub = started(hub_config(), authoriser=OnlyCertified())
    actions = feed(hub, 1.0, SPOKE_NBMA, registration())
    assert code_of(actions) == [4, 4]
    assert (
        events(actions, "registration_refused")[0].fields["reason"] == "certificate does not cover"
    )
    hub.ipsec_up(2.0, SPOKE_NBMA, identity="CN=spoke1")
    actions = feed(hub, 3.0, SPOKE_NBMA, registration(request_id=101))
    assert code_of(actions) == [0, 0]
    assert seen[-1] == (
        SPOKE_NBMA,
        SPOKE_PROTO,
        (ip_network("172.16.0.11/32"), SPOKE_LAN),
        "CN=spoke1",
    )


def test_cache_cap_per_source_gets_code_5() -> None:
    hub = started(hub_config(limits=Limits(cache_entries_per_source=3)))
    many = tuple(ip_network(f"10.1.{i}.0/24") for i in range(5))
    actions = feed(hub, 1.0, SPOKE_NBMA, registration(prefixes=many))
    assert set(code_of(actions)) == {5}
    assert not list(hub.cache_entries())


def test_prefix_held_by_another_client_gets_code_14_for_that_cie_only() -> None:
    hub = started(hub_config())
    feed(hub, 0.0, OTHER_NBMA, registration(ip_address("172.16.0.12"), OTHER_NBMA, (SPOKE_LAN,)))
    actions = feed(
        hub, 1.0, SPOKE_NBMA, registration(prefixes=(SPOKE_LAN, ip_network("10.9.0.0/24")))
    )
    assert code_of(actions) == [0, 14, 0]


def test_malformed_prefix_cie_gets_code_4() -> None:
    hub = started(hub_config())
    bad = registration()
    bad = replace(
        bad, cies=(bad.cies[0], replace(bad.cies[1], client_proto=None, prefix_length=40))
    )
    assert code_of(feed(hub, 1.0, SPOKE_NBMA, bad)) == [0, CieCode.ADMINISTRATIVELY_PROHIBITED]


def test_registrations_are_rate_limited_per_source() -> None:
    hub = started(hub_config(limits=Limits(registrations_per_s=1.0, registration_burst=3)))
    replies = 0
    for i in range(10):
        replies += len(sent(feed(hub, 1.0, SPOKE_NBMA, registration(request_id=i))))
    assert replies == 3
    assert hub.stats()["drops"]["rate_limited"] == 7
    assert (
        len(
            sent(
                feed(hub, 1.0, OTHER_NBMA, registration(ip_address("172.16.0.12"), OTHER_NBMA, ()))
            )
        )
        == 1
    )


def test_a_spoke_refuses_registrations() -> None:
    from enginekit import spoke_config

    spoke = started(spoke_config())
    actions = feed(spoke, 1.0, OTHER_NBMA, registration(nbma=OTHER_NBMA))
    assert not sent(actions)
    assert spoke.stats()["drops"]["not_nhs"] == 1


def test_ipsec_down_removes_that_nbmas_registrations() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration())
    actions = hub.ipsec_down(2.0, SPOKE_NBMA)
    assert RemoveMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED) in actions
    assert events(actions, "registration_down")[0].fields["reason"] == "ipsec_down"
    assert not hub.cache_entries()


def test_registered_prefixes_are_routed_via_the_client_and_unrouted_when_it_goes() -> None:
    hub = started(hub_config(holdtime=600))
    actions = feed(hub, 1.0, SPOKE_NBMA, registration())
    add = AddMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED)
    route = AddRoute(SPOKE_LAN, SPOKE_PROTO)
    assert route in actions and actions.index(add) < actions.index(route)  # mapping first
    # Expiry (the registration's holding time) takes the route before the mapping.
    gone = hub.timer_fired(2.0 + 7200)
    removal = RemoveRoute(SPOKE_LAN, SPOKE_PROTO)
    assert removal in gone
    assert gone.index(removal) < gone.index(
        RemoveMapping(SPOKE_PROTO, SPOKE_NBMA, MappingType.REGISTERED)
    )


def test_prefix_routes_can_be_left_to_a_routing_protocol() -> None:
    hub = started(hub_config(route_registered_prefixes=False))
    actions = feed(hub, 1.0, SPOKE_NBMA, registration())
    assert not of(actions, AddRoute)
