"""The kernel data plane: a multipoint ip_gre link driven over netlink.

What the kernel does and what this module adds (docs/dataplane-kernel.md has the
long form):

- **Tunnel**: one ``gre`` link named after the tunnel, ``local`` = our IPv4 NBMA
  address, no ``remote`` (multipoint), ``ttl 64``, the GRE key in both directions. The
  link has ``header_ops`` because it has no remote, so its link-layer address is an
  IPv4 address: the neighbour entry of an overlay next hop carries the NBMA address
  (``lladdr``) the kernel puts in the outer header.
- **Mappings**: ``NUD_PERMANENT`` neighbour entries (``ip neigh replace OVERLAY lladdr
  NBMA dev TUN nud permanent``): permanent rather than ``noarp`` because the
  neighbour garbage collector may drop unused ``noarp`` entries.
- **No mapping**: ``IFF_NOARP`` is cleared on the link and its ARP and ND parameters
  are ``app_probes 3, ucast_probes 0, mcast_probes 0`` (what FRR's nhrpd does with
  ``app_probes 1``). A next hop without an entry is then resolved by *us*: the kernel
  queues the packets, sends ``RTM_GETNEIGH`` to the ``RTNLGRP_NEIGH`` group once a
  second, three times, and gives up after about 3 s. Each request becomes a
  ``sink.no_mapping`` (rate-limited to one per second per next hop).
- **NHRP**: an ``AF_PACKET``/``SOCK_DGRAM`` socket bound to the link for protocol
  0x2001. ip_gre hands GRE payloads of any protocol to packet sockets with the outer
  source as ``sll_addr`` (``ipgre_header_parse``); sending with ``sll_addr`` = NBMA
  address makes ``ipgre_header`` build the outer header.
- **Hairpin (hub)**: an nftables rule in our own table logs the first 128 bytes of
  packets forwarded from the tunnel back into it to an NFLOG group, rate-limited per
  (source, destination) by a dynamic set; the NFLOG message's hardware address is the
  outer source (the ingress spoke), the egress spoke is the mapping of the next hop
  the kernel's FIB picks for the inner destination.
- **Multicast** (``map multicast dynamic``): replicated in software. Multicast and
  broadcast leaving through the tunnel are logged whole to the same NFLOG group and
  dropped; each copy goes to every multicast target through the packet socket (GRE
  protocol 0x0800/0x86dd). IGMP, MLD and ND stay local.
- **Counters**: two dynamic nftables sets with a counter per element, keyed by the
  peer's NBMA address, updated by GRE leaving (``ip daddr``) and arriving (``ip
  saddr``) with our local address and key; read every ``traffic_interval`` with an
  nf_tables set-element dump. Minus the outer headers and our own NHRP they are the
  data counters. Only creating the table runs the ``nft`` program.
- **Redirects**: ICMP/ICMPv6 redirects through the tunnel are dropped (NHRP decides
  who talks directly).

Limits: IPv4 NBMA only -- Linux's ip6gre has no working multipoint transmit (no remote
means ``ip6_tnl_xmit_ctl`` refuses every packet, and packet sockets get no outer
source), so a configuration with an IPv6 NBMA address is refused with
:class:`DataPlaneUnavailable`. Passenger (overlay) IPv4 and IPv6 both work.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar

from ..checksum import internet_checksum
from ..ippacket import inner_addresses
from .base import (
    Address,
    DataPlane,
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneSink,
    DataPlaneStats,
    DataPlaneUnavailable,
    Drop,
    Network,
    PeerCounters,
    Role,
    StaleStateError,
    as_address,
    as_network,
)

log = logging.getLogger(__name__)

__all__ = [
    "KernelDataPlane",
    "NflogPacket",
    "available",
    "complete_checksum",
    "nft_delete_table",
    "nft_ruleset",
    "nft_table_exists",
    "parse_neigh_events",
    "parse_nflog",
    "parse_set_counters",
    "read_set_counters",
    "table_name",
    "unavailable_reason",
]

# Written to IFLA_IFALIAS so cleanup_stale() only ever deletes a device we made (the
# userspace data plane writes "flexmesh-dmvpn userspace"; both are ours).
ALIAS = "flexmesh-dmvpn kernel"
ALIAS_PREFIX = "flexmesh-dmvpn"
# Route protocol number marking our routes (`ip route show proto 157`), as userspace.
ROUTE_PROTO = 157
TTL = 64
APP_PROBES = 3  # RTM_GETNEIGH requests, one per retrans_time (1 s): ~3 s of queueing
NOTICE_INTERVAL = 1.0  # at most one no_mapping / hairpin notice per key per second
MEMORY_LIMIT = 8192  # entries in a rate-limit table before it is pruned hard
HAIRPIN_HEAD = 128
NFT_TIMEOUT = 10.0
SOCKET_BUFFER = 4 << 20

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_NHRP = 0x2001
PACKET_OUTGOING = 4
GRE_FLAG_KEY = 0x2000
IPPROTO_GRE = 47
IPPROTO_UDP = 17

IFF_UP = 0x1
IFF_NOARP = 0x80
IFF_MULTICAST = 0x1000
IFA_F_NODAD = 0x02
RTNH_F_ONLINK = 0x4
RTN_MULTICAST = 5
RT_TABLE_LOCAL = 255

# rtnetlink / neighbour constants
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
RTM_SETNEIGHTBL = 67
RTMGRP_NEIGH = 0x4
NDA_DST = 1
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NDTA_NAME = 1
NDTA_PARMS = 6
NDTPA_IFINDEX = 1
NDTPA_APP_PROBES = 9
NDTPA_UCAST_PROBES = 10
NDTPA_MCAST_PROBES = 11
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

# nfnetlink_log
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_PACKET_HDR = 1
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_HWADDR = 8
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 16
NFNL_MSG_BATCH_END = 17
NFT_MSG_GETTABLE = 1
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFTA_TABLE_NAME = 1
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_EXPR = 7
NFTA_SET_ELEM_EXPRESSIONS = 10
NFTA_DATA_VALUE = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2
NLM_F_DUMP = 0x300
NFPROTO_INET = 1
NFLOG_GROUP_BASE = 0x4D00  # groups we try: BASE + hash(tunnel) % SPAN, then onwards
NFLOG_GROUP_SPAN = 0x2000
NFLOG_GROUP_TRIES = 32
PREFIX_HAIRPIN = "dmvpn-hp"
PREFIX_MULTICAST = "dmvpn-mc"

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLATTR = struct.Struct("=HH")
NDMSG = struct.Struct("=BBHiHBB")
NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big endian)

# ICMPv6 that must not be replicated: MLD (130-132, 143) and ND (133-137).
LOCAL_ICMPV6 = (130, 131, 132, 133, 134, 135, 136, 137, 143)


# ---------------------------------------------------------------------------------
# availability


def _probe_command() -> list[str]:
    # A throw-away network namespace: nothing appears in the caller's namespace.
    script = (
        "ip link add kdpprobe0 type gre local 127.0.0.1 key 1 ttl 64 && nft add table inet kdpprobe"
    )
    return ["unshare", "--net", "--", "sh", "-c", script]


@functools.cache
def _kernel_reason() -> str | None:
    """Why this host cannot run the kernel data plane, or None. Cached per process."""
    missing = [tool for tool in ("ip", "nft", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH (iproute2, nftables, util-linux)"
    try:
        done = subprocess.run(
            _probe_command(), capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not probe for GRE support: {exc}"
    if done.returncode == 0:
        return None
    detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
    if "Unknown device type" in detail:
        return (
            f"this kernel ({os.uname().release}) cannot create a GRE link, ip_gre is missing"
            f" (probe in a scratch namespace: ip link add ... type gre: {detail})"
        )
    return f"the GRE and nftables probe in a scratch network namespace failed: {detail}"


def unavailable_reason(config: DataPlaneConfig | None = None) -> str | None:
    """None when the kernel data plane can run here (for ``config``), else why not."""
    if config is not None:
        v6 = [str(a) for a in config.local_nbma if a.version == 6]
        if v6:
            return (
                f"local_nbma {', '.join(v6)}: the kernel data plane carries IPv4 NBMA only"
                " (Linux ip6gre has no multipoint transmit); use the userspace data plane"
            )
    reason = _kernel_reason()
    return None if reason is None else f"kernel data plane unavailable: {reason}"


def available(config: DataPlaneConfig | None = None) -> bool:
    """True when a multipoint GRE link (and our nftables table) can be made here."""
    return unavailable_reason(config) is None


# ---------------------------------------------------------------------------------
# netlink: message building and parsing (pure functions, unit-tested)


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    raw = NLATTR.pack(NLATTR.size + len(payload), kind) + payload
    return raw + bytes(_align(len(raw)) - len(raw))


def _attrs(buf: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    pos, end = start, min(end, len(buf))
    while pos + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(buf, pos)
        if length < NLATTR.size or pos + length > end:
            return
        yield kind & NLA_TYPE_MASK, bytes(buf[pos + NLATTR.size : pos + length])
        pos += _align(length)


def _messages(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, sequence, start, end) for each netlink message in ``buf``."""
    pos = 0
    while pos + NLMSGHDR.size <= len(buf):
        length, kind, flags, seq, _port = NLMSGHDR.unpack_from(buf, pos)
        if length < NLMSGHDR.size or pos + length > len(buf):
            return
        yield kind, flags, seq, pos + NLMSGHDR.size, pos + length
        pos += _align(length)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


