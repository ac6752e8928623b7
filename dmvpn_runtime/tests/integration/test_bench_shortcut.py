"""Smoke test of the shortcut benchmark tool: two fresh spoke pairs in a real lab.

Not a timing assertion: the tool must build its lab, see each flow start via the hub,
see the Traffic Indication, the resolution, the shortcut route and the first direct
packet in causal order, report the figures, and take the lab down.
"""

from __future__ import annotations

import json
import socket
import struct

import pytest

from dmvpn_runtime.bench import shortcut
from dmvpn_runtime.bench.shortcut import lab_setup, results, wire
from dmvpn_runtime.lab import list_labs

pytestmark = pytest.mark.integration

# Kernel time stamps of packets on the wire, in the order causality imposes.
WIRE_ORDER = [
    "hub_rx_ms",
    "indication_ms",
    "request_at_hub_ms",
    "request_forwarded_ms",
    "reply_at_src_ms",
    "direct_sent_ms",
    "direct_ms",
]


def test_two_pairs(lab_factory, capsys: pytest.CaptureFixture[str]) -> None:
    name = lab_factory.reserve_name()  # skips without root; torn down in any case
    rc = shortcut.main(["--pairs", "2", "--json", "--name", name])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert rc == 0, out
    assert result["pairs"] == result["measured"] == 2
    assert result["spokes"] == 3
    assert len(result["direct_ms"]) == len(result["shortcut_ms"]) == 2
    for key in ("median_ms", "p95_ms", "shortcut_median_ms", "shortcut_p95_ms"):
        assert result[key] > 0, key
    assert result["p95_ms"] >= result["median_ms"]
    assert len(result["loadavg_before"]) == 3 and result["method"]
    assert result["teardown_problems"] == []
    pairs = [tuple(s["pair"]) for s in result["samples"]]
    assert len({frozenset(p) for p in pairs}) == 2  # two distinct pairs
    for sample in result["samples"]:
        assert sample["started_via_hub"] and sample["ended_direct"], sample
        steps = sample["steps_ms"]
        times = [steps[k] for k in WIRE_ORDER]
        assert None not in times, sample
        assert times == sorted(times), sample
        assert steps["hub_rx_ms"] > 0
        assert steps["reply_at_src_ms"] <= sample["shortcut_ms"]
        assert steps["src_mapping_ms"] is not None and steps["dst_mapping_ms"] is not None
        assert sample["direct_ms"] == steps["direct_ms"]
        # The first probe crossed the hub; the tail after the switch went direct.
        assert sample["arrived_via_hub"] >= 1 and sample["first_direct_seq"] >= 1
        assert sample["arrived_direct"] >= 1
        assert sample["arrived_via_hub"] + sample["arrived_direct"] <= sample["sent"]
        assert 1 <= sample["delivered"] <= sample["sent"]
    assert name not in list_labs()


def test_pairs_and_parsers() -> None:
    assert [lab_setup.spokes_for(n) for n in (1, 2, 3, 4, 20, 21, 22)] == [2, 3, 3, 4, 7, 7, 8]
    order = lab_setup.pair_order(7, 20)
    assert len({frozenset(p) for p in order}) == 20
    assert all(1 <= a <= 7 and 1 <= b <= 7 and a != b for a, b in order)
    assert results.percentile([float(i) for i in range(1, 21)], 0.95) == 19.0

    # IPv4 / GRE (key) / IPv4 / UDP / probe, and GRE / NHRP Traffic Indication.
    def ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
        return (
            struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0)
            + socket.inet_aton(src)
            + socket.inet_aton(dst)
            + payload
        )

    udp = struct.pack("!HHHH", 5000, wire.PORT, 8 + wire.PROBE_SIZE, 0)
    inner = ip("10.1.0.2", "10.2.0.2", 17, udp + wire.probe(7, 42))
    gre = ip("198.51.100.11", "198.51.100.12", 47, struct.pack("!HHI", 0x2000, 0x0800, 42) + inner)
    parsed = wire.parse_gre(gre)
    assert parsed is not None and parsed.probe == (7, 42)
    assert parsed.src == socket.inet_aton("198.51.100.11")
    nhrp = bytes(17) + bytes([wire.NHRP_TRAFFIC_INDICATION]) + bytes(20)
    ti = ip("203.0.113.1", "198.51.100.11", 47, struct.pack("!HHI", 0x2000, 0x2001, 42) + nhrp)
    parsed = wire.parse_gre(ti)
    assert parsed is not None and parsed.nhrp_type == wire.NHRP_TRAFFIC_INDICATION
    assert wire.parse_gre(inner) is None

    # RTM_NEWROUTE 10.2.0.0/24 via 10.255.255.12, then RTM_NEWNEIGH 10.255.255.12.
    def attr(kind: int, value: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(value), kind) + value

    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 24, 0, 0, 254, 157, 0, 1, 0)
    body += attr(1, socket.inet_aton("10.2.0.0")) + attr(5, socket.inet_aton("10.255.255.12"))
    route = struct.pack("=IHHII", 16 + len(body), wire.RTM_NEWROUTE, 0, 0, 0) + body
    body = struct.pack("=BBHiHBB", socket.AF_INET, 0, 0, 4, 0x80, 0, 1)
    body += attr(1, socket.inet_aton("10.255.255.12"))
    neigh = struct.pack("=IHHII", 16 + len(body), wire.RTM_NEWNEIGH, 0, 0, 0) + body
    assert wire.parse_rtnl(route + neigh) == [
        ("route", "10.2.0.0/24", "10.255.255.12"),
        ("neigh", "10.255.255.12", None),
    ]
