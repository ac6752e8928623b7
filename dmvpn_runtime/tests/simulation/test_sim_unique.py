"""Code 14: a unique address cannot be taken by another NBMA while its binding lives."""

from __future__ import annotations

from ipaddress import ip_address

from nhrpsim import Net, hub_config, spoke_config

from dmvpn_runtime.nhrp.wire import CieCode, PacketType


def test_conflicting_unique_registration_gets_code_14(net: Net) -> None:
    hub = net.add("hub1", hub_config())
    net.add("s1", spoke_config(1, holdtime=120))
    # An impostor with s1's overlay address at another NBMA address.
    net.add("evil", spoke_config(1, nbma="203.0.113.66", holdtime=120))
    net.start("hub1", "s1")
    net.run(until=2)
    net.start("evil")
    net.run(until=20)
    entry = next(e for e in hub.engine.cache_entries() if e.proto == ip_address("172.16.0.11"))
    assert entry.nbma == ip_address("203.0.113.11")  # still s1
    replies = [
        w
        for w in net.wire
        if w.packet.type == PacketType.REGISTRATION_REPLY and w.receiver == "evil"
    ]
    assert replies and all(
        w.packet.cies[0].code == CieCode.UNIQUE_ADDRESS_ALREADY_REGISTERED for w in replies
    )
    assert net["evil"].events_of("registration_refused")[0]["code"] == 14
    assert hub.engine.stats()["counters"]["registration_code_14"] >= 1


def test_the_same_nbma_may_refresh_and_an_expired_holder_may_be_replaced(net: Net) -> None:
    hub = net.add("hub1", hub_config())
    net.add("s1", spoke_config(1, holdtime=60))
    net.add("new", spoke_config(1, nbma="203.0.113.66", holdtime=60))
    net.start("hub1", "s1")
    net.run(until=100)  # s1 refreshed (same NBMA): no code 14
    assert "registration_refused" not in net["s1"].event_kinds()
    net.crash("s1")
    net.run(until=170)  # s1's binding expires
    net.start("new")
    net.run(until=175)
    entry = next(e for e in hub.engine.cache_entries() if e.proto == ip_address("172.16.0.11"))
    assert entry.nbma == ip_address("203.0.113.66")
    assert net["new"].nhs_state("172.16.0.1") == "registered"