@dataclass(frozen=True, slots=True)
class NeighEvent:
    kind: int  # RTM_NEWNEIGH, RTM_DELNEIGH or RTM_GETNEIGH
    ifindex: int
    state: int
    dst: Address | None


def parse_neigh_events(buf: bytes) -> Iterator[NeighEvent]:
    """Neighbour messages (new, del, get = an application probe) in a netlink read."""
    for kind, _flags, _seq, start, end in _messages(buf):
        if kind not in (RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH) or end - start < NDMSG.size:
            continue
        family, _p1, _p2, ifindex, state, _flags2, _type = NDMSG.unpack_from(buf, start)
        dst: Address | None = None
        for attr, value in _attrs(buf, start + NDMSG.size, end):
            if attr == NDA_DST and family == socket.AF_INET and len(value) == 4:
                dst = IPv4Address(value)
            elif attr == NDA_DST and family == socket.AF_INET6 and len(value) == 16:
                dst = IPv6Address(value)
        yield NeighEvent(kind, ifindex, state, dst)


def neigh_table_request(family: int, ifindex: int, seq: int) -> bytes:
    """RTM_SETNEIGHTBL: resolution of next hops on ``ifindex`` goes to userspace."""
    name = b"arp_cache\0" if family == socket.AF_INET else b"ndisc_cache\0"
    parms = b"".join(
        _attr(kind, struct.pack("=I", value))
        for kind, value in (
            (NDTPA_IFINDEX, ifindex),
            (NDTPA_APP_PROBES, APP_PROBES),
            (NDTPA_UCAST_PROBES, 0),
            (NDTPA_MCAST_PROBES, 0),
        )
    )
    body = struct.pack("=B3x", family) + _attr(NDTA_NAME, name)
    body += _attr(NDTA_PARMS | NLA_F_NESTED, parms)
    return _message(RTM_SETNEIGHTBL, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, seq, body)


def _nfulnl_type(msg: int) -> int:
    return (NFNL_SUBSYS_ULOG << 8) | msg


