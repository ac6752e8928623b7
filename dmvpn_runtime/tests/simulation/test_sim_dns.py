"""Seed Req. 6: spokes find hubs by DNS name, and follow a hub that moves."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from nhrpsim import Net, hub_config, spoke_config

from dmvpn_runtime.nhrp.engine import NhsConfig
from dmvpn_runtime.nhrp.wire import PacketType

HUB = ip_address("172.16.0.1")


def test_nhs_by_name_is_resolved_then_registered(net: Net) -> None:
    net.dns["hub.example.net"] = ["198.51.100.1"]
    net.add("hub1", hub_config())
    spoke = net.add("s1", spoke_config(1, nhs=(NhsConfig(HUB, name="hub.example.net"),)))
    net.start()
    assert spoke.nhs_state(HUB) == "resolving"
    net.run(until=1)
    assert spoke.nhs_state(HUB) == "registered"
    assert spoke.mappings[HUB][0] == ip_address("198.51.100.1")


def test_unresolvable_name_is_asked_again(net: Net) -> None:
    net.add("hub1", hub_config())
    spoke = net.add("s1", spoke_config(1, nhs=(NhsConfig(HUB, name="hub.example.net"),)))
    net.start()
    net.run(until=15)
    assert spoke.nhs_state(HUB) == "resolving"
    net.dns["hub.example.net"] = ["198.51.100.1"]
    net.run(until=25)
    assert spoke.nhs_state(HUB) == "registered"


def test_hub_that_moves_is_found_again_through_dns(net: Net) -> None:
    net.dns["hub.example.net"] = ["198.51.100.1"]
    net.add("hub1", hub_config())
    spoke = net.add(
        "s1", spoke_config(1, holdtime=60, nhs=(NhsConfig(HUB, name="hub.example.net"),))
    )
    net.start()
    net.run(until=5)
    # The hub gets a new NBMA address and its DNS record follows.
    net.crash("hub1")
    net.restart("hub1", replace(net["hub1"].config, nbma=ip_address("198.51.100.77")))
    net.dns["hub.example.net"] = ["198.51.100.77"]
    net.run(until=120)
    assert spoke.nhs_state(HUB) == "registered"
    assert spoke.mappings[HUB][0] == ip_address("198.51.100.77")
    assert net["hub1"].registered_clients() == {spoke.overlay()}
    last = [
        w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.REGISTRATION_REQUEST
    ][-1]
    assert last.nbma == ip_address("198.51.100.77")
