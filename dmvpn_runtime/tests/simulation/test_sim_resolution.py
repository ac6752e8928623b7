"""Resolution through one or more NHSs: forwarding, answering, negative answers, loops."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface, ip_network

from nhrpsim import Net, hub_config, spoke_config, star

from dmvpn_runtime.nhrp.engine import NhsConfig, ResolutionMode, Role
from dmvpn_runtime.nhrp.wire import CieCode, ErrorCode, ForwardTransitNhs, PacketType

UNKNOWN = ip_address("172.16.0.99")


def test_no_binding_gets_code_12_and_is_cached_briefly(net: Net) -> None:
    (_hub,), (s1,) = star(net, spokes=1)
    net.run(until=2)
    for t in (2, 3, 10, 20):
        net.run(until=t)
        net.apply(s1, s1.engine.no_mapping(net.now, UNKNOWN))
    net.run(until=25)
    asked = [
        w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert len(asked) == 1  # the NAK (code 12) is cached for 30 s
    nak = next(w for w in net.wire if w.packet.type == PacketType.RESOLUTION_REPLY)
    assert nak.packet.cies[0].code == CieCode.NO_BINDING_EXISTS
    entry = next(e for e in s1.engine.cache_entries() if e.proto == UNKNOWN)
    assert entry.type == "negative"
    net.run(until=40)
    assert not [e for e in s1.engine.cache_entries() if e.proto == UNKNOWN]
    net.apply(s1, s1.engine.no_mapping(net.now, UNKNOWN))
    assert (
        len(
            [
                w
                for w in net.wire
                if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
            ]
        )
        == 2
    )


def test_answer_mode_hub_answers_from_its_registrations(net: Net) -> None:
    (_hub,), (s1, s2) = star(net, spokes=2, hub_kw={"resolution_mode": ResolutionMode.ANSWER})
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    reply = next(w for w in net.wire if w.packet.type == PacketType.RESOLUTION_REPLY)
    assert (reply.sender, reply.receiver) == ("hub1", "s1")
    assert reply.packet.cies[0].prefix_length == 24  # the registered protected prefix
    assert s1.eroutes[ip_network("10.2.0.0/24")] == s2.overlay()
    assert not [
        w for w in net.wire if w.receiver == "s2" and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert net.ping("s1", "10.1.0.5", "10.2.0.7").direct


def hierarchy(net: Net) -> None:
    """top (172.16.0.1) <- region hubs r1 (.2, 10.1.0.0/16) and r2 (.3, 10.2.0.0/16)
    <- spokes a (.11, 10.1.1.0/24) and b (.12, 10.2.1.0/24)."""
    net.add("top", hub_config(1))
    for i, region in ((2, 1), (3, 2)):
        net.add(
            f"r{region}",
            hub_config(
                i,
                role=Role.BOTH,
                protected=(ip_network(f"10.{region}.0.0/16"),),
                nhs=(NhsConfig(ip_address("172.16.0.1"), ip_address("198.51.100.1")),),
                nhs_routes=(ip_network("10.0.0.0/8"),),
            ),
        )
    for name, j, region, hub in (("a", 11, 1, 2), ("b", 12, 2, 3)):
        net.add(
            name,
            spoke_config(
                j - 10,
                hubs=(hub,),
                addresses=(ip_interface(f"172.16.0.{j}/24"),),
                protected=(ip_network(f"10.{region}.1.0/24"),),
            ),
        )
    net["top"].routes[ip_network("10.1.0.0/16")] = ip_address("172.16.0.2")
    net["top"].routes[ip_network("10.2.0.0/16")] = ip_address("172.16.0.3")
    net["r1"].routes[ip_network("10.1.1.0/24")] = ip_address("172.16.0.11")
    net["r2"].routes[ip_network("10.2.1.0/24")] = ip_address("172.16.0.12")
    net.start()


def test_resolution_across_a_hierarchy_of_hubs(net: Net) -> None:
    hierarchy(net)
    net.run(until=3)
    first = net.ping("a", "10.1.1.5", "10.2.1.7")
    assert first.path == ["a", "r1", "top", "r2", "b"]
    net.run(until=6)
    # a's request went a -> r1 -> top -> r2 -> b with a Forward Transit record per hop...
    a_ov = ip_address("172.16.0.11")
    at_b = next(
        w
        for w in net.wire
        if w.receiver == "b"
        and w.packet.type == PacketType.RESOLUTION_REQUEST
        and w.packet.src_proto == a_ov
    )
    hops = at_b.packet.find(ForwardTransitNhs).cies
    assert [c.client_proto for c in hops] == [ip_address(f"172.16.0.{i}") for i in (2, 1, 3)]
    assert at_b.packet.hop_count == 64 - 3
    # ...and b answered a directly; a now goes straight to b.
    back = [
        (w.sender, w.receiver)
        for w in net.wire
        if w.packet.type == PacketType.RESOLUTION_REPLY and w.packet.src_proto == a_ov
    ]
    assert back == [("b", "a")]
    assert net["a"].eroutes[ip_network("10.2.1.0/24")] == ip_address("172.16.0.12")
    assert net.ping("a", "10.1.1.5", "10.2.1.7").direct


def test_forwarding_loop_is_detected_with_code_3(net: Net) -> None:
    # Three hubs in a ring, each the NHS of the next: an unknown target goes round.
    for i, up in ((1, 2), (2, 3), (3, 1)):
        net.add(
            f"hub{i}",
            hub_config(
                i,
                role=Role.BOTH,
                nhs=(NhsConfig(ip_address(f"172.16.0.{up}"), ip_address(f"198.51.100.{up}")),),
            ),
        )
    s1 = net.add("s1", spoke_config(1))
    net.start()
    net.run(until=3)
    net.apply(s1, s1.engine.no_mapping(net.now, ip_address("10.99.0.1")))
    net.run(until=5)
    hops = [
        (w.sender, w.receiver) for w in net.wire if w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert hops == [("s1", "hub1"), ("hub1", "hub2"), ("hub2", "hub3"), ("hub3", "hub1")]
    errors = [w for w in net.wire if w.packet.type == PacketType.ERROR_INDICATION]
    assert len(errors) == 1 and errors[0].packet.error_code == ErrorCode.LOOP_DETECTED
    assert (errors[0].sender, errors[0].receiver) == ("hub1", "s1")  # told to the requester
    assert net["hub1"].engine.stats()["drops"]["loop_detected"] == 1
    failed = s1.events_of("resolution_failed")
    assert failed and failed[0]["code"] == ErrorCode.LOOP_DETECTED
    # The Error Indication ended the request: no retransmission.
    assert (
        len(
            [
                w
                for w in net.wire
                if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
            ]
        )
        == 1
    )
