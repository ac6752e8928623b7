"""The kernel data plane for real: mGRE, neighbours, AF_PACKET NHRP, NFLOG, nftables.

These tests need ip_gre, which this machine's kernel lacks; they run inside a VM with
a stock Debian kernel (``make test-kernel`` -> tests/vm/run.sh -> inner.sh, which sets
``DMVPN_IN_VM=1``). Anywhere else they are collected and skipped.

Topology (namespaces ``kdp-<run>-<host>``, every veth created inside them):

    s1 ─┐
        ├── wan (bridge 192.0.2.0/24) ── hub
    s2 ─┘

NBMA 192.0.2.{1,11,12}, overlay 10.99.0.{1,11,12}/24 and fd00:99::{1,11,12}/64 on the
GRE link ``dmvpn0`` with key 42: the address plan and plane specs of the userspace
data-plane tests (``integration/dataplane/dataplane_netns.py``, IPv4 NBMA only here;
conftest.py puts it on the path).

All data planes live in the pytest process, each in its node's namespace: every call
into a plane runs with the calling thread switched into that namespace (``setns``), so
its sockets, its ``nft`` runs and its ``/proc/sys`` writes land there. One process
instead of one per node matters under QEMU's emulation, where starting Python with
pyroute2 takes about 20 s. ``Mesh.pump`` is the event loop (what dmvpnd's is).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from typing import Any

import pytest
from dataplane_netns import HOSTS, TUNNEL, mesh_mappings, nbma4, overlay4, overlay6, spec

from dmvpn_runtime.dataplane.base import (
    DataPlaneConfig,
    DataPlaneStats,
    NullSink,
    StaleStateError,
)
from dmvpn_runtime.dataplane.kernel import KernelDataPlane

IN_VM = os.environ.get("DMVPN_IN_VM") == "1"

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(
        not IN_VM,
        reason="needs ip_gre: runs inside the stock-kernel VM (make test-kernel sets"
        " DMVPN_IN_VM=1); this kernel has no GRE",
    ),
]

TABLE = "dmvpn_dmvpn0"
WAIT = 20.0  # seconds to wait for a notice; QEMU without KVM is slow
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: rc {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def plane_spec(host: str, **spec_args: Any) -> dict[str, Any]:
    """The userspace tests' runner spec for ``host`` (dataplane_netns), with IPv4 NBMA
    only: ip_gre has no multipoint IPv6 transport."""
    return spec(host, families=(4,), **spec_args)


def plane_config(host: str, **config: Any) -> DataPlaneConfig:
    return DataPlaneConfig.from_dict(plane_spec(host, **config)["config"])


class Topology:
    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:5]
        self.namespaces: list[str] = []

    def ns(self, host: str) -> str:
        return f"kdp-{self.run}-{host}"

    def sh(self, host: str, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        return _run("ip", "netns", "exec", self.ns(host), *cmd, check=check, timeout=timeout).stdout

    def rc(self, host: str, *cmd: str) -> int:
        return _run("ip", "netns", "exec", self.ns(host), *cmd, check=False).returncode

    def popen(self, host: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def build(self) -> None:
        for host in ("wan", *HOSTS):
            _run("ip", "netns", "add", self.ns(host))
            self.namespaces.append(self.ns(host))
            _run("ip", "-n", self.ns(host), "link", "set", "lo", "up")
        wan = self.ns("wan")
        _run("ip", "-n", wan, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", wan, "link", "set", "br0", "up")
        for host in HOSTS:
            ns, port = self.ns(host), f"p-{host}"
            _run("ip", "link", "add", "wan0", "netns", ns, "type", "veth",
                 "peer", "name", port, "netns", wan)  # fmt: skip
            _run("ip", "-n", wan, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{nbma4(host)}/24", "dev", "wan0")
            _run("ip", "-n", ns, "link", "set", "wan0", "up")
        self.sh("hub", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")

    def destroy(self) -> None:
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def nhrp_received(self, nbma_src: Any, data: bytes, protected: bool) -> None:
        self.events.append(("nhrp", {"src": str(nbma_src), "data": data, "protected": protected}))

    def hairpin(self, in_nbma: Any, out_nbma: Any, src: Any, dst: Any, head: bytes) -> None:
        seen = {"in": str(in_nbma), "out": str(out_nbma), "src": str(src), "dst": str(dst)}
        self.events.append(("hairpin", {**seen, "head": head}))

    def no_mapping(self, next_hop: Any) -> None:
        self.events.append(("no_mapping", {"next_hop": str(next_hop)}))

    def traffic(self, peer: Any, packets: int, octets: int, /) -> None:
        self.events.append(("traffic", {"peer": str(peer), "packets": packets, "bytes": octets}))

    def find(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e for k, e in self.events if k == kind and all(e.get(f) == v for f, v in match.items())
        ]


class Node:
    """A KernelDataPlane living in ``ns``; every call runs inside that namespace."""

    def __init__(self, topo: Topology, host: str, config: DataPlaneConfig, home: int) -> None:
        self.host = host
        self.home = home
        self.fd = os.open(f"/run/netns/{topo.ns(host)}", os.O_RDONLY | os.O_CLOEXEC)
        self.sink = RecordingSink()
        with self.inside():
            self.plane = KernelDataPlane(config, self.sink)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        setns(self.fd)
        try:
            yield
        finally:
            setns(self.home)

    def __call__(self, method: str, *args: Any) -> Any:
        with self.inside():
            return getattr(self.plane, method)(*args)

    def stats(self) -> DataPlaneStats:
        stats: DataPlaneStats = self("stats")
        return stats

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("close")
        os.close(self.fd)


class Mesh:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.nodes: dict[str, Node] = {}

    def add(self, host: str, mapped: tuple[str, ...] = (), **spec_args: Any) -> Node:
        """``host``'s plane, opened with the mappings, routes and multicast targets of
        ``plane_spec(host, **spec_args)``; each ``mapped`` peer's overlay addresses are
        mapped to its NBMA address."""
        if mapped:
            spec_args["mappings"] = mesh_mappings(host, mapped)
        plan = plane_spec(host, **spec_args)
        node = Node(self.topo, host, DataPlaneConfig.from_dict(plan["config"]), self.home)
        self.nodes[host] = node
        node("open")
        for overlay, where in plan.get("mappings", {}).items():
            node("add_mapping", overlay, where)
        for prefix, via in plan.get("routes", {}).items():
            node("add_route", prefix, via)
        if "multicast" in plan:
            node("set_multicast_targets", plan["multicast"])
        return node

    def pump(self, until: Callable[[], bool], timeout: float = WAIT) -> bool:
        """Run the nodes' event loop until ``until()`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        next_tick = 0.0
        while True:
            if until():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            owners = {fd: node for node in self.nodes.values() for fd in node("readers")}
            ready = select.select(list(owners), [], [], min(0.2, deadline - now))[0]
            for fd in ready:
                owners[fd]("on_readable", fd)
            if time.monotonic() >= next_tick:
                for node in self.nodes.values():
                    node("tick")
                next_tick = time.monotonic() + 0.5

    def wait(self, host: str, kind: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        sink = self.nodes[host].sink
        if not self.pump(lambda: bool(sink.find(kind, **match)), timeout):
            raise AssertionError(f"{host}: no {kind} {match} in {timeout}s: {sink.events}")
        return sink.find(kind, **match)[0]

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
        self.nodes.clear()
        os.close(self.home)


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    topology = Topology()
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


@pytest.fixture
def mesh(topo: Topology) -> Iterator[Mesh]:
    m = Mesh(topo)
    try:
        yield m
    finally:
        m.close()
        for host in HOSTS:  # a failed test must not spoil the next one
            if _run("ip", "-n", topo.ns(host), "link", "del", TUNNEL, check=False).returncode == 0:
                topo.rc(host, "nft", "delete", "table", "inet", TABLE)


def ping(topo: Topology, host: str, dst: str, count: int = 3, wait: int = 3) -> str:
    return topo.sh(host, "ping", "-n", "-c", str(count), "-i", "0.3", "-W", str(wait), dst)


def leftovers(topo: Topology, host: str) -> list[str]:
    found = []
    if topo.rc(host, "ip", "link", "show", TUNNEL) == 0:
        found.append(f"link {TUNNEL}")
    tables = json.loads(topo.sh(host, "nft", "-j", "list", "tables"))["nftables"]
    found += [f"table {t['table']['name']}" for t in tables if "table" in t]
    routes = topo.sh(host, "ip", "route", "show", "table", "all", "proto", "157").strip()
    if routes:
        found.append(f"routes {routes}")
    return found


# ---------------------------------------------------------------------------------


def test_link_is_a_keyed_multipoint_gre_resolved_by_us(topo: Topology, mesh: Mesh) -> None:
    mesh.add("hub")
    detail = topo.sh("hub", "ip", "-d", "link", "show", TUNNEL)
    assert "gre remote any local 192.0.2.1 ttl 64" in detail, detail
    assert "ikey 0.0.0.42 okey 0.0.0.42" in detail, detail
    flags = detail.split("<", 1)[1].split(">", 1)[0].split(",")
    assert "NOARP" not in flags and "MULTICAST" in flags and "UP" in flags, detail
    assert "mtu 1472 " in detail, detail  # 1500 - 20 (IPv4) - 8 (GRE with key)
    assert "alias flexmesh-dmvpn kernel" in detail, detail  # ours, for cleanup_stale
    for table in ("arp_cache", "ndisc_cache"):
        ntable = topo.sh("hub", "ip", "ntable", "show", "dev", TUNNEL, "name", table)
        assert "app_probes 3 ucast_probes 0 mcast_probes 0" in ntable, ntable
    rules = topo.sh("hub", "nft", "list", "table", "inet", TABLE)
    assert "c_fwd" in rules and "dmvpn-hp" in rules and "dmvpn-mc" in rules, rules
    assert topo.sh("hub", "sysctl", "-n", f"net.ipv4.conf.{TUNNEL}.send_redirects").strip() == "0"


def test_create_auto_picks_the_kernel_plane_here(topo: Topology) -> None:
    from dmvpn_runtime.dataplane import create

    cfg = DataPlaneConfig.from_dict(
        {"tunnel": TUNNEL, "local_nbma": ["192.0.2.1"], "overlay": ["10.99.0.1/24"]}
    )
    assert KernelDataPlane.available(cfg)
    assert create("auto", cfg, NullSink()).kind == "kernel"  # constructed, not opened


def test_static_mappings_carry_ipv4_and_ipv6_overlay(topo: Topology, mesh: Mesh) -> None:
    mesh.add("hub", mapped=("s1",))
    mesh.add("s1", mapped=("hub",))
    neigh = topo.sh("s1", "ip", "neigh", "show", "dev", TUNNEL)
    assert "10.99.0.1 lladdr 192.0.2.1 PERMANENT" in neigh, neigh
    assert "fd00:99::1 lladdr 192.0.2.1 PERMANENT" in neigh, neigh
    for host, dst in (("s1", overlay4("hub")), ("s1", overlay6("hub")), ("hub", overlay4("s1"))):
        out = ping(topo, host, dst)
        assert " 0% packet loss" in out, out
    assert mesh.nodes["s1"]("mappings") == {
        ip_address(overlay4("hub")): ip_address(nbma4("hub")),
        ip_address(overlay6("hub")): ip_address(nbma4("hub")),
    }


def test_gre_key_must_match(topo: Topology, mesh: Mesh) -> None:
    mesh.add("hub", mapped=("s1",))
    mesh.add("s1", mapped=("hub",), key=43)
    out = topo.sh("s1", "ping", "-n", "-c", "2", "-W", "1", overlay4("hub"), check=False)
    assert "100% packet loss" in out, out


def test_nhrp_bytes_arrive_with_the_nbma_source(topo: Topology, mesh: Mesh) -> None:
    hub, s1 = mesh.add("hub"), mesh.add("s1")  # NHRP needs no mappings
    payload = bytes(range(40))
    s1("send_nhrp", nbma4("hub"), payload)
    got = mesh.wait("hub", "nhrp", data=payload)
    assert got["src"] == nbma4("s1") and got["protected"] is False
    hub("send_nhrp", ip_address(nbma4("s1")), b"\x00\x01" * 20)
    got = mesh.wait("s1", "nhrp", data=b"\x00\x01" * 20)
    assert got["src"] == nbma4("hub")
    assert s1.stats().events["nhrp_out"] == 1
    assert hub.stats().events["nhrp_in"] == 1


def test_protected_mode_drops_gre_that_did_not_come_through_ipsec(
    topo: Topology, mesh: Mesh
) -> None:
    mesh.add("hub", protected_ifname="ipsec0")
    s1 = mesh.add("s1")
    s1("send_nhrp", nbma4("hub"), b"\xaa" * 24)
    assert not mesh.pump(lambda: bool(mesh.nodes["hub"].sink.find("nhrp")), timeout=3)
    rules = topo.sh("hub", "nft", "list", "chain", "inet", TABLE, "c_in")
    assert "packets 1 " in rules, rules  # the drop rule's counter


def test_unmapped_next_hop_is_reported_and_its_packets_wait(topo: Topology, mesh: Mesh) -> None:
    topo.sh("s2", "ip", "addr", "add", "10.50.0.1/32", "dev", "lo")
    try:
        s1 = mesh.add("s1", routes={"10.50.0.0/24": overlay4("s2")})
        mesh.add("s2", mappings={overlay4("s1"): nbma4("s1")})
        route = topo.sh("s1", "ip", "route", "show", "10.50.0.0/24")
        assert f"via {overlay4('s2')} dev {TUNNEL} proto 157" in route, route
        probe = topo.popen("s1", "ping", "-n", "-c", "1", "-W", "10", "10.50.0.1")
        mesh.wait("s1", "no_mapping", next_hop=overlay4("s2"))
        # The mapping arrives while the kernel still queues the packet: it is sent.
        s1("add_mapping", overlay4("s2"), nbma4("s2"))
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0, out + err
        assert s1.stats().events["no_mapping_notices"] >= 1
        assert overlay4("s2") in topo.sh("s1", "ip", "neigh", "show", "nud", "permanent")
    finally:
        topo.sh("s2", "ip", "addr", "del", "10.50.0.1/32", "dev", "lo", check=False)


def test_unmapped_ipv6_next_hop_is_reported(topo: Topology, mesh: Mesh) -> None:
    mesh.add("s1", routes={"fd00:50::/64": overlay6("s2")})
    probe = topo.popen("s1", "ping", "-n", "-c", "1", "-W", "3", "fd00:50::1")
    try:
        mesh.wait("s1", "no_mapping", next_hop=overlay6("s2"))
    finally:
        probe.communicate(timeout=60)


def test_routes_and_mappings_are_replaced_and_removed(topo: Topology, mesh: Mesh) -> None:
    s1 = mesh.add("s1", mapped=("s2",))
    mesh.add("s2", mapped=("s1",))
    s1("add_route", "10.60.0.0/16", overlay4("s2"))
    s1("add_route", "10.60.0.0/16", overlay4("s2"))  # replace, not a second route
    s1("add_route", "fd00:60::/64", overlay6("s2"))
    assert "10.60.0.0/16" in topo.sh("s1", "ip", "route", "show", "proto", "157")
    assert "fd00:60::/64" in topo.sh("s1", "ip", "-6", "route", "show", "proto", "157")
    s1("remove_route", "10.60.0.0/16")
    s1("remove_route", "10.60.0.0/16")  # absent is not an error
    assert "10.60.0.0/16" not in topo.sh("s1", "ip", "route", "show", "proto", "157")
    s1("remove_mapping", overlay4("s2"))
    s1("remove_mapping", overlay4("s2"))  # absent is not an error
    assert overlay4("s2") not in topo.sh("s1", "ip", "neigh", "show", "dev", TUNNEL)
    # Remapping (the peer moved) replaces the lladdr in place.
    s1("add_mapping", overlay4("s2"), "192.0.2.99")
    s1("add_mapping", overlay4("s2"), nbma4("s2"))
    out = ping(topo, "s1", overlay4("s2"))
    assert " 0% packet loss" in out, out


def test_hub_reports_hairpinned_traffic(topo: Topology, mesh: Mesh) -> None:
    hub = mesh.add("hub", mapped=("s1", "s2"))
    mesh.add("s1", mapped=("hub",), routes={f"{overlay4('s2')}/32": overlay4("hub")})
    mesh.add("s2", mapped=("hub",), routes={f"{overlay4('s1')}/32": overlay4("hub")})
    out = ping(topo, "s1", overlay4("s2"))
    assert " 0% packet loss" in out, out  # through the hub
    # No ICMP redirect made s1 bypass the hub (that is NHRP's job, under its policy).
    route = topo.sh("s1", "ip", "route", "get", overlay4("s2"))
    assert f"via {overlay4('hub')}" in route and "redirected" not in route, route
    notice = mesh.wait("hub", "hairpin", src=overlay4("s1"), dst=overlay4("s2"))
    assert notice["in"] == nbma4("s1") and notice["out"] == nbma4("s2")
    head = notice["head"]
    assert head[0] == 0x45 and head[9] == 1 and len(head) <= 128  # IPv4 ICMP
    back = mesh.wait("hub", "hairpin", src=overlay4("s2"), dst=overlay4("s1"))
    assert back["in"] == nbma4("s2") and back["out"] == nbma4("s1")
    # Three echoes each way within a second or so: rate-limited per pair.
    assert len(hub.sink.find("hairpin")) <= 4, hub.sink.events
    assert "c_fwd" not in topo.sh("s1", "nft", "list", "table", "inet", TABLE)


RECEIVER = """
import socket, struct, sys
group, local = sys.argv[1], sys.argv[2]
if ":" in group:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", 5353))
    index = socket.if_nametoindex("dmvpn0")
    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 5353))
    mreq = socket.inet_aton(group) + socket.inet_aton(local)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.settimeout(60)
print("ready", flush=True)
data, addr = s.recvfrom(2048)
print(data.decode(), addr[0], flush=True)
"""

SENDER = """
import socket, struct, sys
group, local = sys.argv[1], sys.argv[2]
if ":" in group:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index = socket.if_nametoindex("dmvpn0")
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, struct.pack("@I", index))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
try:
    s.sendto(b"hello-mesh", (group, 5353))
except PermissionError:  # nftables dropped the original after logging it for copying
    print("EPERM")
"""


def python_s(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-S", "-c", *args)  # -S: no site, starts fast under QEMU


@pytest.mark.parametrize(
    ("group", "local"), [("239.1.2.3", overlay4), ("ff05::1:3", overlay6)], ids=["ipv4", "ipv6"]
)
def test_multicast_is_replicated_to_the_targets(
    topo: Topology, mesh: Mesh, group: str, local: Callable[[str], str]
) -> None:
    hub = mesh.add("hub", mapped=("s1", "s2"), multicast=[nbma4("s1"), nbma4("s2")])
    mesh.add("s1", mapped=("hub",), multicast=[nbma4("hub")])
    s2 = mesh.add("s2", mapped=("hub",))  # no targets: its multicast is dropped
    receivers = {h: topo.popen(h, *python_s(RECEIVER, group, local(h))) for h in ("s1", "s2")}
    try:
        for proc in receivers.values():
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        topo.sh("hub", *python_s(SENDER, group, local("hub")))
        assert mesh.pump(lambda: all(p.poll() is not None for p in receivers.values()), 60)
        for host, proc in receivers.items():
            out, err = proc.communicate(timeout=60)
            assert f"hello-mesh {local('hub')}" in out, (host, out, err)
    finally:
        for proc in receivers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert hub.stats().events["multicast_copies"] == 2
    topo.sh("s2", *python_s(SENDER, group, local("s2")))
    mesh.pump(lambda: False, timeout=2)  # let s2 read its NFLOG socket
    assert s2.stats().drops.get("no_multicast_targets") == 1


def test_per_peer_counters_and_traffic_reports(topo: Topology, mesh: Mesh) -> None:
    hub = mesh.add("hub", mapped=("s1",))
    s1 = mesh.add("s1", mapped=("hub",), traffic_interval=1.0)
    s1("send_nhrp", nbma4("hub"), b"\xff" * 30)  # NHRP is not data traffic
    ping(topo, "s1", overlay4("hub"), count=5)

    def reported() -> tuple[int, int]:
        got = s1.sink.find("traffic", peer=nbma4("hub"))
        return sum(e["packets"] for e in got), sum(e["bytes"] for e in got)

    mesh.pump(lambda: reported()[0] >= 5)
    assert reported() == (5, 5 * 84)  # 84-byte echo requests, inner bytes
    peer = hub.stats().peers[ip_address(nbma4("s1"))]
    assert (peer.rx_packets, peer.rx_bytes) == (5, 5 * 84), peer
    assert (peer.tx_packets, peer.tx_bytes) == (5, 5 * 84), peer


def test_close_leaves_nothing(topo: Topology, mesh: Mesh) -> None:
    hub = mesh.add("hub", mapped=("s1",), routes={"10.70.0.0/16": overlay4("s1")})
    assert len(leftovers(topo, "hub")) == 3  # link, table, route
    hub("close")
    hub("close")  # idempotent
    assert leftovers(topo, "hub") == []


def _crash_child(topo: Topology, host: str, write: int) -> None:
    """In a forked child: open a data plane in ``host``, report, wait to be killed."""
    try:
        setns(os.open(f"/run/netns/{topo.ns(host)}", os.O_RDONLY))
        plane = KernelDataPlane(plane_config(host), NullSink())
        plane.open()
        plane.add_mapping(overlay4("hub"), nbma4("hub"))
        plane.add_route("10.80.0.0/16", overlay4("hub"))
        os.write(write, b"ok")
        time.sleep(300)
    except BaseException as exc:  # report anything to the parent
        os.write(write, repr(exc).encode()[:500])
    finally:
        os._exit(0)


def test_cleanup_stale_after_a_crash(topo: Topology, mesh: Mesh) -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        _crash_child(topo, "s1", write)
    os.close(write)
    try:
        ready = select.select([read], [], [], 120)[0]
        assert ready and os.read(read, 600) == b"ok"
    finally:
        os.kill(pid, signal.SIGKILL)  # the crash
        os.waitpid(pid, 0)
        os.close(read)
    assert len(leftovers(topo, "s1")) == 3
    node = Node(topo, "s1", plane_config("s1"), mesh.home)
    mesh.nodes["s1"] = node
    with pytest.raises(StaleStateError, match="already exists"):
        node("open")  # it does not take over what another instance made
    removed = node("cleanup_stale")
    assert any(item.startswith(f"link {TUNNEL}") for item in removed), removed
    assert f"nftables table inet {TABLE}" in removed, removed
    assert leftovers(topo, "s1") == []
    node("open")
    node("close")
    assert leftovers(topo, "s1") == []


def test_cleanup_stale_refuses_a_foreign_link(topo: Topology, mesh: Mesh) -> None:
    topo.sh("s2", "ip", "link", "add", TUNNEL, "type", "gre", "local", nbma4("s2"))
    try:
        node = Node(topo, "s2", plane_config("s2"), mesh.home)
        mesh.nodes["s2"] = node
        with pytest.raises(StaleStateError, match="not ours"):
            node("cleanup_stale")
        with pytest.raises(StaleStateError, match="already exists"):
            node("open")
        assert topo.rc("s2", "ip", "link", "show", TUNNEL) == 0  # left alone
    finally:
        topo.rc("s2", "ip", "link", "del", TUNNEL)
