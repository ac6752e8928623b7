"""Proofs 1, 2, 3 and 11 of the daemon issue with ``dataplane: kernel``: a real mesh.

The same lab builder the integration tests use (``dmvpn_runtime.lab``), one dmvpnd per
node, every hub and spoke with ``tunnel.dataplane: kernel``: an mGRE link, neighbour
entries as mappings, NHRP on an ``AF_PACKET`` socket, hairpins seen through NFLOG. Like
test_kernel_dataplane.py this needs ip_gre, so it runs inside the stock-kernel VM
(``make test-kernel`` -> tests/vm/run.sh -> inner.sh, which sets ``DMVPN_IN_VM=1`` and
makes ``/etc/netns`` writable); anywhere else it is collected and skipped.

One lab for the module (hub1 and spoke1..3, each spoke with a LAN host), used in order:

1. the spokes register; they show their NHS up; the hub's cache lists them;
2. spoke1-lan pings spoke2-lan: first via the hub, a Traffic Indication reaches spoke1,
   both spokes install a shortcut for the other's LAN prefix, later packets go direct;
3. an idle shortcut (spoke2 <-> spoke3) expires, a busy one (spoke1 -> spoke3) is
   refreshed and stays;
11. ``kill -9`` of spoke2's dmvpnd, restart: nothing stale, it registers again, and
   shortcuts come back.

Under QEMU without KVM every Python process spends 15-20 s importing pyroute2, so the
daemons take a while to come up and the tests talk to their control sockets directly
(``daemon.control.request`` on the node's socket file, seen from outside) instead of
starting ``dmvpnctl`` for every look. Timeouts are generous for the same reason.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmvpn_runtime.daemon.control import ControlError, request
from dmvpn_runtime.lab import Lab

IN_VM = os.environ.get("DMVPN_IN_VM") == "1"

pytestmark = [
    pytest.mark.vm,
    pytest.mark.timeout(600),  # the first test also waits for the lab and its daemons
    pytest.mark.skipif(
        not IN_VM,
        reason="needs ip_gre: runs inside the stock-kernel VM (make test-kernel sets"
        " DMVPN_IN_VM=1); this kernel has no GRE",
    ),
]

HOLDTIME = 30  # registrations and shortcuts: short, so that proof 3 fits in a minute
SPOKES = ("spoke1", "spoke2", "spoke3")
SPEC: dict[str, Any] = {
    "tunnel": {"dataplane": "kernel", "holdtime": HOLDTIME},
    "hubs": [{"name": "hub1"}],
    "spokes": [{"name": s, "lan": f"10.{i}.0.0/24"} for i, s in enumerate(SPOKES, 1)],
}
START = 240.0  # daemons starting (pyroute2 import under TCG) and registering
ROUND = 30.0  # a Traffic Indication, a resolution and the install, under TCG
SLACK = 8.0  # on top of a protocol deadline: polling, an emulated 2-CPU machine


# -- helpers -----------------------------------------------------------------------------------
def wait_until(check: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = check()
        except (OSError, ValueError, KeyError, ControlError):  # daemon still starting
            value = None
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def ctl(lab: Lab, node: str, command: str, args: dict[str, Any] | None = None) -> Any:
    """One request to ``node``'s dmvpnd on its control socket (dmvpnctl's protocol)."""
    n = lab.node(node)
    assert n.control_socket
    return request(str(n.path(n.control_socket)), command, args, timeout=30.0)


def registered(lab: Lab, hub: str) -> dict[str, dict[str, Any]]:
    return {e["proto"]: e for e in ctl(lab, hub, "show_nhrp") if e["type"] == "registered"}


def nhs_states(lab: Lab, spoke: str) -> dict[str, str]:
    return {v["proto"]: v["state"] for v in ctl(lab, spoke, "show_nhs")}


def wait_registered(lab: Lab, spokes: tuple[str, ...], timeout: float = START) -> None:
    overlays = {a for s in spokes for a in lab.node(s).overlay}

    def done() -> bool:
        if not overlays <= set(registered(lab, "hub1")):
            return False
        states = [nhs_states(lab, s) for s in spokes]
        return all(st and set(st.values()) == {"registered"} for st in states)

    if wait_until(done, timeout, step=1.0):
        return
    logs = {s: lab.node(s).daemon_log()[-1500:] for s in ("hub1", *spokes)}
    raise AssertionError(f"not registered within {timeout} s; daemon logs: {logs}")


def lan_address(lab: Lab, node: str) -> str:
    return lab.node(f"{node}-lan").addresses[0]


def lan_prefix(lab: Lab, node: str) -> str:
    return str(lab.node(node).lan[0])


def ping(lab: Lab, node: str, dst: str, count: int = 3, interval: float = 0.2) -> int:
    """Replies received."""
    proc = lab.node(node).exec(
        ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "3", dst],
        timeout=count * (interval + 3) + 30,
    )
    found = re.search(r"(\d+) received", proc.stdout)
    return int(found[1]) if found else 0


def engine_count(lab: Lab, node: str, direction: str, packet_type: str) -> int:
    return ctl(lab, node, "show_stats")["engine"][direction].get(packet_type, 0)


def counters(lab: Lab, node: str, peer: str) -> tuple[int, int]:
    """(rx, tx) data packets ``node``'s data plane exchanged with ``peer``'s NBMA."""
    peers = ctl(lab, node, "show_stats")["dataplane"]["peers"]
    mine = [c for a, c in peers.items() if a in lab.node(peer).nbma]
    return sum(c["rx_packets"] for c in mine), sum(c["tx_packets"] for c in mine)


def shortcut(lab: Lab, node: str, prefix: str) -> dict[str, Any] | None:
    return next((s for s in ctl(lab, node, "show_shortcuts") if s["prefix"] == prefix), None)


def kernel_route(lab: Lab, node: str, prefix: str) -> str:
    """The kernel's routes for exactly ``prefix`` in ``node`` (every table)."""
    proc = lab.node(node).exec(["ip", "-4", "route", "show", "table", "all", prefix], check=True)
    return proc.stdout.strip()


