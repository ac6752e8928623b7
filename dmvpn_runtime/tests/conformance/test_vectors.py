"""The shared vectors (``<repo>/../shared/nhrp-vectors``) decode to what their README says.

CI places ``shared/`` beside the clone; ``DMVPN_SHARED_DIR`` may point elsewhere. A
missing directory fails the test: it is part of what ``make test`` proves.
"""

from __future__ import annotations

import os
from ipaddress import ip_address
from pathlib import Path

import pytest

from dmvpn_runtime.capture import read_capture_file
from dmvpn_runtime.checksum import internet_checksum
from dmvpn_runtime.nhrp.wire import (
    Afn,
    Cie,
    End,
    ForwardTransitNhs,
    NatAddress,
    PacketType,
    ProtocolType,
    ResponderAddress,
    ReverseTransitNhs,
    decode,
    encode,
)
from dmvpn_runtime.nhrp.wire.jsonform import flag_names

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("DMVPN_SHARED_DIR", REPO.parent / "shared"))
VECTORS = SHARED / "nhrp-vectors"


def load_vectors() -> dict[str, bytes]:
    path = VECTORS / "vectors.hex.txt"
    assert path.is_file(), f"shared vectors missing: {path} (CI puts shared/ beside the clone)"
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, length, hex_text = line.split()
        data = bytes.fromhex(hex_text)
        assert len(data) == int(length), f"{name}: stated length {length}, {len(data)} octets"
        out[name] = data
    return out


@pytest.fixture(scope="module")
def vectors() -> dict[str, bytes]:
    return load_vectors()


def header(data: bytes) -> dict[str, int]:
    """The fixed header read straight from the octets (RFC 2332 §5.1), not by the codec."""
    return {
        "afn": int.from_bytes(data[0:2], "big"),
        "pro_type": int.from_bytes(data[2:4], "big"),
        "snap": int.from_bytes(data[4:9], "big"),
        "hop_count": data[9],
        "size": int.from_bytes(data[10:12], "big"),
        "checksum": int.from_bytes(data[12:14], "big"),
        "extoff": int.from_bytes(data[14:16], "big"),
        "version": data[16],
        "type": data[17],
        "shtl": data[18],
        "sstl": data[19],
    }


def test_the_files_are_there():
    assert VECTORS.is_dir(), f"{VECTORS} is missing"
    assert (VECTORS / "README.md").is_file()
    assert (VECTORS / "vectors.hex.txt").is_file()
    assert (VECTORS / "synthetic_nhrp_frr_style.pcap").is_file()
    assert set(load_vectors()) == {"registration_request", "traffic_indication"}


def test_registration_request(vectors):
    data = vectors["registration_request"]
    assert len(data) == 92
    assert header(data) == {
        "afn": 1,
        "pro_type": 0x0800,
        "snap": 0,
        "hop_count": 1,
        "size": 92,
        "checksum": 0xC4BC,
        "extoff": 52,
        "version": 1,
        "type": 3,
        "shtl": 4,
        "sstl": 0,
    }
    assert internet_checksum(data) == 0

    p = decode(data)
    assert p.type == PacketType.REGISTRATION_REQUEST
    assert (p.afn, p.protocol_type, p.hop_count) == (Afn.IPV4, ProtocolType.IPV4, 1)
    assert data[20:22] == b"\x04\x04"  # src/dst protocol address lengths
    assert p.flags == 0x8002
    assert flag_names(p.type, p.flags) == ["unique", "nat"]
    assert p.request_id == 1
    assert p.src_nbma == ip_address("198.51.100.2")
    assert p.src_proto == ip_address("10.255.255.2")
    assert p.dst_proto == ip_address("10.255.255.1")
    assert p.cies == (Cie(code=0, prefix_length=255, mtu=0, holding_time=7200),)
    assert p.cies[0].client_nbma is None and p.cies[0].client_proto is None
    assert [type(e) for e in p.extensions] == [
        ForwardTransitNhs,
        ReverseTransitNhs,
        ResponderAddress,
        NatAddress,
        End,
    ]
    assert [e.type for e in p.extensions] == [4, 5, 3, 9, 0]
    assert [e.compulsory for e in p.extensions] == [True, True, True, False, True]
    fwd, rev, resp, nat, _end = p.extensions
    assert fwd.cies == () and rev.cies == () and resp.cie is None
    assert nat.cies == (
        Cie(
            prefix_length=32,
            client_nbma=ip_address("203.0.113.1"),
            client_proto=ip_address("10.255.255.1"),
        ),
    )
    assert encode(p) == data


def test_traffic_indication(vectors):
    data = vectors["traffic_indication"]
    assert len(data) == 68
    assert header(data) == {
        "afn": 1,
        "pro_type": 0x0800,
        "snap": 0,
        "hop_count": 1,
        "size": 68,
        "checksum": 0x9E94,
        "extoff": 0,
        "version": 1,
        "type": 8,
        "shtl": 4,
        "sstl": 0,
    }
    p = decode(data)
    assert p.type == PacketType.TRAFFIC_INDICATION
    assert data[20:22] == b"\x04\x04"
    assert p.traffic_code == 0
    assert p.reserved == 0
    assert p.src_nbma == ip_address("203.0.113.1")
    assert p.src_proto == ip_address("10.255.255.1")
    assert p.dst_proto == ip_address("10.2.0.20")
    assert p.extensions == ()

    inner = p.payload
    assert len(inner) == 28
    assert inner[0] == 0x45  # IPv4, 20-octet header
    assert int.from_bytes(inner[2:4], "big") == 28
    assert inner[9] == 1  # ICMP
    assert ip_address(inner[12:16]) == ip_address("10.1.0.10")
    assert ip_address(inner[16:20]) == ip_address("10.2.0.20")
    assert internet_checksum(inner[:20]) == 0
    assert inner[20] == 8 and inner[21] == 0  # echo request
    assert internet_checksum(inner[20:]) == 0
    assert encode(p) == data


def test_pcap_holds_the_same_packets(vectors):
    frames = list(read_capture_file(str(VECTORS / "synthetic_nhrp_frr_style.pcap")))
    assert [f.error for f in frames] == [None, None]
    assert [f.gre_key for f in frames] == [42, 42]
    assert [f.nhrp for f in frames] == [
        vectors["registration_request"],
        vectors["traffic_indication"],
    ]
    assert frames[0].src == ip_address("198.51.100.2")
    assert frames[0].dst == ip_address("203.0.113.1")
    with open(VECTORS / "synthetic_nhrp_frr_style.pcap", "rb") as f:
        assert int.from_bytes(f.read(24)[20:24], "little") == 101  # link type RAW
