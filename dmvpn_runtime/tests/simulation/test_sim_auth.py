"""Authentication extension: on every packet we send, required on every packet we accept."""

from __future__ import annotations

from ipaddress import ip_network

from nhrpsim import Net, hub_config, spoke_config, star

from dmvpn_runtime.nhrp.wire import CleartextAuthentication, ErrorCode, PacketType


def test_every_packet_type_carries_the_secret(net: Net) -> None:
    kw = {"auth_secret": b"s3cret"}
    (_hub,), (s1, _s2) = star(net, spokes=2, hub_kw=kw, spoke_kw=kw)
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    net.stop("s2")  # purges too
    net.run(until=8)
    types = {w.packet.type for w in net.wire}
    assert {
        PacketType.REGISTRATION_REQUEST,
        PacketType.REGISTRATION_REPLY,
        PacketType.TRAFFIC_INDICATION,  # FRR issue 16371
        PacketType.RESOLUTION_REQUEST,
        PacketType.RESOLUTION_REPLY,
        PacketType.PURGE_REQUEST,
    } <= types
    for w in net.wire:
        ext = w.packet.find(CleartextAuthentication)
        assert ext is not None and ext.secret == b"s3cret", w.packet.type
    assert ip_network("10.2.0.0/24") not in s1.eroutes  # s2's goodbye was accepted


def test_auth_mismatch_is_refused_counted_and_answered_with_code_11(net: Net) -> None:
    hub = net.add("hub1", hub_config(auth_secret=b"right"))
    spoke = net.add("s1", spoke_config(1, auth_secret=b"wrong"))
    net.start()
    net.run(until=30)
    assert hub.registered_clients() == set()
    assert spoke.nhs_state("172.16.0.1") != "registered"
    assert hub.engine.stats()["drops"]["auth_mismatch"] >= 3
    assert hub.events_of("auth_failure")
    errors = [w for w in net.wire if w.packet.type == PacketType.ERROR_INDICATION]
    assert errors and all(w.packet.error_code == ErrorCode.AUTHENTICATION_FAILURE for w in errors)
    # The spoke does not accept the hub's Error Indication either (it fails its check),
    # and never answers an Error Indication with one.
    assert all(w.sender == "hub1" for w in errors)
    assert spoke.engine.stats()["drops"]["auth_mismatch"] == len(
        [w for w in errors if w.fate == "delivered"]
    )


def test_missing_authentication_is_refused(net: Net) -> None:
    hub = net.add("hub1", hub_config(auth_secret=b"right"))
    net.add("s1", spoke_config(1))
    net.start()
    net.run(until=10)
    assert hub.registered_clients() == set()
    assert hub.engine.stats()["drops"]["auth_missing"] >= 1


def test_error_indications_are_rate_limited_per_source(net: Net) -> None:
    hub = net.add("hub1", hub_config(auth_secret=b"right"))
    spoke = net.add("s1", spoke_config(1, auth_secret=b"wrong"))
    net.start()
    bad = next(w.data for w in net.wire if w.sender == "s1")
    for _attempt in range(200):
        net.apply(hub, hub.engine.packet_received(net.now, spoke.nbma, bad))
    sent = [w for w in net.wire if w.packet.type == PacketType.ERROR_INDICATION]
    assert len(sent) <= 6  # burst of 5 (+1 from the real registration)
    assert hub.engine.stats()["drops"]["auth_mismatch"] >= 200
