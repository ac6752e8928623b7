"""Proof 10, 11, 12: multicast replication, crash and restart, hostile packets."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import time
from ipaddress import ip_address

from dmvpn_runtime.lab import Lab
from dmvpn_runtime.nhrp.wire import (
    Cie,
    Packet,
    PacketType,
    encode,
)

from .conftest import ctl, registered_clients, wait_registered, wait_until

GROUP = "239.1.2.3"
PORT = 5405
RECEIVER = f"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{GROUP}", {PORT}))
mreq = struct.pack("4s4s", socket.inet_aton("{GROUP}"), socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.settimeout(8)
print("ready", flush=True)
try:
    data, peer = s.recvfrom(2048)
    print(data.decode(), peer[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
"""
SENDER = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for _ in range(3):
    s.sendto(b"hello-mesh", ("{GROUP}", {PORT}))
    time.sleep(0.2)
"""


def test_multicast_from_hub_reaches_every_spoke(mesh: Lab) -> None:
    spokes = ["spoke1", "spoke2", "spoke3"]
    receivers = {}
    for spoke in spokes:
        proc = mesh.node(spoke).popen(
            [sys.executable, "-c", RECEIVER, mesh.node(spoke).overlay[0]],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        receivers[spoke] = proc
    hub = mesh.node("hub1")
    hub.exec([sys.executable, "-c", SENDER, hub.overlay[0]], check=True)
    for spoke, proc in receivers.items():
        out, _err = proc.communicate(timeout=15)
        assert out.split() == ["hello-mesh", hub.overlay[0]], spoke
    # The hub replicated to every registered spoke's NBMA (map multicast dynamic).
    targets = set(ctl(mesh, "hub1", "show", "status")["multicast_targets"])
    assert {"198.51.100.11", "198.51.100.12", "203.0.113.129"} <= targets


def _gre(payload: bytes, proto: int = 0x2001, key: int | None = 42) -> bytes:
    flags = 0x2000 if key is not None else 0
    head = struct.pack("!HH", flags, proto)
    return head + (struct.pack("!I", key) if key is not None else b"") + payload


ATTACKER = """
import socket, sys
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
for hexpkt in sys.stdin.read().split():
    s.sendto(bytes.fromhex(hexpkt), (dst, 0))
"""


def test_garbage_and_spoofed_nhrp_change_nothing(lab_factory) -> None:
    lab = lab_factory(
        {
            "hubs": [{"name": "hub1"}],
            "spokes": [{"name": "spoke1", "lan": "10.1.0.0/24"}],
            "hosts": [{"name": "evil"}],
        }
    )
    wait_registered(lab, ["spoke1"], ["hub1"])
    before = ctl(lab, "hub1", "show", "nhrp")
    hub_pid = lab.node("hub1").daemon_pid
    victim = lab.node("spoke1").overlay[0]
    spoof_reg = Packet(  # claims spoke1's overlay address from the attacker's NBMA
        PacketType.REGISTRATION_REQUEST,
        src_nbma=ip_address(lab.node("evil").nbma[0]),
        src_proto=ip_address(victim),
        dst_proto=ip_address(lab.node("hub1").overlay[0]),
        flags=0x8000,
        request_id=99,
        cies=(Cie(prefix_length=255, holding_time=7200),),
    )
    good = encode(spoof_reg)
    bad_checksum = bytearray(good)
    bad_checksum[12] ^= 0xFF
    packets = [
        _gre(good),  # well-formed, but the address is spoke1's: refused (code 14)
        _gre(b"\x00" * 3),  # truncated NHRP
        _gre(bytes(bad_checksum)),  # bad checksum
        _gre(good[:25]),  # cut short
        _gre(b"garbage" * 10, proto=0x2001),
        _gre(good, key=7),  # wrong GRE key
        _gre(good, key=None),  # no key
        _gre(b"\x45" + b"\x00" * 40, proto=0x0800),  # junk inner IPv4
        b"\x00",  # not even GRE
    ]
    attacker = lab.node("evil")
    attacker.exec(
        [sys.executable, "-c", ATTACKER, lab.node("hub1").nbma[0]],
        input=" ".join(p.hex() for p in packets),
        check=True,
    )
    time.sleep(1.0)
    stats = ctl(lab, "hub1", "show", "stats")
    drops = stats["engine"]["drops"]
    plane_drops = stats["dataplane"]["drops"]
    assert sum(drops.values()) >= 3, drops  # undecodable NHRP counted by reason
    assert plane_drops.get("key_mismatch", 0) >= 2, plane_drops
    assert ctl(lab, "hub1", "show", "nhrp") == before or _same_bindings(
        before, ctl(lab, "hub1", "show", "nhrp")
    )
    assert lab.node("hub1").daemon_pid == hub_pid  # still the same process
    assert registered_clients(lab, "hub1") == set(lab.node("spoke1").overlay)
    entry = next(e for e in ctl(lab, "hub1", "show", "nhrp") if e["proto"] == victim)
    assert entry["nbma"] == lab.node("spoke1").nbma[0]  # the binding was not hijacked
    assert stats["engine"]["tx"].get("registration_reply", 0) >= 2  # the refusal


def _same_bindings(a: list, b: list) -> bool:
    def key(entries: list) -> set:
        return {(e["type"], e["proto"], e["nbma"]) for e in entries}

    return key(a) == key(b)


def test_kill_9_then_restart_leaves_nothing_stale(lab_factory) -> None:
    lab = lab_factory(
        {
            "hubs": [{"name": "hub1"}],
            "spokes": [{"name": "spoke1", "lan": "10.1.0.0/24"}],
        }
    )
    wait_registered(lab, ["spoke1"], ["hub1"])
    spoke = lab.node("spoke1")
    routes_before = spoke.exec(["ip", "route", "show"], check=True).stdout
    links_before = spoke.exec(["ip", "-br", "link"], check=True).stdout
    assert spoke.signal_daemon(signal.SIGKILL)
    assert wait_until(lambda: spoke.daemon_pid is None, 5)
    spoke.start_daemon()
    wait_registered(lab, ["spoke1"], ["hub1"])
    assert spoke.exec(["ip", "route", "show"], check=True).stdout == routes_before
    links = spoke.exec(["ip", "-br", "link"], check=True).stdout
    assert sorted(line.split()[0] for line in links.splitlines()) == sorted(
        line.split()[0] for line in links_before.splitlines()
    )
    # One tunnel device, one set of its routes.
    assert links.count("dmvpn0") == 1


def test_sigterm_removes_the_tunnel(lab_factory) -> None:
    lab = lab_factory({"hubs": [{"name": "hub1"}], "spokes": [{"name": "spoke1"}]})
    wait_registered(lab, ["spoke1"], ["hub1"])
    spoke = lab.node("spoke1")
    spoke.stop_daemon(signal.SIGTERM)
    links = spoke.exec(["ip", "-br", "link"], check=True).stdout
    assert "dmvpn0" not in links
    assert "dmvpn0" not in spoke.exec(["ip", "route"], check=True).stdout
    assert not spoke.path("/run/dmvpn/dmvpn0.sock").exists()
    # The hub saw the spoke leave: its registration was purged, not left to expire.
    assert wait_until(lambda: "10.255.255.11" not in registered_clients(lab, "hub1"), 5)
