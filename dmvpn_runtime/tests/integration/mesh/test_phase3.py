"""Proof 2 and 3: Phase 3 with real daemons and real packets.

2. spoke1-lan pings spoke2-lan: the first packets cross the hub, the hub sends spoke1 a
   Traffic Indication, both spokes install a shortcut for the other's LAN prefix (a /24,
   not a /32), and later packets go straight from spoke to spoke: the hubs' data-plane
   counters stand still and a capture on the hubs' WAN interfaces sees none of them.
3. An idle shortcut expires (its kernel route goes, and traffic falls back to the hub);
   a busy one is refreshed before its holding time ends and stays.

The helpers here (captures, counters, background pings) are shared by the other Phase 3
proofs (test_roaming, test_failover, test_nat).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from dmvpn_runtime import native
from dmvpn_runtime.lab import Lab
from dmvpn_runtime.nhrp.engine.timers import REDIRECT_INTERVAL, RESOLUTION_RETRY_FIRST

from .conftest import ctl, lan_address, ping, wait_registered, wait_until

HUBS = ("hub1", "hub2")
SLACK = 3.0  # seconds on top of a protocol deadline: polling, a loaded 2-core machine
# A Traffic Indication, then a resolution answered at the latest after its first retry.
ROUND = 2 * RESOLUTION_RETRY_FIRST + SLACK


# -- what the daemons say ------------------------------------------------------------------
def nbmas(lab: Lab, node: str) -> set[str]:
    """The NBMA addresses others see ``node`` at (a NATed spoke: its NAT's outside)."""
    behind = lab.node(node).info.get("behind")
    return set(lab.node(behind if behind else node).nbma)


def counters(lab: Lab, node: str, peer_nbmas: set[str]) -> tuple[int, int]:
    """(rx, tx) data packets ``node``'s data plane exchanged with those NBMA addresses."""
    peers = ctl(lab, node, "show", "stats")["dataplane"]["peers"]
    rx = sum(c["rx_packets"] for a, c in peers.items() if a in peer_nbmas)
    tx = sum(c["tx_packets"] for a, c in peers.items() if a in peer_nbmas)
    return rx, tx


def hub_counters(lab: Lab, spokes: tuple[str, ...], hubs: tuple[str, ...] = HUBS) -> dict:
    """(rx, tx) per (hub, spoke): what each hub's data plane exchanged with each spoke."""
    return {(h, s): counters(lab, h, nbmas(lab, s)) for h in hubs for s in spokes}


def rose(before: tuple[int, int], after: tuple[int, int]) -> bool:
    """Both counters of an (rx, tx) pair went up."""
    return after[0] > before[0] and after[1] > before[1]


def engine_count(lab: Lab, node: str, direction: str, packet_type: str) -> int:
    return ctl(lab, node, "show", "stats")["engine"][direction].get(packet_type, 0)


def shortcut(lab: Lab, node: str, prefix: str) -> dict[str, Any] | None:
    return next((s for s in ctl(lab, node, "show", "shortcuts") if s["prefix"] == prefix), None)


def events(lab: Lab, node: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The node's JSON-lines event log (``kind``: only events of that kind)."""
    found = []
    path = lab.node(node).path(f"/var/lib/dmvpn/{lab.node(node).tunnel}.events.jsonl")
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line being written right now
            continue
        if kind is None or event.get("event") == kind:
            found.append(event)
    return found


def lan_prefix(lab: Lab, node: str) -> str:
    return str(lab.node(node).lan[0])


def kernel_route(lab: Lab, node: str, prefix: str) -> str:
    """``ip route show PREFIX`` in the node (empty: no route)."""
    return lab.node(node).exec(["ip", "-4", "route", "show", prefix], check=True).stdout.strip()


def wait_shortcut(
    lab: Lab, node: str, peer: str, timeout: float = ROUND, nbma: set[str] | None = None
) -> dict[str, Any]:
    """Wait for ``node``'s shortcut to ``peer``'s LAN prefix, via ``peer``'s overlay
    address at ``peer``'s (post-NAT) NBMA, with its kernel route; return it."""
    prefix, via = lan_prefix(lab, peer), lab.node(peer).overlay[0]
    wanted = nbma or nbmas(lab, peer)

    def ready() -> dict[str, Any] | None:
        sc = shortcut(lab, node, prefix)
        if not (sc and sc["via"] == via and sc["nbma"] in wanted and sc["route"]):
            return None
        return sc if f"via {via} dev" in kernel_route(lab, node, prefix) else None

    found = wait_until(ready, timeout)
    assert found, (
        f"{node}: no shortcut {prefix} via {via} at {sorted(wanted)} within {timeout} s: "
        f"{ctl(lab, node, 'show', 'shortcuts')}; kernel: {kernel_route(lab, node, prefix)!r}"
    )
    return found


# -- packets on the wire --------------------------------------------------------------------
GRE_LINE = re.compile(
    r" IP (?P<osrc>[\d.]+) > (?P<odst>[\d.]+): GREv0\b.*?: IP (?P<isrc>[\d.]+) > (?P<idst>[\d.]+):"
)


class GreCapture:
    """``tcpdump -p -i wan0 'ip proto 47'`` inside a node: the GRE packets the node itself
    sends or receives (``-p``: no promiscuous mode, so frames the WAN bridge floods to
    every port do not count). ``with`` waits until tcpdump listens; ``packets`` are
    (outer src, outer dst, inner src, inner dst) of the GRE packets carrying IPv4."""

    def __init__(self, lab: Lab, node: str, iface: str = "wan0") -> None:
        self.node = node
        self.proc = lab.node(node).popen(
            ["tcpdump", "-p", "-n", "-l", "-i", iface, "ip proto 47"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []

    def __enter__(self) -> GreCapture:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()  # unbuffered reads: select() sees what is left
        deadline = time.monotonic() + 10.0
        seen = b""
        while b"listening on" not in seen:  # printed once packets are being captured
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 4096)
            if not chunk:  # tcpdump ended
                break
            seen += chunk
        assert b"listening on" in seen, f"tcpdump in {self.node} did not start: {seen!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)  # the last packets of the traffic under test reach the capture
        self.proc.send_signal(signal.SIGINT)
        out, _err = self.proc.communicate(timeout=10)
        self.lines = out.decode(errors="replace").splitlines()

    @property
    def packets(self) -> list[tuple[str, str, str, str]]:
        return [
            (m["osrc"], m["odst"], m["isrc"], m["idst"])
            for m in map(GRE_LINE.search, self.lines)
            if m
        ]

    def carrying(self, a: str, b: str) -> list[tuple[str, str, str, str]]:
        """GRE packets whose inner packet goes between LAN addresses ``a`` and ``b``."""
        return [p for p in self.packets if {p[2], p[3]} == {a, b}]


# -- a ping that runs in the background ------------------------------------------------------
@dataclass
class PingLog:
    sent: int
    received: int
    replies: list[float] = field(default_factory=list)  # wall-clock time of each reply
    text: str = ""

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without a reply between ``start`` and ``end`` (wall clock)."""
        times = [start, *(t for t in self.replies if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(times))


class BackgroundPing:
    """``ping -D -i INTERVAL`` from one node to an address until ``stop()``."""

    def __init__(self, lab: Lab, node: str, dst: str, interval: float, limit: float) -> None:
        self.proc = lab.node(node).popen(
            ["ping", "-D", "-n", "-i", str(interval), "-W", "1", "-w", str(int(limit)), dst],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started = time.time()

    def stop(self) -> PingLog:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _err = self.proc.communicate(timeout=10)
        replies = [
            float(m.group(1))
            for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from ", out, re.MULTILINE)
        ]
        summary = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        sent, received = (int(summary[1]), int(summary[2])) if summary else (0, len(replies))
        return PingLog(sent, received, replies, out)


# -- proof 2 -----------------------------------------------------------------------------------
def test_first_packets_cross_the_hub_then_a_shortcut_takes_over(lab_factory) -> None:
    lab = lab_factory()  # the shipped lab: spoke1 and spoke2 prefer hub1 (priority 0)
    wait_registered(lab, ["spoke1", "spoke2"], list(HUBS))
    # The daemons run the protocol core this process runs: compiled under make
    # unit-native, which runs this test against the compiled build too.
    for node in (*HUBS, "spoke1", "spoke2"):
        assert ctl(lab, node, "show", "status")["protocol_core"] == native.describe(), node
    src, dst = lan_address(lab, "spoke1"), lan_address(lab, "spoke2")
    spokes = ("spoke1", "spoke2")
    hubs_before = hub_counters(lab, spokes)
    ti_before = engine_count(lab, "spoke1", "rx", "traffic_indication")

    # The first packets: no shortcut yet, so spoke1 routes spoke2's LAN via its NHS.
    assert shortcut(lab, "spoke1", lan_prefix(lab, "spoke2")) is None
    hub1_overlay = lab.node("hub1").overlay[0]
    assert f"via {hub1_overlay} dev" in kernel_route(lab, "spoke1", lan_prefix(lab, "spoke2"))
    with GreCapture(lab, "hub1") as hub1_capture:
        assert ping(lab, "spoke1-lan", dst, count=3) == 3
    hubs_after = hub_counters(lab, spokes)
    # The request and the reply each came in from one spoke and went out to the other.
    for spoke in spokes:
        before, after = hubs_before[("hub1", spoke)], hubs_after[("hub1", spoke)]
        assert rose(before, after), (spoke, hubs_before, hubs_after)
    hub_path = hub1_capture.carrying(src, dst)
    spoke1_nbma, spoke2_nbma = lab.node("spoke1").nbma[0], lab.node("spoke2").nbma[0]
    hub1_nbma = lab.node("hub1").nbma[0]
    assert (spoke1_nbma, hub1_nbma, src, dst) in hub_path, hub1_capture.lines
    assert (hub1_nbma, spoke2_nbma, src, dst) in hub_path, hub1_capture.lines

    # The hub saw the hairpin and told spoke1 (a Traffic Indication), which resolved.
    assert wait_until(
        lambda: engine_count(lab, "spoke1", "rx", "traffic_indication") > ti_before, ROUND
    ), ctl(lab, "spoke1", "show", "stats")["engine"]
    # Both directions got a shortcut for the other side's LAN prefix, not for the host.
    sc1 = wait_shortcut(lab, "spoke1", "spoke2")
    sc2 = wait_shortcut(lab, "spoke2", "spoke1")
    assert sc1["prefix"] == "10.2.0.0/24" and sc2["prefix"] == "10.1.0.0/24"
    for node in spokes:
        prefixes = [s["prefix"] for s in ctl(lab, node, "show", "shortcuts")]
        assert not [p for p in prefixes if p.endswith("/32")], (node, prefixes)

    # Later packets go spoke to spoke: the hubs neither count nor capture any of them.
    hubs_before = hub_counters(lab, spokes)
    direct_before = counters(lab, "spoke1", {spoke2_nbma})
    n = 20
    with (
        GreCapture(lab, "hub1") as c1,
        GreCapture(lab, "hub2") as c2,
        GreCapture(lab, "spoke2") as at_spoke2,
    ):
        assert ping(lab, "spoke1-lan", dst, count=n, interval=0.05) == n
    assert hub_counters(lab, spokes) == hubs_before
    assert c1.carrying(src, dst) == [] and c2.carrying(src, dst) == [], (c1.lines, c2.lines)
    rx0, tx0 = direct_before
    rx1, tx1 = counters(lab, "spoke1", {spoke2_nbma})
    assert tx1 - tx0 >= n and rx1 - rx0 >= n, (direct_before, (rx1, tx1))
    direct = at_spoke2.carrying(src, dst)
    assert direct.count((spoke1_nbma, spoke2_nbma, src, dst)) >= n, at_spoke2.lines
    assert direct.count((spoke2_nbma, spoke1_nbma, dst, src)) >= n, at_spoke2.lines


# -- proof 3 -----------------------------------------------------------------------------------
HOLDTIME = 20  # what the spokes answer resolutions with: the shortcuts' holding time
LIFETIME_SPEC = {
    "tunnel": {"holdtime": HOLDTIME},
    "hubs": [{"name": "hub1"}],
    "spokes": [{"name": f"spoke{i}", "lan": f"10.{i}.0.0/24"} for i in (1, 2, 3)],
}


def test_idle_shortcut_expires_busy_shortcut_is_refreshed(lab_factory) -> None:
    """Shortcut lifetime (docs/engine.md, shortcut.py): a shortcut lives for the holding
    time the egress answered with (``holdtime``). At SHORTCUT_REFRESH_AT of it, one that
    carried traffic is refreshed (a Resolution Request straight to the egress) and gets a
    new holding time; one that did not is left to expire, and its route goes."""
    lab = lab_factory(LIFETIME_SPEC)
    wait_registered(lab, ["spoke1", "spoke2", "spoke3"], ["hub1"])
    idle_dst, busy_dst = lan_address(lab, "spoke2"), lan_address(lab, "spoke3")
    idle_prefix, busy_prefix = lan_prefix(lab, "spoke2"), lan_prefix(lab, "spoke3")

    # Busy: spoke1-lan pings spoke3-lan all along. Idle: one ping to spoke2-lan, which
    # crosses the hub and triggers the shortcuts but never travels on them.
    busy = BackgroundPing(lab, "spoke1-lan", busy_dst, interval=0.2, limit=3 * HOLDTIME)
    try:
        assert ping(lab, "spoke1-lan", idle_dst, count=1) == 1
        idle_sc = wait_shortcut(lab, "spoke1", "spoke2")
        idle_deadline = time.monotonic() + idle_sc["expires"]
        wait_shortcut(lab, "spoke2", "spoke1")
        busy_sc = wait_shortcut(lab, "spoke1", "spoke3")
        busy_deadline = time.monotonic() + busy_sc["expires"]  # without a refresh
        assert idle_sc["expires"] <= HOLDTIME and busy_sc["expires"] <= HOLDTIME
        refreshes_before = engine_count(lab, "spoke1", "tx", "resolution_request")

        # The idle one (and spoke2's, just as idle) is gone by its holding time.
        def idle_gone() -> bool:
            return (
                shortcut(lab, "spoke1", idle_prefix) is None
                and shortcut(lab, "spoke2", lan_prefix(lab, "spoke1")) is None
            )

        assert wait_until(idle_gone, idle_deadline - time.monotonic() + SLACK), (
            ctl(lab, "spoke1", "show", "shortcuts"),
            ctl(lab, "spoke2", "show", "shortcuts"),
        )
        assert time.monotonic() >= idle_deadline - 1.0, "expired before its holding time"
        assert [s["prefix"] for s in ctl(lab, "spoke2", "show", "shortcuts")] == []
        for node, prefix, via in (
            ("spoke1", idle_prefix, lab.node("spoke2").overlay[0]),
            ("spoke2", lan_prefix(lab, "spoke1"), lab.node("spoke1").overlay[0]),
        ):
            route = kernel_route(lab, node, prefix)
            assert f"via {via} " not in route, (node, route)

        # The busy one outlives the holding time it was installed with: it was refreshed
        # at SHORTCUT_REFRESH_AT of it, straight with spoke3, and its route never moved.
        remaining = busy_deadline + 1.0 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        now_sc = shortcut(lab, "spoke1", busy_prefix)
        assert now_sc is not None, ctl(lab, "spoke1", "show", "shortcuts")
        assert time.monotonic() + now_sc["expires"] > busy_deadline + 1.0, now_sc
        assert now_sc["route"] and now_sc["via"] == lab.node("spoke3").overlay[0]
        route = kernel_route(lab, "spoke1", busy_prefix)
        assert f"via {lab.node('spoke3').overlay[0]} dev" in route, route
        assert engine_count(lab, "spoke1", "tx", "resolution_request") > refreshes_before
    finally:
        log = busy.stop()
    # Refreshing a busy shortcut costs no packet (one may be in flight when ping stops).
    assert log.sent > 2 * HOLDTIME and log.sent - log.received <= 1, log.text[-600:]

    # With the idle shortcut gone, spoke1-lan still reaches spoke2-lan: through the hub
    # first (the NHS route is back), then over a new shortcut (the Traffic Indication for
    # this pair is allowed again: more than REDIRECT_INTERVAL has passed).
    assert time.monotonic() - idle_deadline + HOLDTIME > REDIRECT_INTERVAL
    route = kernel_route(lab, "spoke1", idle_prefix)
    assert f"via {lab.node('hub1').overlay[0]} dev" in route, (
        f"spoke1 has no route to {idle_prefix} via its NHS after the shortcut expired: "
        f"{route!r}; routes: {lab.node('spoke1').exec(['ip', 'route']).stdout}"
    )
    hub_before = hub_counters(lab, ("spoke1", "spoke2"), ("hub1",))
    assert ping(lab, "spoke1-lan", idle_dst, count=3) == 3
    assert hub_counters(lab, ("spoke1", "spoke2"), ("hub1",)) != hub_before
    wait_shortcut(lab, "spoke1", "spoke2")
