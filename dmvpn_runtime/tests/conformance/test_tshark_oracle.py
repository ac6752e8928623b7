"""External oracle: Wireshark's NHRP dissector reads what the codec writes.

Every packet type, in every NBMA/protocol family combination, with every extension
(transit records, responder CIE, Cisco NAT with addresses, cleartext and keyed-hash
authentication, vendor-private, device capabilities, an unknown one), plus a seeded
batch of random Resolution/Registration/Purge packets, is encoded by the codec, wrapped
in IPv4/GRE (protocol 0x2001, key 42) in a pcap and dissected by ``tshark -T pdml``.
Each packet must come out with no Malformed and no error-level expert info, and the
values tshark shows must be the ones encoded.

Wireshark has a preference for the authentication extension's layout: the RFC form has
the source protocol address after the SPI, the Cisco cleartext form has not. The
cleartext corpus runs with ``nhrp.auth_ext_has_addr:FALSE``, the keyed-hash one with
``TRUE``. Wireshark 4.0 has no field for the Traffic Indication's traffic code; its
octets are checked inside the span tshark labels "NHRP Mandatory Part".
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from strategies import random_packets, sample_packets

from dmvpn_runtime.capture import gre_ipv4, write_pcap
from dmvpn_runtime.nhrp.wire import (
    Cie,
    CleartextAuthentication,
    DeviceCapabilities,
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

PI_ERROR = 0x00800000  # epan/proto.h severity of an error-level expert item
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"


# --- running tshark and reading its PDML ----------------------------------------------


def dissect(tmp_path, name: str, packets: list[bytes], auth_has_addr: bool) -> list[ET.Element]:
    """The PDML <packet> elements tshark produces for these NHRP packets."""
    path = tmp_path / f"{name}.pcap"
    with open(path, "wb") as f:
        write_pcap(f, [gre_ipv4(p) for p in packets])
    proc = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(path),
            "-o",
            f"nhrp.auth_ext_has_addr:{'TRUE' if auth_has_addr else 'FALSE'}",
            "-T",
            "pdml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"tshark failed ({proc.returncode}): {proc.stderr}"
    frames = ET.fromstring(proc.stdout).findall("packet")
    assert len(frames) == len(packets), "tshark did not show every packet"
    return frames


def problems(frame: ET.Element) -> list[str]:
    """Malformed markers and error-level expert infos anywhere in one packet."""
    found = []
    for el in frame.iter():
        name = el.get("name", "")
        if name == "_ws.malformed" and el.tag == "proto":
            found.append(f"malformed: {el.get('showname')}")
        if name == "_ws.expert":
            severity = next(
                (c.get("show") for c in el.iter("field") if c.get("name") == "_ws.expert.severity"),
                "0",
            )
            if int(severity) >= PI_ERROR:
                found.append(f"expert error: {el.get('showname')}")
    return found


def nhrp_layer(frame: ET.Element) -> ET.Element:
    protos = [p for p in frame.findall("proto") if p.get("name") == "nhrp"]
    assert len(protos) == 1, "no (or more than one) top-level NHRP layer"
    return protos[0]


def section(parent: ET.Element, show: str) -> ET.Element:
    """The child labelled ``show`` (a text item such as "NHRP Mandatory Part")."""
    for child in parent.findall("field"):
        if child.get("show") == show:
            return child
    raise AssertionError(f"tshark shows no {show!r}")


def field(parent: ET.Element, name: str) -> ET.Element:
    """The direct child field ``name`` (a prefix ending in '*' matches several names)."""
    for child in parent.findall("field"):
        got = child.get("name", "")
        if got == name or (name.endswith("*") and got.startswith(name[:-1])):
            return child
    raise AssertionError(f"tshark shows no field {name!r} under {parent.get('show')!r}")


def number(el: ET.Element) -> int:
    show = el.get("show", "")
    return int(show, 16) if show.startswith("0x") else int(show)


def octets(el: ET.Element) -> bytes:
    return bytes.fromhex(el.get("value", ""))


def cie_nodes(parent: ET.Element) -> list[ET.Element]:
    return [c for c in parent.findall("field") if c.get("show") == "Client Information Entry"]


def address_field(parent: ET.Element, stem: str) -> bytes | None:
    """An address field: ``stem`` (IPv4, shown as an address) or ``stem`` + "_bytes"."""
    for child in parent.findall("field"):
        if child.get("name", "").startswith(stem):
            return octets(child)
    return None


# --- comparing ---------------------------------------------------------------------------


def packed(addr: IPv4Address | IPv6Address | None) -> bytes | None:
    return None if addr is None else addr.packed


def check_cie(node: ET.Element, cie: Cie, where: str) -> None:
    assert number(field(node, "nhrp.code")) == cie.code, where
    assert number(field(node, "nhrp.prefix")) == cie.prefix_length, where
    assert number(field(node, "nhrp.unused")) == cie.reserved, where
    assert number(field(node, "nhrp.mtu")) == cie.mtu, where
    assert number(field(node, "nhrp.htime")) == cie.holding_time, where
    assert number(field(node, "nhrp.pref")) == cie.preference, where
    assert address_field(node, "nhrp.client.nbma.addr") == packed(cie.client_nbma), where
    assert address_field(node, "nhrp.client.prot.addr") == packed(cie.client_proto), where


def check_cies(parent: ET.Element, cies: tuple[Cie, ...], where: str) -> None:
    nodes = cie_nodes(parent)
    assert len(nodes) == len(cies), f"{where}: {len(nodes)} CIEs shown, {len(cies)} encoded"
    for i, (node, cie) in enumerate(zip(nodes, cies, strict=True)):
        check_cie(node, cie, f"{where} CIE {i}")


def check_extension(node: ET.Element, ext, src_len: int, where: str) -> None:
    assert number(field(node, "nhrp.ext.type")) == ext.type, where
    assert field(node, "nhrp.ext.c").get("show") == ("1" if ext.compulsory else "0"), where
    cls = type(ext)
    if cls is ResponderAddress:
        check_cies(node, () if ext.cie is None else (ext.cie,), where)
    elif cls in (ForwardTransitNhs, ReverseTransitNhs, NatAddress):
        assert node.get("show") != "Device Capabilities Extension", where
        check_cies(node, ext.cies, where)
    elif cls is DeviceCapabilities:
        assert node.get("show") == "Device Capabilities Extension", where
        data = next(c for c in node.findall("field") if c.get("show", "").startswith("Extension"))
        assert number(field(data, "nhrp.devcap_ext.srccap")) == ext.source, where
        assert number(field(data, "nhrp.devcap_ext.dstcap")) == ext.target, where
    elif cls in (CleartextAuthentication, KeyedHashAuthentication):
        data = next(c for c in node.findall("field") if c.get("show", "").startswith("Extension"))
        if cls is CleartextAuthentication:  # read with auth_ext_has_addr FALSE
            assert number(field(data, "nhrp.auth_ext.reserved")) == 0, where
            assert number(field(data, "nhrp.auth_ext.spi")) == 1, where
            assert octets(field(data, "nhrp.auth_ext.data")) == ext.secret, where
        else:
            assert number(field(data, "nhrp.auth_ext.reserved")) == ext.reserved, where
            assert number(field(data, "nhrp.auth_ext.spi")) == ext.spi, where
            assert address_field(data, "nhrp.auth_ext.src_addr") == packed(ext.source), where
            assert octets(field(data, "nhrp.auth_ext.data")) == ext.data, where
    elif cls is VendorPrivate:
        data = next(c for c in node.findall("field") if c.get("show", "").startswith("Extension"))
        assert number(field(data, "nhrp.vendor_ext.id")) == ext.vendor_id, where
        if ext.data:
            assert octets(field(data, "nhrp.vendor_ext.data")) == ext.data, where
    elif cls is UnknownExtension:
        if ext.value:
            assert octets(field(node, "nhrp.unknown_ext.value")) == ext.value, where
    else:
        assert cls is End, where


def check_packet(frame: ET.Element, packet: Packet, wire: bytes, where: str) -> None:
    assert problems(frame) == [], where
    nhrp = nhrp_layer(frame)
    fixed = section(nhrp, "NHRP Fixed Header")
    assert number(field(fixed, "nhrp.hdr.op.type")) == packet.type, where
    assert number(field(fixed, "nhrp.hdr.afn")) == packet.afn, where
    assert number(field(fixed, "nhrp.hdr.pro.type")) == packet.protocol_type, where
    assert number(field(fixed, "nhrp.hdr.hopcnt")) == packet.hop_count, where
    assert number(field(fixed, "nhrp.hdr.pktsz")) == len(wire), where
    assert field(fixed, "nhrp.hdr.chksum.status").get("show") == "1", f"{where}: checksum"
    assert number(field(fixed, "nhrp.hdr.version")) == 1, where

    mand = section(nhrp, "NHRP Mandatory Part")
    src_len = number(field(mand, "nhrp.src.prot.len"))
    assert src_len == len(packed(packet.src_proto) or b""), where
    assert address_field(mand, "nhrp.src.nbma.addr") == packed(packet.src_nbma), where
    assert address_field(mand, "nhrp.src.prot.addr") == packed(packet.src_proto), where
    # Wireshark 4.0 spells the IPv6 one "nhrp.dst.prot.addr_byets".
    assert address_field(mand, "nhrp.dst.prot.addr") == packed(packet.dst_proto), where
    ptype = PacketType(packet.type)
    if ptype <= PacketType.PURGE_REPLY:
        assert number(field(mand, "nhrp.reqid")) == packet.request_id, where
        assert number(field(mand, "nhrp.flags")) == packet.flags, where
        check_cies(mand, packet.cies, where)
    elif ptype == PacketType.ERROR_INDICATION:
        assert number(field(mand, "nhrp.err.code")) == packet.error_code, where
        assert number(field(mand, "nhrp.err.offset")) == packet.error_offset, where
        quoted = section(nhrp, "Packet Causing Indication")
        inner = decode(packet.payload)
        inner_nhrp = [p for p in quoted.iter("proto") if p.get("name") == "nhrp"]
        assert inner_nhrp, f"{where}: quoted packet not dissected as NHRP"
        inner_mand = section(inner_nhrp[0], "NHRP Mandatory Part")
        assert number(field(inner_mand, "nhrp.reqid")) == inner.request_id, where
    else:
        assert octets(mand)[4:6] == packet.traffic_code.to_bytes(2, "big"), where
        quoted = section(nhrp, "Packet Causing Indication")
        layer = "ip" if packet.protocol_type == ProtocolType.IPV4 else "ipv6"
        inner = [p for p in quoted.iter("proto") if p.get("name") == layer]
        assert inner, f"{where}: quoted data packet not dissected as {layer}"
        src = field(inner[0], f"{layer}.src")
        assert ip_address(src.get("show")) == ip_address(
            "10.1.0.10" if layer == "ip" else "fd00:1::10"
        ), where

    ext_nodes = [
        c
        for c in nhrp.findall("field")
        if any(g.get("name") == "nhrp.ext.type" for g in c.findall("field"))
    ]
    assert len(ext_nodes) == len(packet.extensions), f"{where}: extension count"
    extoff = number(field(fixed, "nhrp.hdr.extoff"))
    if packet.extensions:  # tshark found the first extension where ar$extoff points
        assert int(ext_nodes[0].get("pos")) - int(nhrp.get("pos")) == extoff, where
    else:
        assert extoff == 0, where
    for i, (node, ext) in enumerate(zip(ext_nodes, packet.extensions, strict=True)):
        check_extension(node, ext, src_len, f"{where} extension {i} ({type(ext).__name__})")


# --- the tests --------------------------------------------------------------------------


def test_tshark_is_installed():
    assert shutil.which("tshark"), "tshark is missing: make bootstrap installs it"


@pytest.mark.parametrize("auth", ["cleartext", "keyed"])
def test_tshark_reads_every_type_and_extension(tmp_path, auth):
    corpus = sample_packets(auth)
    names = {PacketType(p.type) for _name, p in corpus}
    assert names == set(PacketType)
    wires = [encode(p) for _name, p in corpus]
    frames = dissect(tmp_path, auth, wires, auth_has_addr=(auth == "keyed"))
    for frame, (name, packet), wire in zip(frames, corpus, wires, strict=True):
        check_packet(frame, packet, wire, name)


def test_tshark_reads_random_packets(tmp_path):
    packets = random_packets(seed=2332, count=64, tshark_friendly=True)
    wires = [encode(p) for p in packets]
    frames = dissect(tmp_path, "random", wires, auth_has_addr=True)
    for i, (frame, packet, wire) in enumerate(zip(frames, packets, wires, strict=True)):
        check_packet(frame, packet, wire, f"random packet {i}: {wire.hex()}")


def _nat_moved(p: Packet) -> Packet:
    exts = tuple(
        replace(e, cies=(replace(e.cies[0], client_nbma=ip_address("192.0.2.99")),))
        if isinstance(e, NatAddress)
        else e
        for e in p.extensions
    )
    return replace(p, extensions=exts)


WRONG_EXPECTATIONS = {
    "request_id": lambda p: replace(p, request_id=p.request_id + 1),
    "dst_proto": lambda p: replace(p, dst_proto=ip_address("10.9.9.9")),
    "cie_holding_time": lambda p: replace(p, cies=(replace(p.cies[0], holding_time=1),)),
    "nat_address": _nat_moved,
    "extension_order": lambda p: replace(
        p, extensions=(p.extensions[1], p.extensions[0], *p.extensions[2:])
    ),
    "compulsory_bit": lambda p: replace(
        p, extensions=(replace(p.extensions[0], compulsory=False), *p.extensions[1:])
    ),
    "secret": lambda p: replace(
        p,
        extensions=tuple(
            CleartextAuthentication(b"other") if isinstance(e, CleartextAuthentication) else e
            for e in p.extensions
        ),
    ),
}


def test_oracle_notices_broken_packets(tmp_path):
    """The checks above can fail: tshark's complaints about bad packets are seen, and so
    is any difference between what tshark shows and what was encoded."""
    corpus = dict(sample_packets("cleartext"))
    request = corpus["registration_request-nbma4-proto4"]
    indication = corpus["traffic_indication-nbma4-proto4"]
    wire, ti_wire = encode(request), encode(indication)
    bad_checksum = bytearray(wire)
    bad_checksum[12] ^= 0x01
    frames = dissect(
        tmp_path, "bad", [bytes(bad_checksum), wire[:40], wire, ti_wire], auth_has_addr=False
    )
    assert any("Bad checksum" in p for p in problems(frames[0]))
    assert any(p.startswith("malformed") for p in problems(frames[1]))
    check_packet(frames[2], request, wire, "the real packet")
    for what, wrong in WRONG_EXPECTATIONS.items():
        with pytest.raises(AssertionError):
            check_packet(frames[2], wrong(request), wire, what)
    check_packet(frames[3], indication, ti_wire, "the real indication")
    with pytest.raises(AssertionError):
        check_packet(frames[3], replace(indication, traffic_code=1), ti_wire, "traffic code")
