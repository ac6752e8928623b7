"""Phase 3 with spokes that register only their own address (as Cisco and FRR spokes do):
the hub finds the egress for a LAN by its routes (RFC 2332 §5.2.1, the routed path)."""

from __future__ import annotations

from ipaddress import ip_network

from nhrpsim import Net, Node, dual_stack_star, hub_config, spoke_config, star

from dmvpn_runtime.nhrp.wire import CieCode, PacketType

S2_LAN = ip_network("10.2.0.0/24")
SITE = ip_network("10.1.0.0/24")


def feed_routes(net: Net, hub: Node) -> None:
    """What dmvpnd's route watcher hands the engine: the hub's routes via the tunnel."""
    net.apply(hub, hub.engine.routes_changed(net.now, list(hub.routes.items()), []))


def replies_to(net: Net, name: str) -> list:
    return [
        w for w in net.wire if w.receiver == name and w.packet.type == PacketType.RESOLUTION_REPLY
    ]


def test_the_egress_found_by_route_answers_and_both_directions_go_direct(net: Net) -> None:
    (hub,), (s1, s2) = star(net, spokes=2, spoke_kw={"register_prefixes": False})
    net.run(until=2)
    assert not any(e.prefixes for e in hub.engine.cache_entries())  # addresses only
    feed_routes(net, hub)
    first = net.ping("s1", "10.1.0.5", "10.2.0.7")
    assert first.path == ["s1", "hub1", "s2"]
    net.run(until=5)
    forwarded = [
        w
        for w in net.wire
        if w.sender == "hub1"
        and w.receiver == "s2"
        and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert forwarded, "the hub forwarded s1's request to s2, the next hop of its route"
    (answer,) = replies_to(net, "s1")
    assert answer.sender == "s2" and answer.packet.cies[0].prefix_length == 24
    assert s1.eroutes[S2_LAN] == s2.overlay()
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct
    # Back: s2 learned s1's address from the request, not its LAN; the hub redirects the
    # first packet and finds s1 by route in turn.
    net.ping("s2", "10.2.0.7", "10.1.0.5")
    net.run(duration=3)
    assert s2.eroutes[ip_network("10.1.0.0/24")] == s1.overlay()
    assert net.ping("s2", "10.2.0.7", "10.1.0.5").direct
    assert hub.engine.stats()["counters"]["resolution_by_route"] == 2


def test_without_routes_the_hub_has_no_binding_and_traffic_stays_on_it(net: Net) -> None:
    (hub,), (s1, _s2) = star(net, spokes=2, spoke_kw={"register_prefixes": False})
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    (nak,) = replies_to(net, "s1")
    assert nak.sender == "hub1" and nak.packet.cies[0].code == CieCode.NO_BINDING_EXISTS
    assert S2_LAN not in s1.eroutes
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").path == ["s1", "hub1", "s2"]
    # The routes arrive; once the negative answer has expired the next redirect works.
    feed_routes(net, hub)
    net.run(until=40)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=43)
    assert s1.eroutes.get(S2_LAN) is not None
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def test_ipv6_lans_are_found_by_route_too(net: Net) -> None:
    dual_stack_star(net, nbma6=True, register_prefixes=False)
    hub, s1, s2 = net["hub1"], net["s1"], net["s2"]
    net.run(until=2)
    feed_routes(net, hub)
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").path == ["s1", "hub1", "s2"]
    net.run(until=5)
    assert s1.eroutes[ip_network("fd10:2::/64")] == s2.overlay(6)
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").direct


def test_a_site_that_fails_over_by_routing_is_purged_and_resolved_again(net: Net) -> None:
    """A dual-homed site: s1 and s2 both hold 10.1.0.0/24, the hub routes it via s1. s3
    has a shortcut to it via s1; routing moves the LAN to s2 (s1's uplink to the site
    failed): the hub purges s3's shortcut, and s3's next resolution finds s2."""
    hub = net.add("hub1", hub_config())
    s1 = net.add("s1", spoke_config(1, register_prefixes=False))
    s2 = net.add("s2", spoke_config(2, register_prefixes=False, protected=(SITE,)))
    s3 = net.add("s3", spoke_config(3, register_prefixes=False))
    hub.routes[SITE] = s1.overlay()
    hub.routes[ip_network("10.3.0.0/24")] = s3.overlay()
    net.start()
    net.run(until=2)
    feed_routes(net, hub)
    assert net.ping("s3", "10.3.0.5", "10.1.0.7").path == ["s3", "hub1", "s1"]
    net.run(until=5)
    assert s3.eroutes[SITE] == s1.overlay()
    assert net.ping("s3", "10.3.0.5", "10.1.0.7").path == ["s3", "s1"]

    moved_at = net.now
    hub.routes[SITE] = s2.overlay()
    net.apply(hub, hub.engine.routes_changed(net.now, [(SITE, s2.overlay())], []))
    net.run(duration=1)
    (purge,) = [
        w for w in net.wire if w.time >= moved_at and w.packet.type == PacketType.PURGE_REQUEST
    ]
    assert (purge.sender, purge.receiver, purge.fate) == ("hub1", "s3", "delivered")
    assert [(c.client_proto, c.prefix_length) for c in purge.packet.cies] == [
        (SITE.network_address, 24)
    ]
    assert any(
        w.sender == "s3" and w.packet.type == PacketType.PURGE_REPLY
        for w in net.wire
        if w.time >= moved_at
    )
    assert SITE not in s3.eroutes
    assert [e["reason"] for e in s3.events_of("shortcut_down", since=moved_at)] == ["purged"]
    assert hub.engine.stats()["counters"]["purge_route_changed"] == 1

    # The next packet goes through the hub to s2, which is redirected to and found.
    assert net.ping("s3", "10.3.0.5", "10.1.0.7").path == ["s3", "hub1", "s2"]
    net.run(duration=3)
    (answer,) = [w for w in replies_to(net, "s3") if w.time >= moved_at]
    assert answer.sender == "s2"
    assert s3.eroutes[SITE] == s2.overlay()
    assert net.ping("s3", "10.3.0.5", "10.1.0.7").path == ["s3", "s2"]
