"""Round trip properties: decode(encode(x)) == x and encode(decode(b)) == b.

Run per packet type and address-family combination and per extension class, so a
failure names the case; then over any packet, and through the JSON form.
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import ADDRESS_FAMILIES, extension_strategies, packets, scaled, wire_packets

from dmvpn_runtime.nhrp.wire import (
    Afn,
    End,
    PacketType,
    ProtocolType,
    decode,
    encode,
)
from dmvpn_runtime.nhrp.wire.jsonform import packet_from_json, packet_to_json

FAMILY_IDS = [
    f"nbma-v{4 if a == Afn.IPV4 else 6}-proto-v{4 if p == ProtocolType.IPV4 else 6}"
    for a, p in ADDRESS_FAMILIES
]


@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.json_name)
@pytest.mark.parametrize("families", ADDRESS_FAMILIES, ids=FAMILY_IDS)
def test_decode_encode_roundtrip(ptype, families):
    @scaled(15)
    @given(packets(types=[ptype], families=[families]))
    def check(packet):
        wire = encode(packet)
        assert decode(wire) == packet
        assert encode(decode(wire)) == wire

    check()


@scaled(200)
@given(wire_packets())
def test_encode_decode_is_byte_exact(wire):
    assert encode(decode(wire)) == wire
    # pktsz covers the whole packet and the checksum verifies.
    assert int.from_bytes(wire[10:12], "big") == len(wire)


@scaled(100)
@given(wire_packets(), st.binary(min_size=1, max_size=16))
def test_octets_past_packet_size_are_ignored(wire, tail):
    assert encode(decode(wire + tail)) == wire


SOURCES = {ProtocolType.IPV4: ip_address("10.0.0.1"), ProtocolType.IPV6: ip_address("fd00::1")}


@st.composite
def packet_with(draw: st.DrawFn, cls: type):
    """A packet of any type and families whose first extension is of class ``cls``."""
    afn, proto = families = draw(st.sampled_from(ADDRESS_FAMILIES))
    base = draw(packets(families=[families]))
    ext = draw(extension_strategies(afn, proto, has_src_proto=True)[cls])
    return replace(base, src_proto=SOURCES[proto], extensions=(ext, End(draw(st.booleans()))))


@pytest.mark.parametrize(
    "cls", list(extension_strategies(Afn.IPV4, ProtocolType.IPV4, True)), ids=lambda c: c.__name__
)
def test_each_extension_roundtrips(cls):
    @scaled(40)
    @given(packet_with(cls))
    def check(packet):
        wire = encode(packet)
        back = decode(wire)
        assert back == packet
        assert isinstance(back.extensions[0], cls)
        assert encode(back) == wire

    check()


@scaled(200)
@given(packets())
def test_json_form_roundtrip(packet):
    obj = packet_to_json(packet)
    text = json.dumps(obj)
    assert packet_from_json(json.loads(text)) == packet
    assert packet_to_json(packet_from_json(json.loads(text))) == obj