def nflog_config_request(group: int, seq: int, attrs: bytes) -> bytes:
    body = NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    return _message(_nfulnl_type(NFULNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq, body)


@dataclass(frozen=True, slots=True)
class NflogPacket:
    group: int
    prefix: str
    hw_protocol: int
    indev: int | None
    outdev: int | None
    hwaddr: bytes | None
    payload: bytes


def parse_nflog(buf: bytes) -> Iterator[NflogPacket]:
    """NFULNL_MSG_PACKET messages of an NFLOG netlink read (other messages skipped)."""
    for kind, _flags, _seq, start, end in _messages(buf):
        if kind != _nfulnl_type(NFULNL_MSG_PACKET) or end - start < NFGENMSG.size:
            continue
        _family, _version, res_id = NFGENMSG.unpack_from(buf, start)
        prefix, proto, payload = "", 0, b""
        indev = outdev = None
        hwaddr: bytes | None = None
        for attr, value in _attrs(buf, start + NFGENMSG.size, end):
            if attr == NFULA_PACKET_HDR and len(value) >= 2:
                proto = struct.unpack_from("!H", value)[0]
            elif attr == NFULA_IFINDEX_INDEV and len(value) == 4:
                indev = struct.unpack("!I", value)[0]
            elif attr == NFULA_IFINDEX_OUTDEV and len(value) == 4:
                outdev = struct.unpack("!I", value)[0]
            elif attr == NFULA_HWADDR and len(value) >= 4:
                hwlen = struct.unpack_from("!H", value)[0]
                hwaddr = value[4 : 4 + min(hwlen, 8)] if hwlen else None
            elif attr == NFULA_PAYLOAD:
                payload = value
            elif attr == NFULA_PREFIX:
                prefix = value.split(b"\0", 1)[0].decode(errors="replace")
        yield NflogPacket(socket.ntohs(res_id), prefix, proto, indev, outdev, hwaddr, payload)


def complete_checksum(packet: bytes) -> bytes:
    """``packet`` with its UDP checksum computed (IPv4 or IPv6, unfragmented).

    A locally sent UDP datagram leaves its checksum to the device (the GRE link offers
    checksum offload), so the copy NFLOG hands us carries only the pseudo-header sum;
    copies we send through the packet socket must carry the real one. Other protocols
    (ICMP, OSPF, PIM, VRRP, ...) are checksummed in software already.
    """
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        start = (packet[0] & 0x0F) * 4
        fragment = struct.unpack_from("!H", packet, 6)[0] & 0x3FFF
        if packet[9] != IPPROTO_UDP or fragment:
            return packet
        addresses = packet[12:20]
    elif version == 6 and len(packet) >= 40:
        if packet[6] != IPPROTO_UDP:  # extension headers: left as they are
            return packet
        start, addresses = 40, packet[8:40]
    else:
        return packet
    udp = bytearray(packet[start:])
    if len(udp) < 8 or (version == 4 and udp[6:8] == b"\0\0"):
        return packet  # truncated, or IPv4 UDP without a checksum
    udp[6:8] = b"\0\0"
    if version == 4:
        pseudo = addresses + struct.pack("!BBH", 0, IPPROTO_UDP, len(udp))
    else:
        pseudo = addresses + struct.pack("!I3xB", len(udp), IPPROTO_UDP)
    udp[6:8] = struct.pack("!H", internet_checksum(pseudo + udp) or 0xFFFF)
    return packet[:start] + bytes(udp)


# ---------------------------------------------------------------------------------
# nftables


def table_name(tunnel: str) -> str:
    """Our nftables table for ``tunnel`` (identifier-safe, unique per tunnel name)."""
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in tunnel)
    if safe != tunnel:
        safe += f"_{zlib.crc32(tunnel.encode()) & 0xFFFF:04x}"
    return f"dmvpn_{safe}"


def _nft_str(text: str) -> str:
    return json.dumps(text)  # a double-quoted string nft accepts (names have no quotes)


