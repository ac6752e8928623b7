"""Interoperability with FRRouting's nhrpd (Debian 12: frr 8.4.4) on the wire.

FRR's nhrpd needs a kernel mGRE link, so like the other vm tests this runs inside the
stock-kernel VM (``make test-kernel`` -> tests/vm/run.sh -> inner.sh, ``DMVPN_IN_VM=1``);
anywhere else it is collected and skipped. One lab, built by ``dmvpn_runtime.lab``, holds
two DMVPN clouds with the same GRE key and overlay prefix (they never meet):

    hub1 (dmvpnd)  <- spoke1 (dmvpnd, LAN 10.1.0.0/24), frrspoke (FRR, LAN 10.2.0.0/24)
    frrhub (FRR)   <- spoke3 (dmvpnd, LAN 10.3.0.0/24)

The FRR nodes are lab hubs/spokes without a daemon: the test makes their ``gre1`` and runs
zebra + nhrpd there, each with its own config, pid and socket files (docs/interop.md has
the configs). Every node's NHRP and data packets are captured for the whole module; the
decoded NHRP exchange is printed at the end (``pytest -rA`` shows it).

1. our spoke registers with an FRR hub;
2. an FRR spoke registers with our hub, and its traffic crosses our hub;
3. shortcuts through our hub (numbered as in docs/interop.md): 3a between our spoke's and
   the FRR spoke's overlay addresses, both ways; 3b the FRR spoke's to our spoke's LAN;
   3c our spoke's to the FRR spoke's LAN, which our hub knows only by its route;
4. what happens when our spoke asks the FRR hub for an address nobody holds.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kernel_mesh import (
    ROUND,
    START,
    GreCapture,
    kernel_route,
    lan_address,
    nhs_states,
    ping,
    registered,
    wait_until,
)
from test_kernel_mesh import pytestmark as MESH_MARKS

from dmvpn_runtime.lab import Lab, Node

FRR_BIN = Path("/usr/lib/frr")

pytestmark = list(MESH_MARKS)  # vm, a 600 s timeout, skipped outside the VM

GRE_KEY = 42
HOLDTIME = 300
SPEC: dict[str, Any] = {
    "tunnel": {
        "dataplane": "kernel",
        "holdtime": HOLDTIME,
        "gre_key": GRE_KEY,
        "overlay": ["10.255.255.0/24"],  # FRR runs IPv4 only here
    },
    "hubs": [{"name": "hub1"}, {"name": "frrhub", "daemon": None}],
    "spokes": [
        {"name": "spoke1", "lan": "10.1.0.0/24", "nhs": ["hub1"]},
        {"name": "frrspoke", "lan": "10.2.0.0/24", "nhs": ["hub1"], "daemon": None},
        {"name": "spoke3", "lan": "10.3.0.0/24", "nhs": ["frrhub"]},
    ],
}
FRR_START = 60.0


# -- FRR in a lab node -------------------------------------------------------------------------
class Frr:
    """zebra + nhrpd inside one lab node, all their files in ``base`` (owned by frr,
    the user the daemons drop to), on an mGRE ``gre1`` the test makes."""

    def __init__(self, lab: Lab, node: str, base: Path, interface: list[str]) -> None:
        self.node: Node = lab.node(node)
        self.dir = base / node
        self.interface = interface
        self.procs: list[subprocess.Popen[Any]] = []

    def config(self) -> str:
        lines = [f"hostname {self.node.name}", "debug nhrp all", "interface gre1"]
        lines += [f" {line}" for line in self.interface]
        return "\n".join([*lines, " tunnel source wan0", "exit", ""])

    def start(self) -> None:
        n = self.node
        n.exec(
            f"ip tunnel add gre1 mode gre key {GRE_KEY} ttl 64 dev wan0"
            f" && ip addr add {n.overlay[0]}/32 dev gre1 && ip link set gre1 up",
            check=True,
        )
        self.dir.mkdir(parents=True)
        (self.dir / "zebra.conf").write_text(f"hostname {n.name}\n")
        (self.dir / "nhrpd.conf").write_text(self.config())
        frr = pwd.getpwnam("frr")
        os.chown(self.dir, frr.pw_uid, frr.pw_gid)
        for daemon in ("zebra", "nhrpd"):
            argv = [
                str(FRR_BIN / daemon),
                f"--config_file={self.dir / daemon}.conf",
                f"--pid_file={self.dir / daemon}.pid",
                f"--socket={self.dir}/zserv.api",
                f"--vty_socket={self.dir}",
                f"--log=file:{self.dir / daemon}.log",
                "--log-level=debug",
            ]
            with (self.dir / f"{daemon}.out").open("w") as out:
                self.procs.append(n.popen(argv, stdout=out, stderr=subprocess.STDOUT))
            # nhrpd needs zebra's socket; vtysh needs nhrpd's.
            sock = self.dir / ("zserv.api" if daemon == "zebra" else "nhrpd.vty")
            assert wait_until(sock.exists, FRR_START), self.logs()

    def vtysh(self, command: str) -> str:
        proc = self.node.exec(["vtysh", f"--vty_socket={self.dir}", "-c", command], check=True)
        return proc.stdout

    def rows(self, command: str, *words: str) -> list[list[str]]:
        """Rows of a ``show`` table that hold every one of ``words``."""
        rows = [line.split() for line in self.vtysh(command).splitlines()]
        return [r for r in rows if all(w in r for w in words)]

    def logs(self, size: int = 3000) -> str:
        out = []
        for name in ("zebra.out", "nhrpd.out", "nhrpd.log"):
            path = self.dir / name
            if path.exists():
                lines = [x for x in path.read_text().splitlines() if "vici_reconnect" not in x]
                text = "\n".join(lines)[-size:]  # (no strongSwan here: FRR retries VICI)
                out.append(f"--- {self.node.name} {name}:\n{text}")
        return "\n".join(out)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


class NhrpRecorder:
    """``tcpdump -w`` of every GRE packet on some nodes' wan0, for the whole module."""

    def __init__(self, lab: Lab, nodes: tuple[str, ...], base: Path) -> None:
        self.files = [base / f"{node}.pcap" for node in nodes]
        self.procs = [
            lab.node(node).popen(
                ["tcpdump", "-p", "-n", "-U", "-i", "wan0", "-w", str(path), "ip proto 47"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for node, path in zip(nodes, self.files, strict=True)
        ]

    def stop(self) -> str:
        """The NHRP packets, one summary line each (``dmvpnctl decode --pretty``)."""
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        dmvpnctl = shutil.which("dmvpnctl", path=str(Path(sys.executable).parent))
        files = [str(p) for p in self.files if p.exists()]
        proc = subprocess.run(  # one process: under TCG every Python start is slow
            [dmvpnctl or "dmvpnctl", "decode", "--pretty", *files],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = [x for x in proc.stdout.splitlines() if x and not x[0].isspace()]
        out = [f"--- NHRP captured on wan0 of {', '.join(files)}:"]
        out += [x for x in lines if x[0] not in "{}[]"]
        out.append(proc.stderr[-2000:])
        return "\n".join(out)


# -- the lab -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interop() -> Iterator[tuple[Lab, dict[str, Frr]]]:
    if not (FRR_BIN / "nhrpd").exists():
        pytest.skip("FRR is not installed (apt-get install frr)")
    lab = Lab.up(SPEC, name=f"f{os.getpid() % 10**9}", daemon_grace=1.0)
    base = Path(tempfile.mkdtemp(prefix="frr-interop-"))
    base.chmod(0o755)  # the FRR daemons run as frr and need to reach their directories
    frr: dict[str, Frr] = {}
    recorder = None
    try:
        hub1 = lab.node("hub1")
        recorder = NhrpRecorder(lab, ("hub1", "frrhub", "frrspoke"), base)
        frr["frrhub"] = Frr(
            lab,
            "frrhub",
            base,
            [
                "ip nhrp network-id 1",
                f"ip nhrp holdtime {HOLDTIME}",
                "ip nhrp redirect",
                "ip nhrp registration no-unique",
            ],
        )
        frr["frrspoke"] = Frr(
            lab,
            "frrspoke",
            base,
            [
                "ip nhrp network-id 1",
                f"ip nhrp holdtime {HOLDTIME}",
                # The usual FRR spoke: it learns the hub's overlay address from the
                # Registration Reply's destination field (docs/interop.md).
                f"ip nhrp nhs dynamic nbma {hub1.nbma[0]}",
                "ip nhrp registration no-unique",
                "ip nhrp shortcut",
            ],
        )
        for f in frr.values():
            f.start()
        # What a routing protocol would carry (FRR registers its address, not its LAN):
        # the FRR spoke sends everything in 10/8 via the hub, the hub 10.2/24 via it.
        frr_overlay = lab.node("frrspoke").overlay[0]
        lab.node("frrspoke").exec(
            ["ip", "route", "add", "10.0.0.0/8", "via", hub1.overlay[0], "dev", "gre1", "onlink"],
            check=True,
        )
        link_up = wait_until(
            lambda: hub1.exec(["ip", "link", "show", "dmvpn0"]).returncode == 0, START
        )
        assert link_up, hub1.daemon_log()[-2000:]  # dmvpnd makes the link when it is up
        hub1.exec(
            ["ip", "route", "add", "10.2.0.0/24", "via", frr_overlay, "dev", "dmvpn0", "onlink"],
            check=True,
        )
        yield lab, frr
    finally:
        for f in frr.values():
            print(f.logs(6000))
            f.stop()
        if recorder is not None:
            print(recorder.stop())
        report = lab.down()
        shutil.rmtree(base, ignore_errors=True)
    assert not report.problems, report.problems


def diagnostics(lab: Lab, frr: dict[str, Frr]) -> str:
    out = []
    for f in frr.values():
        for command in ("show ip nhrp cache", "show ip nhrp nhs", "show ip nhrp shortcut"):
            out.append(f"{f.node.name}# {command}\n{f.vtysh(command)}")
        out.append(f.logs())
    for node in ("hub1", "spoke1", "spoke3"):
        out.append(f"{node} daemon log:\n{lab.node(node).daemon_log()[-2000:]}")
    return "\n".join(out)


def dmvpnctl(lab: Lab, node: str, *args: str) -> Any:
    """``dmvpnctl ARGS --json`` in ``node``: what an operator sees."""
    proc = lab.node(node).exec(["dmvpnctl", *args, "--json"], check=True, timeout=120)
    return json.loads(proc.stdout)


# -- 1: our spoke, FRR hub ---------------------------------------------------------------------
def test_our_spoke_registers_with_frr_hub(interop: tuple[Lab, dict[str, Frr]]) -> None:
    lab, frr = interop
    hub, spoke = lab.node("frrhub"), lab.node("spoke3")
    proto, nbma = spoke.overlay[0], spoke.nbma[0]

    def done() -> bool:
        ours = nhs_states(lab, "spoke3") == {hub.overlay[0]: "registered"}
        return ours and bool(frr["frrhub"].rows("show ip nhrp cache", proto, nbma, "dynamic"))

    assert wait_until(done, START, step=2.0), diagnostics(lab, frr)
    shown = dmvpnctl(lab, "spoke3", "show", "nhs")
    assert [(e["proto"], e["state"]) for e in shown] == [(hub.overlay[0], "registered")], shown
    # FRR's `show dmvpn` lists our spoke's tunnel up with its NBMA.
    assert frr["frrhub"].rows("show dmvpn", nbma), frr["frrhub"].vtysh("show dmvpn")
    # Overlay traffic both ways: FRR routes to our spoke over the binding it learned.
    assert ping(lab, "spoke3", hub.overlay[0], count=3) == 3, diagnostics(lab, frr)
    assert ping(lab, "frrhub", proto, count=3) == 3, diagnostics(lab, frr)


# -- 2: FRR spoke, our hub ---------------------------------------------------------------------
def test_frr_spoke_registers_with_our_hub(interop: tuple[Lab, dict[str, Frr]]) -> None:
    lab, frr = interop
    hub, spoke = lab.node("hub1"), lab.node("frrspoke")
    proto, nbma = spoke.overlay[0], spoke.nbma[0]

    def done() -> bool:
        entry = registered(lab, "hub1").get(proto)
        # FRR lists the hub with its NBMA and the overlay address it learned from us.
        learned = frr["frrspoke"].rows("show ip nhrp nhs", hub.nbma[0], hub.overlay[0])
        return bool(entry and entry["nbma"] == nbma and learned)

    assert wait_until(done, START, step=2.0), diagnostics(lab, frr)
    shown = {e["proto"]: e for e in dmvpnctl(lab, "hub1", "show", "nhrp")}
    assert shown[proto]["type"] == "registered" and shown[proto]["nbma"] == nbma, shown
    neigh = hub.exec(["ip", "neigh", "show", proto, "dev", "dmvpn0"], check=True).stdout
    assert f"lladdr {nbma} PERMANENT" in neigh, neigh

    # The hub itself, then spoke1 and its LAN through the hub.
    assert ping(lab, "frrspoke", hub.overlay[0], count=3) == 3, diagnostics(lab, frr)
    assert ping(lab, "frrspoke", lab.node("spoke1").overlay[0], count=3) == 3
    assert ping(lab, "frrspoke-lan", lan_address(lab, "spoke1"), count=3) == 3
    assert ping(lab, "spoke1-lan", lan_address(lab, "frrspoke"), count=3) == 3


# -- 3a, 3b: shortcuts between our spoke and an FRR spoke, through our hub ---------------------
def frr_cache_has(frr: Frr, proto: str, nbma: str) -> bool:
    return bool(frr.rows("show ip nhrp cache", proto, nbma))


def test_overlay_shortcut_between_our_spoke_and_frr_spoke(
    interop: tuple[Lab, dict[str, Frr]],
) -> None:
    """spoke1 <-> frrspoke overlay addresses: spoke1 resolves frrspoke's address through
    our hub (which forwards the request to FRR, FRR answers directly), and FRR, sent a
    Traffic Indication by our hub for its replies, resolves spoke1's address the same way."""
    lab, frr = interop
    s1, fs = lab.node("spoke1"), lab.node("frrspoke")
    s1_ip, fs_ip = s1.overlay[0], fs.overlay[0]
    hub_nbma = lab.node("hub1").nbma[0]
    assert ping(lab, "spoke1", fs_ip, count=3) == 3, diagnostics(lab, frr)

    def both_resolved() -> bool:
        neigh = s1.exec(["ip", "neigh", "show", fs_ip, "dev", "dmvpn0"], check=True).stdout
        return f"lladdr {fs.nbma[0]}" in neigh and frr_cache_has(frr["frrspoke"], s1_ip, s1.nbma[0])

    def keep_pinging() -> bool:  # FRR resolves only on a Traffic Indication: traffic
        ping(lab, "spoke1", fs_ip, count=1)
        return both_resolved()

    assert wait_until(keep_pinging, ROUND * 2, step=1.0), diagnostics(lab, frr)

    n = 10
    with GreCapture(lab, "hub1") as at_hub, GreCapture(lab, "frrspoke") as at_frr:
        assert ping(lab, "spoke1", fs_ip, count=n, interval=0.1) == n
    assert at_hub.carrying(s1_ip, fs_ip) == [], at_hub.lines
    direct = at_frr.carrying(s1_ip, fs_ip)
    assert direct.count((s1.nbma[0], fs.nbma[0], s1_ip, fs_ip)) >= n, at_frr.lines
    assert direct.count((fs.nbma[0], s1.nbma[0], fs_ip, s1_ip)) >= n, at_frr.lines
    assert not [p for p in direct if hub_nbma in p[:2]], at_frr.lines


def test_frr_spoke_shortcut_to_our_spokes_lan(interop: tuple[Lab, dict[str, Frr]]) -> None:
    """frrspoke-lan -> spoke1-lan: our hub redirects FRR, FRR resolves 10.1.0.2 through our
    hub, spoke1 answers with its protected prefix, FRR installs 10.1.0.0/24 via spoke1 and
    sends directly from then on."""
    lab, frr = interop
    s1, fs = lab.node("spoke1"), lab.node("frrspoke")
    src, dst = lan_address(lab, "frrspoke"), lan_address(lab, "spoke1")

    def installed() -> bool:
        ping(lab, "frrspoke-lan", dst, count=1)
        route = kernel_route(lab, "frrspoke", "10.1.0.0/24")
        return f"via {s1.overlay[0]} dev gre1" in route

    assert wait_until(installed, ROUND * 2, step=1.0), diagnostics(lab, frr)
    assert frr["frrspoke"].rows("show ip nhrp shortcut", "10.1.0.0/24", s1.overlay[0])

    n = 10
    with GreCapture(lab, "hub1") as at_hub, GreCapture(lab, "spoke1") as at_s1:
        assert ping(lab, "frrspoke-lan", dst, count=n, interval=0.1) == n
    hub_saw = [p for p in at_hub.carrying(src, dst) if p[2] == src]
    assert hub_saw == [], at_hub.lines
    assert at_s1.carrying(src, dst).count((fs.nbma[0], s1.nbma[0], src, dst)) >= n, at_s1.lines


# -- 3c: our spoke to an FRR spoke's LAN, found by our hub's route ------------------------------
def test_our_spoke_shortcut_to_frr_spokes_lan_by_our_hubs_route(
    interop: tuple[Lab, dict[str, Frr]],
) -> None:
    """spoke1-lan -> frrspoke-lan: FRR registers only its address, so our hub finds the
    egress of 10.2.0.2 by its route (10.2.0.0/24 via frrspoke, ``forward_by_route``) and
    forwards spoke1's request there; FRR answers, spoke1 installs the shortcut and sends
    directly from then on."""
    lab, frr = interop
    s1, fs = lab.node("spoke1"), lab.node("frrspoke")
    src, dst = lan_address(lab, "spoke1"), lan_address(lab, "frrspoke")

    def installed() -> list[dict[str, Any]]:
        ping(lab, "spoke1-lan", dst, count=1)
        return [
            s
            for s in dmvpnctl(lab, "spoke1", "show", "shortcuts")
            if s["via"] == fs.overlay[0] and s["prefix"] == "10.2.0.0/24" and s["route"]
        ]

    assert wait_until(installed, ROUND * 2, step=1.0), diagnostics(lab, frr)
    assert f"via {fs.overlay[0]} dev dmvpn0" in kernel_route(lab, "spoke1", "10.2.0.0/24")
    counters = dmvpnctl(lab, "hub1", "show", "stats")["engine"]["counters"]
    assert counters.get("resolution_by_route", 0) >= 1, counters

    n = 10
    with GreCapture(lab, "hub1") as at_hub, GreCapture(lab, "frrspoke") as at_frr:
        assert ping(lab, "spoke1-lan", dst, count=n, interval=0.1) == n
    assert [p for p in at_hub.carrying(src, dst) if p[2] == src] == [], at_hub.lines
    assert at_frr.carrying(src, dst).count((s1.nbma[0], fs.nbma[0], src, dst)) >= n, at_frr.lines


# -- 4: an address nobody holds, asked of the FRR hub ------------------------------------------
def spoke_events(lab: Lab, node: str, kind: str) -> list[dict[str, Any]]:
    """Events of that kind in the node's JSON-lines event log."""
    path = lab.node(node).path(f"/var/lib/dmvpn/{lab.node(node).tunnel}.events.jsonl")
    found = []
    for line in path.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:  # a line being written right now
            continue
        if event.get("event") == kind:
            found.append(event)
    return found


def test_frr_hub_does_not_answer_for_an_address_nobody_holds(
    interop: tuple[Lab, dict[str, Frr]],
) -> None:
    """spoke3 (ours, its NHS the FRR hub) has traffic for an overlay address no node
    holds. FRR's NHS routes that address out of its WAN, not through the tunnel, and
    drops the request: no reply (FRR's code 11 or our 12) and no Error Indication. Our
    spoke retransmits the request (same octets: 1, 2, 4, 7, 7 s), gives up after 30 s
    with a ``resolution_failed`` event, and caches nothing."""
    lab, frr = interop
    unknown = "10.255.255.99"

    def sent() -> int:
        return int(
            dmvpnctl(lab, "spoke3", "show", "stats")["engine"]["tx"].get("resolution_request", 0)
        )

    before = sent()
    ping(lab, "spoke3", unknown, count=1)

    def gave_up() -> list[dict[str, Any]]:
        failures = spoke_events(lab, "spoke3", "resolution_failed")
        return [e for e in failures if e.get("target") == unknown]

    failed = wait_until(gave_up, 50.0, step=2.0)
    assert failed, diagnostics(lab, frr)
    assert failed[0]["reason"] == "timeout", failed
    assert sent() - before >= 5  # the first request and its retransmissions
    assert not [e for e in dmvpnctl(lab, "spoke3", "show", "nhrp") if e["proto"] == unknown]
    log = frr["frrhub"].logs(50000)
    asked = f"Recv Resolution-Request(1) {lab.node('spoke3').overlay[0]} -> {unknown}"
    assert asked in log, log
    since = log[log.index(asked) :]  # FRR serves only spoke3: nothing else is resolved there
    assert "Resolution-Reply" not in since and "Error-Indication" not in since, since
