"""Netlink framing and a request socket, shared by the data planes and the route watcher.

Messages and attributes are built and parsed here without I/O (unit tests need no
kernel); ``RequestSocket`` sends a request and waits for its acknowledgement, or reads
a dump to its end.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Iterator

NETLINK_ROUTE = 0
SO_RCVBUFFORCE = 33  # Linux; the socket module does not export it
SOCKET_BUFFER = 4 << 20

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")


def align(n: int) -> int:
    return (n + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 octets."""
    raw = NLATTR.pack(NLATTR.size + len(payload), kind) + payload
    return raw + bytes(align(len(raw)) - len(raw))


def attributes(buf: bytes | memoryview, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each attribute in ``buf[start:end]``; stops at a malformed one."""
    pos, end = start, min(end, len(buf))
    while pos + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(buf, pos)
        if length < NLATTR.size or pos + length > end:
            return
        yield kind & NLA_TYPE_MASK, bytes(buf[pos + NLATTR.size : pos + length])
        pos += align(length)


def messages(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, sequence, start, end) for each netlink message in ``buf``."""
    pos = 0
    while pos + NLMSGHDR.size <= len(buf):
        length, kind, flags, seq, _port = NLMSGHDR.unpack_from(buf, pos)
        if length < NLMSGHDR.size or pos + length > len(buf):
            return
        yield kind, flags, seq, pos + NLMSGHDR.size, pos + length
        pos += align(length)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def sequence_of(msg: bytes) -> int:
    """The sequence number in the header of ``msg``."""
    return int(NLMSGHDR.unpack_from(msg)[3])


def error_code(buf: bytes, start: int) -> int:
    """The errno of the NLMSG_ERROR whose body starts at ``start`` (0: an ack)."""
    return -int(_ERRNO.unpack_from(buf, start)[0])


class RequestSocket:
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
            seq = sequence_of(message)
        self.sock.send(message)
        for _attempt in range(64):  # bounded: the ack is normally the first message
            buf = self.sock.recv(65536)
            for kind, _flags, got, start, end in messages(buf):
                if got != seq or kind != NLMSG_ERROR or end - start < 4:
                    continue
                code = error_code(buf, start)
                if code:
                    raise OSError(code, os.strerror(code))
                return
        raise OSError(errno.ETIMEDOUT, "no netlink acknowledgement")

    def dump(self, message: bytes) -> Iterator[bytes]:
        """Send a dump request; yield each read until the dump's end (or its error)."""
        seq = sequence_of(message)
        self.sock.send(message)
        for _reads in range(100000):  # bounded: a set holds at most 65535 elements
            buf = self.sock.recv(1 << 20)
            yield buf
            for kind, _flags, got, start, _end in messages(buf):
                if got != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = error_code(buf, start)
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
        raise OSError(errno.EMSGSIZE, "netlink dump did not end")

    def close(self) -> None:
        self.sock.close()
