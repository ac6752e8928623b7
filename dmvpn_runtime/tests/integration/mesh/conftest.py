"""Real meshes: one dmvpnd per lab host, real packets in network namespaces.

``mesh`` is the shipped default lab (2 hubs, 3 spokes, spoke3 behind NAT), shared by a
module's tests that only look; tests that break things build their own lab with
``lab_factory``. Every lab is torn down when its test (or module) ends, pass or fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dmvpn_runtime.lab import Lab

pytestmark = pytest.mark.integration
REGISTER_TIMEOUT = 20.0


def wait_until(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; return it (or the last value)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, ValueError, KeyError, AssertionError):  # daemon still starting
            value = None
        if value:
            return value
        time.sleep(step)
    return value


def ctl(lab: Lab, node: str, *args: str, check: bool = True) -> Any:
    """``dmvpnctl ARGS --json`` inside ``node`` (it finds its daemon from the lab's env)."""
    proc = lab.node(node).exec(["dmvpnctl", *args, "--json"], timeout=15)
    if check:
        assert proc.returncode == 0, f"dmvpnctl {' '.join(args)} on {node}: {proc.stderr}"
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def registered_clients(lab: Lab, hub: str) -> set[str]:
    return {e["proto"] for e in ctl(lab, hub, "show", "nhrp") if e["type"] == "registered"}


def nhs_states(lab: Lab, spoke: str) -> dict[str, str]:
    return {v["proto"]: v["state"] for v in ctl(lab, spoke, "show", "nhs")}


def wait_registered(lab: Lab, spokes: list[str], hubs: list[str]) -> None:
    """Every spoke registered with every hub (both sides agree)."""
    overlays = {lab.node(s).overlay[0] for s in spokes}

    def done() -> bool:
        if not all(overlays <= registered_clients(lab, h) for h in hubs):
            return False
        return all(
            all(state == "registered" for state in nhs_states(lab, s).values()) for s in spokes
        )

    assert wait_until(done, REGISTER_TIMEOUT), {
        "hubs": {h: sorted(registered_clients(lab, h)) for h in hubs},
        "spokes": {s: nhs_states(lab, s) for s in spokes},
    }


def lan_address(lab: Lab, node: str) -> str:
    return lab.node(f"{node}-lan").addresses[0]


def ping(lab: Lab, node: str, dst: str, count: int = 3, interval: float = 0.2) -> int:
    """Replies received."""
    proc = lab.node(node).exec(
        ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", dst],
        timeout=count * (interval + 1) + 10,
    )
    for line in proc.stdout.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


def peer_packets(lab: Lab, node: str, peer: str) -> int:
    """Data packets ``node``'s data plane exchanged with ``peer``'s NBMA addresses."""
    peers = ctl(lab, node, "show", "stats")["dataplane"]["peers"]
    addrs = set(lab.node(peer).nbma)
    behind = lab.node(peer).info.get("behind")
    if behind:  # a NATed peer is seen at its NAT's outside address
        addrs |= set(lab.node(behind).nbma)
    return sum(c["tx_packets"] + c["rx_packets"] for a, c in peers.items() if a in addrs)


@pytest.fixture(scope="module")
def mesh(module_lab_factory) -> Iterator[Lab]:
    lab = module_lab_factory()
    wait_registered(lab, ["spoke1", "spoke2", "spoke3"], ["hub1", "hub2"])
    yield lab
