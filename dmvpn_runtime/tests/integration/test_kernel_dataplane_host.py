"""The kernel data plane on this machine, whose kernel has no GRE (platform-notes).

What can be checked here: the availability probe says no, with a reason, so that
``create('auto')`` falls back to the userspace data plane and ``create('kernel')``
fails clearly; and the nftables table the kernel plane installs loads and counts GRE
per peer (nftables exists here, only ip_gre is missing). The plane itself is tested
in the VM (tests/vm/, ``make test-kernel``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from dmvpn_runtime.dataplane import create, kernel
from dmvpn_runtime.dataplane.base import DataPlaneConfig, DataPlaneUnavailable, NullSink, Role

pytestmark = pytest.mark.integration


def _needs() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    missing = [t for t in ("ip", "nft", "unshare") if shutil.which(t) is None]
    return f"needs {', '.join(missing)}" if missing else None


def config(**kw: object) -> DataPlaneConfig:
    values: dict[str, object] = {
        "tunnel": "kdp0",
        "local_nbma": ["192.0.2.1"],
        "overlay": ["10.99.0.1/24"],
        "key": 42,
    }
    values.update(kw)
    return DataPlaneConfig.from_dict(values)


@pytest.fixture
def no_gre_here() -> str:
    reason = _needs()
    if reason:
        pytest.skip(reason)
    why = kernel.unavailable_reason()
    if why is None:
        pytest.skip("this kernel has ip_gre: the unavailability checks do not apply here")
    return why


def test_kernel_plane_is_unavailable_with_a_reason(no_gre_here: str) -> None:
    assert not kernel.available()
    assert not kernel.KernelDataPlane.available(config())
    assert "GRE" in no_gre_here and "ip_gre" in no_gre_here, no_gre_here
    with pytest.raises(DataPlaneUnavailable, match="GRE"):
        kernel.KernelDataPlane(config(), NullSink())
    with pytest.raises(DataPlaneUnavailable, match="GRE"):
        create("kernel", config(), NullSink())


def test_auto_picks_the_userspace_plane(no_gre_here: str) -> None:
    plane = create("auto", config(), NullSink())  # constructed, not opened
    assert plane.kind == "userspace"


def test_the_probe_leaves_nothing_in_this_namespace(no_gre_here: str) -> None:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert "kdpprobe" not in links.stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    assert "kdpprobe" not in tables.stdout


# -- the nftables table, in a scratch namespace pair ------------------------------------


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    reason = _needs()
    if reason:
        pytest.skip(reason)
    run = uuid.uuid4().hex[:6]
    a, b = f"kdp-{run}-a", f"kdp-{run}-b"
    made: list[str] = []
    try:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        cmds = [
            [
                "ip",
                "link",
                "add",
                "v0",
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "name",
                "v0",
                "netns",
                b,
            ],
            ["ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "v0"],
            ["ip", "-n", b, "addr", "add", "192.0.2.2/24", "dev", "v0"],
            ["ip", "-n", a, "link", "set", "v0", "up"],
            ["ip", "-n", b, "link", "set", "v0", "up"],
        ]
        for cmd in cmds:
            subprocess.run(cmd, check=True)
        yield a, b
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False)


SEND_GRE = """
import socket, struct, sys
key = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
for size in (10, 20, 30):
    s.sendto(struct.pack("!HHI", 0x2000, 0x0800, key) + bytes(size), (sys.argv[1], 0))
"""


def nsexec(ns: str, *cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *cmd],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ruleset_loads_and_counts_gre_per_peer(netns_pair: tuple[str, str]) -> None:
    a, b = netns_pair
    hub = config(role=Role.HUB, protected_ifname=None)
    nsexec(a, "nft", "-f", "-", stdin=kernel.nft_ruleset(hub, group=0x4D00))
    spoke = config(local_nbma=["192.0.2.2"], overlay=["10.99.0.2/24"])
    nsexec(b, "nft", "-f", "-", stdin=kernel.nft_ruleset(spoke, group=0x4D00))
    nsexec(a, sys.executable, "-c", SEND_GRE, "192.0.2.2", "42")
    nsexec(a, sys.executable, "-c", SEND_GRE, "192.0.2.2", "7")  # another key: not ours
    code = """
