"""Resolution, packet by packet: the NHS forwarding, the egress answering, the ingress."""

from __future__ import annotations

import struct
from dataclasses import replace
from ipaddress import ip_address, ip_network

from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
    OTHER_LAN,
    OTHER_NBMA,
    OTHER_PROTO,
    SPOKE_LAN,
    SPOKE_NBMA,
    SPOKE_PROTO,
    events,
    feed,
    hub_config,
    of,
    only_sent,
    registered_hub,
    resolution_request,
    sent,
    spoke_config,
    started,
)

from dmvpn_runtime.nhrp.engine import AddMapping, AddRoute, IpsecUp, MappingType
from dmvpn_runtime.nhrp.wire import (
    Cie,
    CieCode,
    ErrorCode,
    ExtensionType,
    ForwardTransitNhs,
    NatAddress,
    PacketType,
    ResponderAddress,
    UnknownExtension,
    VendorPrivate,
)
from dmvpn_runtime.nhrp.wire.constants import RES_FLAG_AUTHORITATIVE

CLIENTS = ((SPOKE_PROTO, SPOKE_NBMA, (SPOKE_LAN,)), (OTHER_PROTO, OTHER_NBMA, (OTHER_LAN,)))


def _extension_type_at(packet: bytes, offset: int) -> int:
    """The type of the extension whose header starts at ``offset`` (C and u bits off)."""
    assert offset >= 20 + 8, "an extension cannot start inside the fixed parts"
    return struct.unpack_from("!H", packet, offset)[0] & 0x3FFF


def test_hub_forwards_to_the_egress_with_a_transit_record_and_one_hop_less() -> None:
    hub = registered_hub(*CLIENTS)
    dst, fwd = only_sent(feed(hub, 1.0, SPOKE_NBMA, resolution_request(ip_address("10.2.0.7"))))
    assert dst == OTHER_NBMA
    assert fwd.hop_count == 63 and fwd.request_id == 500
    assert [c.client_proto for c in fwd.find(ForwardTransitNhs).cies] == [HUB_PROTO]


def test_hop_count_exhausted_gets_error_15() -> None:
    hub = registered_hub(*CLIENTS)
    actions = feed(hub, 1.0, SPOKE_NBMA, resolution_request(ip_address("10.2.0.7"), hop_count=1))
    dst, err = only_sent(actions)
    assert err.type == PacketType.ERROR_INDICATION
    assert err.error_code == ErrorCode.HOP_COUNT_EXCEEDED == 15
    assert dst == SPOKE_NBMA and err.dst_proto == SPOKE_PROTO
    assert err.error_offset == 9 and err.payload[9] == 1  # ar$hopcnt of the quoted request
    assert hub.stats()["drops"]["hop_count_exceeded"] == 1


def test_finding_ourselves_in_the_forward_record_is_a_loop_error_3() -> None:
    hub = registered_hub(*CLIENTS)
    us = Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO)
    req = resolution_request(ip_address("10.2.0.7"), transit=(us,))
    _dst, err = only_sent(feed(hub, 1.0, SPOKE_NBMA, req))
    assert err.error_code == ErrorCode.LOOP_DETECTED == 3
    assert _extension_type_at(err.payload, err.error_offset) == ExtensionType.FORWARD_TRANSIT_NHS


def test_no_binding_is_answered_with_code_12() -> None:
    hub = registered_hub(*CLIENTS)
    dst, nak = only_sent(feed(hub, 1.0, SPOKE_NBMA, resolution_request(ip_address("10.9.0.1"))))
    assert nak.type == PacketType.RESOLUTION_REPLY and dst == SPOKE_NBMA
    assert nak.cies[0].code == CieCode.NO_BINDING_EXISTS == 12


def test_unknown_compulsory_extension_gets_error_1_from_the_responder() -> None:
    spoke = started(spoke_config())
    req = resolution_request(
        ip_address("10.1.0.7"),
        OTHER_PROTO,
        OTHER_NBMA,
        extra=(UnknownExtension(0x1234, b"x", compulsory=True),),
    )
    _dst, err = only_sent(feed(spoke, 1.0, HUB_NBMA, req))
    assert err.error_code == ErrorCode.UNRECOGNIZED_EXTENSION
    assert _extension_type_at(err.payload, err.error_offset) == 0x1234
    # A hub only passing it on forwards it untouched (RFC 2332 §5.3).
    hub = registered_hub(*CLIENTS)
    req = resolution_request(
        ip_address("10.2.0.7"), extra=(UnknownExtension(0x1234, b"x", compulsory=True),)
    )
    _dst, fwd = only_sent(feed(hub, 1.0, SPOKE_NBMA, req))
    assert fwd.type == PacketType.RESOLUTION_REQUEST
    assert UnknownExtension(0x1234, b"x", compulsory=True) in fwd.extensions


