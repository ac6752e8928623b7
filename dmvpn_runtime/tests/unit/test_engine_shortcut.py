"""Cached bindings and shortcuts: replacement, IPsec-gated promotion, caps, use."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from enginekit import (
    HUB_NBMA,
    OTHER_NBMA,
    OTHER_PROTO,
    events,
    feed,
    of,
    only_sent,
    sent,
    spoke_config,
    started,
)
from test_engine_resolution import reply_for

from dmvpn_runtime.nhrp.engine import (
    AddMapping,
    AddRoute,
    IpsecDown,
    IpsecUp,
    Limits,
    MappingType,
    RemoveRoute,
)
from dmvpn_runtime.nhrp.wire import PacketType, encode

TARGET = ip_address("10.2.0.7")
PREFIX = ip_network("10.2.0.0/24")
MOVED = ip_address("203.0.113.99")


def resolve(spoke, now=1.0, target=TARGET, **kw):
    _d, req = only_sent(spoke.no_mapping(now, target))
    return feed(spoke, now + 0.1, HUB_NBMA, reply_for(req, **kw))


def test_a_newer_answer_with_another_nbma_replaces_the_binding_keeps_the_route() -> None:
    spoke = started(spoke_config())
    resolve(spoke)
    spoke.timer_fired(500.0)  # the first request is long finished
    actions = resolve(spoke, now=500.0, target=ip_address("10.2.0.9"), nbma=MOVED)
    assert AddMapping(OTHER_PROTO, MOVED, MappingType.CACHED) in actions
    assert IpsecDown(OTHER_NBMA) in actions
    assert not of(actions, RemoveRoute)  # the route via the overlay address stays valid
    assert events(actions, "mapping_change")[0].fields["new"] == MOVED


def test_require_ipsec_promotes_the_new_binding_only_when_authorised_at_sa_up() -> None:
    decisions = []

    class ByIdentity:
        def authorise_registration(self, *a):
            return True

        def authorise_resolution_reply(self, nbma, proto, prefixes, identity):
            decisions.append((nbma, proto, identity))
            return identity == "CN=spoke2" or "wrong peer"

    spoke = started(spoke_config(require_ipsec=True), authoriser=ByIdentity())
    _d, req = only_sent(spoke.no_mapping(1.0, TARGET))
    actions = spoke.packet_received(
        1.1,
        HUB_NBMA,
        __import__("dmvpn_runtime.nhrp.wire", fromlist=["encode"]).encode(reply_for(req)),
        True,
    )
    assert IpsecUp(OTHER_NBMA) in actions
    assert not of(actions, AddMapping) and not of(actions, AddRoute)
    assert "pending" in next(e for e in spoke.cache_entries() if e.proto == OTHER_PROTO).flags
    # The wrong peer comes up: refused, the pending binding goes.
    actions = spoke.ipsec_up(2.0, OTHER_NBMA, "CN=mallory")
    assert events(actions, "auth_failure") and not of(actions, AddRoute)
    assert not [e for e in spoke.cache_entries() if e.proto == OTHER_PROTO]
    # Again, and this time the right peer: mapping first, then the route.
    spoke.ipsec_down(3.0, OTHER_NBMA)
    spoke.timer_fired(40.0)
    _d, req = only_sent(spoke.no_mapping(40.0, TARGET))
    spoke.packet_received(40.1, HUB_NBMA, encode(reply_for(req)), True)
    actions = spoke.ipsec_up(41.0, OTHER_NBMA, "CN=spoke2")
    mapping = AddMapping(OTHER_PROTO, OTHER_NBMA, MappingType.CACHED)
    assert actions.index(mapping) < actions.index(AddRoute(PREFIX, OTHER_PROTO))
    assert decisions[-1] == (OTHER_NBMA, OTHER_PROTO, "CN=spoke2")


def test_a_binding_that_never_gets_its_sa_is_dropped_after_30_s() -> None:
    spoke = started(spoke_config(require_ipsec=True))
    _d, req = only_sent(spoke.no_mapping(1.0, TARGET))
    spoke.packet_received(1.1, HUB_NBMA, encode(reply_for(req)), True)
    actions = spoke.timer_fired(31.2)
    assert events(actions, "shortcut_down")[0].fields["reason"] == "ipsec_timeout"
    assert not spoke.shortcuts()


def test_cached_entries_per_source_are_capped() -> None:
    spoke = started(spoke_config(limits=Limits(cache_entries_per_source=1)))
    resolve(spoke)
    actions = resolve(
        spoke,
        now=2.0,
        target=ip_address("10.3.0.1"),
        proto=ip_address("172.16.0.13"),
        nbma=ip_address("203.0.113.13"),
    )
    assert not of(actions, AddMapping)
    assert spoke.stats()["counters"]["cache_cap_reached"] == 1


def test_use_reported_by_overlay_address_refreshes_too() -> None:
    spoke = started(spoke_config())
    resolve(spoke)  # installed at 1.1 s, holding 600 s: refresh point at 401.1 s
    assert not sent(spoke.traffic_used(300.0, ip_address("10.2.0.99")))  # too early
    # Past the refresh point, traffic to an address behind the shortcut:
    actions = spoke.traffic_used(402.0, ip_address("10.2.0.99"))
    dst, req = only_sent(actions)
    assert dst == OTHER_NBMA and req.type == PacketType.RESOLUTION_REQUEST  # straight to egress


def test_a_refresh_answered_negatively_removes_the_shortcut() -> None:
    spoke = started(spoke_config())
    resolve(spoke)
    actions = spoke.traffic_used(402.0, OTHER_NBMA)  # use reported by NBMA peer
    _dst, req = only_sent(actions)
    actions = feed(spoke, 402.1, OTHER_NBMA, reply_for(req, code=4))
    assert RemoveRoute(PREFIX, OTHER_PROTO) in actions
    assert not sent(spoke.no_mapping(403.0, TARGET))  # and it is cached as negative
