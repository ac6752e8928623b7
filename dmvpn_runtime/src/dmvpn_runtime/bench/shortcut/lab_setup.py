"""The lab the shortcut benchmark measures in, and getting it ready to measure.

Which lab (one hub, the fewest spokes that give the pairs asked for, a LAN host behind
each spoke), which spoke pairs in which order, and the wait until every spoke is
registered, routes the other LANs via the hub and has ARP resolved on its LAN, so that
none of that is in the figures. Everything that builds or asks the lab, nothing that
measures.
"""

from __future__ import annotations

import json
import time
from typing import Any

HUB_NBMA = "203.0.113.1"
HUB_OVERLAY = "10.255.255.1"
WAN_NETWORKS = ["203.0.113.0/25", "198.51.100.0/24"]
OVERLAY_NET = "10.255.255.0/24"
REGISTER_TIMEOUT_S = 30.0


class BenchError(Exception):
    """The benchmark cannot go on: the lab is not as it must be, or a probe was not sent."""


def spokes_for(pairs: int) -> int:
    """The fewest spokes that give ``pairs`` distinct unordered pairs."""
    k = 2
    while k * (k - 1) // 2 < pairs:
        k += 1
    return k


def pair_order(spokes: int, pairs: int) -> list[tuple[int, int]]:
    """``pairs`` distinct unordered spoke pairs (numbers 1..spokes) as (source, destination).

    Greedy: each next pair shares no spoke with the previous one when possible, and the
    direction alternates, so one spoke is not the source of every sample.
    """
    left = [(a, b) for a in range(1, spokes + 1) for b in range(a + 1, spokes + 1)]
    order: list[tuple[int, int]] = []
    last: set[int] = set()
    while left and len(order) < pairs:
        pick = next((p for p in left if not set(p) & last), left[0])
        left.remove(pick)
        order.append(pick if len(order) % 2 == 0 else (pick[1], pick[0]))
        last = set(pick)
    return order


def lab_spec(name: str, spokes: int) -> dict[str, Any]:
    return {
        "name": name,
        "tunnel": {"overlay": [OVERLAY_NET]},
        "wan": {"networks": list(WAN_NETWORKS)},
        "hubs": [{"name": "hub1", "nbma": [HUB_NBMA], "overlay": [HUB_OVERLAY]}],
        "spokes": [
            {
                "name": f"spoke{i}",
                "nbma": [f"198.51.100.{10 + i}"],
                "overlay": [f"10.255.255.{10 + i}"],
                "lan": [f"10.{i}.0.0/24"],
            }
            for i in range(1, spokes + 1)
        ],
    }


def route_via(lab: Any, node: str, prefix: str) -> str | None:
    """The gateway of ``node``'s route to ``prefix``, if it has one."""
    proc = lab.node(node).exec(["ip", "-j", "route", "show", prefix], timeout=10)
    try:
        routes = json.loads(proc.stdout or "[]")
    except ValueError:
        return None
    return routes[0].get("gateway") if routes else None


def _ready(lab: Any, spokes: int) -> bool:
    from ...daemon.control import ControlError, request

    hub = lab.node("hub1")
    try:
        entries = request(str(hub.path(hub.control_socket)), "show_nhrp")
        registered = sum(1 for e in entries if e.get("type") == "registered")
        if registered < spokes:
            return False
        for i in range(1, spokes + 1):
            node = lab.node(f"spoke{i}")
            nhs = request(str(node.path(node.control_socket)), "show_nhs")
            if not nhs or not all(v.get("state") == "registered" for v in nhs):
                return False
    except (OSError, ControlError, ValueError):
        return False
    # Every spoke routes the other LANs via the hub (routes_via_nhs) before we start.
    for i in range(1, spokes + 1):
        other = lab.node(f"spoke{i % spokes + 1}")
        if route_via(lab, f"spoke{i}", other.lan[0]) != HUB_OVERLAY:
            return False
    return True


def wait_until_ready(lab: Any, spokes: int) -> None:
    """Until every spoke is registered and routes via the hub, or BenchError."""
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while not _ready(lab, spokes):
        if time.monotonic() > deadline:
            raise BenchError(f"spokes not all registered within {REGISTER_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def resolve_lan_arp(lab: Any, spokes: int) -> None:
    """Each spoke and its LAN host ping each other: ARP is not what is measured."""
    for i in range(1, spokes + 1):
        host = lab.node(f"spoke{i}-lan")
        lab.node(f"spoke{i}").exec(["ping", "-c1", "-W1", host.addresses[0]], timeout=10)
        host.exec(["ping", "-c1", "-W1", lab.node(f"spoke{i}").lan[0].split("/")[0]])
