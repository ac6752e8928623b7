"""Authentication extension and authorisation."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from enginekit import (
    HUB_NBMA,
    OTHER_NBMA,
    OTHER_PROTO,
    SPOKE_NBMA,
    events,
    feed,
    hub_config,
    of,
    only_sent,
    registration,
    resolution_request,
    sent,
    spoke_config,
    started,
)

from dmvpn_runtime.nhrp.engine import AddRoute
from dmvpn_runtime.nhrp.wire import (
    CleartextAuthentication,
    End,
    ErrorCode,
    KeyedHashAuthentication,
    PacketType,
    encode,
)


def with_auth(pkt, secret: bytes):
    exts = tuple(e for e in pkt.extensions if not isinstance(e, End))
    return replace(pkt, extensions=(*exts, CleartextAuthentication(secret), End()))


def test_wrong_secret_gets_error_11_quoting_the_packet_and_nothing_else() -> None:
    hub = started(hub_config(auth_secret=b"right"))
    bad = with_auth(registration(), b"wrong")
    actions = feed(hub, 1.0, SPOKE_NBMA, bad)
    dst, err = only_sent(actions)
    assert dst == SPOKE_NBMA and err.type == PacketType.ERROR_INDICATION
    assert err.error_code == ErrorCode.AUTHENTICATION_FAILURE == 11
    assert err.payload == encode(bad)
    offset = err.error_offset  # at the authentication extension, after the request's others
    assert offset > 28 and err.payload[offset : offset + 2] in (b"\x00\x07", b"\x80\x07")
    assert err.payload[offset + 8 : offset + 13] == b"wrong"  # type 1 (4 octets), the secret
    missing = only_sent(feed(hub, 1.5, SPOKE_NBMA, registration()))[1]
    assert missing.error_code == 11 and missing.error_offset == 14  # ar$extoff: none there
    assert err.find(CleartextAuthentication).secret == b"right"
    assert events(actions, "auth_failure")
    assert not hub.cache_entries()
    good = with_auth(registration(), b"right")
    assert only_sent(feed(hub, 2.0, SPOKE_NBMA, good))[1].type == PacketType.REGISTRATION_REPLY


def test_keyed_hash_form_is_refused() -> None:
    hub = started(hub_config(auth_secret=b"right"))
    exts = (KeyedHashAuthentication(spi=2, source=ip_address("172.16.0.11"), data=b"x"), End())
    feed(hub, 1.0, SPOKE_NBMA, replace(registration(), extensions=exts))
    assert hub.stats()["drops"]["auth_mismatch"] == 1


def test_an_error_indication_is_never_answered_with_one() -> None:
    spoke = started(spoke_config(auth_secret=b"mine"))
    hub = started(hub_config(auth_secret=b"other"))
    _dst, err = only_sent(feed(hub, 1.0, SPOKE_NBMA, with_auth(registration(), b"mine")))
    actions = spoke.packet_received(1.1, HUB_NBMA, encode(err))
    assert not sent(actions)
    assert spoke.stats()["drops"]["auth_mismatch"] == 1


def test_secret_is_on_every_packet_the_engine_sends() -> None:
    spoke = started(spoke_config(auth_secret=b"k"))
    packets = sent(spoke.start(0.0)) + sent(spoke.timer_fired(100.0))
    packets += sent(spoke.no_mapping(101.0, ip_address("10.2.0.7")))
    packets += sent(
        feed(
            spoke,
            102.0,
            HUB_NBMA,
            with_auth(resolution_request(ip_address("10.1.0.7"), OTHER_PROTO, OTHER_NBMA), b"k"),
        )
    )
    packets += sent(spoke.stop(103.0))
    types = {p.type for _d, p in packets}
    assert {
        PacketType.REGISTRATION_REQUEST,
        PacketType.RESOLUTION_REQUEST,
        PacketType.RESOLUTION_REPLY,
        PacketType.PURGE_REQUEST,
    } <= types
    assert all(p.find(CleartextAuthentication).secret == b"k" for _d, p in packets)


def test_resolution_reply_needs_the_authorisers_blessing() -> None:
    class NoSpoke2:
        def authorise_registration(self, nbma, proto, prefixes, ipsec_identity):
            return True

        def authorise_resolution_reply(self, nbma, proto, prefixes, ipsec_identity):
            return proto != OTHER_PROTO or "not in certificate"

    spoke = started(spoke_config(), authoriser=NoSpoke2())
    _d, req = only_sent(spoke.no_mapping(1.0, ip_address("10.2.0.7")))
    from test_engine_resolution import reply_for

    actions = feed(spoke, 1.1, HUB_NBMA, reply_for(req))
    assert not of(actions, AddRoute)
    assert events(actions, "auth_failure")[0].fields["reason"] == "not in certificate"
