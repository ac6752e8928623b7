"""IPv4 and IPv6, as passenger and as transport."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from nhrpsim import Net, dual_stack_star


def test_ipv6_overlay_over_ipv6_transport(net: Net) -> None:
    dual_stack_star(net, nbma6=True)
    net.run(until=2)
    hub, s1, _s2 = net["hub1"], net["s1"], net["s2"]
    assert hub.registered_clients() == {
        ip_address("fd00::11"),
        ip_address("fd00::12"),
        ip_address("172.16.0.11"),
        ip_address("172.16.0.12"),
    }
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").path == ["s1", "hub1", "s2"]
    net.run(until=5)
    assert s1.eroutes[ip_network("fd10:2::/64")] == ip_address("fd00::12")
    assert s1.mappings[ip_address("fd00::12")][0] == ip_address("2001:db8::12")
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").direct
    # The IPv4 overlay on the same IPv6 transport works alongside.
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=8)
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def test_ipv6_overlay_over_ipv4_transport(net: Net) -> None:
    dual_stack_star(net, nbma6=False)
    net.run(until=2)
    net.ping("s1", "fd10:1::5", "fd10:2::7")
    net.run(until=5)
    assert net["s1"].mappings[ip_address("fd00::12")][0] == ip_address("198.51.100.12")
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").direct
