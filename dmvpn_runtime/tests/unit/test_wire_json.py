"""The JSON form of packets (docs/codec-json.md): exact keys, lossless both ways, strict."""

from __future__ import annotations

import json
from ipaddress import ip_address

import pytest

from dmvpn_runtime.nhrp.wire import (
    Afn,
    Cie,
    CleartextAuthentication,
    CodecError,
    DeviceCapabilities,
    EncodeError,
    End,
    ForwardTransitNhs,
    KeyedHashAuthentication,
    NatAddress,
    Packet,
    PacketType,
    ProtocolType,
    ResponderAddress,
    ReverseTransitNhs,
    UnknownExtension,
    VendorPrivate,
    decode,
    encode,
)
from dmvpn_runtime.nhrp.wire.jsonform import JsonFormError, packet_from_json, packet_to_json

REGISTRATION_HEX = (
    "00010800000000000001005cc4bc0034010304000404800200000001c63364020affff020affff0100ff"
    "000000001c200000000080040000800500008003000000090014002000000000000004000400cb007101"
    "0affff0180000000"
)

EVERY_EXTENSION = (
    ResponderAddress(Cie(0, 32, 1400, 600, 0, ip_address("192.0.2.1"), ip_address("10.0.0.1"))),
    ForwardTransitNhs((Cie(holding_time=7200),)),
    ReverseTransitNhs((), compulsory=False),
    CleartextAuthentication(b"cisco123"),
    KeyedHashAuthentication(spi=2, source=ip_address("10.0.0.2"), data=b"\x01\x02", reserved=9),
    VendorPrivate(0x00000C, b"\xca\xfe"),
    NatAddress((Cie(prefix_length=32, client_nbma=ip_address("203.0.113.9")),)),
    DeviceCapabilities(1, 0x80000001),
    UnknownExtension(10, b"\x00\x01"),
    UnknownExtension(0x1234, b"", compulsory=True),
    End(compulsory=False),
)


def test_the_shared_registration_request():
    obj = packet_to_json(decode(bytes.fromhex(REGISTRATION_HEX)))
    assert obj == {
        "type": "registration_request",
        "afn": 1,
        "protocol_type": "0x0800",
        "hop_count": 1,
        "request_id": 1,
        "flags": ["unique", "nat"],
        "src_nbma": "198.51.100.2",
        "src_proto": "10.255.255.2",
        "dst_proto": "10.255.255.1",
        "cies": [
            {
                "code": 0,
                "prefix_length": 255,
                "mtu": 0,
                "holding_time": 7200,
                "preference": 0,
                "client_nbma": None,
                "client_proto": None,
            }
        ],
        "extensions": [
            {"type": 4, "name": "forward_transit_nhs", "compulsory": True, "cies": []},
            {"type": 5, "name": "reverse_transit_nhs", "compulsory": True, "cies": []},
            {"type": 3, "name": "responder_address", "compulsory": True, "cie": None},
            {
                "type": 9,
                "name": "nat_address",
                "compulsory": False,
                "cies": [
                    {
                        "code": 0,
                        "prefix_length": 32,
                        "mtu": 0,
                        "holding_time": 0,
                        "preference": 0,
                        "client_nbma": "203.0.113.1",
                        "client_proto": "10.255.255.1",
                    }
                ],
            },
            {"type": 0, "name": "end", "compulsory": True},
        ],
    }
    assert encode(packet_from_json(obj)).hex() == REGISTRATION_HEX


def test_every_extension_has_its_keys():
    packet = Packet(
        PacketType.RESOLUTION_REPLY,
        src_proto=ip_address("10.0.0.2"),
        flags=0x0004 | 0x8000,
        extensions=EVERY_EXTENSION,
    )
    obj = packet_to_json(packet)
    assert obj["flags"] == ["router", "0x0004"]
    by_type = [(e["type"], e["name"]) for e in obj["extensions"]]
    assert by_type == [
        (3, "responder_address"),
        (4, "forward_transit_nhs"),
        (5, "reverse_transit_nhs"),
        (7, "cleartext_authentication"),
        (7, "keyed_hash_authentication"),
        (8, "vendor_private"),
        (9, "nat_address"),
        (9, "device_capabilities"),
        (10, "mobile_nhc_authentication"),
        (0x1234, "unknown"),
        (0, "end"),
    ]
    exts = obj["extensions"]
    assert exts[0]["cie"]["client_nbma"] == "192.0.2.1"
    assert exts[3]["secret"] == b"cisco123".hex()
    assert exts[4] == {
        "type": 7,
        "name": "keyed_hash_authentication",
        "compulsory": True,
        "spi": 2,
        "source": "10.0.0.2",
        "data": "0102",
        "reserved": 9,
    }
    assert exts[5]["vendor_id"] == 12 and exts[5]["data"] == "cafe"
    assert exts[6]["cies"][0]["client_nbma"] == "203.0.113.9"
    assert exts[7]["source_capabilities"] == 1
    assert exts[7]["target_capabilities"] == 0x80000001
    assert exts[8]["value"] == "0001"
    assert exts[10] == {"type": 0, "name": "end", "compulsory": False}
    assert packet_from_json(obj) == packet
    assert packet_to_json(packet_from_json(json.loads(json.dumps(obj)))) == obj