def test_egress_answers_with_its_protected_prefix_and_learns_the_requester() -> None:
    spoke = started(spoke_config())
    req = resolution_request(
        ip_address("10.1.0.7"),
        OTHER_PROTO,
        OTHER_NBMA,
        transit=(Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO),),
    )
    actions = feed(spoke, 1.0, HUB_NBMA, req)
    dst, reply = only_sent(actions)
    assert dst == OTHER_NBMA  # straight to the requester
    cie = reply.cies[0]
    assert cie.code == 0 and cie.prefix_length == 24  # 10.1.0.0/24, not /32
    assert (cie.client_nbma, cie.client_proto) == (SPOKE_NBMA, SPOKE_PROTO)
    assert reply.flags & RES_FLAG_AUTHORITATIVE
    assert reply.find(ResponderAddress).cie.client_proto == SPOKE_PROTO
    # The requester's binding, learned from the request (so both directions go direct).
    assert AddMapping(OTHER_PROTO, OTHER_NBMA, MappingType.CACHED) in actions
    assert IpsecUp(OTHER_NBMA) in actions


def test_egress_answers_a_natted_requester_back_through_the_hub() -> None:
    spoke = started(spoke_config())
    public = ip_address("198.51.100.200")
    req = resolution_request(
        ip_address("10.1.0.7"),
        OTHER_PROTO,
        OTHER_NBMA,
        transit=(Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO),),
    )
    natx = NatAddress((Cie(prefix_length=32, client_nbma=public, client_proto=OTHER_PROTO),))
    req = replace(
        req, extensions=tuple(natx if isinstance(e, NatAddress) else e for e in req.extensions)
    )
    actions = feed(spoke, 1.0, HUB_NBMA, req)
    dst, _reply = only_sent(actions)
    assert dst == HUB_NBMA  # its NAT may filter us: back along the request's path
    assert AddMapping(OTHER_PROTO, public, MappingType.CACHED) in actions


def ask(spoke, target, now=1.0):
    actions = spoke.no_mapping(now, target)
    dst, req = only_sent(actions)
    return dst, req


def reply_for(req, prefix_length=24, proto=OTHER_PROTO, nbma=OTHER_NBMA, code=0, exts=None):
    return replace(
        req,
        type=PacketType.RESOLUTION_REPLY,
        flags=req.flags | RES_FLAG_AUTHORITATIVE,
        cies=(
            Cie(
                code=code,
                prefix_length=prefix_length,
                holding_time=600,
                client_nbma=nbma,
                client_proto=proto,
            ),
        ),
        extensions=req.extensions if exts is None else exts,
    )


def test_ingress_installs_mapping_then_route_for_the_answered_prefix() -> None:
    spoke = started(spoke_config())
    target = ip_address("10.2.0.7")
    dst, req = ask(spoke, target)
    assert dst == HUB_NBMA and req.dst_proto == target
    actions = feed(spoke, 1.1, HUB_NBMA, reply_for(req))
    mapping = AddMapping(OTHER_PROTO, OTHER_NBMA, MappingType.CACHED)
    route = AddRoute(ip_network("10.2.0.0/24"), OTHER_PROTO)
    assert actions.index(mapping) < actions.index(route)  # mapping first, then the route
    assert events(actions, "shortcut_up")


def test_a_host_answer_routes_unless_it_is_the_egress_itself() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, OTHER_PROTO)  # the egress itself: a mapping, no route
    actions = feed(spoke, 1.1, HUB_NBMA, reply_for(req, prefix_length=32))
    assert AddMapping(OTHER_PROTO, OTHER_NBMA, MappingType.CACHED) in actions
    assert not of(actions, AddRoute)
    target = ip_address("10.2.0.7")  # behind the egress: its host prefix is routed
    _dst, req = ask(spoke, target, now=2.0)
    actions = feed(spoke, 2.1, HUB_NBMA, reply_for(req, prefix_length=32))
    assert AddRoute(ip_network("10.2.0.7/32"), OTHER_PROTO) in actions


def test_retries_keep_the_request_id_and_give_up_after_30_s() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, ip_address("10.2.0.7"), now=1.0)
    times, ids = [], []
    now = 1.0
    while now < 40:
        now = spoke.next_deadline()
        for _d, p in sent(spoke.timer_fired(now)):
            if p.type == PacketType.RESOLUTION_REQUEST:
                times.append(round(now - 1.0, 3))
                ids.append(p.request_id)
    assert times == [1.0, 3.0, 7.0, 14.0, 21.0, 28.0]
    assert set(ids) == {req.request_id}


