"""The route watcher against the kernel: routes through a device in a scratch namespace.

The watcher runs inside the namespace (``ip netns exec``); a script changes routes with
``ip route`` there and prints what the watcher read after each change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.integration

HARNESS = r"""
import json, select, subprocess, sys
from dmvpn_runtime.dataplane.base import ROUTE_PROTO
from dmvpn_runtime.dataplane.routes import RouteWatcher

def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)

def step(watcher, fd):
    readable, _w, _x = select.select([fd], [], [], 2.0)
    notified = bool(readable) and watcher.drain()
    added, removed = watcher.read()
    return {
        "notified": notified,
        "added": sorted([str(p), str(v)] for p, v in added),
        "removed": sorted(str(p) for p in removed),
    }

watcher = RouteWatcher("rw0", ROUTE_PROTO)
fd = watcher.open()
out = {"start": step(watcher, fd)}
"""

SINGLE_PATH = r"""
ip("route", "add", "10.3.0.0/24", "via", "10.255.0.3", "dev", "rw0")
ip("route", "add", "10.4.0.0/24", "via", "10.255.0.4", "dev", "rw0", "proto", str(ROUTE_PROTO))
ip("route", "add", "10.5.0.0/24", "dev", "rw0")
ip("route", "add", "10.6.0.0/24", "via", "10.255.0.6", "dev", "rw0", "table", "100")
ip("route", "add", "10.7.0.0/24", "via", "10.255.0.7", "dev", "rw0", "metric", "10")
ip("route", "add", "10.7.0.0/24", "via", "10.255.0.8", "dev", "rw0", "metric", "5")
ip("-6", "route", "add", "fd03::/64", "via", "fd00::3", "dev", "rw0")
out["added"] = step(watcher, fd)
ip("route", "replace", "10.3.0.0/24", "via", "10.255.0.9", "dev", "rw0")
ip("route", "del", "10.7.0.0/24", "via", "10.255.0.8", "dev", "rw0", "metric", "5")
ip("-6", "route", "del", "fd03::/64")
out["changed"] = step(watcher, fd)
ip("route", "replace", "10.3.0.0/24", "dev", "lo")
out["moved"] = step(watcher, fd)
ip("route", "add", "10.8.0.0/24", "via", "10.254.0.2", "dev", "rw1")
out["elsewhere"] = step(watcher, fd)
out["idle"] = step(watcher, fd)
out["kernel_filtered"] = watcher.kernel_filtered
watcher.close()
print(json.dumps(out))
"""

# ECMP as a dual-homed site learned over BGP or OSPF: the next hops are listed out of
# order, so the lowest address is chosen, not the first.
MULTIPATH = r"""
def multipath(prefix, *hops, family="-4", extra=()):
    nexthops = []
    for via, dev in hops:
        nexthops += ["nexthop", "via", via, "dev", dev]
    ip(family, "route", "replace", prefix, *extra, *nexthops)

multipath("10.9.0.0/24", ("10.255.0.5", "rw0"), ("10.255.0.3", "rw0"), ("10.255.0.4", "rw0"))
multipath("10.10.0.0/24", ("10.254.0.2", "rw1"), ("10.255.0.6", "rw0"))
multipath("10.12.0.0/24", ("10.255.0.6", "rw0"), ("10.255.0.4", "rw0"), extra=("metric", "10"))
ip("route", "add", "10.12.0.0/24", "via", "10.255.0.2", "dev", "rw0", "metric", "20")
multipath("10.13.0.0/24", ("10.255.0.3", "rw0"), ("10.255.0.4", "rw0"),
          extra=("proto", str(ROUTE_PROTO)))
# An IPv6 gateway for an IPv4 prefix (RTA_VIA) is no overlay next hop of ours.
ip("route", "add", "10.14.0.0/24", "nexthop", "via", "inet6", "fd00::7", "dev", "rw0",
   "nexthop", "via", "10.255.0.8", "dev", "rw0")
