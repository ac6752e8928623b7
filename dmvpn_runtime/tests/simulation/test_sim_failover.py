"""Seed Req. 16: no hub is a single point of failure."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import PacketType

HUB1, HUB2 = ip_address("172.16.0.1"), ip_address("172.16.0.2")
LANS = ip_network("10.0.0.0/8")


def test_dual_hub_with_one_dead_falls_back_to_the_other(net: Net) -> None:
    (_hub1, hub2), (s1, s2) = star(net, spokes=2, hubs=2, start=False)
    net.start("hub2", "s1", "s2")  # hub1 (priority 0) never comes up
    net.run(until=20)
    for spoke in (s1, s2):
        assert spoke.nhs_state(HUB1) == "down"
        assert spoke.nhs_state(HUB2) == "registered"
        assert spoke.eroutes[LANS] == HUB2  # traffic falls back by priority
    assert hub2.registered_clients() == {s1.overlay(), s2.overlay()}
    # Redirect and shortcut work through the surviving hub.
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").path == ["s1", "hub2", "s2"]
    net.run(until=23)
    resolutions = [
        w for w in net.wire if w.packet.type == PacketType.RESOLUTION_REQUEST and w.sender == "s1"
    ]
    assert resolutions and all(w.receiver == "hub2" for w in resolutions)
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def test_preferred_hub_takes_over_again_when_it_comes_back(net: Net) -> None:
    (_hub1, _hub2), (s1,) = star(net, spokes=1, hubs=2, start=False)
    net.start("hub2", "s1")
    net.run(until=20)
    assert s1.eroutes[LANS] == HUB2
    net.start("hub1")
    net.run(until=200)  # the next retry to hub1 (backoff up to 64 s) gets an answer
    assert s1.nhs_state(HUB1) == "registered"
    assert s1.eroutes[LANS] == HUB1
    assert [e["nhs"] for e in s1.events_of("nhs_active")] == [HUB1, HUB2, HUB1]


def test_hub_dying_later_moves_traffic_to_the_other_hub(net: Net) -> None:
    (_hub1, _hub2), (s1, _s2) = star(net, spokes=2, hubs=2, spoke_kw={"holdtime": 60})
    net.run(until=5)
    assert s1.eroutes[LANS] == HUB1
    net.crash("hub1")
    net.run(until=120)  # next refresh at 20 s, then misses at +2, +6, +14
    assert s1.nhs_state(HUB1) == "down"
    assert s1.eroutes[LANS] == HUB2
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").path[:2] == ["s1", "hub2"]


def test_hub_restart_spokes_reregister_and_shortcuts_survive() -> None:
    net = Net(seed=3, ipsec=True, dpd_delay=10)
    (hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=3)
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").path == ["s1", "hub1", "s2"]
    net.run(until=5)
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct
    shortcut = dict(s1.eroutes)
    net.crash("hub1")
    net.run(until=20)  # DPD tells the spokes their SA to the hub is gone
    net.restart("hub1")
    # The spokes' IKE brings the SA back and they register at once, not after holdtime/3.
    net.run(until=40)
    assert hub.registered_clients() == {s1.overlay(), s2.overlay()}
    # The spoke-to-spoke shortcut never went away and still carries traffic.
    assert s1.eroutes == shortcut
    assert "shortcut_down" not in s1.event_kinds()
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct
    ups = list(s1.events_of("registration_up"))
    assert len(ups) == 2 and ups[1]["time"] < 40