def wait_shortcut(lab: Lab, node: str, peer: str, timeout: float = ROUND) -> dict[str, Any]:
    """``node``'s shortcut to ``peer``'s LAN prefix via ``peer``'s overlay address at
    ``peer``'s NBMA, with its kernel route through the GRE link and neighbour entry."""
    prefix, via = lan_prefix(lab, peer), lab.node(peer).overlay[0]

    def ready() -> dict[str, Any] | None:
        sc = shortcut(lab, node, prefix)
        ok = sc and sc["via"] == via and sc["nbma"] in lab.node(peer).nbma and sc["route"]
        if ok and f"via {via} dev dmvpn0" in kernel_route(lab, node, prefix):
            return sc
        return None

    found = wait_until(ready, timeout)
    assert found, (
        f"{node}: no shortcut {prefix} via {via} within {timeout} s: "
        f"{ctl(lab, node, 'show_shortcuts')}; kernel: {kernel_route(lab, node, prefix)!r}"
    )
    neigh = lab.node(node).exec(["ip", "neigh", "show", via, "dev", "dmvpn0"], check=True)
    assert f"lladdr {lab.node(peer).nbma[0]}" in neigh.stdout, neigh.stdout
    return found


GRE_LINE = re.compile(
    r" IP (?P<osrc>[\d.]+) > (?P<odst>[\d.]+): GREv0\b.*?: IP (?P<isrc>[\d.]+) > (?P<idst>[\d.]+):"
)


