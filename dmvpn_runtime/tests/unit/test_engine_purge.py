"""Purge Request / Reply at a node that cached a binding."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from enginekit import (
    HUB_NBMA,
    HUB_PROTO,
    OTHER_NBMA,
    OTHER_PROTO,
    SPOKE_PROTO,
    feed,
    of,
    only_sent,
    sent,
    spoke_config,
    started,
)
from test_engine_resolution import reply_for

from dmvpn_runtime.nhrp.engine import IpsecDown, RemoveMapping, RemoveRoute
from dmvpn_runtime.nhrp.wire import Cie, Packet, PacketType
from dmvpn_runtime.nhrp.wire.constants import PURGE_FLAG_NO_REPLY


def spoke_with_shortcut():
    spoke = started(spoke_config())
    _d, req = only_sent(spoke.no_mapping(1.0, ip_address("10.2.0.7")))
    feed(spoke, 1.1, HUB_NBMA, reply_for(req))
    assert spoke.shortcuts()
    return spoke


def purge(flags: int = 0, src_nbma=HUB_NBMA, src_proto=HUB_PROTO) -> Packet:
    return Packet(
        PacketType.PURGE_REQUEST,
        src_nbma=src_nbma,
        src_proto=src_proto,
        dst_proto=SPOKE_PROTO,
        flags=flags,
        request_id=77,
        cies=(
            Cie(prefix_length=32, client_nbma=OTHER_NBMA, client_proto=OTHER_PROTO),
            Cie(prefix_length=24, client_nbma=OTHER_NBMA, client_proto=ip_address("10.2.0.0")),
        ),
    )


def test_purge_removes_routes_then_mapping_then_sa_and_is_acknowledged() -> None:
    spoke = spoke_with_shortcut()
    actions = feed(spoke, 5.0, HUB_NBMA, purge())
    route = RemoveRoute(ip_network("10.2.0.0/24"), OTHER_PROTO)
    assert actions.index(route) < actions.index(of(actions, RemoveMapping)[0])
    assert IpsecDown(OTHER_NBMA) in actions
    dst, reply = only_sent(actions)
    assert dst == HUB_NBMA and reply.type == PacketType.PURGE_REPLY and reply.request_id == 77
    assert not spoke.shortcuts()


def test_purge_with_n_set_is_not_acknowledged() -> None:
    spoke = spoke_with_shortcut()
    actions = feed(spoke, 5.0, HUB_NBMA, purge(PURGE_FLAG_NO_REPLY))
    assert not sent(actions) and not spoke.shortcuts()


def test_purge_from_a_stranger_is_ignored() -> None:
    spoke = spoke_with_shortcut()
    stranger = ip_address("192.0.2.99")
    assert not sent(feed(spoke, 5.0, stranger, purge(src_nbma=stranger)))
    assert spoke.shortcuts()
    assert spoke.stats()["drops"]["unknown_peer"] == 1


def test_unexpected_purge_reply_is_dropped() -> None:
    spoke = started(spoke_config())
    stray = Packet(
        PacketType.PURGE_REPLY,
        src_nbma=spoke.config.nbma,
        src_proto=SPOKE_PROTO,
        dst_proto=HUB_PROTO,
        request_id=4242,
    )
    feed(spoke, 1.0, HUB_NBMA, stray)
    assert spoke.stats()["drops"]["unmatched_reply"] == 1
