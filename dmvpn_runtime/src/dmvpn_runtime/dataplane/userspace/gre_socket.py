"""Raw IP sockets for GRE, one per NBMA family: opening them and reading PKTINFO.

The device side has tap.py; this is the NBMA side. Separate from gre.py, which is
framing only (bytes in, bytes out), and from the plane, which decides what to send.
"""

from __future__ import annotations

import socket
import struct

from ..base import Address, DataPlaneError

SOCKET_BUFFER = 4 << 20

# Linux values the socket module does not export.
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0

_U32_NATIVE = struct.Struct("=I")


def open_gre_socket(address: Address, pktinfo: bool) -> socket.socket:
    """A non-blocking raw GRE socket bound to our NBMA ``address``.

    With ``pktinfo`` each packet carries its ingress interface (see ``arrived_on``).
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_GRE)
    try:
        # Binding filters received GRE to our NBMA address and fixes the source.
        try:
            sock.bind((str(address), 0))
        except OSError as exc:
            raise DataPlaneError(
                f"local NBMA address {address} is not an address of this host: {exc}"
            ) from exc
        sock.setblocking(False)
        for option, fallback in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, fallback, SOCKET_BUFFER)
        if address.version == 4:
            # DF clear on the outer header, as Cisco does without `tunnel path-mtu-
            # discovery`: the tunnel MTU already accounts for GRE, a smaller path
            # fragments the outer packet instead of black-holing it.
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            if pktinfo:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        elif pktinfo:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def arrived_on(ancillary: list[tuple[int, int, bytes]], ifindex: int) -> bool:
    """Whether the PKTINFO in ``ancillary`` names interface ``ifindex``."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            return _U32_NATIVE.unpack_from(data, 0)[0] == ifindex
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            return _U32_NATIVE.unpack_from(data, 16)[0] == ifindex
    return False
