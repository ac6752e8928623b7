"""The few fields of an IP packet header the project reads outside the data planes' hot
paths: a Traffic Indication quotes the start of a data packet (draft-detienne-dmvpn §4),
and the kernel data plane's hairpin log hands over whole packets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

IpAddress = IPv4Address | IPv6Address


class IpHeader(NamedTuple):
    src: IpAddress
    dst: IpAddress
    protocol: int  # IPv4 protocol, IPv6 next header


def ip_header(packet: bytes) -> IpHeader | None:
    """Source, destination and protocol of an IPv4 or IPv6 packet, or None when the
    octets are too short or not IP."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return IpHeader(IPv4Address(packet[12:16]), IPv4Address(packet[16:20]), packet[9])
    if len(packet) >= 40 and packet[0] >> 4 == 6:
        return IpHeader(IPv6Address(packet[8:24]), IPv6Address(packet[24:40]), packet[6])
    return None


def inner_addresses(packet: bytes) -> tuple[IpAddress, IpAddress] | None:
    """(source, destination) of an IPv4 or IPv6 packet, or None."""
    header = ip_header(packet)
    return (header.src, header.dst) if header is not None else None