def nft_ruleset(config: DataPlaneConfig, group: int) -> str:
    """The nftables table this data plane owns (an ``nft -f`` script, no flush)."""
    table = table_name(config.tunnel)
    tun = _nft_str(config.tunnel)
    local = config.nbma_for(4)
    gre = ""
    if config.key is not None:
        gre = f" @th,0,16 {GRE_FLAG_KEY:#06x} @th,32,32 {config.key}"
    broadcast = ["224.0.0.0/4", "255.255.255.255"]
    for iface in config.overlay:
        if iface.version == 4 and iface.network.prefixlen < 31:
            broadcast.append(str(iface.network.broadcast_address))
    icmp6 = ", ".join(str(t) for t in LOCAL_ICMPV6)
    mc = f'log prefix "{PREFIX_MULTICAST}" group {group} drop'
    lines = [
        f"table inet {table} {{",
        "  set tx4 { type ipv4_addr; size 65535; flags dynamic; counter; }",
        "  set rx4 { type ipv4_addr; size 65535; flags dynamic; counter; }",
        "  chain c_out {",
        "    type filter hook output priority 0; policy accept;",
        # No ICMP redirects through the tunnel: a hub forwarding spoke-to-spoke traffic
        # would name the other spoke as a better first hop, and a spoke would believe
        # it; NHRP's redirect (Traffic Indication) does that job under its policy.
        # (The conf/*/send_redirects and accept_redirects sysctls are ORed with "all".)
        f"    oifname {tun} icmp type redirect counter drop",
        f"    oifname {tun} icmpv6 type nd-redirect counter drop",
        f"    oifname {tun} ip protocol igmp drop",
        f"    oifname {tun} ip6 daddr ff00::/8 icmpv6 type {{ {icmp6} }} drop",
        f"    oifname {tun} ip6 daddr ff00::/8 {mc}",
        f"    oifname {tun} ip daddr {{ {', '.join(broadcast)} }} {mc}",
        f"    meta l4proto gre ip saddr {local}{gre} update @tx4 {{ ip daddr }}",
        "  }",
        "  chain c_in {",
        "    type filter hook input priority 0; policy accept;",
        f"    iifname {tun} icmp type redirect counter drop",
        f"    iifname {tun} icmpv6 type nd-redirect counter drop",
    ]
    if config.protected_ifname:
        # Only GRE that came through IPsec reaches the tunnel: kernel ESP leaves a
        # secpath, userspace ESP (libipsec) arrives through protected_ifname.
        pif = _nft_str(config.protected_ifname)
        lines.append(
            f"    meta l4proto gre ip daddr {local}{gre} iifname != {pif}"
            " meta secpath missing counter drop"
        )
    lines += [
        f"    meta l4proto gre ip daddr {local}{gre} update @rx4 {{ ip saddr }}",
        "  }",
    ]
    if config.role is Role.HUB:
        hp = f'log prefix "{PREFIX_HAIRPIN}" group {group} snaplen {HAIRPIN_HEAD}'
        limit = "limit rate 1/second burst 1 packets"
        lines += [
            "  set hp4 { type ipv4_addr . ipv4_addr; size 65535; flags dynamic,timeout;"
            " timeout 10s; }",
            "  set hp6 { type ipv6_addr . ipv6_addr; size 65535; flags dynamic,timeout;"
            " timeout 10s; }",
            "  chain c_fwd {",
            "    type filter hook forward priority 0; policy accept;",
            f"    iifname {tun} oifname {tun} meta nfproto ipv4"
            f" add @hp4 {{ ip saddr . ip daddr {limit} }} {hp}",
            f"    iifname {tun} oifname {tun} meta nfproto ipv6"
            f" add @hp6 {{ ip6 saddr . ip6 daddr {limit} }} {hp}",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nft(script: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["nft", *args] if script is None else ["nft", *args, "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataPlaneError(f"nft {' '.join(args)}: {exc}") from exc
    if check and done.returncode != 0:
        what = " ".join(args) or (script or "").strip().splitlines()[0]
        raise DataPlaneError(f"nft {what}: {done.stderr.strip()}")
    return done


# ---------------------------------------------------------------------------------
# sockets


class _Netlink:
    """A blocking request/acknowledge netlink socket (setup and neighbour writes)."""

    def __init__(self, protocol: int) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol
        )
        self.sock.bind((0, 0))
        self.sock.settimeout(5.0)
        self.seq = int(time.monotonic() * 1000) & 0xFFFFFF

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def request(self, message: bytes, seq: int | None = None) -> None:
        """Send ``message`` and wait for the acknowledgement of ``seq`` (default: its own)."""
        if seq is None:
            seq = NLMSGHDR.unpack_from(message)[3]
        self.sock.send(message)
        for _attempt in range(64):  # bounded: the ack is normally the first message
            buf = self.sock.recv(65536)
            for kind, _flags, got, start, end in _messages(buf):
                if got != seq or kind != NLMSG_ERROR or end - start < 4:
                    continue
                code = -struct.unpack_from("=i", buf, start)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                return
        raise OSError(errno.ETIMEDOUT, "no netlink acknowledgement")

    def close(self) -> None:
        self.sock.close()


def _nft_table_message(kind: int, flags: int, seq: int, table: str) -> bytes:
    body = NFGENMSG.pack(NFPROTO_INET, 0, 0) + _attr(NFTA_TABLE_NAME, table.encode() + b"\0")
    return _message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | flags, seq, body)


def nft_table_exists(table: str) -> bool:
    """Whether ``inet <table>`` exists (nf_tables over netlink; no ``nft`` run)."""
    nl = _Netlink(NETLINK_NETFILTER)
    try:
        nl.request(_nft_table_message(NFT_MSG_GETTABLE, NLM_F_ACK, nl.next_seq(), table))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise DataPlaneError(f"look up nftables table inet {table}: {exc}") from exc
    finally:
        nl.close()
    return True


def nft_delete_table(table: str) -> bool:
    """Delete ``inet <table>`` in one nf_tables batch; False when it did not exist."""
    nl = _Netlink(NETLINK_NETFILTER)
    try:
        begin, seq, end = nl.next_seq(), nl.next_seq(), nl.next_seq()
        batch = NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
        message = _message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, batch)
        message += _nft_table_message(NFT_MSG_DELTABLE, NLM_F_ACK, seq, table)
        message += _message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, batch)
        nl.request(message, seq=seq)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise DataPlaneError(f"delete nftables table inet {table}: {exc}") from exc
    finally:
        nl.close()
    return True


def _counter_of(expr: bytes) -> tuple[int, int] | None:
    """(packets, bytes) of a nested ``counter`` expression, else None."""
    attrs = dict(_attrs(expr, 0, len(expr)))
    if attrs.get(NFTA_EXPR_NAME, b"").rstrip(b"\0") != b"counter":
        return None
    data = dict(_attrs(attrs.get(NFTA_EXPR_DATA, b""), 0, 1 << 16))
    try:
        packets = struct.unpack("!Q", data[NFTA_COUNTER_PACKETS])[0]
        octets = struct.unpack("!Q", data[NFTA_COUNTER_BYTES])[0]
    except (KeyError, struct.error):
        return None
    return packets, octets


