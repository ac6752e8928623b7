"""Seed Req. 2 and 6: a spoke whose NBMA address changes re-registers and is rediscovered."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import PacketType

NEW = ip_address("203.0.113.99")


def test_roaming_spoke_reregisters_and_peers_are_purged(net: Net) -> None:
    (hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    assert s1.mappings[s2.overlay()][0] == s2.nbma
    old = s2.nbma
    reg_id = next(
        w.packet.request_id
        for w in reversed(net.wire)
        if w.sender == "s2" and w.packet.type == PacketType.REGISTRATION_REQUEST
    )
    net.reconfigure("s2", replace(s2.config, nbma=NEW))  # unique registration, new address
    net.run(until=10)
    # s2 purged its old registration by that registration's request id, then registered.
    purge = next(
        w
        for w in net.wire
        if w.sender == "s2" and w.packet.type == PacketType.PURGE_REQUEST and w.receiver == "hub1"
    )
    assert purge.packet.request_id == reg_id
    entry = next(e for e in hub.engine.cache_entries() if e.proto == s2.overlay())
    assert entry.nbma == NEW
    assert "registration_refused" not in s2.event_kinds()
    # The hub purged the old binding from s1, which had resolved it.
    assert s2.overlay() not in s1.mappings or s1.mappings[s2.overlay()][0] != old
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert any(
        w.sender == "hub1" and w.receiver == "s1" and w.packet.type == PacketType.PURGE_REQUEST
        for w in net.wire
    )
    # Traffic is redirected again and the new shortcut goes to the new address.
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=14)
    assert s1.mappings[s2.overlay()][0] == NEW
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def test_roaming_without_unique_replaces_the_binding(net: Net) -> None:
    (hub,), (_s1, s2) = star(net, spokes=2, spoke_kw={"unique": False})
    net.run(until=2)
    net.reconfigure("s2", replace(s2.config, nbma=NEW))
    net.run(until=5)
    entry = next(e for e in hub.engine.cache_entries() if e.proto == s2.overlay())
    assert entry.nbma == NEW
    assert "registration_refused" not in s2.event_kinds()
    assert hub.mappings[s2.overlay()][0] == NEW


def test_roaming_purge_lost_still_converges_through_code_14_and_retry() -> None:
    net = Net(seed=11)
    (hub,), (_s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.partition("s2", "hub1")  # the purge and the first registration are lost
    net.reconfigure("s2", replace(s2.config, nbma=NEW))
    net.run(until=2.5)
    net.heal("s2", "hub1")
    net.run(until=120)
    entry = next(e for e in hub.engine.cache_entries() if e.proto == s2.overlay())
    assert entry.nbma == NEW
    assert s2.nhs_state("172.16.0.1") == "registered"