def test_reply_with_an_extension_that_was_not_asked_for_is_dropped() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, ip_address("10.2.0.7"))
    bad = reply_for(
        req,
        exts=(
            *req.extensions[:-1],
            VendorPrivate(1, b"ok"),
            UnknownExtension(77, b"?"),
            req.extensions[-1],
        ),
    )
    actions = feed(spoke, 1.1, HUB_NBMA, bad)
    assert not of(actions, AddRoute)
    assert spoke.stats()["drops"]["unexpected_extension"] == 1
    # The real answer still works afterwards: nothing changed.
    assert of(feed(spoke, 1.2, HUB_NBMA, reply_for(req)), AddRoute)


def test_reply_that_matches_no_request_is_dropped() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, ip_address("10.2.0.7"))
    stray = replace(reply_for(req), request_id=req.request_id + 1)
    assert not of(feed(spoke, 1.1, HUB_NBMA, stray), AddRoute)
    assert spoke.stats()["drops"]["unmatched_reply"] == 1


def test_answer_whose_prefix_holds_our_own_address_is_refused() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, ip_address("10.2.0.7"))
    actions = feed(spoke, 1.1, HUB_NBMA, reply_for(req, prefix_length=0))  # 0.0.0.0/0
    assert not of(actions, AddRoute) and not of(actions, AddMapping)
    assert spoke.stats()["drops"]["malformed"] == 1


def test_negative_answer_is_cached_and_suppresses_requests() -> None:
    spoke = started(spoke_config())
    target = ip_address("10.2.0.7")
    _dst, req = ask(spoke, target)
    feed(spoke, 1.1, HUB_NBMA, reply_for(req, code=12))
    assert not sent(spoke.no_mapping(5.0, target))
    entry = next(e for e in spoke.cache_entries() if e.proto == target)
    assert entry.type == "negative"


def test_natted_responder_is_reached_at_its_post_nat_address() -> None:
    spoke = started(spoke_config())
    _dst, req = ask(spoke, ip_address("10.2.0.7"))
    post = ip_address("198.51.100.222")
    nat = NatAddress((Cie(prefix_length=32, client_nbma=post, client_proto=OTHER_PROTO),))
    exts = tuple(nat if isinstance(e, NatAddress) else e for e in req.extensions)
    actions = feed(spoke, 1.1, HUB_NBMA, reply_for(req, exts=exts))
    assert AddMapping(OTHER_PROTO, post, MappingType.CACHED) in actions


def test_nhs_answer_mode_replies_from_the_registration() -> None:
    hub = registered_hub(*CLIENTS)
    hub.reconfigure(1.0, hub_config(resolution_mode="answer"))
    _dst, reply = only_sent(feed(hub, 2.0, SPOKE_NBMA, resolution_request(ip_address("10.2.0.7"))))
    cie = reply.cies[0]
    assert (cie.code, cie.prefix_length, cie.client_proto, cie.client_nbma) == (
        0,
        24,
        OTHER_PROTO,
        OTHER_NBMA,
    )


def test_first_nhs_adds_a_natted_requesters_post_nat_address() -> None:
    hub = started(hub_config())
    public = ip_address("198.51.100.200")
    from enginekit import registration

    feed(hub, 0.0, public, registration())  # the client registered from behind a NAT
    feed(hub, 0.0, OTHER_NBMA, registration(OTHER_PROTO, OTHER_NBMA, (OTHER_LAN,), request_id=9))
    _dst, fwd = only_sent(feed(hub, 1.0, public, resolution_request(ip_address("10.2.0.7"))))
    cies = fwd.find(NatAddress).cies
    assert [(c.client_proto, c.client_nbma) for c in cies] == [(SPOKE_PROTO, public)]


def test_nhs_relays_an_error_indication_to_its_client() -> None:
    hub = registered_hub(*CLIENTS)
    spoke = started(spoke_config())
    _dst, req = only_sent(spoke.no_mapping(1.0, ip_address("10.2.0.7")))
    from dmvpn_runtime.nhrp.wire import Packet, encode

    err = Packet(
        PacketType.ERROR_INDICATION,
        hop_count=64,
        src_nbma=OTHER_NBMA,
        src_proto=OTHER_PROTO,
        dst_proto=SPOKE_PROTO,
        error_code=ErrorCode.PROTOCOL_ADDRESS_UNREACHABLE,
        payload=encode(req),
    )
    dst, relayed = only_sent(feed(hub, 1.2, OTHER_NBMA, err))
    assert dst == SPOKE_NBMA and relayed.hop_count == 63
    actions = feed(spoke, 1.3, HUB_NBMA, relayed)
    failed = events(actions, "resolution_failed")
    assert failed and failed[0].fields["code"] == ErrorCode.PROTOCOL_ADDRESS_UNREACHABLE
    retries = [p for _d, p in sent(spoke.timer_fired(2.5)) if p.type == req.type]
    assert not retries  # the error ended the request
