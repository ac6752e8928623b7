"""The Cisco NAT extension: spokes behind NAT register, are reached, and stay stable."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest
from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import NatAddress, PacketType

PUBLIC = ip_address("198.51.100.200")


@pytest.fixture
def net() -> Net:
    # NAT traversal is IKE's job: the IPsec model opens NAT mappings as real IKE does.
    return Net(seed=5, ipsec=True)


def test_spoke_learns_its_post_nat_address_from_the_registration_reply(net: Net) -> None:
    net.add_nat("nat1", str(PUBLIC))
    (hub,), (s1, s2) = star(net, spokes=2, nat={1: "nat1"})
    net.run(until=2)
    state = s1.engine.nhs_states()[0]
    assert state.state == "registered" and state.post_nat == PUBLIC
    assert s1.events_of("nat_detected")[0]["post_nat"] == PUBLIC
    entry = next(e for e in hub.engine.cache_entries() if e.proto == s1.overlay())
    assert (entry.nbma, entry.claimed_nbma) == (PUBLIC, ip_address("192.168.1.2"))
    assert "nat" in entry.flags
    reply = next(
        w for w in net.wire if w.packet.type == PacketType.REGISTRATION_REPLY and w.receiver == "s1"
    )
    nat_ext = reply.packet.find(NatAddress)
    assert any(c.client_nbma == PUBLIC and c.client_proto == s1.overlay() for c in nat_ext.cies)
    # Not NATed: no post-NAT address.
    assert s2.engine.nhs_states()[0].post_nat is None


def test_shortcuts_to_and_from_a_natted_spoke_use_its_post_nat_address(net: Net) -> None:
    net.add_nat("nat1", str(PUBLIC))
    (_hub,), (s1, s2) = star(net, spokes=2, nat={1: "nat1"})
    net.run(until=2)
    # Outside spoke to the NATed one.
    net.ping("s2", "10.2.0.5", "10.1.0.7")
    net.run(until=5)
    assert s2.mappings[s1.overlay()][0] == PUBLIC
    assert net.ping("s2", "10.2.0.5", "10.1.0.7").direct
    # And the NATed spoke to the outside one.
    net.ping("s1", "10.1.0.7", "10.2.0.5")
    net.run(until=9)
    assert s1.mappings[s2.overlay()][0] == s2.nbma
    assert net.ping("s1", "10.1.0.7", "10.2.0.5").direct


def test_two_spokes_behind_one_nat_stay_stable_and_talk_over_the_lan(net: Net) -> None:
    net.add_nat("nat1", str(PUBLIC))
    (hub,), (s1, s2, s3) = star(
        net, spokes=3, nat={1: "nat1", 2: "nat1"}, spoke_kw={"holdtime": 60}
    )
    net.run(until=2)
    assert hub.registered_clients() == {s1.overlay(), s2.overlay(), s3.overlay()}
    assert hub.mappings[s1.overlay()][0] == hub.mappings[s2.overlay()][0] == PUBLIC
    # Many refresh cycles and traffic between all of them.
    for a, b in (("s1", "s2"), ("s2", "s1"), ("s1", "s3"), ("s3", "s2")):
        j, k = a[1], b[1]
        net.flow(a, f"10.{j}.0.5", f"10.{k}.0.5", every=2.0, until=600)
    net.run(until=600)
    # No flapping: the hub never moved, refused or dropped either registration.
    for kind in ("mapping_change", "registration_refused", "registration_down"):
        assert kind not in hub.event_kinds(), kind
    assert hub.registered_clients() == {s1.overlay(), s2.overlay(), s3.overlay()}
    # Behind the same NAT they use each other's private address; others use the public one.
    assert s1.mappings[s2.overlay()][0] == ip_address("192.168.2.2")
    assert s2.mappings[s1.overlay()][0] == ip_address("192.168.1.2")
    assert s3.mappings[s2.overlay()][0] == PUBLIC
    for a, j, k in (("s1", 1, 2), ("s2", 2, 1), ("s1", 1, 3), ("s3", 3, 2)):
        assert net.ping(a, f"10.{j}.0.5", f"10.{k}.0.5").direct, (a, k)
    assert ip_network("10.2.0.0/24") in s1.eroutes
