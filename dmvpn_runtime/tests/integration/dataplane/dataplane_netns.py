"""Namespaces, runner specs and helpers for the userspace data-plane tests.

One topology per session, every host a network namespace named ``dpt-t<pid>-<host>``:

    lan1 ── s1 ─┐                 ┌─ s2 ── lan2
                ├── wan (bridge) ─┤
               hub               attacker address on the bridge

WAN 192.0.2.0/24 and 2001:db8::/64 (hub .1, s1 .11, s2 .12, the bridge itself .254),
overlay 10.99.0.0/24 and fd00:99::/64 (same host numbers), LANs 10.1.{1,2}.0/24 and
fd01:{1,2}::/64 behind s1 and s2. Nothing is routed from the root namespace; every
veth is created directly inside its namespaces. Each test starts the data-plane
runners it needs (``start``) and they are stopped after it, even when it fails.

The kernel data plane's VM tests (tests/vm/test_kernel_dataplane.py) use the same
addresses, ``spec`` and ``mesh_mappings`` with IPv4 NBMA only, in their own namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dmvpn_runtime.dataplane.runner import RunnerProcess

TUNNEL = "dmvpn0"
KEY = 42
HOSTS = {"hub": 1, "s1": 11, "s2": 12}
LANS = {"s1": 1, "s2": 2}


def nbma4(host: str) -> str:
    return f"192.0.2.{HOSTS[host]}"


def nbma6(host: str) -> str:
    return f"2001:db8::{HOSTS[host]}"


def overlay4(host: str) -> str:
    return f"10.99.0.{HOSTS[host]}"


def overlay6(host: str) -> str:
    return f"fd00:99::{HOSTS[host]}"


def lan4(spoke: str, host: int = 2) -> str:
    return f"10.1.{LANS[spoke]}.{host}"


def lan6(spoke: str, host: int = 2) -> str:
    return f"fd01:{LANS[spoke]}::{host}"


def _run(*cmd: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Topology:
    run: str
    namespaces: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"dpt-{self.run}-{host}"

    def sh(
        self, host: str, *cmd: str, check: bool = True, timeout: float = 15
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``host``'s namespace."""
        return _run("ip", "netns", "exec", self.ns(host), *cmd, check=check, timeout=timeout)

    def popen(self, host: str, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def python(self, host: str, code: str, *args: str) -> subprocess.Popen[str]:
        """Run Python ``code`` in ``host``'s namespace (a helper, not a data plane)."""
        return self.popen(host, sys.executable, "-c", code, *args)

    def build(self) -> None:
        for host in ("wan", "hub", "s1", "s2", "lan1", "lan2"):
            _run("ip", "netns", "add", self.ns(host))
            self.namespaces.append(self.ns(host))
            _run("ip", "-n", self.ns(host), "link", "set", "lo", "up")
        wan = self.ns("wan")
        _run("ip", "-n", wan, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", wan, "addr", "add", "192.0.2.254/24", "dev", "br0")
        _run("ip", "-n", wan, "addr", "add", "2001:db8::254/64", "dev", "br0", "nodad")
        _run("ip", "-n", wan, "link", "set", "br0", "up")
        for host in HOSTS:
            ns = self.ns(host)
            port = f"p-{host}"
            _run("ip", "link", "add", "wan0", "netns", ns, "type", "veth",
                 "peer", "name", port, "netns", wan)  # fmt: skip
            _run("ip", "-n", wan, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{nbma4(host)}/24", "dev", "wan0")
            _run("ip", "-n", ns, "addr", "add", f"{nbma6(host)}/64", "dev", "wan0", "nodad")
            _run("ip", "-n", ns, "link", "set", "wan0", "up")
            self.sh(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.sh(host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for spoke, lan in (("s1", "lan1"), ("s2", "lan2")):
            ns, lns = self.ns(spoke), self.ns(lan)
            _run("ip", "link", "add", "lan0", "netns", ns, "type", "veth",
                 "peer", "name", "eth0", "netns", lns)  # fmt: skip
            _run("ip", "-n", ns, "addr", "add", f"{lan4(spoke, 1)}/24", "dev", "lan0")
            _run("ip", "-n", ns, "addr", "add", f"{lan6(spoke, 1)}/64", "dev", "lan0", "nodad")
            _run("ip", "-n", ns, "link", "set", "lan0", "up")
            _run("ip", "-n", lns, "addr", "add", f"{lan4(spoke)}/24", "dev", "eth0")
            _run("ip", "-n", lns, "addr", "add", f"{lan6(spoke)}/64", "dev", "eth0", "nodad")
            _run("ip", "-n", lns, "link", "set", "eth0", "up")
            _run("ip", "-n", lns, "route", "add", "default", "via", lan4(spoke, 1))
            _run("ip", "-n", lns, "-6", "route", "add", "default", "via", lan6(spoke, 1))

    def destroy(self) -> None:
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


def spec(
    host: str,
    *,
    families: tuple[int, ...] = (4, 6),
    mappings: dict[str, str] | None = None,
    routes: dict[str, str] | None = None,
    multicast: list[str] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """A runner spec for ``host``: both NBMA families and both overlay addresses."""
    cfg: dict[str, Any] = {
        "tunnel": TUNNEL,
        "key": KEY,
        "role": "hub" if host == "hub" else "spoke",
        "local_nbma": [nbma4(host) if f == 4 else nbma6(host) for f in families],
        "overlay": [f"{overlay4(host)}/24", f"{overlay6(host)}/64"],
    }
    cfg.update(config)
    out: dict[str, Any] = {"config": cfg}
    if mappings:
        out["mappings"] = mappings
    if routes:
        out["routes"] = routes
    if multicast is not None:
        out["multicast"] = multicast
    return out


def mesh_mappings(host: str, peers: tuple[str, ...], family: int = 4) -> dict[str, str]:
    """Both overlay addresses of each peer mapped to its NBMA address of ``family``."""
    nbma = nbma4 if family == 4 else nbma6
    out = {}
    for peer in peers:
        if peer != host:
            out[overlay4(peer)] = nbma(peer)
            out[overlay6(peer)] = nbma(peer)
    return out


Starter = Callable[..., RunnerProcess]


def start_many(start: Starter, specs: dict[str, dict[str, Any]]) -> dict[str, RunnerProcess]:
    """Start several runners at once (they take ~0.4 s each to come up)."""
    runners = {host: start(host, wait=False, raw_spec=s) for host, s in specs.items()}
    for runner in runners.values():
        runner.wait_ready()
    return runners


def peer_stats(runner: RunnerProcess, nbma: str) -> dict[str, int]:
    zero = {"tx_packets": 0, "tx_bytes": 0, "rx_packets": 0, "rx_bytes": 0}
    return runner.call("stats")["peers"].get(nbma, zero)
