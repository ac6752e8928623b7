"""The UDP checksum of a multicast copy: what checksum offload left for the device.

A locally sent UDP datagram leaves its checksum to the device (the GRE link offers
checksum offload), so the copy of it NFLOG hands the plane for replication carries only
the pseudo-header sum; copies the plane sends through the packet socket must carry the
real one. Separate from the plane because it is a pure function of the packet.
"""

from __future__ import annotations

import struct

from ...checksum import internet_checksum

IPPROTO_UDP = 17


def complete_checksum(packet: bytes) -> bytes:
    """``packet`` with its UDP checksum computed (IPv4 or IPv6, unfragmented).

    Other protocols (ICMP, OSPF, PIM, VRRP, ...) are checksummed in software already:
    they, fragments and IPv6 with extension headers are returned as they are.
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
