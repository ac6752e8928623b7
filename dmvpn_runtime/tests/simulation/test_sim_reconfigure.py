"""Config changes keep what is still allowed; IPsec-gated bindings; clean stop."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.engine import NhsConfig
from dmvpn_runtime.nhrp.wire import PacketType


def test_unrelated_change_keeps_registrations_and_shortcuts(net: Net) -> None:
    (hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    before_routes = dict(s1.eroutes)
    sent_before = len(net.wire)
    net.reconfigure("s1", replace(s1.config, redirect_interval=30.0, shortcuts=True))
    net.reconfigure("hub1", replace(hub.config, redirect_interval=5.0))
    net.run(until=6)
    assert s1.eroutes == before_routes
    assert hub.registered_clients() == {s1.overlay(), s2.overlay()}
    assert len(net.wire) == sent_before  # nothing re-sent


def test_new_protected_prefix_is_registered_at_once(net: Net) -> None:
    (hub,), (s1,) = star(net, spokes=1)
    net.run(until=2)
    extra = ip_network("10.101.0.0/24")
    net.reconfigure("s1", replace(s1.config, protected=(*s1.config.protected, extra)))
    net.run(until=3)
    entry = next(e for e in hub.engine.cache_entries() if e.proto == s1.overlay())
    assert extra in entry.prefixes
    assert "registration_refused" not in s1.event_kinds()


def test_adding_and_removing_an_nhs(net: Net) -> None:
    (hub1, hub2), (s1,) = star(net, spokes=1, hubs=2, start=False)
    net.start("hub1", "hub2")
    net.reconfigure("s1", replace(s1.config, nhs=s1.config.nhs[:1]))
    net.start("s1")
    net.run(until=2)
    assert hub2.registered_clients() == set()
    net.reconfigure(
        "s1",
        replace(
            s1.config,
            nhs=(
                *s1.config.nhs,
                NhsConfig(ip_address("172.16.0.2"), ip_address("198.51.100.2"), priority=1),
            ),
        ),
    )
    net.run(until=3)
    assert hub2.registered_clients() == {s1.overlay()}
    net.reconfigure("s1", replace(s1.config, nhs=s1.config.nhs[1:]))
    net.run(until=4)
    assert hub1.registered_clients() == set()  # purged on removal
    assert s1.eroutes[ip_network("10.0.0.0/8")] == ip_address("172.16.0.2")
    assert ip_address("172.16.0.1") not in s1.mappings


def test_disabling_shortcuts_removes_them(net: Net) -> None:
    (_hub,), (s1, _s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    net.reconfigure("s1", replace(s1.config, shortcuts=False))
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    net.run(until=20)  # past the hub's redirect interval for this pair
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=23)
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert s1.engine.stats()["drops"]["shortcuts_disabled"] >= 1


def test_require_ipsec_waits_for_the_sa_before_using_a_binding() -> None:
    net = Net(seed=4, ipsec=True, ike_delay=1.0)
    (hub,), (s1, s2) = star(
        net, spokes=2, start=False, spoke_kw={"require_ipsec": True}, hub_kw={"require_ipsec": True}
    )
    net.start()
    net.run(until=5)
    # Unprotected packets are refused before any SA exists, then registration succeeds.
    assert hub.registered_clients() == {s1.overlay(), s2.overlay()}
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=net.now + 0.1)
    # The answer is in, but the route waits for IPsec to s2 (the "new" binding).
    pend = [e for e in s1.engine.cache_entries() if e.proto == s2.overlay()]
    assert pend and "pending" in pend[0].flags
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    net.run(until=net.now + 2)
    assert s1.eroutes[ip_network("10.2.0.0/24")] == s2.overlay()
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def test_stop_removes_everything_it_installed(net: Net) -> None:
    (hub,), (s1, _s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    net.stop("hub1")
    assert hub.mappings == {} and hub.eroutes == {}
    assert hub.wake is None
    net.stop("s1")
    assert s1.mappings == {} and s1.eroutes == {}
    purges = [w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.PURGE_REQUEST]
    assert purges
