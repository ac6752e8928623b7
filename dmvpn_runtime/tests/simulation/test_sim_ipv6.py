"""IPv4 and IPv6, as passenger and as transport."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

from nhrpsim import Net

from dmvpn_runtime.nhrp.engine import EngineConfig, NhsConfig, Role


def v6_star(net: Net, nbma6: bool) -> None:
    def nbma(i: int) -> object:
        return ip_address(f"2001:db8::{i}") if nbma6 else ip_address(f"198.51.100.{i}")

    net.add(
        "hub1",
        EngineConfig(
            nbma(1),
            (ip_interface("fd00::1/64"), ip_interface("172.16.0.1/24")),
            role=Role.NHS,
        ),
    )
    for j in (1, 2):
        node = net.add(
            f"s{j}",
            EngineConfig(
                nbma(10 + j),
                (ip_interface(f"fd00::{10 + j}/64"), ip_interface(f"172.16.0.{10 + j}/24")),
                protected=(ip_network(f"fd10:{j}::/64"), ip_network(f"10.{j}.0.0/24")),
                nhs=(
                    NhsConfig(ip_address("fd00::1"), nbma(1)),
                    NhsConfig(ip_address("172.16.0.1"), nbma(1)),
                ),
                nhs_routes=(ip_network("fd10::/16"), ip_network("10.0.0.0/8")),
            ),
        )
        net["hub1"].routes[ip_network(f"fd10:{j}::/64")] = node.overlay(6)
        net["hub1"].routes[ip_network(f"10.{j}.0.0/24")] = node.overlay(4)
    net.start()


def test_ipv6_overlay_over_ipv6_transport(net: Net) -> None:
    v6_star(net, nbma6=True)
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
    v6_star(net, nbma6=False)
    net.run(until=2)
    net.ping("s1", "fd10:1::5", "fd10:2::7")
    net.run(until=5)
    assert net["s1"].mappings[ip_address("fd00::12")][0] == ip_address("198.51.100.12")
    assert net.ping("s1", "fd10:1::5", "fd10:2::7").direct
