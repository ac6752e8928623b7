"""Helpers for the engine unit tests: configs, crafted packets, picking actions apart."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from dmvpn_runtime.nhrp.engine import (
    Engine,
    EngineConfig,
    Event,
    NhsConfig,
    Role,
    SendPacket,
)
from dmvpn_runtime.nhrp.wire import (
    Cie,
    End,
    ForwardTransitNhs,
    NatAddress,
    Packet,
    PacketType,
    ResponderAddress,
    ReverseTransitNhs,
    decode,
    encode,
)
from dmvpn_runtime.nhrp.wire.constants import FLAG_NAT_CAPABLE, REG_FLAG_UNIQUE

HUB_NBMA = ip_address("198.51.100.1")
HUB_PROTO = ip_address("172.16.0.1")
SPOKE_NBMA = ip_address("203.0.113.11")
SPOKE_PROTO = ip_address("172.16.0.11")
SPOKE_LAN = ip_network("10.1.0.0/24")
OTHER_NBMA = ip_address("203.0.113.12")
OTHER_PROTO = ip_address("172.16.0.12")
OTHER_LAN = ip_network("10.2.0.0/24")


def hub_config(**kw: Any) -> EngineConfig:
    args: dict[str, Any] = {
        "nbma": HUB_NBMA,
        "addresses": (ip_interface("172.16.0.1/24"),),
        "role": Role.NHS,
        "holdtime": 600,
    }
    args.update(kw)
    return EngineConfig(**args)


def spoke_config(**kw: Any) -> EngineConfig:
    args: dict[str, Any] = {
        "nbma": SPOKE_NBMA,
        "addresses": (ip_interface("172.16.0.11/24"),),
        "protected": (SPOKE_LAN,),
        "nhs": (NhsConfig(HUB_PROTO, HUB_NBMA),),
        "holdtime": 600,
    }
    args.update(kw)
    return EngineConfig(**args)


def started(config: EngineConfig, **kw: Any) -> Engine:
    engine = Engine(config, **kw)
    engine.start(0.0)
    return engine


def sent(actions: Iterable[Any]) -> list[tuple[Any, Packet]]:
    """(destination NBMA, decoded packet) for each SendPacket, decoding the real octets."""
    return [(a.nbma, decode(a.data)) for a in actions if isinstance(a, SendPacket)]


def only_sent(actions: Iterable[Any]) -> tuple[Any, Packet]:
    packets = sent(actions)
    assert len(packets) == 1, packets
    return packets[0]


def events(actions: Iterable[Any], kind: str | None = None) -> list[Event]:
    return [a for a in actions if isinstance(a, Event) and (kind is None or a.kind == kind)]


def of(actions: Iterable[Any], cls: type) -> list[Any]:
    return [a for a in actions if isinstance(a, cls)]


def registration(
    proto=SPOKE_PROTO,
    nbma=SPOKE_NBMA,
    prefixes=(SPOKE_LAN,),
    unique: bool = True,
    request_id: int = 100,
    holding: int = 600,
    extensions: tuple | None = None,
    nat_nhs: bool = True,
) -> Packet:
    cies = [
        Cie(
            prefix_length=0xFF if unique else 32,
            holding_time=holding,
            client_nbma=nbma,
            client_proto=proto,
        )
    ]
    cies += [
        Cie(
            prefix_length=p.prefixlen,
            holding_time=holding,
            client_nbma=nbma,
            client_proto=p.network_address,
        )
        for p in prefixes
    ]
    if extensions is None:
        exts = [ResponderAddress(), ForwardTransitNhs(), ReverseTransitNhs()]
        if nat_nhs:
            exts.append(
                NatAddress((Cie(prefix_length=32, client_nbma=HUB_NBMA, client_proto=HUB_PROTO),))
            )
        extensions = (*exts, End())
    return Packet(
        PacketType.REGISTRATION_REQUEST,
        hop_count=1,
        src_nbma=nbma,
        src_proto=proto,
        dst_proto=HUB_PROTO,
        flags=(REG_FLAG_UNIQUE if unique else 0) | FLAG_NAT_CAPABLE,
        request_id=request_id,
        cies=tuple(cies),
        extensions=extensions,
    )


def resolution_request(
    target,
    requester=SPOKE_PROTO,
    nbma=SPOKE_NBMA,
    request_id: int = 500,
    hop_count: int = 64,
    transit: tuple = (),
    extra: tuple = (),
) -> Packet:
    return Packet(
        PacketType.RESOLUTION_REQUEST,
        hop_count=hop_count,
        src_nbma=nbma,
        src_proto=requester,
        dst_proto=target,
        flags=0x8000 | 0x4000 | 0x0800 | FLAG_NAT_CAPABLE,
        request_id=request_id,
        cies=(Cie(prefix_length=32, holding_time=600),),
        extensions=(
            ResponderAddress(),
            ForwardTransitNhs(transit),
            ReverseTransitNhs(),
            NatAddress(()),
            *extra,
            End(),
        ),
    )


def feed(engine: Engine, now: float, src, packet: Packet, protected: bool = False) -> list:
    return engine.packet_received(now, src, encode(packet), protected)


def registered_hub(*clients: tuple) -> Engine:
    """A hub with clients registered: each (proto, nbma, prefixes)."""
    hub = started(hub_config())
    for i, (proto, nbma, prefixes) in enumerate(clients):
        feed(hub, 0.0, nbma, registration(proto, nbma, prefixes, request_id=10 + i))
    return hub
