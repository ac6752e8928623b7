"""Userspace data plane, forwarding: pings over GRE, the kernel's next-hop choice, MTU,
multicast replication. Real namespaces, real packets."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from dataplane_netns import (
    KEY,
    Topology,
    lan4,
    lan6,
    mesh_mappings,
    nbma4,
    nbma6,
    overlay4,
    overlay6,
    peer_stats,
    spec,
    start_many,
)

pytestmark = pytest.mark.integration


def ping(topo: Topology, host: str, dst: str, *opts: str, count: int = 2) -> str:
    """Ping and return the output; fails the test on loss."""
    res = topo.sh(host, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", *opts, dst,
                  check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_ping_ipv4_overlay_with_gre_key_on_the_wire(topo: Topology, start) -> None:
    if not (shutil.which("tcpdump") and shutil.which("tshark")):
        pytest.fail("needs tcpdump and tshark: run scripts/bootstrap.sh (it installs them)")
    s1, s2 = start_many(
        start,
        {h: spec(h, mappings=mesh_mappings(h, ("s1", "s2"))) for h in ("s1", "s2")},
    ).values()
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "wan.pcap"
        dump = topo.popen(
            "wan",
            "tcpdump",
            "-n",
            "-U",
            "--immediate-mode",
            "-i",
            "p-s1",
            "-w",
            str(pcap),
            "ip proto 47",
        )
        try:
            _wait_listening(dump)
            ping(topo, "s1", overlay4("s2"), count=3)
        finally:
            dump.send_signal(signal.SIGINT)
            dump.communicate(timeout=5)
        fields = "-e ip.src -e ip.dst -e gre.flags.key -e gre.key -e gre.proto -e icmp.type"
        out = subprocess.run(
            ["tshark", "-r", str(pcap), "-T", "fields", *fields.split()],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    requests = [r for r in rows if r[5] == "8"]
    replies = [r for r in rows if r[5] == "0"]
    assert len(requests) == 3 and len(replies) == 3, out
    # ip.src/ip.dst list the outer header, then the passenger's.
    for src, dst, flag_key, key, proto, _icmp in requests:
        assert src.split(",") == [nbma4("s1"), overlay4("s1")]
        assert dst.split(",") == [nbma4("s2"), overlay4("s2")]
        assert flag_key in ("1", "True") and int(key, 0) == KEY and int(proto, 0) == 0x0800
    for src, dst, *_rest in replies:
        assert src.split(",") == [nbma4("s2"), overlay4("s2")]
        assert dst.split(",") == [nbma4("s1"), overlay4("s1")]
    assert peer_stats(s1, nbma4("s2"))["tx_packets"] >= 3
    assert peer_stats(s2, nbma4("s1"))["rx_packets"] >= 3


def _wait_listening(proc: subprocess.Popen[str], timeout: float = 5.0) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "listening on" in line:
            return
    raise AssertionError("tcpdump did not start")


@pytest.mark.parametrize(("passenger", "transport"), [(4, 6), (6, 4), (6, 6)])
def test_ping_passenger_over_transport(topo: Topology, start, passenger, transport) -> None:
    # Only the transport family's NBMA addresses exist, so nothing else could carry it.
    runners = start_many(
        start,
        {
            h: spec(h, families=(transport,), mappings=mesh_mappings(h, ("s1", "s2"), transport))
            for h in ("s1", "s2")
        },
    )
    dst = overlay4("s2") if passenger == 4 else overlay6("s2")
    ping(topo, "s1", dst, count=2)
    nbma = nbma4("s2") if transport == 4 else nbma6("s2")
    assert peer_stats(runners["s1"], nbma)["tx_packets"] >= 2
    back = nbma4("s1") if transport == 4 else nbma6("s1")
    assert peer_stats(runners["s2"], back)["tx_packets"] >= 2


def test_shortcut_route_is_the_kernels_choice(topo: Topology, start) -> None:
    """s1 routes 10.1.0.0/16 via the hub and 10.1.2.0/24 (more specific) via s2: packets
    for lan2 go straight to s2's NBMA; without the shortcut they go to the hub."""
    runners = start_many(
        start,
        {
            "hub": spec(
                "hub",
                mappings=mesh_mappings("hub", ("s1", "s2")),
                routes={"10.1.1.0/24": overlay4("s1"), "10.1.2.0/24": overlay4("s2")},
            ),
            "s1": spec(
                "s1",
                mappings=mesh_mappings("s1", ("hub", "s2")),
                routes={"10.1.0.0/16": overlay4("hub"), "10.1.2.0/24": overlay4("s2")},
            ),
            "s2": spec(
                "s2",
                mappings=mesh_mappings("s2", ("hub", "s1")),
                routes={"10.1.1.0/24": overlay4("s1")},
            ),
        },
    )
    hub, s1 = runners["hub"], runners["s1"]
    ping(topo, "lan1", lan4("s2"), count=3)
    assert peer_stats(s1, nbma4("s2"))["tx_packets"] >= 3
    assert peer_stats(s1, nbma4("hub"))["tx_packets"] == 0
    assert peer_stats(hub, nbma4("s1"))["rx_packets"] == 0

    s1.call("remove_route", "10.1.2.0/24")  # the shortcut goes: the /16 via the hub remains
    ping(topo, "lan1", lan4("s2"), count=3)
    assert peer_stats(s1, nbma4("hub"))["tx_packets"] >= 3
    assert peer_stats(hub, nbma4("s1"))["rx_packets"] >= 3
    assert peer_stats(hub, nbma4("s2"))["tx_packets"] >= 3