from dmvpn_runtime.dataplane import kernel as k
table = k.table_name("kdp0")
for name in ("tx4", "rx4"):
    print(name, sorted(k.read_set_counters(table, name).items()))
"""
    # 3 packets of 20 + 8 + 10/20/30 bytes each way.
    assert nsexec(a, sys.executable, "-c", code).splitlines() == [
        "tx4 [(b'\\xc0\\x00\\x02\\x02', (3, 144))]",
        "rx4 []",
    ]
    assert nsexec(b, sys.executable, "-c", code).splitlines() == [
        "tx4 []",
        "rx4 [(b'\\xc0\\x00\\x02\\x01', (3, 144))]",
    ]


def test_nflog_config_and_parse_against_the_kernel(netns_pair: tuple[str, str]) -> None:
    a = netns_pair[0]
    code = f"""
import socket, struct, subprocess
from dmvpn_runtime import ippacket
from dmvpn_runtime.dataplane import netlink
from dmvpn_runtime.dataplane.kernel import messages as msg, sockets
nl = netlink.RequestSocket(sockets.NETLINK_NETFILTER)
bind = msg.attribute(msg.NFULA_CFG_CMD, struct.pack("=B", msg.NFULNL_CFG_CMD_BIND))
nl.request(msg.nflog_config_request(4660, nl.next_seq(), bind))
mode = msg.attribute(msg.NFULA_CFG_MODE, struct.pack("!IBx", 0xFFFF, msg.NFULNL_COPY_PACKET))
nl.request(msg.nflog_config_request(4660, nl.next_seq(), mode))
other = netlink.RequestSocket(sockets.NETLINK_NETFILTER)
try:
    other.request(msg.nflog_config_request(4660, other.next_seq(), bind))
    print("second bind succeeded")
except OSError as exc:
    print("second bind", exc.errno)
rules = '''table inet kdptest {{
  chain o {{
    type filter hook output priority 0;
    oifname "v0" udp dport 9 log prefix "{kernel.PREFIX_MULTICAST}" group 4660 drop
  }}
}}
'''
subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x" * 100, ("192.0.2.2", 9))
except PermissionError:  # the rule drops the original, as the multicast rule does
    print("sender saw EPERM")
nl.sock.settimeout(5)
for p in msg.parse_nflog(nl.sock.recv(65536)):
    print(p.group, p.prefix, p.outdev == socket.if_nametoindex("v0"), len(p.payload),
          ippacket.inner_addresses(p.payload))
"""
    out = nsexec(a, sys.executable, "-c", code)
    assert "second bind 1" in out, out  # EPERM: the group belongs to another socket
    assert (
        f"4660 {kernel.PREFIX_MULTICAST} True 128 "
        "(IPv4Address('192.0.2.1'), IPv4Address('192.0.2.2'))" in out
    ), out


def test_our_table_is_found_and_deleted_over_netlink(netns_pair: tuple[str, str]) -> None:
    a = netns_pair[0]
    nsexec(a, "nft", "add", "table", "inet", "dmvpn_kdp0")
    nsexec(a, "nft", "add", "table", "ip", "dmvpn_kdp0")  # same name, other family: kept
    code = """
from dmvpn_runtime.dataplane import kernel as k
print(k.nft_table_exists("dmvpn_kdp0"), k.nft_delete_table("dmvpn_kdp0"))
print(k.nft_table_exists("dmvpn_kdp0"), k.nft_delete_table("dmvpn_kdp0"))
"""
    assert nsexec(a, sys.executable, "-c", code).split() == ["True", "True", "False", "False"]
    assert nsexec(a, "nft", "list", "tables").split() == ["table", "ip", "dmvpn_kdp0"]
