"""The route watcher's parser on crafted rtnetlink messages: multipath routes (RTA_MULTIPATH
and its struct rtnexthop entries), well formed and not.

The watcher against the kernel is in tests/integration/dataplane/test_route_watcher.py.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import given
from hypothesis import strategies as st

from dmvpn_runtime.dataplane import routes
from dmvpn_runtime.dataplane.netlink import NLATTR, attribute, message

TUNNEL, WAN = 7, 2
U32 = struct.Struct("=I")
RTA_VIA = 18


def hop(ifindex: int, *attrs: bytes, length: int | None = None) -> bytes:
    """One struct rtnexthop with its attributes; ``length`` overrides rtnh_len."""
    body = b"".join(attrs)
    size = routes.RTNEXTHOP.size + len(body) if length is None else length
    return routes.RTNEXTHOP.pack(size, 0, 0, ifindex) + body


def gateway(address: str) -> bytes:
    return attribute(routes.RTA_GATEWAY, IPv4Address(address).packed)


def route(prefix: str, multipath: bytes, *, protocol: int = 3, metric: int = 0) -> bytes:
    """An RTM_NEWROUTE of the main table for ``prefix`` with this RTA_MULTIPATH payload."""
    net = IPv4Network(prefix) if ":" not in prefix else IPv6Network(prefix)
    family = socket.AF_INET if net.version == 4 else socket.AF_INET6
    body = routes.RTMSG.pack(
        family, net.prefixlen, 0, 0, routes.RT_TABLE_MAIN, protocol, 0, routes.RTN_UNICAST, 0
    )
    body += attribute(routes.RTA_TABLE, U32.pack(routes.RT_TABLE_MAIN))
    body += attribute(routes.RTA_DST, net.network_address.packed)
    body += attribute(routes.RTA_PRIORITY, U32.pack(metric))
    body += attribute(routes.RTA_MULTIPATH, multipath)
    return message(routes.RTM_NEWROUTE, 0, 1, body)


def read(buf: bytes) -> dict[str, str]:
    return {str(r.prefix): str(r.via) for r in routes.parse_routes(buf, TUNNEL, 157)}


def test_the_lowest_next_hop_through_the_device_whatever_the_order() -> None:
    buf = route(
        "10.9.0.0/24",
        hop(TUNNEL, gateway("10.255.0.5"))
        + hop(WAN, gateway("10.255.0.1"))  # lower, but through another device
        + hop(TUNNEL, gateway("10.255.0.3"))
        + hop(TUNNEL, gateway("10.255.0.4")),
    )
    buf += route("10.11.0.0/24", hop(WAN, gateway("10.254.0.2")) + hop(WAN, gateway("10.254.0.3")))
    six = route(
        "fd09::/64",
        hop(TUNNEL, attribute(routes.RTA_GATEWAY, IPv6Address("fd00::10").packed))
        + hop(TUNNEL, attribute(routes.RTA_GATEWAY, IPv6Address("fd00::9").packed)),
    )
    assert read(buf + six) == {"10.9.0.0/24": "10.255.0.3", "fd09::/64": "fd00::9"}


def test_next_hops_without_a_gateway_of_the_family_are_skipped() -> None:
    via_inet6 = attribute(RTA_VIA, socket.AF_INET6.to_bytes(2, "little") + bytes(16))
    buf = route(
        "10.14.0.0/24",
        hop(TUNNEL, via_inet6) + hop(TUNNEL) + hop(TUNNEL, gateway("10.255.0.8")),
    )
    buf += route("10.15.0.0/24", hop(TUNNEL, via_inet6) + hop(TUNNEL))
    assert read(buf) == {"10.14.0.0/24": "10.255.0.8"}


def test_our_own_multipath_routes_are_skipped() -> None:
    ours = route("10.13.0.0/24", hop(TUNNEL, gateway("10.255.0.3")), protocol=157)
    assert read(ours) == {}


def test_malformed_next_hops_are_skipped_without_raising() -> None:
    good = hop(TUNNEL, gateway("10.255.0.7"))
    cases = {
        # rtnh_len past the payload: the entry and the rest are dropped
        "overlong": good + hop(TUNNEL, gateway("10.255.0.1"), length=200),
        # rtnh_len below the header, or zero: nothing after it can be found
        "short": good + hop(TUNNEL, gateway("10.255.0.1"), length=4) + gateway("10.255.0.2"),
        "zero": good + hop(TUNNEL, gateway("10.255.0.1"), length=0),
        # a gateway of the wrong size, and an attribute longer than its entry
        "bad_gateway": good
        + hop(TUNNEL, attribute(routes.RTA_GATEWAY, b"\x0a\xff\x00"))
        + hop(TUNNEL, NLATTR.pack(40, routes.RTA_GATEWAY) + IPv4Address("10.255.0.1").packed),
        # a payload shorter than one header after the good entry
        "truncated": good + b"\x08\x00\x00",
    }
    for name, multipath in cases.items():
        assert read(route("10.9.0.0/24", multipath)) == {"10.9.0.0/24": "10.255.0.7"}, name
    assert read(route("10.9.0.0/24", b"\x01")) == {}


@given(st.binary(max_size=96), st.sampled_from(["10.9.0.0/24", "fd09::/64"]))
def test_any_multipath_payload_parses_without_raising(payload: bytes, prefix: str) -> None:
    found = list(routes.parse_routes(route(prefix, payload), TUNNEL, 157))
    assert len(found) <= 1
    assert all(r.via.version == r.prefix.version for r in found)