def test_df_oversize_gets_frag_needed_and_packet_too_big(topo: Topology, start) -> None:
    # Both NBMA families: the tunnel MTU is 1500 - 40 (IPv6) - 8 (GRE with key) = 1452.
    runners = start_many(
        start,
        {
            "s1": spec(
                "s1",
                mappings=mesh_mappings("s1", ("s2",)),
                routes={"10.1.2.0/24": overlay4("s2"), "fd01:2::/64": overlay6("s2")},
            ),
            "s2": spec(
                "s2",
                mappings=mesh_mappings("s2", ("s1",)),
                routes={"10.1.1.0/24": overlay4("s1"), "fd01:1::/64": overlay6("s1")},
            ),
        },
    )
    assert runners["s1"].ready["mtu"] == 1452
    ping(topo, "lan1", lan4("s2"), "-M", "do", "-s", str(1452 - 28), count=1)
    res = topo.sh("lan1", "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", str(1453 - 28),
                  lan4("s2"), check=False)  # fmt: skip
    assert res.returncode != 0
    assert "Frag needed and DF set (mtu = 1452)" in res.stdout, res.stdout

    ping(topo, "lan1", lan6("s2"), "-M", "do", "-s", str(1452 - 48), count=1)
    res = topo.sh("lan1", "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", str(1453 - 48),
                  lan6("s2"), check=False)  # fmt: skip
    assert res.returncode != 0
    assert "Packet too big: mtu=1452" in res.stdout, res.stdout


RECEIVER = """
import socket, struct, sys
group, local, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 5000))
if group != "broadcast":
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
print("ready", flush=True)
s.settimeout(wait)
try:
    data, addr = s.recvfrom(100)
    print(data.decode(), addr[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""

SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[2]))
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(sys.argv[3].encode(), (sys.argv[1], 5000))
"""

GROUP = "239.1.2.3"


def _receivers(
    topo: Topology, hosts: dict[str, float], group: str = GROUP
) -> dict[str, subprocess.Popen[str]]:
    procs = {h: topo.python(h, RECEIVER, group, overlay4(h), str(w)) for h, w in hosts.items()}
    for proc in procs.values():
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return procs


def test_multicast_replication(topo: Topology, start) -> None:
    """Hub: to every spoke in its target list. Spoke: to its NHS only. Broadcast too."""
    spokes = [nbma4("s1"), nbma4("s2")]
    runners = start_many(
        start,
        {
            "hub": spec("hub", mappings=mesh_mappings("hub", ("s1", "s2")), multicast=spokes),
            "s1": spec("s1", mappings=mesh_mappings("s1", ("hub",)), multicast=[nbma4("hub")]),
            "s2": spec("s2", mappings=mesh_mappings("s2", ("hub",)), multicast=[nbma4("hub")]),
        },
    )
    procs = _receivers(topo, {"s1": 5, "s2": 5})
    topo.python("hub", SENDER, GROUP, overlay4("hub"), "from-hub").wait(5)
    for host, proc in procs.items():
        out = proc.communicate(timeout=10)[0]
        assert out.split() == ["from-hub", overlay4("hub")], (host, out)
    assert runners["hub"].call("stats")["events"]["multicast_copies"] >= 2

    # Broadcast on the overlay subnet goes the same way.
    procs = _receivers(topo, {"s1": 5, "s2": 5}, group="broadcast")
    topo.python("hub", SENDER, "10.99.0.255", overlay4("hub"), "bcast").wait(5)
    for host, proc in procs.items():
        out = proc.communicate(timeout=10)[0]
        assert out.split() == ["bcast", overlay4("hub")], (host, out)

    # A spoke's multicast reaches its NHS, and not the other spoke.
    procs = _receivers(topo, {"hub": 5, "s2": 1.5})
    topo.python("s1", SENDER, GROUP, overlay4("s1"), "from-s1").wait(5)
    out_hub = procs["hub"].communicate(timeout=10)[0]
    out_s2 = procs["s2"].communicate(timeout=10)[0]
    assert out_hub.split() == ["from-s1", overlay4("s1")]
    assert out_s2.strip() == "timeout"
