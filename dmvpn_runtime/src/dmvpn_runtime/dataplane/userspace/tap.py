"""A TAP device from /dev/net/tun, and the link-layer addresses we give it and peers."""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix: frames start at the MAC

ETH_HEADER = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

# Locally administered unicast addresses. The device has one; each peer (NBMA address)
# gets PEER_PREFIX + a 32-bit index, so a frame's destination MAC names its peer.
DEVICE_MAC = bytes.fromhex("02d700000001")
PEER_PREFIX = 0x02D8
PEER_MAC = struct.Struct("!HI")  # (prefix, index), read straight from a frame
UNKNOWN_PEER_MAC = PEER_MAC.pack(PEER_PREFIX, 0)  # source MAC for unmapped senders


def peer_mac(index: int) -> bytes:
    return PEER_MAC.pack(PEER_PREFIX, index)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def open_tap(name: str, persist: bool = False) -> int:
    """Open (creating) TAP device ``name``; non-blocking, close-on-exec.

    A non-persistent device disappears with its last descriptor, so a crashed
    instance leaves no interface (and no routes or neighbours) behind.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        if persist:
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError:
        os.close(fd)
        raise
    return fd
