"""Bad input is counted by reason and logged, and changes nothing."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_interface

from enginekit import (
    HUB_NBMA,
    OTHER_NBMA,
    OTHER_PROTO,
    SPOKE_NBMA,
    events,
    feed,
    hub_config,
    registered_hub,
    registration,
    resolution_request,
    spoke_config,
    started,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dmvpn_runtime.nhrp.engine import Engine, Event
from dmvpn_runtime.nhrp.wire import (
    Afn,
    Packet,
    PacketType,
    ProtocolType,
    TrafficCode,
    encode,
)


def snapshot(engine: Engine) -> tuple:
    return (
        sorted(map(repr, engine.cache_entries())),
        sorted(map(repr, engine.shortcuts())),
        [repr(s) for s in engine.nhs_states()],
    )


def only_drop_events(actions: list) -> bool:
    return all(isinstance(a, Event) and a.kind == "drop" for a in actions)


def test_undecodable_packets_are_counted_by_codec_reason() -> None:
    hub = registered_hub((OTHER_PROTO, OTHER_NBMA, ()))
    before = snapshot(hub)
    good = encode(registration())
    for data in (b"", b"\x00" * 10, good[:-3], good[:12] + b"\x00\x00" + good[14:]):
        actions = hub.packet_received(1.0, SPOKE_NBMA, data)
        assert only_drop_events(actions)
    drops = hub.stats()["drops"]
    assert drops["decode_truncated"] >= 1 and drops["decode_bad_checksum"] == 1
    assert snapshot(hub) == before


def test_wrong_afn_and_wrong_protocol_are_refused() -> None:
    hub = started(hub_config())  # IPv4 NBMA, IPv4 overlay only
    v6_nbma = replace(
        registration(), afn=Afn.IPV6, src_nbma=ip_address("2001:db8::1"), cies=(), extensions=()
    )
    assert only_drop_events(feed(hub, 1.0, SPOKE_NBMA, v6_nbma))
    v6_overlay = replace(
        registration(),
        protocol_type=ProtocolType.IPV6,
        src_proto=ip_address("fd00::11"),
        dst_proto=ip_address("fd00::1"),
        cies=(),
        extensions=(),
    )
    assert only_drop_events(feed(hub, 1.0, SPOKE_NBMA, v6_overlay))
    assert hub.stats()["drops"] == {"wrong_afn": 1, "wrong_protocol": 1}
    assert not hub.cache_entries()


def test_packets_from_unknown_nbmas_are_not_acted_on() -> None:
    spoke = started(spoke_config())
    before = snapshot(spoke)
    stranger = ip_address("192.0.2.66")
    ti = Packet(
        PacketType.TRAFFIC_INDICATION,
        src_nbma=stranger,
        src_proto=OTHER_PROTO,
        dst_proto=ip_address("10.1.0.5"),
        traffic_code=TrafficCode.REDIRECT,
        payload=bytes(20),
    )
    req = resolution_request(ip_address("10.1.0.5"), OTHER_PROTO, stranger)
    for pkt in (ti, req):
        assert only_drop_events(feed(spoke, 1.0, stranger, pkt))
    assert spoke.stats()["drops"]["unknown_peer"] == 2
    assert snapshot(spoke) == before
    # The same packets inside IPsec come from an authenticated peer and are served.
    assert [a for a in feed(spoke, 1.0, stranger, req, protected=True) if not isinstance(a, Event)]


def test_require_ipsec_drops_unprotected_packets() -> None:
    hub = started(hub_config(require_ipsec=True))
    assert only_drop_events(feed(hub, 1.0, SPOKE_NBMA, registration()))
    assert hub.stats()["drops"]["unprotected"] == 1
    assert [
        a
        for a in feed(hub, 1.0, SPOKE_NBMA, registration(), protected=True)
        if not isinstance(a, Event)
    ]


def test_every_drop_is_logged_with_its_reason() -> None:
    hub = started(hub_config())
    actions = hub.packet_received(1.0, SPOKE_NBMA, b"\x00\x01")
    (event,) = events(actions, "drop")
    assert event.fields["reason"] == "decode_truncated" and event.fields["src"] == SPOKE_NBMA


def test_input_before_start_is_ignored() -> None:
    engine = Engine(hub_config())
    assert engine.packet_received(0.0, SPOKE_NBMA, encode(registration())) == []
    assert (
        engine.hairpin(
            0.0, SPOKE_NBMA, OTHER_NBMA, ip_address("10.1.0.1"), ip_address("10.2.0.1"), b""
        )
        == []
    )
    assert engine.stats()["drops"]["not_running"] == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_octets_never_raise(data: bytes) -> None:
    for engine in (started(hub_config()), started(spoke_config())):
        engine.packet_received(1.0, SPOKE_NBMA, data)


addresses4 = st.sampled_from(
    [
        ip_address(a)
        for a in (
            "172.16.0.1",
            "172.16.0.11",
            "172.16.0.12",
            "10.1.0.5",
            "10.2.0.7",
            "198.51.100.1",
            "203.0.113.11",
            "203.0.113.12",
        )
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.sampled_from([registration(), resolution_request(ip_address("10.2.0.7"))]),
    st.sampled_from(list(PacketType)),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    addresses4,
    addresses4,
    st.integers(0, 2**32 - 1),
    st.sampled_from([SPOKE_NBMA, OTHER_NBMA, HUB_NBMA]),
)
def test_well_formed_but_wrong_packets_never_raise(
    base, ptype, flags, hops, src_proto, dst_proto, rid, src
) -> None:
    pkt = replace(
        base,
        type=ptype,
        flags=flags,
        hop_count=hops,
        src_proto=src_proto,
        dst_proto=dst_proto,
        request_id=rid,
    )
    if ptype in (PacketType.ERROR_INDICATION, PacketType.TRAFFIC_INDICATION):
        # These types carry no flags, request id or CIEs; they quote a packet instead.
        pkt = replace(pkt, flags=0, request_id=0, cies=(), payload=encode(base)[:40])
    hub = registered_hub((OTHER_PROTO, OTHER_NBMA, ()))
    spoke = started(spoke_config(addresses=(ip_interface("172.16.0.11/24"),)))
    for engine in (hub, spoke):
        engine.packet_received(1.0, src, encode(pkt))
        engine.packet_received(1.0, src, encode(pkt), True)
        engine.timer_fired(100.0)
