"""The kernel data plane's sockets: the three the event loop reads, and NFLOG binding.

Netlink requests (setup, neighbour entries, nf_tables look-ups) go through
``..netlink.RequestSocket``. The plane reads three non-blocking sockets: neighbour
events (``RTMGRP_NEIGH``: the kernel's requests to resolve a next hop), our NFLOG group
(hairpins and multicast to replicate), and a packet socket on the link for NHRP.

Separate from ``messages`` (what goes over them, no I/O) and from the plane (what it
does with what it reads).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import zlib

from ..base import DataPlaneError
from ..netlink import (
    NETLINK_ROUTE,
    SO_RCVBUFFORCE,
    SOCKET_BUFFER,
    RequestSocket,
    attribute,
)
from .messages import (
    NFULA_CFG_CMD,
    NFULA_CFG_MODE,
    NFULA_CFG_QTHRESH,
    NFULNL_CFG_CMD_BIND,
    NFULNL_COPY_PACKET,
    nflog_config_request,
)

NETLINK_NETFILTER = 12
RTMGRP_NEIGH = 0x4

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_NHRP = 0x2001
PACKET_OUTGOING = 4

NFLOG_GROUP_BASE = 0x4D00  # groups we try: BASE + hash(tunnel) % SPAN, then onwards
NFLOG_GROUP_SPAN = 0x2000
NFLOG_GROUP_TRIES = 32


def open_nflog(tunnel: str) -> tuple[socket.socket, int]:
    """A non-blocking socket bound to a free NFLOG group, copying whole packets; and
    the group, searched from a hash of ``tunnel`` so that tunnels rarely collide."""
    nl = RequestSocket(NETLINK_NETFILTER)
    start = zlib.crc32(tunnel.encode()) % NFLOG_GROUP_SPAN
    last: OSError | None = None
    for i in range(NFLOG_GROUP_TRIES):
        group = NFLOG_GROUP_BASE + (start + i) % NFLOG_GROUP_SPAN
        bind = attribute(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND))
        try:
            nl.request(nflog_config_request(group, nl.next_seq(), bind))
        except OSError as exc:
            last = exc
            if exc.errno in (errno.EPERM, errno.EBUSY):  # bound by another socket
                continue
            nl.close()
            raise DataPlaneError(f"NFLOG bind group {group}: {exc}") from exc
        mode = attribute(NFULA_CFG_MODE, struct.pack("!IBx", 0xFFFF, NFULNL_COPY_PACKET))
        mode += attribute(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
        try:
            nl.request(nflog_config_request(group, nl.next_seq(), mode))
        except OSError as exc:
            nl.close()
            raise DataPlaneError(f"NFLOG configure group {group}: {exc}") from exc
        break
    else:
        nl.close()
        raise DataPlaneError(f"no free NFLOG group after {NFLOG_GROUP_TRIES} tries: {last}")
    sock = nl.sock
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    sock.setblocking(False)
    return sock, group


def open_neigh_events() -> socket.socket:
    """A non-blocking rtnetlink socket subscribed to neighbour events."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    sock.bind((0, RTMGRP_NEIGH))
    sock.setblocking(False)
    return sock


def open_nhrp_socket(tunnel: str) -> socket.socket:
    """A non-blocking packet socket for NHRP (GRE protocol 0x2001) on link ``tunnel``.

    ip_gre gives it the outer source as ``sll_addr`` and builds the outer header from
    the ``sll_addr`` we send to; the plane sends replicated multicast through it too.
    """
    sock = socket.socket(
        socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(ETH_P_NHRP)
    )
    sock.bind((tunnel, ETH_P_NHRP))
    sock.setblocking(False)
    return sock
