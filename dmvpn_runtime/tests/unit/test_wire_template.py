"""Request templates: a node's requests patched rather than encoded again.

What a template gives must be exactly what the encoder makes of the same packet, for
any destination and request id, or a peer would see a different packet than the one
logged and tested.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmvpn_runtime.nhrp.wire import (
    Afn,
    Cie,
    CleartextAuthentication,
    EncodeError,
    ForwardTransitNhs,
    NatAddress,
    Packet,
    PacketType,
    ProtocolType,
    ResponderAddress,
    Template,
    decode,
    encode,
    intern_address,
    with_end,
)


def extensions(v6: bool) -> tuple:
    hub = Cie(
        client_nbma=ip_address("203.0.113.1"),
        client_proto=ip_address("fd00::1" if v6 else "10.0.0.1"),
    )
    return with_end(
        [
            ResponderAddress(),
            ForwardTransitNhs(),
            NatAddress((hub,)),
            CleartextAuthentication(b"secret"),
        ]
    )


def request(dst: str, request_id: int, v6: bool = False) -> Packet:
    return Packet(
        PacketType.RESOLUTION_REQUEST,
        Afn.IPV4,
        ProtocolType.IPV6 if v6 else ProtocolType.IPV4,
        64,
        ip_address("198.51.100.2"),
        ip_address("fd00::2" if v6 else "10.255.0.2"),
        ip_address(dst),
        0xC802,
        request_id,
        (Cie(prefix_length=128 if v6 else 32, holding_time=7200),),
        extensions=extensions(v6),
    )


def test_the_first_use_gives_the_packet_and_its_encoding_as_they_are() -> None:
    first = request("10.255.0.9", 7)
    template = Template(first)
    packet, octets = template.fill(first.dst_proto, 7)
    assert packet is first
    assert octets == encode(first)


@given(
    dst=st.integers(0, 2**32 - 1).map(IPv4Address),
    request_id=st.integers(0, 2**32 - 1),
    interned=st.booleans(),
)
def test_a_filled_request_is_what_the_encoder_makes_of_it(
    dst: IPv4Address, request_id: int, interned: bool
) -> None:
    template = Template(request("10.255.0.9", 7))
    if interned:
        dst = intern_address(dst)
    packet, octets = template.fill(dst, request_id)
    assert packet == request(str(dst), request_id)
    assert octets == encode(packet)
    assert decode(octets) == packet  # the checksum is right


def test_ipv6_over_ipv4_transport() -> None:
    template = Template(request("fd00::9", 1, v6=True))
    packet, octets = template.fill(IPv6Address("fd00::1:0:a"), 99)
    assert octets == encode(request("fd00::1:0:a", 99, v6=True))
    assert decode(octets).dst_proto == IPv6Address("fd00::1:0:a")
    assert packet.request_id == 99


def test_fills_do_not_change_the_template() -> None:
    template = Template(request("10.255.0.9", 7))
    template.fill(IPv4Address("10.255.0.10"), 8)
    _packet, octets = template.fill(IPv4Address("10.255.0.11"), 9)
    assert octets == encode(request("10.255.0.11", 9))
    assert template.fill(template.packet.dst_proto, 7)[1] == encode(request("10.255.0.9", 7))


def test_a_destination_of_the_other_family_is_refused() -> None:
    template = Template(request("10.255.0.9", 7))
    with pytest.raises(EncodeError, match="destination protocol"):
        template.fill(IPv6Address("fd00::1"), 8)


def test_a_request_id_out_of_range_is_refused() -> None:
    template = Template(request("10.255.0.9", 7))
    with pytest.raises(EncodeError, match="request id"):
        template.fill(IPv4Address("10.255.0.10"), 2**32)


def test_a_packet_without_request_id_or_destination_makes_no_template() -> None:
    indication = Packet(
        PacketType.TRAFFIC_INDICATION,
        src_nbma=ip_address("198.51.100.2"),
        src_proto=ip_address("10.255.0.2"),
        dst_proto=ip_address("10.255.0.9"),
    )
    with pytest.raises(EncodeError, match="template"):
        Template(indication)
    with pytest.raises(EncodeError, match="template"):
        Template(Packet(PacketType.RESOLUTION_REQUEST))


def odd_request(dst: str, request_id: int, v6: bool) -> Packet:
    """A request of odd length: the checksum pads it with a zero octet."""
    packet = request(dst, request_id, v6)
    exts = (*packet.extensions[:-2], CleartextAuthentication(b"odd"), packet.extensions[-1])
    return Packet(
        **{**{f: getattr(packet, f) for f in packet.__dataclass_fields__}, "extensions": exts}
    )


@given(
    request_id=st.integers(0, 2**32 - 1),
    low=st.integers(0, 2**64 - 1),
    v6=st.booleans(),
    odd=st.booleans(),
)
def test_the_patched_checksum_is_the_encoders_for_either_parity(
    request_id: int, low: int, v6: bool, odd: bool
) -> None:
    """fill updates the template's checksum for the two fields it changes, for a
    template of odd or even length (an odd one is summed with a pad octet)."""
    make = odd_request if odd else request
    dst = str(IPv6Address((0xFD00 << 112) | low) if v6 else IPv4Address(low & 0xFFFFFFFF))
    first = make("fd00::9" if v6 else "10.255.0.9", 7, v6)
    assert len(encode(first)) % 2 == odd
    packet, octets = Template(first).fill(ip_address(dst), request_id)
    assert octets == encode(make(dst, request_id, v6))
    assert decode(octets) == packet


@pytest.mark.parametrize("odd", [False, True])
def test_a_sum_that_folds_to_zero_gives_the_encoders_checksum(odd: bool) -> None:
    """A request id chosen so that the ones' complement sum is 0 mod 0xffff (the request
    id is whole 16-bit words, each adding its value): a zero checksum, as encode gives."""
    make = odd_request if odd else request
    template = Template(make("10.255.0.9", 7, False))
    with_zero_id = encode(make("10.255.0.10", 0, False))
    request_id = int.from_bytes(with_zero_id[12:14], "big") - 0xFFFF  # -(sum) mod 0xffff
    request_id %= 0xFFFF
    _packet, octets = template.fill(IPv4Address("10.255.0.10"), request_id)
    assert octets == encode(make("10.255.0.10", request_id, False))
    assert octets[12:14] == b"\x00\x00"