multipath("fd09::/64", ("fd00::5", "rw0"), ("fd00::3", "rw0"), ("fd00::4", "rw0"), family="-6")
multipath("fd0a::/64", ("fd01::2", "rw1"), ("fd00::6", "rw0"), family="-6")
out["added"] = step(watcher, fd)
multipath("10.9.0.0/24", ("10.255.0.5", "rw0"), ("10.255.0.3", "rw0"))
ip("-6", "route", "del", "fd09::/64", "via", "fd00::4", "dev", "rw0")
out["other_hop_gone"] = step(watcher, fd)
multipath("10.9.0.0/24", ("10.255.0.5", "rw0"), ("10.254.0.2", "rw1"))
ip("-6", "route", "del", "fd09::/64", "via", "fd00::3", "dev", "rw0")
out["chosen_hop_gone"] = step(watcher, fd)
multipath("10.10.0.0/24", ("10.254.0.2", "rw1"), ("10.254.0.3", "rw1"))
multipath("fd0a::/64", ("fd01::2", "rw1"), ("fd01::3", "rw1"), family="-6")
out["moved"] = step(watcher, fd)
multipath("10.11.0.0/24", ("10.254.0.2", "rw1"), ("10.254.0.3", "rw1"))
multipath("fd0b::/64", ("fd01::2", "rw1"), ("fd01::3", "rw1"), family="-6")
out["elsewhere"] = step(watcher, fd)
out["kernel_filtered"] = watcher.kernel_filtered
watcher.close()
print(json.dumps(out))
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip")
    name = f"rwt-t{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            "ip link add rw0 type veth peer name rw1",
            "ip link set rw0 up",
            "ip link set rw1 up",
            "ip link set lo up",
            "ip addr add 10.255.0.1/24 dev rw0",
            "ip -6 addr add fd00::1/64 dev rw0 nodad",
            "ip addr add 10.254.0.1/24 dev rw1",
            "ip -6 addr add fd01::1/64 dev rw1 nodad",
        ):
            subprocess.run(["ip", "netns", "exec", name, *command.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def watch(namespace: str, script: str) -> dict:
    """Run the watcher and ``script`` in the namespace; what it read at each step."""
    run = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", HARNESS + script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_watcher_reads_routes_through_the_device_and_what_changed(namespace: str) -> None:
    out = watch(namespace, SINGLE_PATH)
    # Notices about other routes (IPv6 link-local ones settling) may come: a read then
    # finds nothing changed.
    assert out["start"]["added"] == out["start"]["removed"] == []
    # Ours (proto 157), one without a next hop and one in another table are left out;
    # of two metrics the lower wins, as in the kernel.
    assert out["added"] == {
        "notified": True,
        "added": [
            ["10.3.0.0/24", "10.255.0.3"],
            ["10.7.0.0/24", "10.255.0.8"],
            ["fd03::/64", "fd00::3"],
        ],
        "removed": [],
    }
    # A replaced next hop is a change; the other metric takes over; a deleted route goes.
    assert out["changed"] == {
        "notified": True,
        "added": [["10.3.0.0/24", "10.255.0.9"], ["10.7.0.0/24", "10.255.0.7"]],
        "removed": ["fd03::/64"],
    }
    # A route replaced by one through another device is gone from the tunnel's view.
    assert out["moved"] == {"notified": True, "added": [], "removed": ["10.3.0.0/24"]}
    # A route through another device is none of the watcher's business: no read.
    assert out["elsewhere"] == {"notified": False, "added": [], "removed": []}
    assert out["idle"]["added"] == out["idle"]["removed"] == []
    assert out["kernel_filtered"]  # Linux >= 4.20 filters the dump by device and table


def test_a_multipath_route_gives_its_lowest_next_hop_through_the_device(namespace: str) -> None:
    out = watch(namespace, MULTIPATH)
    assert out["start"]["added"] == out["start"]["removed"] == []
    # The lowest next hop through rw0, whatever the order and next hops through rw1;
    # the lower metric still wins over a multipath route's; ours (proto 157) and a
    # gateway of the other family (RTA_VIA) are left out. IPv6 the same.
    assert out["added"] == {
        "notified": True,
        "added": [
            ["10.10.0.0/24", "10.255.0.6"],
            ["10.12.0.0/24", "10.255.0.4"],
            ["10.14.0.0/24", "10.255.0.8"],
            ["10.9.0.0/24", "10.255.0.3"],
            ["fd09::/64", "fd00::3"],
            ["fd0a::/64", "fd00::6"],
        ],
        "removed": [],
    }
    # A next hop that was not chosen leaves the set: the choice stays (no Purge).
    assert out["other_hop_gone"] == {"notified": True, "added": [], "removed": []}
    # The chosen one leaves: the lowest of those left through rw0 takes over.
    assert out["chosen_hop_gone"] == {
        "notified": True,
        "added": [["10.9.0.0/24", "10.255.0.5"], ["fd09::/64", "fd00::5"]],
        "removed": [],
    }
    # Replaced by multipath routes with no next hop through rw0: gone from the view.
    assert out["moved"] == {
        "notified": True,
        "added": [],
        "removed": ["10.10.0.0/24", "fd0a::/64"],
    }
    # Multipath routes through another device only are none of the watcher's business.
    assert out["elsewhere"] == {"notified": False, "added": [], "removed": []}
    # Linux >= 4.20's dump filter by device keeps multipath routes with a hop through it.
    assert out["kernel_filtered"]
