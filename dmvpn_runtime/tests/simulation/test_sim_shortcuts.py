"""Phase 3: redirect, resolution, shortcuts both ways, and their lifetime."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import PacketType


def sent(net: Net, ptype: PacketType, sender: str | None = None) -> list:
    return [
        w for w in net.wire if w.packet.type == ptype and (sender is None or w.sender == sender)
    ]


def test_hairpin_redirects_and_both_directions_go_direct(net: Net) -> None:
    (_hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    first = net.ping("s1", "10.1.0.5", "10.2.0.7")
    assert first.path == ["s1", "hub1", "s2"]  # via the hub at first
    net.run(until=4)
    # The hub told s1 (Traffic Indication, hop count 1, quoting the packet).
    ti = sent(net, PacketType.TRAFFIC_INDICATION)[0]
    assert (ti.sender, ti.receiver) == ("hub1", "s1")
    assert ti.packet.hop_count == 1
    assert ti.packet.dst_proto == ip_address("10.1.0.5")
    assert ip_address(ti.packet.payload[16:20]) == ip_address("10.2.0.7")
    # s1 resolved the destination and installed s2's protected prefix, not a /32.
    assert s1.eroutes[ip_network("10.2.0.0/24")] == s2.overlay()
    assert s1.mappings[s2.overlay()][0] == s2.nbma
    # s2 answered straight to s1 and learned s1's binding from the request.
    replies = sent(net, PacketType.RESOLUTION_REPLY)
    assert [(w.sender, w.receiver) for w in replies[:1]] == [("s2", "s1")]
    assert s2.mappings[s1.overlay()][0] == s1.nbma
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct
    # The way back hairpins once more, then is direct too.
    net.ping("s2", "10.2.0.7", "10.1.0.5")
    net.run(until=8)
    assert s2.eroutes[ip_network("10.1.0.0/24")] == s1.overlay()
    assert net.ping("s2", "10.2.0.7", "10.1.0.5").direct


def test_redirects_are_rate_limited_per_pair(net: Net) -> None:
    (hub,), _spokes = star(net, spokes=3, spoke_kw={"shortcuts": False})
    net.run(until=2)
    net.flow("s1", "10.1.0.5", "10.2.0.7", every=0.5, until=20)
    net.flow("s1", "10.1.0.5", "10.3.0.7", every=0.5, until=20)
    net.run(until=21)
    tis = sent(net, PacketType.TRAFFIC_INDICATION)
    dsts = sorted(str(ip_address(w.packet.payload[16:20])) for w in tis)
    # 15 s interval per pair over ~18 s of traffic: two each, for each destination.
    assert dsts == ["10.2.0.7", "10.2.0.7", "10.3.0.7", "10.3.0.7"]
    assert hub.engine.stats()["counters"]["redirect_rate_limited"] > 50


def test_shortcut_in_use_is_refreshed_and_never_drops(net: Net) -> None:
    (_hub,), (s1, _s2) = star(net, spokes=2, spoke_kw={"holdtime": 60})
    net.run(until=2)
    traces = net.flow("s1", "10.1.0.5", "10.2.0.7", every=1.0, until=300)
    net.run(until=301)
    assert all(t.delivered for t in traces)
    assert all(t.direct for t in traces[5:])  # no fallback through the hub after setup
    assert "shortcut_down" not in s1.event_kinds()
    refreshes = [w for w in sent(net, PacketType.RESOLUTION_REQUEST, "s1") if w.receiver == "s2"]
    assert len(refreshes) >= 6  # every 2/3 of 60 s, straight to the egress (seed)


def test_idle_shortcut_expires_and_takes_mapping_and_sa_with_it(net: Net) -> None:
    (_hub,), (s1, s2) = star(net, spokes=2, spoke_kw={"holdtime": 60})
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    assert ip_network("10.2.0.0/24") in s1.eroutes
    net.run(until=70)
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert s2.overlay() not in s1.mappings
    downs = s1.events_of("shortcut_down")
    assert downs and downs[0]["reason"] == "expired"
    assert 60 < downs[0]["time"] < 66
    ipsec_down = [a for t, a in s1.actions if type(a).__name__ == "IpsecDown"]
    assert [a.nbma for a in ipsec_down] == [s2.nbma]
    # Traffic goes through the hub again and can build the shortcut anew.
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").path == ["s1", "hub1", "s2"]


def test_traffic_after_the_refresh_point_still_refreshes(net: Net) -> None:
    (_hub,), (s1, _s2) = star(net, spokes=2, spoke_kw={"holdtime": 60})
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=50)  # idle across the refresh point (at 2/3 of 60 s)
    net.flow("s1", "10.1.0.5", "10.2.0.7", every=1.0, until=150)
    net.run(until=151)
    assert "shortcut_down" not in s1.event_kinds()


def test_ipsec_down_clears_mappings_of_that_peer(net: Net) -> None:
    (hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    net.apply(s1, s1.engine.ipsec_down(net.now, s2.nbma))
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert s2.overlay() not in s1.mappings
    assert s1.mappings[hub.overlay()][0] == hub.nbma  # the NHS mapping stays
    assert s1.events_of("shortcut_down")[0]["reason"] == "ipsec_down"


def test_no_mapping_for_an_overlay_next_hop_resolves_it(net: Net) -> None:
    (_hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    # Phase 2 style: the route points at s2's overlay address directly.
    s1.routes[ip_network("10.2.0.0/24")] = s2.overlay()
    first = net.ping("s1", "10.1.0.5", "10.2.0.7")
    assert first.dropped == "no_mapping"
    net.run(until=4)
    assert s1.mappings[s2.overlay()][0] == s2.nbma
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct
    assert not s1.eroutes.get(ip_network("172.16.0.12/32"))  # a mapping, not a route
