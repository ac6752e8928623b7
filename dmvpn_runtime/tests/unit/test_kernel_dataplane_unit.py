"""Pure parts of the kernel data plane: netlink/NFLOG parsing, nftables rules, config.

The data plane itself needs ip_gre and runs in the VM (tests/vm/); these tests build
and parse the messages the kernel would exchange with it.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from dmvpn_runtime import ippacket
from dmvpn_runtime.dataplane import kernel, netlink
from dmvpn_runtime.dataplane.base import DataPlaneConfig, DataPlaneUnavailable, NullSink
from dmvpn_runtime.dataplane.kernel import messages as msg


def cfg(**kw: object) -> DataPlaneConfig:
    values: dict[str, object] = {
        "tunnel": "dmvpn0",
        "local_nbma": ["192.0.2.1"],
        "overlay": ["10.99.0.1/24", "fd00:99::1/64"],
        "key": 42,
    }
    values.update(kw)
    return DataPlaneConfig.from_dict(values)


def nlmsg(kind: int, body: bytes, seq: int = 7) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, seq, 0) + body


def test_neighbour_events_are_parsed() -> None:
    ndmsg = struct.pack("=BBHiHBB", socket.AF_INET, 0, 0, 9, msg.NUD_INCOMPLETE, 0, 1)
    get = nlmsg(msg.RTM_GETNEIGH, ndmsg + msg.attribute(msg.NDA_DST, bytes([10, 99, 0, 12])))
    ndmsg6 = struct.pack("=BBHiHBB", socket.AF_INET6, 0, 0, 9, msg.NUD_FAILED, 0, 1)
    dst6 = IPv6Address("fd00:99::12").packed
    new = nlmsg(msg.RTM_NEWNEIGH, ndmsg6 + msg.attribute(msg.NDA_DST, dst6))
    other = nlmsg(16, b"\0" * 16)  # RTM_NEWLINK: skipped
    events = list(msg.parse_neigh_events(get + other + new))
    assert events == [
        msg.NeighEvent(msg.RTM_GETNEIGH, 9, msg.NUD_INCOMPLETE, IPv4Address("10.99.0.12")),
        msg.NeighEvent(msg.RTM_NEWNEIGH, 9, msg.NUD_FAILED, IPv6Address("fd00:99::12")),
    ]
    assert list(msg.parse_neigh_events(get[:-3])) == []  # truncated: nothing, no error


def test_neighbour_table_request_asks_for_application_probes_only() -> None:
    request = msg.neigh_table_request(socket.AF_INET, 5, seq=3)
    length, kind, flags, seq, _port = struct.unpack_from("=IHHII", request)
    assert (length, kind, seq) == (len(request), msg.RTM_SETNEIGHTBL, 3)
    assert flags & msg.NLM_F_ACK
    attrs = dict(msg.attributes(request, 20, len(request)))
    assert attrs[msg.NDTA_NAME] == b"arp_cache\0"
    parms = {k: struct.unpack("=I", v)[0] for k, v in msg.attributes(attrs[msg.NDTA_PARMS], 0, 999)}
    assert parms == {
        msg.NDTPA_IFINDEX: 5,
        msg.NDTPA_APP_PROBES: msg.APP_PROBES,
        msg.NDTPA_UCAST_PROBES: 0,
        msg.NDTPA_MCAST_PROBES: 0,
    }
    msg6 = msg.neigh_table_request(socket.AF_INET6, 5, seq=4)
    assert dict(msg.attributes(msg6, 20, len(msg6)))[msg.NDTA_NAME] == b"ndisc_cache\0"


def nflog_packet(group: int, prefix: str, payload: bytes, hwaddr: bytes | None) -> bytes:
    body = struct.pack("=BBH", socket.AF_INET, 0, socket.htons(group))
    body += msg.attribute(msg.NFULA_PACKET_HDR, struct.pack("!HBx", 0x0800, 2))
    body += msg.attribute(msg.NFULA_PREFIX, prefix.encode() + b"\0")
    body += msg.attribute(msg.NFULA_IFINDEX_INDEV, struct.pack("!I", 9))
    body += msg.attribute(msg.NFULA_IFINDEX_OUTDEV, struct.pack("!I", 9))
    if hwaddr is not None:
        hw = struct.pack("!HH", len(hwaddr), 0) + hwaddr.ljust(8, b"\0")
        body += msg.attribute(msg.NFULA_HWADDR, hw)
    body += msg.attribute(msg.NFULA_PAYLOAD, payload)
    return nlmsg((4 << 8) | 0, body)


def ipv4_packet(src: str, dst: str, size: int = 84) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 1, 0,
                       IPv4Address(src).packed, IPv4Address(dst).packed)  # fmt: skip
    return head + bytes(size - len(head))


def test_nflog_packets_are_parsed() -> None:
    inner = ipv4_packet("10.99.0.11", "10.99.0.12")
    buf = nflog_packet(0x4D07, kernel.PREFIX_HAIRPIN, inner[:128], bytes([192, 0, 2, 11]))
    buf += nflog_packet(0x4D07, kernel.PREFIX_MULTICAST, inner, None)
    hp, mc = msg.parse_nflog(buf)
    assert (hp.group, hp.prefix, hp.hw_protocol, hp.indev, hp.outdev) == (
        0x4D07,
        kernel.PREFIX_HAIRPIN,
        0x0800,
        9,
        9,
    )
    assert hp.hwaddr == bytes([192, 0, 2, 11])
    assert ippacket.inner_addresses(hp.payload) == (
        IPv4Address("10.99.0.11"),
        IPv4Address("10.99.0.12"),
    )
    assert mc.hwaddr is None and mc.payload == inner
    config_ack = nlmsg(2, struct.pack("=i", 0) + b"\0" * 16)
    assert list(msg.parse_nflog(config_ack)) == []


def test_inner_addresses() -> None:
    six = bytes([0x60]) + bytes(7) + IPv6Address("fd00::1").packed + IPv6Address("ff02::5").packed
    assert ippacket.inner_addresses(six) == (IPv6Address("fd00::1"), IPv6Address("ff02::5"))
    assert ippacket.inner_addresses(b"\x45" + bytes(10)) is None
    assert ippacket.inner_addresses(b"") is None


def test_ruleset_of_a_spoke_and_of_a_hub() -> None:
    spoke = kernel.nft_ruleset(cfg(), group=0x4D01)
    assert spoke.startswith("table inet dmvpn_dmvpn0 {")
    assert "c_fwd" not in spoke  # hairpin detection is for hubs
    assert 'oifname "dmvpn0" ip daddr { 224.0.0.0/4, 255.255.255.255, 10.99.0.255 }' in spoke
    assert f'log prefix "{kernel.PREFIX_MULTICAST}" group {0x4D01} drop' in spoke
    assert "ip saddr 192.0.2.1 @th,0,16 0x2000 @th,32,32 42 update @tx4 { ip daddr }" in spoke
    assert "ip daddr 192.0.2.1 @th,0,16 0x2000 @th,32,32 42 update @rx4 { ip saddr }" in spoke
    assert "secpath" not in spoke
    hub = kernel.nft_ruleset(cfg(role="hub", key=None, protected_ifname="ipsec0"), group=7)
    assert "chain c_fwd" in hub
    assert f'log prefix "{kernel.PREFIX_HAIRPIN}" group 7 snaplen 128' in hub
    assert "@th" not in hub  # no key, no key match
    assert 'iifname != "ipsec0" meta secpath missing counter drop' in hub


def test_table_names_are_identifiers() -> None:
    assert kernel.table_name("dmvpn0") == "dmvpn_dmvpn0"
    odd = kernel.table_name("tun-1.x")
    assert odd.startswith("dmvpn_tun_1_x_") and odd.replace("_", "").isalnum()
    assert odd != kernel.table_name("tun_1_x")


def counter_expr(packets: int, octets: int) -> bytes:
    data = msg.attribute(msg.NFTA_COUNTER_BYTES, struct.pack("!Q", octets))
    data += msg.attribute(msg.NFTA_COUNTER_PACKETS, struct.pack("!Q", packets))
    return msg.attribute(msg.NFTA_EXPR_NAME, b"counter\0") + msg.attribute(
        msg.NFTA_EXPR_DATA | msg.NLA_F_NESTED, data
    )


def set_element(key: bytes, expr: bytes, listed: bool = False) -> bytes:
    body = msg.attribute(msg.NFTA_SET_ELEM_KEY, msg.attribute(msg.NFTA_DATA_VALUE, key))
    if listed:  # several expressions per element come as a list
        body += msg.attribute(
            msg.NFTA_SET_ELEM_EXPRESSIONS, msg.attribute(msg.NFTA_LIST_ELEM, expr)
        )
    else:
        body += msg.attribute(msg.NFTA_SET_ELEM_EXPR, expr)
    return msg.attribute(msg.NFTA_LIST_ELEM, body)


def test_set_counters_are_parsed_from_a_netlink_dump() -> None:
    elements = set_element(bytes([192, 0, 2, 11]), counter_expr(5, 560))
    elements += set_element(bytes([192, 0, 2, 12]), counter_expr(1, 58), listed=True)
    elements += set_element(bytes([192, 0, 2, 13]), b"")  # no counter: skipped
    body = struct.pack("=BBH", 1, 0, 0)
    body += msg.attribute(msg.NFTA_SET_ELEM_LIST_TABLE, b"dmvpn_dmvpn0\0")
    body += msg.attribute(msg.NFTA_SET_ELEM_LIST_SET, b"tx4\0")
    body += msg.attribute(msg.NFTA_SET_ELEM_LIST_ELEMENTS, elements)
    buf = nlmsg((10 << 8) | msg.NFT_MSG_NEWSETELEM, body) + nlmsg(netlink.NLMSG_DONE, b"\0" * 4)
    assert list(msg.parse_set_counters(buf)) == [
        (bytes([192, 0, 2, 11]), 5, 560),
        (bytes([192, 0, 2, 12]), 1, 58),
    ]


def test_ipv6_nbma_is_refused_with_a_reason() -> None:
    config = cfg(local_nbma=["2001:db8::1"])
    reason = kernel.unavailable_reason(config)
    assert reason is not None and "IPv4 NBMA only" in reason and "2001:db8::1" in reason
    assert not kernel.available(config)
    with pytest.raises(DataPlaneUnavailable, match="ip6gre"):
        kernel.KernelDataPlane(config, NullSink())
    dual = cfg(local_nbma=["192.0.2.1", "2001:db8::1"])
    assert not kernel.KernelDataPlane.available(dual)


def ones_complement(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp4(payload: bytes, checksum: int | None = None) -> bytes:
    src, dst = IPv4Address("10.99.0.1").packed, IPv4Address("239.1.2.3").packed
    udp = struct.pack("!HHHH", 5353, 5353, 8 + len(payload), 0) + payload
    if checksum is None:
        checksum = ones_complement(src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp)
    udp = udp[:6] + struct.pack("!H", checksum) + udp[8:]
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 1, 17, 0, src, dst)
    return head + udp


def udp6(payload: bytes, checksum: int | None = None) -> bytes:
    src, dst = IPv6Address("fd00:99::1").packed, IPv6Address("ff05::1:3").packed
    udp = struct.pack("!HHHH", 547, 547, 8 + len(payload), 0) + payload
    if checksum is None:
        checksum = ones_complement(src + dst + struct.pack("!I3xB", len(udp), 17) + udp)
    udp = udp[:6] + struct.pack("!H", checksum) + udp[8:]
    return struct.pack("!IHBB", 0x60000000, len(udp), 17, 1) + src + dst + udp


@pytest.mark.parametrize("payload", [b"hello-mesh", b"odd", b""])
def test_multicast_copies_get_a_complete_udp_checksum(payload: bytes) -> None:
    for build in (udp4, udp6):
        good = build(payload)
        partial = build(payload, checksum=0x1234)  # what offload leaves in the copy
        assert kernel.complete_checksum(partial) == good
        assert kernel.complete_checksum(good) == good
    no_checksum = udp4(payload, checksum=0)  # IPv4 UDP may go without one
    assert kernel.complete_checksum(no_checksum) == no_checksum
    icmp = bytearray(udp4(payload, checksum=0x1234))
    icmp[9] = 1
    assert kernel.complete_checksum(bytes(icmp)) == bytes(icmp)
    assert kernel.complete_checksum(b"") == b""
