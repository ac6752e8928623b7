"""Userspace data plane, what it refuses: wrong keys and malformed GRE, counted by reason."""

from __future__ import annotations

import time

import pytest
from dataplane_netns import Topology, mesh_mappings, nbma4, overlay4, spec, start_many

pytestmark = pytest.mark.integration


def test_key_mismatch_between_two_planes_is_dropped_and_counted(topo: Topology, start) -> None:
    runners = start_many(
        start,
        {
            "s1": spec("s1", mappings=mesh_mappings("s1", ("s2",))),
            "s2": spec("s2", mappings=mesh_mappings("s2", ("s1",)), key=43),
        },
    )
    res = topo.sh(
        "s1", "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", overlay4("s2"), check=False
    )
    assert res.returncode != 0
    stats = runners["s2"].call("stats")
    assert stats["drops"]["key_mismatch"] >= 2
    assert stats["peers"][nbma4("s1")]["rx_packets"] == 0


# Sent from the WAN bridge (an attacker on the NBMA network) to s1. Every GRE packet
# carries the same valid passenger: an ICMP echo request 10.99.0.254 -> s1's overlay.
ATTACKER = """
import socket, struct, sys
from dmvpn_runtime.checksum import internet_checksum

def csum(b, at):
    return b[:at] + internet_checksum(b).to_bytes(2, "big") + b[at + 2:]

def echo(size):
    icmp = csum(struct.pack("!BBHHH", 8, 0, 0, 7, 1) + bytes(size - 28), 2)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, 0, 64, 1, 0,
                      socket.inet_aton("10.99.0.254"), socket.inet_aton(sys.argv[2]))
    return csum(hdr, 10) + icmp

inner = echo(84)
key = lambda k: struct.pack("!I", k)
cases = [
    bytes.fromhex("20000800") + key(43) + inner,          # key_mismatch: other key
    bytes.fromhex("00000800") + inner,                    # key_mismatch: no key
    bytes.fromhex("20010800") + key(42) + inner,          # bad_version
    bytes.fromhex("60000800") + key(42) + inner,          # bad_flags: routing present
    bytes.fromhex("200088b5") + key(42) + inner,          # unknown_protocol
    bytes.fromhex("2000"),                                # truncated
    bytes.fromhex("a0000800") + b"\\x12\\x34\\x00\\x00" + key(42) + inner,  # bad_checksum
]
# Checksum, key and sequence number, all valid: delivered.
good = bytes.fromhex("b0000800") + bytes(4) + key(42) + key(1) + inner
cases.append(csum(good, 4))
# A passenger bigger than the tunnel MTU (the outer packet is fragmented): delivered too.
cases.append(bytes.fromhex("20000800") + key(42) + echo(1600))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
for packet in cases:
    s.sendto(packet, (sys.argv[1], 0))
print(len(cases))
"""


def test_malformed_gre_is_counted_by_reason_and_valid_variants_pass(topo: Topology, start) -> None:
    s1 = start("s1")
    proc = topo.python("wan", ATTACKER, nbma4("s1"), overlay4("s1"))
    err = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0, err
    # s1 answers the delivered echo requests and so asks for 10.99.0.254's mapping.
    s1.wait_notice("no_mapping", {"next_hop": "10.99.0.254"}, timeout=3)
    stats = s1.call("stats")
    drops = {k: v for k, v in stats["drops"].items() if v}
    assert drops == {
        "key_mismatch": 2,
        "bad_version": 1,
        "bad_flags": 1,
        "unknown_protocol": 1,
        "truncated": 1,
        "bad_checksum": 1,
    }
    assert stats["events"]["rx_unmapped_packets"] == 2
    assert stats["events"]["rx_over_mtu"] == 1
    # Still up and working.
    assert s1.proc.poll() is None


FUZZER = """
import random, socket, struct, sys
rng = random.Random(2784)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
for i in range(int(sys.argv[2])):
    body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
    if i % 3 == 0:  # half-plausible: K bit and our key, random protocol and flags
        flags = 0x2000 | (rng.getrandbits(16) & rng.choice((0, 0x9007, 0xFFFF)))
        body = struct.pack("!HHI", flags, rng.choice((0x0800, 0x86DD, 0x2001, 0x1234)), 42) + body
    s.sendto(body, (sys.argv[1], 0))
"""


def test_random_gre_from_the_wan_is_all_accounted_for(topo: Topology, start) -> None:
    s1 = start("s1")
    sent = 300
    proc = topo.python("wan", FUZZER, nbma4("s1"), str(sent))
    err = proc.communicate(timeout=20)[1]
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = s1.call("stats")
        events = stats["events"]
        seen = sum(stats["drops"].values()) + events["rx_unmapped_packets"] + events["nhrp_in"]
        if seen >= sent:
            break
        time.sleep(0.1)
    assert seen == sent
    assert s1.proc.poll() is None