def parse_set_counters(buf: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(key, packets, bytes) of each set element with a counter in a GETSETELEM reply."""
    kind_new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
    for kind, _flags, _seq, start, end in _messages(buf):
        if kind != kind_new:
            continue
        top = dict(_attrs(buf, start + NFGENMSG.size, end))
        elements = top.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")
        for attr, elem in _attrs(elements, 0, len(elements)):
            if attr != NFTA_LIST_ELEM:
                continue
            fields = dict(_attrs(elem, 0, len(elem)))
            key = dict(_attrs(fields.get(NFTA_SET_ELEM_KEY, b""), 0, 1 << 16))
            value = key.get(NFTA_DATA_VALUE)
            exprs = [fields[NFTA_SET_ELEM_EXPR]] if NFTA_SET_ELEM_EXPR in fields else []
            listed = fields.get(NFTA_SET_ELEM_EXPRESSIONS, b"")
            exprs += [e for a, e in _attrs(listed, 0, len(listed)) if a == NFTA_LIST_ELEM]
            for expr in exprs:
                counter = _counter_of(expr)
                if value is not None and counter is not None:
                    yield value, counter[0], counter[1]
                    break


def read_set_counters(table: str, name: str) -> dict[bytes, tuple[int, int]]:
    """{key: (packets, bytes)} of set ``name`` in ``inet <table>``, over netlink."""
    nl = _Netlink(NETLINK_NETFILTER)
    out: dict[bytes, tuple[int, int]] = {}
    try:
        seq = nl.next_seq()
        body = NFGENMSG.pack(NFPROTO_INET, 0, 0)
        body += _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
        body += _attr(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
        kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM
        nl.sock.send(_message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, body))
        for _reads in range(100000):  # bounded: a set holds at most 65535 elements
            buf = nl.sock.recv(1 << 20)
            for key, packets, octets in parse_set_counters(buf):
                out[key] = (packets, octets)
            for msg, _flags, got, start, _end in _messages(buf):
                if got != seq:
                    continue
                if msg == NLMSG_DONE:
                    return out
                if msg == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buf, start)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out
        raise OSError(errno.EMSGSIZE, "set element dump did not end")
    finally:
        nl.close()


def _neigh_request(
    kind: int, flags: int, seq: int, ifindex: int, dst: Address, lladdr: bytes | None
) -> bytes:
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    state = 0x80 if kind == RTM_NEWNEIGH else 0  # NUD_PERMANENT
    body = NDMSG.pack(family, 0, 0, ifindex, state, 0, 0) + _attr(NDA_DST, dst.packed)
    if lladdr is not None:
        body += _attr(2, lladdr)  # NDA_LLADDR
    return _message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, body)


def _write_sysctl(path: str, value: str) -> bool:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        log.debug("sysctl %s=%s: %s", path, value, exc)
        return False
    return True


@dataclass(slots=True)
class _PeerTotals:
    """Kernel counter readings and our own NHRP share for one NBMA peer."""

    tx_pkts: int = 0  # GRE packets/bytes (outer) as nftables counted them
    tx_bytes: int = 0
    rx_pkts: int = 0
    rx_bytes: int = 0
    nhrp_tx_pkts: int = 0  # our NHRP share of the above (payload bytes)
    nhrp_tx_bytes: int = 0
    nhrp_rx_pkts: int = 0
    nhrp_rx_bytes: int = 0
    reported_pkts: int = 0
    reported_bytes: int = 0


class KernelDataPlane(DataPlane):
    """mGRE link + neighbour entries + nftables; IPv4 NBMA, IPv4/IPv6 overlay."""

    kind: ClassVar[str] = "kernel"

    def __init__(self, config: DataPlaneConfig, sink: DataPlaneSink) -> None:
        super().__init__(config, sink)
        reason = unavailable_reason(config)
        if reason is not None:
            raise DataPlaneUnavailable(reason)
        nbma = config.nbma_for(4)
        assert nbma is not None  # unavailable_reason() refused IPv6-only
        self._local: IPv4Address = nbma  # type: ignore[assignment]
        self._overhead = 20 + 4 + (4 if config.key is not None else 0)
        self._table = table_name(config.tunnel)
        self._ifindex = 0
        self._created_link = False
        self._created_table = False
        self._group = 0
        self._ipr: Any = None
        self._rtnl: _Netlink | None = None
        self._events: socket.socket | None = None
        self._nflog: socket.socket | None = None
        self._packet: socket.socket | None = None
        self._mappings: dict[Address, IPv4Address] = {}
        self._peers: dict[IPv4Address, _PeerTotals] = {}
        self._routes: set[Network] = set()
        self._targets: list[Address] = []
        self._no_mapping_sent: dict[Address, float] = {}
        self._hairpin_sent: dict[tuple[Address, Address], float] = {}
        self._drops: Counter[str] = Counter()
        self._events_count: Counter[str] = Counter()
        self._next_report = 0.0
        self._handlers: dict[int, Any] = {}

    # -- availability ------------------------------------------------------------
    @staticmethod
    def available(config: DataPlaneConfig | None = None) -> bool:
        return available(config)

    @staticmethod
    def unavailable_reason(config: DataPlaneConfig | None = None) -> str | None:
        return unavailable_reason(config)

    # -- lifecycle ---------------------------------------------------------------
    def open(self) -> None:
        if self._ifindex:
            return
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        cfg = self.config
        self._ipr = IPRoute(groups=0)  # requests only: no event subscription
        if self._ipr.link_lookup(ifname=cfg.tunnel):
            raise StaleStateError(
                f"a link named {cfg.tunnel} already exists; run cleanup_stale() first"
                " (it removes it only if we made it)"
            )
        self._rtnl = _Netlink(NETLINK_ROUTE)
        self._open_nflog()
        gre: dict[str, Any] = {"gre_local": str(self._local), "gre_ttl": TTL}
        if cfg.key is not None:
            gre.update(
                gre_ikey=cfg.key, gre_okey=cfg.key, gre_iflags=GRE_FLAG_KEY, gre_oflags=GRE_FLAG_KEY
            )
        try:
            self._ipr.link("add", ifname=cfg.tunnel, kind="gre", **gre)
        except NetlinkError as exc:
            if exc.code in (errno.EOPNOTSUPP, errno.EAFNOSUPPORT):
                raise DataPlaneUnavailable(
                    f"kernel data plane unavailable: cannot create GRE link {cfg.tunnel}: {exc}"
                ) from exc
            raise DataPlaneError(f"create GRE link {cfg.tunnel}: {exc}") from exc
        self._created_link = True
        self._ifindex = self._ipr.link_lookup(ifname=cfg.tunnel)[0]
        try:
            self._ipr.link("set", index=self._ifindex, ifalias=ALIAS, mtu=cfg.effective_mtu)
            self._tune_sysctls()
            for family in (socket.AF_INET, socket.AF_INET6):
                self._rtnl.request(
                    neigh_table_request(family, self._ifindex, self._rtnl.next_seq())
                )
            # NOARP off: next hops without an entry are resolved (by us), see module doc.
            self._ipr.link(
                "set",
                index=self._ifindex,
                flags=IFF_UP | IFF_MULTICAST,
                change=IFF_UP | IFF_MULTICAST | IFF_NOARP,
            )
            for iface in cfg.overlay:
                self._ipr.addr(
                    "add",
                    index=self._ifindex,
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                    flags=IFA_F_NODAD if iface.version == 6 else 0,
                )
            if any(iface.version == 6 for iface in cfg.overlay):
                # addrconf gives a non-point-to-point GRE link no ff00::/8 route; IPv6
                # multicast needs one to leave (and be replicated) through the tunnel.
                self._ipr.route(
                    "replace",
                    dst="ff00::/8",
                    oif=self._ifindex,
                    table=RT_TABLE_LOCAL,
                    type=RTN_MULTICAST,
                    proto=ROUTE_PROTO,
                )
        except (NetlinkError, OSError) as exc:
            raise DataPlaneError(f"configure link {cfg.tunnel}: {exc}") from exc
        self._open_events()
        self._open_packet()
        # `create table` fails when the table exists: a crashed instance's leftover.
        done = _nft(
            f"create table inet {self._table}\n" + nft_ruleset(cfg, self._group), check=False
        )
        if done.returncode != 0:
            if "File exists" in done.stderr:
                raise StaleStateError(
                    f"nftables table inet {self._table} already exists; run cleanup_stale() first"
                )
            raise DataPlaneError(f"nft table inet {self._table}: {done.stderr.strip()}")
        self._created_table = True
        self._handlers = {
            self._packet.fileno(): self._read_packet,  # type: ignore[union-attr]
            self._events.fileno(): self._read_events,  # type: ignore[union-attr]
            self._nflog.fileno(): self._read_nflog,  # type: ignore[union-attr]
        }
        self._next_report = time.monotonic() + cfg.traffic_interval
        log.info(
            "kernel data plane %s: gre local %s key %s mtu %d nflog group %d",
            cfg.tunnel,
            self._local,
            cfg.key,
            cfg.effective_mtu,
            self._group,
        )

    def _tune_sysctls(self) -> None:
        tun = self.config.tunnel
        # A hub forwards spoke-to-spoke traffic out of the interface it came in by: no
        # ICMP redirects (NHRP redirects replace them), and none accepted. The kernel
        # ORs some of these with conf/all; our nftables table drops redirects for good.
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{tun}/send_redirects", "0")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{tun}/accept_redirects", "0")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{tun}/accept_redirects", "0")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{tun}/accept_ra", "0")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{tun}/dad_transmits", "0")

    def _open_nflog(self) -> None:
        nl = _Netlink(NETLINK_NETFILTER)
        start = zlib.crc32(self.config.tunnel.encode()) % NFLOG_GROUP_SPAN
        last: OSError | None = None
        for i in range(NFLOG_GROUP_TRIES):
            group = NFLOG_GROUP_BASE + (start + i) % NFLOG_GROUP_SPAN
            bind = _attr(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND))
            try:
                nl.request(nflog_config_request(group, nl.next_seq(), bind))
            except OSError as exc:
                last = exc
                if exc.errno in (errno.EPERM, errno.EBUSY):  # bound by another socket
                    continue
                nl.close()
                raise DataPlaneError(f"NFLOG bind group {group}: {exc}") from exc
            mode = _attr(NFULA_CFG_MODE, struct.pack("!IBx", 0xFFFF, NFULNL_COPY_PACKET))
            mode += _attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
            try:
                nl.request(nflog_config_request(group, nl.next_seq(), mode))
            except OSError as exc:
                nl.close()
                raise DataPlaneError(f"NFLOG configure group {group}: {exc}") from exc
            self._group = group
            break
        else:
            nl.close()
            raise DataPlaneError(f"no free NFLOG group after {NFLOG_GROUP_TRIES} tries: {last}")
        sock = nl.sock
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)  # SO_RCVBUFFORCE
        sock.setblocking(False)
        self._nflog = sock

    def _open_events(self) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, 33, SOCKET_BUFFER)
        sock.bind((0, RTMGRP_NEIGH))
        sock.setblocking(False)
        self._events = sock

    def _open_packet(self) -> None:
        sock = socket.socket(
            socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(ETH_P_NHRP)
        )
        sock.bind((self.config.tunnel, ETH_P_NHRP))
        sock.setblocking(False)
        self._packet = sock

    def close(self) -> None:
        for name in ("_packet", "_events", "_nflog"):
            sock = getattr(self, name)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
                setattr(self, name, None)
        self._handlers = {}
        if self._created_table:
            try:
                nft_delete_table(self._table)
            except DataPlaneError as exc:
                log.warning("%s", exc)
            self._created_table = False
        if self._created_link and self._ipr is not None:
            # Addresses, neighbour entries and routes through the link go with it.
            try:
                self._ipr.link("del", ifname=self.config.tunnel)
            except Exception as exc:  # already gone is fine
                log.debug("delete link %s: %s", self.config.tunnel, exc)
            self._created_link = False
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None
        if self._ipr is not None:
            with contextlib.suppress(Exception):
                self._ipr.close()
            self._ipr = None
        self._ifindex = 0
        self._mappings.clear()
        self._routes.clear()

    def cleanup_stale(self) -> list[str]:
        from pyroute2 import IPRoute

        removed: list[str] = []
        tunnel = self.config.tunnel
        with IPRoute(groups=0) as ipr:
            for link in ipr.get_links(ifname=tunnel):
                alias = link.get_attr("IFLA_IFALIAS") or ""
                info = link.get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else "?"
                if not alias.startswith(ALIAS_PREFIX):
                    raise StaleStateError(
                        f"link {tunnel} ({kind}) exists and is not ours (alias {alias!r});"
                        " remove it or choose another tunnel name"
                    )
                ipr.link("del", index=link["index"])
                removed.append(f"link {tunnel} ({kind}, {alias})")
        if nft_delete_table(self._table):
            removed.append(f"nftables table inet {self._table}")
        for item in removed:
            log.info("removed stale %s", item)
        return removed

    # -- event loop ----------------------------------------------------------------
    def readers(self) -> list[int]:
        return list(self._handlers)

    def on_readable(self, fd: int) -> None:
        handler = self._handlers.get(fd)
        if handler is not None:
            handler()

    def _recv_batch(self, sock: socket.socket, size: int) -> Iterator[tuple[bytes, Any]]:
        for _slot in range(self.config.batch):
            try:
                yield sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # netlink overrun: events were lost
                    self._events_count["netlink_overruns"] += 1
                    continue
                log.warning("read: %s", exc)
                return

    def _read_packet(self) -> None:
        assert self._packet is not None
        protected = self.config.protected_ifname is not None
        for data, addr in self._recv_batch(self._packet, 65536):
            if addr[2] == PACKET_OUTGOING or len(addr[4]) != 4:
                continue
            src = IPv4Address(addr[4])
            self._events_count["nhrp_in"] += 1
            peer = self._peer(src)
            peer.nhrp_rx_pkts += 1
            peer.nhrp_rx_bytes += len(data)
            self.sink.nhrp_received(src, data, protected)

    def _read_events(self) -> None:
        assert self._events is not None
        now = time.monotonic()
        for buf, _addr in self._recv_batch(self._events, 65536):
            for event in parse_neigh_events(buf):
                if event.ifindex != self._ifindex or event.dst is None:
                    continue
                if event.kind == RTM_GETNEIGH:
                    self._on_resolution_request(event.dst, now)
                elif event.kind == RTM_DELNEIGH and event.dst in self._mappings:
                    self._restore_mapping(event.dst)
                elif (
                    event.kind == RTM_NEWNEIGH
                    and event.state & NUD_FAILED
                    and event.dst in self._no_mapping_sent
                ):
                    # The kernel gave up on a next hop we reported: its packets are gone.
                    self._events_count["resolution_failed"] += 1

    def _on_resolution_request(self, next_hop: Address, now: float) -> None:
        self._events_count["resolution_requests"] += 1
        if next_hop in self._mappings:  # raced with add_mapping; the entry is there
            return
        last = self._no_mapping_sent.get(next_hop)
        if last is not None and now - last < NOTICE_INTERVAL:
            return
        self._no_mapping_sent[next_hop] = now
        self._events_count["no_mapping_notices"] += 1
        self.sink.no_mapping(next_hop)

    def _restore_mapping(self, overlay: Address) -> None:
        # Someone (link down/up, `ip neigh flush`) removed an entry we still hold.
        nbma = self._mappings[overlay]
        try:
            self._write_neigh(overlay, nbma)
            self._events_count["mappings_restored"] += 1
        except OSError as exc:
            log.warning("restore mapping %s -> %s: %s", overlay, nbma, exc)

    def _read_nflog(self) -> None:
        assert self._nflog is not None
        now = time.monotonic()
        for buf, _addr in self._recv_batch(self._nflog, 262144):
            for pkt in parse_nflog(buf):
                if pkt.group != self._group:
                    continue
                if pkt.prefix == PREFIX_MULTICAST and pkt.outdev == self._ifindex:
                    self._replicate(pkt.payload)
                elif pkt.prefix == PREFIX_HAIRPIN and pkt.indev == self._ifindex:
                    self._on_hairpin(pkt, now)

    def _replicate(self, packet: bytes) -> None:
        self._events_count["multicast_frames"] += 1
        if not packet:
            return
        proto = ETH_P_IP if packet[0] >> 4 == 4 else ETH_P_IPV6
        if not self._targets:
            self._drops[Drop.NO_MULTICAST_TARGETS] += 1
            return
        packet = complete_checksum(packet)
        for target in self._targets:
            if self._send(target, proto, packet):
                self._events_count["multicast_copies"] += 1

    def _on_hairpin(self, pkt: NflogPacket, now: float) -> None:
        pair = inner_addresses(pkt.payload)
        if pair is None:
            return
        src, dst = pair
        last = self._hairpin_sent.get(pair)
        if last is not None and now - last < NOTICE_INTERVAL:
            return
        in_nbma: Address | None = None
        if pkt.hwaddr is not None and len(pkt.hwaddr) == 4:
            in_nbma = IPv4Address(pkt.hwaddr)
        else:
            in_nbma = self._nbma_towards(src)
        out_nbma = self._nbma_towards(dst)
        if in_nbma is None or out_nbma is None or in_nbma == out_nbma:
            self._events_count["hairpin_unresolved"] += 1
            return
        self._hairpin_sent[pair] = now
        self._events_count["hairpin_notices"] += 1
        self.sink.hairpin(in_nbma, out_nbma, src, dst, pkt.payload[:HAIRPIN_HEAD])

    def _nbma_towards(self, dst: Address) -> Address | None:
        """The NBMA address of the next hop the kernel's FIB picks for ``dst``."""
        try:
            routes = self._ipr.route("get", dst=str(dst))
        except Exception as exc:  # unreachable and the like
            log.debug("route get %s: %s", dst, exc)
            return None
        for route in routes:
            if route.get_attr("RTA_OIF") != self._ifindex:
                continue
            gateway = route.get_attr("RTA_GATEWAY")
            hop = as_address(gateway) if gateway else dst
            return self._mappings.get(hop)
        return None

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for table in (self._no_mapping_sent, self._hairpin_sent):
            if len(table) > MEMORY_LIMIT:
                table.clear()
            else:
                for key in [k for k, t in table.items() if now - t >= 2 * NOTICE_INTERVAL]:
                    del table[key]
        if self._ifindex and now >= self._next_report:
            self._next_report = now + self.config.traffic_interval
            self._read_counters()
            self._report_traffic()

    def _report_traffic(self) -> None:
        for nbma, peer in self._peers.items():
            packets, octets = self._data_tx(peer)
            dp, db = packets - peer.reported_pkts, octets - peer.reported_bytes
            if dp > 0:
                peer.reported_pkts, peer.reported_bytes = packets, octets
                self.sink.traffic(nbma, dp, max(db, 0))

    def _data_tx(self, peer: _PeerTotals) -> tuple[int, int]:
        packets = max(peer.tx_pkts - peer.nhrp_tx_pkts, 0)
        octets = peer.tx_bytes - peer.tx_pkts * self._overhead - peer.nhrp_tx_bytes
        return packets, max(octets, 0)

    def _data_rx(self, peer: _PeerTotals) -> tuple[int, int]:
        packets = max(peer.rx_pkts - peer.nhrp_rx_pkts, 0)
        octets = peer.rx_bytes - peer.rx_pkts * self._overhead - peer.nhrp_rx_bytes
        return packets, max(octets, 0)

    def _peer(self, nbma: IPv4Address) -> _PeerTotals:
        peer = self._peers.get(nbma)
        if peer is None:
            peer = self._peers[nbma] = _PeerTotals()
        return peer

    def _read_counters(self) -> None:
        if not self._created_table:
            return
        try:
            tx = read_set_counters(self._table, "tx4")
            rx = read_set_counters(self._table, "rx4")
        except OSError as exc:
            self._events_count["counter_read_errors"] += 1
            log.debug("read counters of %s: %s", self._table, exc)
            return
        for key, (packets, octets) in tx.items():
            if len(key) == 4:
                peer = self._peer(IPv4Address(key))
                peer.tx_pkts, peer.tx_bytes = packets, octets
        for key, (packets, octets) in rx.items():
            if len(key) == 4:
                peer = self._peer(IPv4Address(key))
                peer.rx_pkts, peer.rx_bytes = packets, octets

    # -- actions -----------------------------------------------------------------
    def _send(self, nbma: Address, proto: int, data: bytes) -> bool:
        if self._packet is None:
            self._drops[Drop.SEND_ERROR] += 1
            return False
        if nbma.version != 4:
            self._drops[Drop.NO_TRANSPORT] += 1
            return False
        try:
            self._packet.sendto(data, (self.config.tunnel, proto, 0, 0, nbma.packed))
        except OSError as exc:
            self._drops[Drop.SEND_ERROR] += 1
            log.debug("send to %s: %s", nbma, exc)
            return False
        return True

    def send_nhrp(self, nbma_dst: Address | str, data: bytes) -> None:
        dst = as_address(nbma_dst)
        if self._send(dst, ETH_P_NHRP, data):
            self._events_count["nhrp_out"] += 1
            peer = self._peer(dst)  # type: ignore[arg-type]
            peer.nhrp_tx_pkts += 1
            peer.nhrp_tx_bytes += len(data)

    def _write_neigh(self, overlay: Address, nbma: IPv4Address) -> None:
        assert self._rtnl is not None
        flags = NLM_F_REPLACE | NLM_F_CREATE
        seq = self._rtnl.next_seq()
        self._rtnl.request(
            _neigh_request(RTM_NEWNEIGH, flags, seq, self._ifindex, overlay, nbma.packed)
        )

    def add_mapping(self, overlay: Address | str, nbma: Address | str) -> None:
        proto, where = as_address(overlay), as_address(nbma)
        if where.version != 4:
            raise DataPlaneError(
                f"map {proto} -> {where}: the kernel data plane has no IPv6 NBMA transport"
            )
        if not self._ifindex:
            raise DataPlaneError("add_mapping before open()")
        try:
            self._write_neigh(proto, where)  # type: ignore[arg-type]
        except OSError as exc:
            raise DataPlaneError(f"map {proto} -> {where}: {exc}") from exc
        self._mappings[proto] = where  # type: ignore[assignment]
        self._no_mapping_sent.pop(proto, None)

    def remove_mapping(self, overlay: Address | str) -> None:
        proto = as_address(overlay)
        if self._mappings.pop(proto, None) is None or self._rtnl is None:
            return
        msg = _neigh_request(RTM_DELNEIGH, 0, self._rtnl.next_seq(), self._ifindex, proto, None)
        try:
            self._rtnl.request(msg)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                raise DataPlaneError(f"unmap {proto}: {exc}") from exc

    def _route_keys(self, prefix: Network) -> dict[str, Any]:
        keys: dict[str, Any] = {
            "dst": str(prefix),
            "oif": self._ifindex,
            "proto": ROUTE_PROTO,
        }
        if self.config.route_table is not None:
            keys["table"] = self.config.route_table
        return keys

    def add_route(self, prefix: Network | str, via_overlay: Address | str) -> None:
        net, via = as_network(prefix), as_address(via_overlay)
        if not self._ifindex:
            raise DataPlaneError("add_route before open()")
        if net.version != via.version:
            raise DataPlaneError(f"route {net} via {via}: next hop of another family")
        try:
            # onlink: an overlay next hop outside our own overlay prefix (/32 designs).
            self._ipr.route(
                "replace", gateway=str(via), flags=RTNH_F_ONLINK, **self._route_keys(net)
            )
        except Exception as exc:
            raise DataPlaneError(f"route {net} via {via}: {exc}") from exc
        self._routes.add(net)

    def remove_route(self, prefix: Network | str) -> None:
        net = as_network(prefix)
        self._routes.discard(net)
        if not self._ifindex:
            return
        try:
            self._ipr.route("del", **self._route_keys(net))
        except Exception as exc:
            if getattr(exc, "code", None) not in (errno.ESRCH, errno.ENOENT):
                raise DataPlaneError(f"remove route {net}: {exc}") from exc

    def set_multicast_targets(self, nbmas: list[Address | str]) -> None:
        self._targets = list(dict.fromkeys(as_address(a) for a in nbmas))

    def mappings(self) -> dict[Address, Address]:
        return dict(self._mappings)

    def stats(self) -> DataPlaneStats:
        self._read_counters()
        stats = DataPlaneStats(kind=self.kind)
        for nbma, peer in self._peers.items():
            tx_p, tx_b = self._data_tx(peer)
            rx_p, rx_b = self._data_rx(peer)
            stats.peers[nbma] = PeerCounters(tx_p, tx_b, rx_p, rx_b)
        stats.drops = {str(k): v for k, v in self._drops.items()}
        stats.events = dict(self._events_count)
        stats.events.update(self._link_counters())
        return stats

    def _link_counters(self) -> dict[str, int]:
        if not self._ifindex or self._ipr is None:
            return {}
        try:
            link = self._ipr.link("get", index=self._ifindex)[0]
        except Exception:
            return {}
        s = link.get_attr("IFLA_STATS64") or {}
        return {
            f"link_{k}": int(s.get(k, 0))
            for k in ("tx_errors", "tx_dropped", "rx_errors", "rx_dropped")
        }

    # -- introspection for tests and tools ---------------------------------------------
    @property
    def ifindex(self) -> int:
        return self._ifindex

    @property
    def nflog_group(self) -> int:
        return self._group

    @property
    def table(self) -> str:
        return self._table

    def routes(self) -> set[Network]:
        return set(self._routes)