@pytest.mark.parametrize("afn", list(Afn))
@pytest.mark.parametrize("proto", list(ProtocolType))
@pytest.mark.parametrize("ptype", list(PacketType), ids=lambda t: t.json_name)
def test_roundtrip_every_type_and_family(ptype, afn, proto):
    nbma = ip_address("192.0.2.1" if afn == Afn.IPV4 else "2001:db8::1")
    src = ip_address("10.0.0.1" if proto == ProtocolType.IPV4 else "fd00::1")
    fields = {"src_nbma": nbma, "src_proto": src, "dst_proto": src, "hop_count": 3}
    if ptype == PacketType.ERROR_INDICATION:
        fields.update(error_code=6, error_offset=24, payload=b"\x00\x01", reserved=5)
    elif ptype == PacketType.TRAFFIC_INDICATION:
        fields.update(traffic_code=0, payload=b"E\x00", reserved=0x10000)
    else:
        fields.update(
            flags=0x0802,
            request_id=0xFFFFFFFF,
            cies=(Cie(4, 24, 1, 2, 3, nbma, src, reserved=1),),
        )
    packet = Packet(ptype, afn=afn, protocol_type=proto, **fields, extensions=(End(),))
    obj = packet_to_json(packet)
    common = ["type", "afn", "protocol_type", "hop_count", "src_nbma", "src_proto", "dst_proto"]
    if ptype == PacketType.ERROR_INDICATION:
        keys = [*common, "error_code", "error_offset", "payload", "reserved", "extensions"]
    elif ptype == PacketType.TRAFFIC_INDICATION:
        keys = [*common, "traffic_code", "payload", "reserved", "extensions"]
    else:
        keys = ["type", "afn", "protocol_type", "hop_count", "request_id", "flags"]
        keys += ["src_nbma", "src_proto", "dst_proto", "cies", "extensions"]
        assert obj["cies"][0]["reserved"] == 1
    assert list(obj) == keys
    assert obj["type"] == ptype.json_name
    assert obj["protocol_type"] == f"0x{int(proto):04x}"
    assert packet_from_json(obj) == packet
    assert packet_to_json(packet_from_json(obj)) == obj
    assert decode(encode(packet_from_json(obj))) == packet


def test_reserved_only_when_nonzero():
    obj = packet_to_json(Packet(PacketType.TRAFFIC_INDICATION))
    assert "reserved" not in obj
    assert (
        "reserved"
        not in packet_to_json(Packet(PacketType.RESOLUTION_REQUEST, cies=(Cie(),)))["cies"][0]
    )


def test_defaults_for_missing_keys():
    p = packet_from_json({"type": "resolution_request"})
    assert p == Packet(PacketType.RESOLUTION_REQUEST)
    ext = packet_from_json(
        {"type": "registration_request", "extensions": [{"type": 9, "cies": []}, {"type": 0}]}
    ).extensions
    assert ext == (NatAddress((), compulsory=False), End(compulsory=True))


def test_flags_accept_names_and_hex_bits():
    obj = {"type": "purge_request", "flags": ["no_reply", "0x0002", "0x0010"]}
    assert packet_from_json(obj).flags == 0x8012
    assert packet_to_json(packet_from_json(obj))["flags"] == ["no_reply", "0x0010", "nat"]


def test_type_7_and_9_are_told_apart_by_name_or_keys():
    base = {"type": "registration_request"}
    for ext, cls in [
        ({"type": 7, "secret": "00"}, CleartextAuthentication),
        ({"type": 7, "spi": 3}, KeyedHashAuthentication),
        ({"type": 7, "name": "keyed_hash_authentication"}, KeyedHashAuthentication),
        ({"type": 9, "cies": []}, NatAddress),
        ({"type": 9, "source_capabilities": 1}, DeviceCapabilities),
        ({"type": 9, "name": "device_capabilities"}, DeviceCapabilities),
        ({"type": 10, "value": "01"}, UnknownExtension),
    ]:
        p = packet_from_json({**base, "extensions": [ext, {"type": 0}]})
        assert isinstance(p.extensions[0], cls), ext


