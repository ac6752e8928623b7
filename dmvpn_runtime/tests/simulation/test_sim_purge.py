"""Purge Request / Reply both ways, the N flag, and the Cisco request-id rule."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.wire import Cie, Packet, PacketType, encode
from dmvpn_runtime.nhrp.wire.constants import PURGE_FLAG_NO_REPLY


def test_hub_purge_is_acknowledged_and_retransmitted_until_then(net: Net) -> None:
    (hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    net.partition("hub1", "s1")  # the first purges are lost
    net.reconfigure("s2", replace(s2.config, nbma=ip_address("203.0.113.99")))
    net.run(until=6.5)
    net.heal("hub1", "s1")
    net.run(until=12)
    purges = [
        w for w in net.wire if w.sender == "hub1" and w.packet.type == PacketType.PURGE_REQUEST
    ]
    assert len(purges) >= 2 and len({w.packet.request_id for w in purges}) == 1
    assert not purges[0].packet.flags & PURGE_FLAG_NO_REPLY  # N clear: reply wanted
    replies = [w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.PURGE_REPLY]
    assert replies and replies[0].packet.request_id == purges[0].packet.request_id
    sent_after = [w for w in purges if w.time > replies[0].time + 0.01]
    assert not sent_after  # acknowledged: no more retransmissions
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert hub.events_of("purge")[-1]["direction"] == "acknowledged"


def test_purge_with_a_stale_request_id_does_not_remove_a_registration(net: Net) -> None:
    (hub,), (s1,) = star(net, spokes=1)
    net.run(until=2)
    reg = [w.packet for w in net.wire if w.packet.type == PacketType.REGISTRATION_REQUEST][-1]
    purge = Packet(
        PacketType.PURGE_REQUEST,
        src_nbma=s1.nbma,
        src_proto=s1.overlay(),
        dst_proto=hub.overlay(),
        request_id=reg.request_id + 12345,  # not the registration's
        cies=(Cie(prefix_length=0xFF, client_nbma=s1.nbma, client_proto=s1.overlay()),),
    )
    net.apply(hub, hub.engine.packet_received(net.now, s1.nbma, encode(purge)))
    assert hub.registered_clients() == {s1.overlay()}
    assert hub.engine.stats()["drops"]["purge_mismatch"] == 1
    # With the right id it goes, and the hub acknowledges.
    good = replace(purge, request_id=reg.request_id)
    net.apply(hub, hub.engine.packet_received(net.now, s1.nbma, encode(good)))
    assert hub.registered_clients() == set()
    net.run(until=3)
    assert [w for w in net.wire if w.packet.type == PacketType.PURGE_REPLY]


def test_egress_leaving_purges_its_binding_from_peers_with_n_set(net: Net) -> None:
    (_hub,), (s1, s2) = star(net, spokes=2)
    net.run(until=2)
    net.ping("s2", "10.2.0.5", "10.1.0.7")  # s1 answers, learning s2
    net.run(until=5)
    assert s2.mappings[s1.overlay()][0] == s1.nbma
    assert s1.mappings[s2.overlay()][0] == s2.nbma  # learned from the request
    net.stop("s1")
    net.run(until=6)
    to_s2 = [
        w
        for w in net.wire
        if w.sender == "s1" and w.receiver == "s2" and w.packet.type == PacketType.PURGE_REQUEST
    ]
    assert to_s2 and to_s2[0].packet.flags & PURGE_FLAG_NO_REPLY
    assert s1.overlay() not in s2.mappings
    assert ip_network("10.1.0.0/24") not in s2.eroutes
