"""Netlink messages of the kernel data plane: building and parsing, no I/O.

rtnetlink (neighbour events, the application-probe settings, neighbour entries),
nfnetlink_log (binding and configuring our NFLOG group, the packets it logs) and
nf_tables (looking up and deleting our table, dumping the counters of a set), with the
protocol numbers they use. Separate from the sockets that carry them (``sockets``) so
that every message can be built and parsed in unit tests, without a kernel.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from ..base import Address
from ..netlink import (
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    attribute,
    attributes,
    message,
    messages,
)

# The K bit of a GRE header: the link's i/oflags and the ruleset's key match.
GRE_FLAG_KEY = 0x2000
APP_PROBES = 3  # RTM_GETNEIGH requests, one per retrans_time (1 s): ~3 s of queueing

# rtnetlink: neighbours and neighbour tables
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
RTM_SETNEIGHTBL = 67
NDA_DST = 1
NDA_LLADDR = 2
NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NUD_PERMANENT = 0x80
NDTA_NAME = 1
NDTA_PARMS = 6
NDTPA_IFINDEX = 1
NDTPA_APP_PROBES = 9
NDTPA_UCAST_PROBES = 10
NDTPA_MCAST_PROBES = 11

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

# nf_tables
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
NFPROTO_INET = 1

NDMSG = struct.Struct("=BBHiHBB")
NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big endian)


# ---------------------------------------------------------------------------------
# rtnetlink: neighbours


@dataclass(frozen=True, slots=True)
class NeighEvent:
    kind: int  # RTM_NEWNEIGH, RTM_DELNEIGH or RTM_GETNEIGH
    ifindex: int
    state: int
    dst: Address | None


def parse_neigh_events(buf: bytes) -> Iterator[NeighEvent]:
    """Neighbour messages (new, del, get = an application probe) in a netlink read."""
    for kind, _flags, _seq, start, end in messages(buf):
        if kind not in (RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH) or end - start < NDMSG.size:
            continue
        family, _p1, _p2, ifindex, state, _flags2, _type = NDMSG.unpack_from(buf, start)
        dst: Address | None = None
        for attr, value in attributes(buf, start + NDMSG.size, end):
            if attr == NDA_DST and family == socket.AF_INET and len(value) == 4:
                dst = IPv4Address(value)
            elif attr == NDA_DST and family == socket.AF_INET6 and len(value) == 16:
                dst = IPv6Address(value)
        yield NeighEvent(kind, ifindex, state, dst)


def neigh_table_request(family: int, ifindex: int, seq: int) -> bytes:
    """RTM_SETNEIGHTBL: resolution of next hops on ``ifindex`` goes to userspace."""
    name = b"arp_cache\0" if family == socket.AF_INET else b"ndisc_cache\0"
    parms = b"".join(
        attribute(kind, struct.pack("=I", value))
        for kind, value in (
            (NDTPA_IFINDEX, ifindex),
            (NDTPA_APP_PROBES, APP_PROBES),
            (NDTPA_UCAST_PROBES, 0),
            (NDTPA_MCAST_PROBES, 0),
        )
    )
    body = struct.pack("=B3x", family) + attribute(NDTA_NAME, name)
    body += attribute(NDTA_PARMS | NLA_F_NESTED, parms)
    return message(RTM_SETNEIGHTBL, NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE, seq, body)


def neigh_request(
    kind: int, flags: int, seq: int, ifindex: int, dst: Address, lladdr: bytes | None
) -> bytes:
    """RTM_NEWNEIGH (a permanent entry, ``lladdr`` = NBMA address) or RTM_DELNEIGH."""
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    state = NUD_PERMANENT if kind == RTM_NEWNEIGH else 0
    body = NDMSG.pack(family, 0, 0, ifindex, state, 0, 0) + attribute(NDA_DST, dst.packed)
    if lladdr is not None:
        body += attribute(NDA_LLADDR, lladdr)
    return message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, body)


# ---------------------------------------------------------------------------------
# nfnetlink_log


def _nfulnl_type(msg: int) -> int:
    return (NFNL_SUBSYS_ULOG << 8) | msg


def nflog_config_request(group: int, seq: int, attrs: bytes) -> bytes:
    body = NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    return message(_nfulnl_type(NFULNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq, body)


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
    for kind, _flags, _seq, start, end in messages(buf):
        if kind != _nfulnl_type(NFULNL_MSG_PACKET) or end - start < NFGENMSG.size:
            continue
        _family, _version, res_id = NFGENMSG.unpack_from(buf, start)
        prefix, proto, payload = "", 0, b""
        indev = outdev = None
        hwaddr: bytes | None = None
        for attr, value in attributes(buf, start + NFGENMSG.size, end):
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


# ---------------------------------------------------------------------------------
# nf_tables


def _nft_type(msg: int) -> int:
    return (NFNL_SUBSYS_NFTABLES << 8) | msg


def _nft_table_message(kind: int, flags: int, seq: int, table: str) -> bytes:
    body = NFGENMSG.pack(NFPROTO_INET, 0, 0) + attribute(NFTA_TABLE_NAME, table.encode() + b"\0")
    return message(_nft_type(kind), NLM_F_REQUEST | flags, seq, body)


def nft_get_table_request(seq: int, table: str) -> bytes:
    """NFT_MSG_GETTABLE for ``inet <table>``, acknowledged (ENOENT: no such table)."""
    return _nft_table_message(NFT_MSG_GETTABLE, NLM_F_ACK, seq, table)


def nft_delete_table_batch(begin: int, seq: int, end: int, table: str) -> bytes:
    """A batch (sequence numbers ``begin``, ``seq``, ``end``) deleting ``inet <table>``."""
    batch = NFGENMSG.pack(socket.AF_UNSPEC, 0, socket.htons(NFNL_SUBSYS_NFTABLES))
    return (
        message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, begin, batch)
        + _nft_table_message(NFT_MSG_DELTABLE, NLM_F_ACK, seq, table)
        + message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, batch)
    )


def set_elements_dump_request(seq: int, table: str, name: str) -> bytes:
    """NFT_MSG_GETSETELEM dump of set ``name`` in ``inet <table>``."""
    body = NFGENMSG.pack(NFPROTO_INET, 0, 0)
    body += attribute(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    body += attribute(NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
    return message(_nft_type(NFT_MSG_GETSETELEM), NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def _counter_of(expr: bytes) -> tuple[int, int] | None:
    """(packets, bytes) of a nested ``counter`` expression, else None."""
    fields = dict(attributes(expr, 0, len(expr)))
    if fields.get(NFTA_EXPR_NAME, b"").rstrip(b"\0") != b"counter":
        return None
    data = dict(attributes(fields.get(NFTA_EXPR_DATA, b""), 0, 1 << 16))
    try:
        packets = struct.unpack("!Q", data[NFTA_COUNTER_PACKETS])[0]
        octets = struct.unpack("!Q", data[NFTA_COUNTER_BYTES])[0]
    except (KeyError, struct.error):
        return None
    return packets, octets


def parse_set_counters(buf: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(key, packets, bytes) of each set element with a counter in a GETSETELEM reply."""
    kind_new = _nft_type(NFT_MSG_NEWSETELEM)
    for kind, _flags, _seq, start, end in messages(buf):
        if kind != kind_new:
            continue
        top = dict(attributes(buf, start + NFGENMSG.size, end))
        elements = top.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")
        for attr, elem in attributes(elements, 0, len(elements)):
            if attr != NFTA_LIST_ELEM:
                continue
            fields = dict(attributes(elem, 0, len(elem)))
            key = dict(attributes(fields.get(NFTA_SET_ELEM_KEY, b""), 0, 1 << 16))
            value = key.get(NFTA_DATA_VALUE)
            exprs = [fields[NFTA_SET_ELEM_EXPR]] if NFTA_SET_ELEM_EXPR in fields else []
            listed = fields.get(NFTA_SET_ELEM_EXPRESSIONS, b"")
            exprs += [e for a, e in attributes(listed, 0, len(listed)) if a == NFTA_LIST_ELEM]
            for expr in exprs:
                counter = _counter_of(expr)
                if value is not None and counter is not None:
                    yield value, counter[0], counter[1]
                    break