BAD = {
    "not an object": ([], "packet", "a JSON object"),
    "no type": ({}, "type", "required"),
    "unknown type": ({"type": "hello"}, "type", "one of resolution_request"),
    "type as a number": ({"type": 3}, "type", "one of"),
    "unknown key": ({"type": "purge_reply", "colour": 1}, "colour", "no such key"),
    "key of another type": (
        {"type": "registration_request", "payload": ""},
        "payload",
        "no such key in a registration_request",
    ),
    "request_id on an indication": (
        {"type": "traffic_indication", "request_id": 1},
        "request_id",
        "no such key",
    ),
    "afn 3": ({"type": "purge_reply", "afn": 3}, "afn", "1 (IPv4) or 2 (IPv6)"),
    "protocol type": ({"type": "purge_reply", "protocol_type": "0x0806"}, "protocol_type", "0x"),
    "hop count 256": ({"type": "purge_reply", "hop_count": 256}, "hop_count", "0..255"),
    "hop count as text": ({"type": "purge_reply", "hop_count": "1"}, "hop_count", "integer"),
    "bool as int": ({"type": "purge_reply", "request_id": True}, "request_id", "integer"),
    "bad flag": ({"type": "purge_reply", "flags": ["router"]}, "flags[0]", "no_reply"),
    "flags not a list": ({"type": "purge_reply", "flags": "nat"}, "flags", "array"),
    "IPv6 NBMA with afn 1": (
        {"type": "purge_reply", "src_nbma": "2001:db8::1"},
        "src_nbma",
        "an IPv4 address or null (afn 1)",
    ),
    "not an address": ({"type": "purge_reply", "dst_proto": "ten"}, "dst_proto", "IPv4"),
    "CIE key": (
        {"type": "purge_reply", "cies": [{"holding": 1}]},
        "cies[0].holding",
        "no such key in a CIE",
    ),
    "CIE address family": (
        {"type": "purge_reply", "protocol_type": "0x86dd", "cies": [{"client_proto": "1.2.3.4"}]},
        "cies[0].client_proto",
        "IPv6 address or null (protocol_type 0x86dd)",
    ),
    "odd hex": ({"type": "traffic_indication", "payload": "abc"}, "payload", "hex"),
    "extension type missing": (
        {"type": "purge_reply", "extensions": [{"compulsory": True}]},
        "extensions[0].type",
        "required",
    ),
    "extension type range": (
        {"type": "purge_reply", "extensions": [{"type": 0x4000}]},
        "extensions[0].type",
        "0..16383",
    ),
    "extension name": (
        {"type": "purge_reply", "extensions": [{"type": 9, "name": "end"}]},
        "extensions[0].name",
        "nat_address or device_capabilities",
    ),
    "ambiguous type 7": (
        {"type": "purge_reply", "extensions": [{"type": 7}]},
        "extensions[0]",
        '"secret" or "spi"',
    ),
    "extension key": (
        {"type": "purge_reply", "extensions": [{"type": 4, "cie": None}]},
        "extensions[0].cie",
        "no such key in a forward_transit_nhs extension",
    ),
    "compulsory not a bool": (
        {"type": "purge_reply", "extensions": [{"type": 0, "compulsory": 1}]},
        "extensions[0].compulsory",
        "true or false",
    ),
    "vendor id range": (
        {"type": "purge_reply", "extensions": [{"type": 8, "vendor_id": 1 << 24}]},
        "extensions[0].vendor_id",
        "0..16777215",
    ),
    "nested CIE address": (
        {"type": "purge_reply", "extensions": [{"type": 3, "cie": {"client_nbma": "x"}}]},
        "extensions[0].cie.client_nbma",
        "IPv4 address",
    ),
}


@pytest.mark.parametrize(("obj", "key", "expected"), BAD.values(), ids=BAD)
def test_bad_json_names_the_key(obj, key, expected):
    with pytest.raises(JsonFormError) as info:
        packet_from_json(obj)
    err = info.value
    assert err.key == key
    assert expected in str(err)
    assert str(err).startswith(f"{key}: expected")
    assert isinstance(err, EncodeError) and isinstance(err, CodecError)


def test_json_without_end_is_refused_by_encode():
    p = packet_from_json({"type": "purge_reply", "extensions": [{"type": 4}]})
    with pytest.raises(EncodeError, match="missing_end"):
        encode(p)