class GreCapture:
    """``tcpdump -p -i wan0 'ip proto 47'`` in a node: the GRE packets it sends or
    receives; ``carrying(a, b)`` are those whose inner packet goes between a and b."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.node = node
        self.proc = lab.node(node).popen(
            ["tcpdump", "-p", "-n", "-l", "-i", "wan0", "ip proto 47"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def __enter__(self) -> GreCapture:
        assert self.proc.stderr is not None
        seen = []
        while True:
            line = self.proc.stderr.readline()
            seen.append(line)
            if not line or "listening on" in line:
                break
        assert "listening on" in seen[-1], f"tcpdump in {self.node}: {''.join(seen)}"
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # the last packets reach the capture
        self.proc.send_signal(signal.SIGINT)
        out, _err = self.proc.communicate(timeout=30)
        self.lines = out.splitlines()

    def carrying(self, a: str, b: str) -> list[tuple[str, str, str, str]]:
        matches = [m for m in map(GRE_LINE.search, self.lines) if m]
        found = [m.group("osrc", "odst", "isrc", "idst") for m in matches]
        return [p for p in found if {p[2], p[3]} == {a, b}]


def routes(lab: Lab, node: str) -> list[str]:
    """IPv4 and IPv6 routes of the main table, sorted."""
    lines = []
    for family in ("-4", "-6"):
        out = lab.node(node).exec(["ip", family, "route", "show"], check=True).stdout
        lines += [line.strip() for line in out.splitlines() if line.strip()]
    return sorted(lines)


def link_names(lab: Lab, node: str) -> list[str]:
    out = lab.node(node).exec(["ip", "-br", "link"], check=True).stdout
    return sorted(line.split()[0].split("@")[0] for line in out.splitlines() if line.strip())


def nft_tables(lab: Lab, node: str) -> list[str]:
    out = lab.node(node).exec(["nft", "list", "tables"], check=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


# -- the lab --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mesh() -> Iterator[Lab]:
    lab = Lab.up(SPEC, name=f"k{os.getpid() % 10**9}", daemon_grace=1.0)
    try:
        yield lab
    finally:
        report = lab.down()
    assert not report.problems, report.problems


# -- proof 1 --------------------------------------------------------------------------------
def test_hub_and_spokes_register(mesh: Lab) -> None:
    wait_registered(mesh, SPOKES)
    hub = mesh.node("hub1")
    for node in ("hub1", *SPOKES):  # really the kernel plane: an mGRE link dmvpnd made
        assert ctl(mesh, node, "show_status")["dataplane"] == "kernel"
        link = mesh.node(node).exec(["ip", "-d", "link", "show", "dmvpn0"], check=True).stdout
        assert "gre remote any local" in link and "ikey 0.0.0.42" in link, link
        assert "alias flexmesh-dmvpn kernel" in link, link
    entries = registered(mesh, "hub1")
    for i, spoke in enumerate(SPOKES, 1):
        node = mesh.node(spoke)
        assert nhs_states(mesh, spoke) == {a: "registered" for a in hub.overlay}
        entry = entries[node.overlay[0]]
        assert entry["nbma"] == node.nbma[0] and entry["prefixes"] == [f"10.{i}.0.0/24"]
        assert node.overlay[1] in entries  # and the IPv6 overlay address
        # The spoke's mapping of its NHS is a permanent neighbour entry on the link; the
        # hub's mapping of each spoke too.
        neigh = node.exec(["ip", "neigh", "show", "dev", "dmvpn0"], check=True).stdout
        nhs_entry = rf"^{re.escape(hub.overlay[0])} lladdr {hub.nbma[0]} PERMANENT"
        assert re.search(nhs_entry, neigh, re.M), neigh
        neigh = hub.exec(["ip", "neigh", "show", node.overlay[0], "dev", "dmvpn0"], check=True)
        assert f"lladdr {node.nbma[0]} PERMANENT" in neigh.stdout, neigh.stdout
        assert ping(mesh, spoke, hub.overlay[0], count=2) == 2


# -- proof 2 --------------------------------------------------------------------------------
def test_first_packets_cross_the_hub_then_a_shortcut_takes_over(mesh: Lab) -> None:
    wait_registered(mesh, SPOKES)
    src, dst = lan_address(mesh, "spoke1"), lan_address(mesh, "spoke2")
    hub1_nbma = mesh.node("hub1").nbma[0]
    s1_nbma, s2_nbma = mesh.node("spoke1").nbma[0], mesh.node("spoke2").nbma[0]
    assert shortcut(mesh, "spoke1", lan_prefix(mesh, "spoke2")) is None
    hub_before = {s: counters(mesh, "hub1", s) for s in ("spoke1", "spoke2")}
    ti_before = engine_count(mesh, "spoke1", "rx", "traffic_indication")

    with GreCapture(mesh, "hub1") as hub_capture:
        assert ping(mesh, "spoke1-lan", dst, count=3) == 3
    for spoke in ("spoke1", "spoke2"):  # the hub forwarded both ways between them
        (rx0, tx0), (rx1, tx1) = hub_before[spoke], counters(mesh, "hub1", spoke)
        assert rx1 > rx0 and tx1 > tx0, (spoke, hub_before, rx1, tx1)
    via_hub = hub_capture.carrying(src, dst)
    assert (s1_nbma, hub1_nbma, src, dst) in via_hub, hub_capture.lines
    assert (hub1_nbma, s2_nbma, src, dst) in via_hub, hub_capture.lines

    # The hub's NFLOG hairpin rule fired; spoke1 got the Traffic Indication and resolved.
    assert wait_until(
        lambda: engine_count(mesh, "spoke1", "rx", "traffic_indication") > ti_before, ROUND
    ), ctl(mesh, "spoke1", "show_stats")["engine"]
    sc1 = wait_shortcut(mesh, "spoke1", "spoke2")
    sc2 = wait_shortcut(mesh, "spoke2", "spoke1")
    assert sc1["prefix"] == "10.2.0.0/24" and sc2["prefix"] == "10.1.0.0/24"

    # Later packets go spoke to spoke: the hub neither sees nor forwards any of them.
    direct_before = counters(mesh, "spoke1", "spoke2")
    hub_before = {s: counters(mesh, "hub1", s) for s in ("spoke1", "spoke2")}
    n = 20
    with GreCapture(mesh, "hub1") as hub_capture, GreCapture(mesh, "spoke2") as at_spoke2:
        assert ping(mesh, "spoke1-lan", dst, count=n, interval=0.1) == n
    assert hub_capture.carrying(src, dst) == [], hub_capture.lines
    for spoke in ("spoke1", "spoke2"):  # an NHRP packet being read may count for a moment
        (rx0, tx0), (rx1, tx1) = hub_before[spoke], counters(mesh, "hub1", spoke)
        assert rx1 - rx0 <= 1 and tx1 - tx0 <= 1, (spoke, hub_before[spoke], (rx1, tx1))
    (rx0, tx0), (rx1, tx1) = direct_before, counters(mesh, "spoke1", "spoke2")
    assert rx1 - rx0 >= n and tx1 - tx0 >= n, (direct_before, (rx1, tx1))
    direct = at_spoke2.carrying(src, dst)
    assert direct.count((s1_nbma, s2_nbma, src, dst)) >= n, at_spoke2.lines
    assert direct.count((s2_nbma, s1_nbma, dst, src)) >= n, at_spoke2.lines


# -- proof 3 --------------------------------------------------------------------------------
def test_idle_shortcut_expires_busy_shortcut_is_refreshed(mesh: Lab) -> None:
    """Idle: one ping spoke2-lan -> spoke3-lan makes the shortcuts spoke2 <-> spoke3 and
    never uses them. Busy: spoke1-lan pings spoke3-lan all along. At 2/3 of the holding
    time a used shortcut is refreshed; an unused one expires and its route goes."""
    wait_registered(mesh, SPOKES)
    idle_prefix, busy_prefix = lan_prefix(mesh, "spoke3"), lan_prefix(mesh, "spoke3")
    back_prefix = lan_prefix(mesh, "spoke2")
    spoke3_overlay, hub_overlay = mesh.node("spoke3").overlay[0], mesh.node("hub1").overlay[0]
    busy_argv = ["ping", "-n", "-i", "0.2", "-W", "3", "-w", str(4 * HOLDTIME)]
    busy = mesh.node("spoke1-lan").popen(
        [*busy_argv, lan_address(mesh, "spoke3")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert ping(mesh, "spoke2-lan", lan_address(mesh, "spoke3"), count=1) == 1
        idle_sc = wait_shortcut(mesh, "spoke2", "spoke3")
        idle_deadline = time.monotonic() + idle_sc["expires"]
        wait_shortcut(mesh, "spoke3", "spoke2")
        busy_sc = wait_shortcut(mesh, "spoke1", "spoke3")
        busy_deadline = time.monotonic() + busy_sc["expires"]  # without a refresh
        assert idle_sc["expires"] <= HOLDTIME and busy_sc["expires"] <= HOLDTIME
        refreshes_before = engine_count(mesh, "spoke1", "tx", "resolution_request")

        def idle_gone() -> bool:
            return (
                shortcut(mesh, "spoke2", idle_prefix) is None
                and shortcut(mesh, "spoke3", back_prefix) is None
            )

        assert wait_until(idle_gone, idle_deadline - time.monotonic() + SLACK), (
            ctl(mesh, "spoke2", "show_shortcuts"),
            ctl(mesh, "spoke3", "show_shortcuts"),
        )
        assert time.monotonic() >= idle_deadline - 2.0, "expired before its holding time"
        for node, prefix, via in (
            ("spoke2", idle_prefix, spoke3_overlay),
            ("spoke3", back_prefix, mesh.node("spoke2").overlay[0]),
        ):
            route = kernel_route(mesh, node, prefix)
            assert f"via {via} " not in route, (node, route)

        # The busy one outlives the holding time it was installed with.
        remaining = busy_deadline + 2.0 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        now_sc = shortcut(mesh, "spoke1", busy_prefix)
        assert now_sc is not None, ctl(mesh, "spoke1", "show_shortcuts")
        assert time.monotonic() + now_sc["expires"] > busy_deadline + 2.0, now_sc
        assert now_sc["route"] and now_sc["via"] == spoke3_overlay
        assert f"via {spoke3_overlay} dev dmvpn0" in kernel_route(mesh, "spoke1", busy_prefix)
        assert engine_count(mesh, "spoke1", "tx", "resolution_request") > refreshes_before
    finally:
        if busy.poll() is None:
            busy.send_signal(signal.SIGINT)
        out, _err = busy.communicate(timeout=30)
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert summary, out[-600:]
    sent, received = int(summary[1]), int(summary[2])
    # The first packets wait for the hub route or the shortcut; refreshes cost nothing.
    assert sent > HOLDTIME and sent - received <= 2, out[-600:]

    # Without its shortcut spoke2 reaches spoke3-lan through the hub again.
    assert f"via {hub_overlay} dev dmvpn0" in kernel_route(mesh, "spoke2", idle_prefix)
    assert ping(mesh, "spoke2-lan", lan_address(mesh, "spoke3"), count=2) == 2


# -- proof 11 -------------------------------------------------------------------------------
def test_kill_9_then_restart_leaves_nothing_stale(mesh: Lab) -> None:
    wait_registered(mesh, SPOKES)
    spoke = mesh.node("spoke2")
    # Routes dmvpnd makes (proto 157) are compared apart: after the restart they must be
    # exactly the routes via the NHS (routes_via_nhs: the other sites' LANs), no shortcut.
    routes_before = [r for r in routes(mesh, "spoke2") if " proto 157 " not in r]
    links_before, tables_before = link_names(mesh, "spoke2"), nft_tables(mesh, "spoke2")
    assert "dmvpn0" in links_before and any("dmvpn" in t for t in tables_before)

    assert spoke.signal_daemon(signal.SIGKILL)
    assert wait_until(lambda: spoke.daemon_pid is None, 30)
    # kill -9 leaves the kernel state behind: the link and the table are still there.
    assert "dmvpn0" in link_names(mesh, "spoke2")
    assert nft_tables(mesh, "spoke2") == tables_before

    spoke.start_daemon()
    wait_registered(mesh, SPOKES)
    assert ctl(mesh, "spoke2", "show_shortcuts") == []
    after = routes(mesh, "spoke2")
    assert [r for r in after if " proto 157 " not in r] == routes_before
    hub_overlay = mesh.node("hub1").overlay[0]
    ours = [r for r in after if " proto 157 " in r]
    assert sorted(r.split()[0] for r in ours) == ["10.1.0.0/24", "10.3.0.0/24"], after
    assert all(f"via {hub_overlay} dev dmvpn0" in r for r in ours), after
    assert link_names(mesh, "spoke2") == links_before
    assert link_names(mesh, "spoke2").count("dmvpn0") == 1
    assert nft_tables(mesh, "spoke2") == tables_before
    assert registered(mesh, "hub1")[spoke.overlay[0]]["nbma"] == spoke.nbma[0]

    # Shortcuts come back: spoke2-lan -> spoke1-lan, via the hub first, then direct.
    src, dst = lan_address(mesh, "spoke2"), lan_address(mesh, "spoke1")
    assert ping(mesh, "spoke2-lan", dst, count=3) == 3
    wait_shortcut(mesh, "spoke2", "spoke1")
    wait_shortcut(mesh, "spoke1", "spoke2")
    with GreCapture(mesh, "hub1") as hub_capture:
        assert ping(mesh, "spoke2-lan", dst, count=10, interval=0.1) == 10
    assert hub_capture.carrying(src, dst) == [], hub_capture.lines
