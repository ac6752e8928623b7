"""pcap/pcapng reading and writing (dmvpn_runtime.capture)."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from ipaddress import ip_address

import pytest

from dmvpn_runtime.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    CaptureError,
    NotNhrp,
    ethernet,
    gre,
    gre_ipv4,
    ipv4,
    ipv6,
    is_capture,
    read_capture_file,
    read_frames,
    write_pcap,
    write_pcapng,
)

NHRP = bytes.fromhex(
    "0001080000000000000100449e940000010804000404000000000000cb0071010affff010a020014"
    "4500001c000700003f0167ba0a01000a0a0200140800f7ff00000000"
)  # the shared traffic_indication vector
NHRP2 = bytes(range(40))  # the reader does not decode NHRP: any octets will do


def pcap(frames, linktype=LINKTYPE_RAW) -> bytes:
    out = io.BytesIO()
    write_pcap(out, frames, linktype)
    return out.getvalue()


def pcapng(frames, linktype=LINKTYPE_RAW, big_endian=False) -> bytes:
    out = io.BytesIO()
    write_pcapng(out, frames, linktype, big_endian=big_endian)
    return out.getvalue()


def only(data: bytes):
    frames = list(read_frames(data))
    assert len(frames) == 1
    return frames[0]


def test_pcap_raw_ipv4_gre_key():
    frames = list(read_frames(pcap([gre_ipv4(NHRP), gre_ipv4(NHRP2, "192.0.2.1", "192.0.2.2")])))
    assert [f.index for f in frames] == [1, 2]
    assert [f.nhrp for f in frames] == [NHRP, NHRP2]
    assert [f.error for f in frames] == [None, None]
    assert frames[0].src == ip_address("198.51.100.2")
    assert frames[1].dst == ip_address("192.0.2.2")
    assert frames[0].gre_key == 42 and not frames[0].truncated


@pytest.mark.parametrize("magic", [0xA1B2C3D4, 0xA1B23C4D])
@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_pcap_magics_byte_orders_and_raw_linktypes(magic, endian, linktype):
    frame = gre_ipv4(NHRP)
    data = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    data += struct.pack(endian + "IIII", 1, 2, len(frame), len(frame)) + frame
    assert is_capture(data)
    assert only(data).nhrp == NHRP


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_enhanced_packet_blocks(big_endian):
    data = pcapng([gre_ipv4(NHRP), gre_ipv4(NHRP2)], big_endian=big_endian)
    assert is_capture(data)
    assert [f.nhrp for f in read_frames(data)] == [NHRP, NHRP2]


def block(block_type: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", block_type, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


SHB = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(linktype: int) -> bytes:
    return block(1, struct.pack("<HHI", linktype, 0, 65535))


def test_pcapng_simple_obsolete_blocks_sections_and_other_blocks():
    raw, eth = gre_ipv4(NHRP), ethernet(gre_ipv4(NHRP2))
    data = SHB + idb(LINKTYPE_RAW) + block(3, struct.pack("<I", len(raw)) + raw)
    data += block(5, b"statistics")  # skipped
    data += block(2, struct.pack("<HHIIII", 0, 0, 0, 0, len(raw), len(raw)) + raw)
    data += SHB + idb(LINKTYPE_ETHERNET)  # a new section: interface ids restart
    data += block(6, struct.pack("<IIIII", 0, 0, 0, len(eth), len(eth)) + eth)
    data += block(6, struct.pack("<IIIII", 3, 0, 0, len(eth), len(eth)) + eth)
    frames = list(read_frames(data))
    assert [f.index for f in frames] == [1, 2, 3, 4]
    assert [f.nhrp for f in frames[:3]] == [NHRP, NHRP, NHRP2]
    assert frames[3].error is not None and "unknown interface 3" in str(frames[3].error)


def test_snaplen_truncation_is_flagged():
    frame = gre_ipv4(NHRP)
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 60, LINKTYPE_RAW)
    data += struct.pack("<IIII", 0, 0, 60, len(frame)) + frame[:60]
    f = only(data)
    assert f.truncated and f.nhrp == NHRP[:32]


def test_truncated_file_yields_an_error_last():
    data = pcap([gre_ipv4(NHRP), gre_ipv4(NHRP)])[:-5]
    frames = list(read_frames(data))
    assert frames[0].nhrp == NHRP
    assert frames[1].error.reason == "truncated_file"


@pytest.mark.parametrize("data", [b"", b"hello world, not a capture file"])
def test_not_a_capture(data):
    assert not is_capture(data)
    with pytest.raises(CaptureError):
        list(read_frames(data))


# --- link layers -------------------------------------------------------------------------


def test_ethernet_padding_is_not_nhrp():
    short = NHRP[:10]  # a short packet, padded to 60 octets by the Ethernet layer
    frame = ethernet(gre_ipv4(short))
    assert len(frame) == 60
    assert only(pcap([frame], LINKTYPE_ETHERNET)).nhrp == short


@pytest.mark.parametrize("vlans", [(), (100,), (100, 200)])
def test_ethernet_vlan_tags(vlans):
    frame = ethernet(gre_ipv4(NHRP), vlans=vlans)
    assert only(pcap([frame], LINKTYPE_ETHERNET)).nhrp == NHRP


def test_ethernet_ipv6():
    frame = ethernet(ipv6(gre(NHRP)), ethertype=0x86DD)
    f = only(pcap([frame], LINKTYPE_ETHERNET))
    assert f.nhrp == NHRP and f.src == ip_address("2001:db8::2")


def test_linux_cooked_captures():
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + gre_ipv4(NHRP)
    assert only(pcap([sll], LINKTYPE_LINUX_SLL)).nhrp == NHRP
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, bytes(8)) + ipv6(gre(NHRP))
    assert only(pcap([sll2], LINKTYPE_LINUX_SLL2)).nhrp == NHRP


def test_nhrp_straight_on_the_link_layer():
    frame = ethernet(NHRP, ethertype=0x2001, pad=False)
    f = only(pcap([frame], LINKTYPE_ETHERNET))
    assert f.nhrp == NHRP and f.gre_key is None and f.src is None


def test_other_traffic_is_not_nhrp():
    arp = ethernet(bytes(28), ethertype=0x0806)
    udp = ipv4(bytes(8), proto=17)
    gre_ip = ipv4(gre(b"E" + bytes(19), proto=0x0800))
    esp6 = ipv6(bytes(16), proto=50)
    frames = list(read_frames(pcap([arp], LINKTYPE_ETHERNET)))
    frames += list(read_frames(pcap([udp, gre_ip, esp6])))
    assert all(isinstance(f.error, NotNhrp) for f in frames), [f.error for f in frames]
    assert [f.error.reason for f in frames] == ["not_ip", "not_gre", "not_nhrp", "encrypted"]
    assert isinstance(only(pcap([b"x"], 147)).error, NotNhrp)  # a link type we do not read


# --- IP ----------------------------------------------------------------------------------


def test_ipv4_options_are_skipped():
    packet = bytearray(ipv4(b"\x01\x01\x01\x00" + gre(NHRP)))
    packet[0] = 0x46  # IHL 6: the 4 octets after the header are options
    assert only(pcap([bytes(packet)])).nhrp == NHRP


def test_ipv4_fragments_are_errors():
    packet = bytearray(gre_ipv4(NHRP))
    packet[6] = 0x20  # more fragments
    f = only(pcap([bytes(packet)]))
    assert f.error.reason == "fragmented" and not isinstance(f.error, NotNhrp)


HOP_BY_HOP = (0, b"\x00\x00" + b"\x01\x04\x00\x00\x00\x00")  # PadN, 8 octets
DEST_OPTS = (60, b"\x00\x01" + bytes(14))  # 16 octets
ROUTING = (43, b"\x00\x00\x00\x00" + bytes(4))  # type 0, segments left 0
ATOMIC_FRAGMENT = (44, b"\x00\x00\x00\x00\x12\x34\x56\x78")
AH = (51, b"\x00\x04\x00\x00" + bytes(20))  # payload len 4: (4 + 2) * 4 = 24 octets


@pytest.mark.parametrize(
    "chain",
    [[], [HOP_BY_HOP], [HOP_BY_HOP, DEST_OPTS, ROUTING, ATOMIC_FRAGMENT, DEST_OPTS], [AH]],
    ids=["none", "hop-by-hop", "five headers", "ah"],
)
def test_ipv6_extension_headers_are_skipped(chain):
    f = only(pcap([ipv6(gre(NHRP), extension_headers=chain)]))
    assert f.error is None and f.nhrp == NHRP and f.gre_key == 42


def test_ipv6_fragment_is_an_error():
    frag = (44, b"\x00\x00\x00\x01\x12\x34\x56\x78")  # M flag set
    f = only(pcap([ipv6(gre(NHRP), extension_headers=[frag])]))
    assert f.error.reason == "fragmented"


def test_ipv6_truncated_extension_header():
    packet = ipv6(b"\x2f", proto=0)  # a hop-by-hop header cut after one octet
    assert only(pcap([packet])).error.reason == "truncated"


# --- GRE ---------------------------------------------------------------------------------


def test_gre_without_key_with_sequence_and_checksum():
    f = only(pcap([ipv4(gre(NHRP, key=None, seq=7, checksum=True))]))
    assert f.nhrp == NHRP and f.gre_key is None
    f = only(pcap([ipv4(gre(NHRP, key=0xFFFFFFFF, seq=1))]))
    assert f.nhrp == NHRP and f.gre_key == 0xFFFFFFFF


def test_gre_bad_checksum_reserved_bits_version_and_truncation():
    bad_sum = bytearray(gre(NHRP, checksum=True))
    bad_sum[-1] ^= 1
    reserved = bytearray(gre(NHRP))
    reserved[0] |= 0x40  # the routing bit of RFC 1701
    version1 = bytearray(gre(NHRP))
    version1[1] |= 0x01
    frames = list(read_frames(pcap([ipv4(bytes(b)) for b in (bad_sum, reserved, version1)])))
    assert [f.error.reason for f in frames] == ["bad_gre_checksum", "bad_gre", "not_nhrp"]
    short = only(pcap([ipv4(gre(b"", key=None)[:3])]))
    assert short.error.reason == "truncated"
    cut_key = only(pcap([ipv4(gre(b"")[:6])]))
    assert cut_key.error.reason == "truncated"


def test_read_capture_file(tmp_path):
    path = tmp_path / "x.pcapng"
    path.write_bytes(pcapng([gre_ipv4(NHRP)]))
    assert [f.nhrp for f in read_capture_file(str(path))] == [NHRP]


# --- what tshark makes of the files the tests write -------------------------------------


def test_tshark_agrees_with_the_writers(tmp_path):
    """The pcapng, Ethernet/VLAN and IPv6 frames these tests build are real captures."""
    assert shutil.which("tshark"), "tshark is missing: make bootstrap installs it"
    frames = [
        ethernet(gre_ipv4(NHRP), vlans=(7,)),
        ethernet(ipv6(gre(NHRP, seq=3), extension_headers=[HOP_BY_HOP, DEST_OPTS]), 0x86DD),
        ethernet(ipv4(gre(NHRP, key=None, checksum=True))),
    ]
    path = tmp_path / "w.pcapng"
    path.write_bytes(pcapng(frames, LINKTYPE_ETHERNET))
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.protocols",
         "-e", "nhrp.hdr.pktsz", "-e", "_ws.malformed", "-e", "_ws.expert.severity"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert len(out) == 3
    for line in out:
        protocols, size, malformed, severity = [*line.split("\t"), "", ""][:4]
        assert protocols.startswith("eth:ethertype:") and ":gre:nhrp" in protocols, line
        assert int(size) == len(NHRP) and not malformed and not severity, line
    assert [f.nhrp for f in read_frames(path.read_bytes())] == [NHRP] * 3
