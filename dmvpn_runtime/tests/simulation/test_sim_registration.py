"""NHC registration as a user sees it: spokes register, refresh, fail over, recover."""

from __future__ import annotations

import itertools
from ipaddress import ip_address, ip_network

from nhrpsim import Net, hub_config, spoke_config, star

from dmvpn_runtime.nhrp.wire import PacketType
from dmvpn_runtime.nhrp.wire.constants import REG_FLAG_UNIQUE, UNIQUE_PREFIX_LENGTH

HUB = ip_address("172.16.0.1")


def registrations(net: Net, sender: str) -> list:
    return [
        w
        for w in net.wire
        if w.sender == sender and w.packet.type == PacketType.REGISTRATION_REQUEST
    ]


def test_spokes_register_overlay_and_prefixes_with_hop_count_1(net: Net) -> None:
    (hub,), spokes = star(net, spokes=3)
    net.run(duration=1)
    assert hub.registered_clients() == {s.overlay() for s in spokes}
    for spoke in spokes:
        assert spoke.nhs_state(HUB) == "registered"
        req = registrations(net, spoke.name)[0].packet
        assert req.hop_count == 1  # Cisco rejects 0 (FRR issue 951)
        assert req.flags & REG_FLAG_UNIQUE
        first, second = req.cies
        assert (first.client_proto, first.prefix_length) == (spoke.overlay(), UNIQUE_PREFIX_LENGTH)
        assert ip_network((second.client_proto, second.prefix_length)) in spoke.config.protected
    # The hub maps each spoke and knows its protected prefix.
    entry = next(e for e in hub.engine.cache_entries() if e.proto == spokes[0].overlay())
    assert entry.nbma == spokes[0].nbma and entry.prefixes == (ip_network("10.1.0.0/24"),)
    assert hub.mappings[spokes[0].overlay()][0] == spokes[0].nbma


def test_no_unique_registers_without_u_flag_and_host_prefix(net: Net) -> None:
    net.add("hub1", hub_config())
    net.add("s1", spoke_config(1, unique=False))
    net.start()
    net.run(duration=1)
    req = registrations(net, "s1")[0].packet
    assert not req.flags & REG_FLAG_UNIQUE
    assert req.cies[0].prefix_length == 32
    assert net["hub1"].registered_clients() == {ip_address("172.16.0.11")}


def test_refresh_at_a_third_of_the_holdtime_keeps_registration_alive(net: Net) -> None:
    (hub,), (spoke,) = star(net, spokes=1, spoke_kw={"holdtime": 90})
    net.run(until=400)
    times = [w.time for w in registrations(net, "s1")]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    assert gaps and all(abs(g - 30.0) < 0.1 for g in gaps)  # 90 / 3
    assert hub.registered_clients() == {spoke.overlay()}
    assert "registration_down" not in hub.event_kinds()


def test_retry_backs_off_from_2_to_64_seconds_then_nhs_down_after_3_misses(net: Net) -> None:
    net.add("hub1", hub_config())
    spoke = net.add("s1", spoke_config(1))
    net.start("s1")  # the hub never comes up
    net.run(until=300)
    times = [w.time for w in registrations(net, "s1")]
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps[:7] == [2, 4, 8, 16, 32, 64, 2]  # FRR: past 64 s restart the SA, back to 2
    assert len({w.packet.request_id for w in registrations(net, "s1")[:6]}) == 1
    downs = spoke.events_of("nhs_down")
    assert len(downs) == 1 and round(downs[0]["time"]) == 14  # misses at 2, 6, 14
    assert spoke.nhs_state(HUB) == "down"


def test_nhs_recovers_when_it_answers_again(net: Net) -> None:
    (hub,), (spoke,) = star(net, spokes=1, start=False)
    net.start("s1")
    net.run(until=60)
    assert spoke.nhs_state(HUB) == "down"
    net.start("hub1")
    net.run(until=200)
    assert spoke.nhs_state(HUB) == "registered"
    assert spoke.event_kinds().count("nhs_up") == 1
    assert hub.registered_clients() == {spoke.overlay()}


def test_registration_expires_at_hub_when_spoke_disappears(net: Net) -> None:
    (hub,), (spoke,) = star(net, spokes=1, spoke_kw={"holdtime": 60})
    net.run(until=5)
    net.crash("s1")
    net.run(until=64)
    assert hub.registered_clients() == set()
    down = hub.events_of("registration_down")
    assert down and down[0]["reason"] == "expired" and 60 <= down[0]["time"] <= 61
    assert spoke.overlay() not in hub.mappings


def test_stop_purges_registration_with_its_request_id_and_n_flag(net: Net) -> None:
    (hub,), (spoke,) = star(net, spokes=1)
    net.run(until=5)
    reg_id = registrations(net, "s1")[-1].packet.request_id
    net.stop("s1")
    net.run(until=6)
    purge = next(w for w in net.wire if w.packet.type == PacketType.PURGE_REQUEST)
    assert purge.packet.request_id == reg_id  # the Cisco rule
    assert purge.packet.flags & 0x8000  # N: no reply expected from a node that is leaving
    assert hub.registered_clients() == set()
    assert not [w for w in net.wire if w.packet.type == PacketType.PURGE_REPLY]
    # The spoke removed what it had installed.
    assert spoke.mappings == {} and spoke.eroutes == {}
