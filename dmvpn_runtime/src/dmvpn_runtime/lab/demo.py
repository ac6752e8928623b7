"""``make demo``: the default lab, Phase 3 DMVPN shown step by step.

Brings up the shipped lab (2 hubs, 3 spokes, spoke3 behind NAT) with one dmvpnd per
node, then sends pings from the LAN host behind spoke1 to the LAN host behind spoke2
and shows what a user needs to see: NHS state, the first packets crossing the hub, the
Traffic Indication, the shortcut that replaced the hub path, and the direct path —
with per-hop packet counts read from the daemons' own counters. The lab stays up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..cli.ctl_daemon import SHOW, table
from ..daemon.control import ControlError, request
from .errors import LabError
from .lab import Lab, list_labs

SRC, DST = "spoke1", "spoke2"


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def ask(lab: Lab, node: str, command: str) -> Any:
    path = lab.node(node).path(lab.node(node).control_socket or "")
    return request(str(path), command)


def wait_for(check: Callable[[], Any], timeout: float, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, ControlError, ValueError):
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def peer_packets(lab: Lab, node: str, peer_node: str) -> int:
    """Data packets ``node`` sent to and received from ``peer_node``'s NBMA address."""
    peers = ask(lab, node, "show_stats")["dataplane"]["peers"]
    total = 0
    for nbma in lab.node(peer_node).nbma:
        counters = peers.get(nbma) or {}
        total += counters.get("tx_packets", 0) + counters.get("rx_packets", 0)
    return total


def hub_forwarded(lab: Lab, hubs: list[str]) -> int:
    return sum(peer_packets(lab, hub, SRC) for hub in hubs)


def lan_address(lab: Lab, node: str) -> str:
    return lab.node(f"{node}-lan").addresses[0]


def ping(lab: Lab, count: int, interval: float = 0.2) -> str:
    dst = lan_address(lab, DST)
    cmd = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "1", dst]
    out = lab.node(f"{SRC}-lan").exec(cmd, timeout=count * interval + 10)
    lines = [line for line in out.stdout.splitlines() if "packets transmitted" in line]
    return lines[0] if lines else out.stdout.strip()


def run(name: str, replace: bool) -> int:
    heading("Building the default lab: 2 hubs, 3 spokes (spoke3 behind NAT), a LAN host each")
    if name in list_labs() and not replace:
        say(f"lab {name!r} exists; using it (make demo-clean or `dmvpn-lab down` to rebuild)")
        lab = Lab.attach(name)
    else:
        lab = Lab.up(None, name=name, replace=replace)
    subprocess.run(
        [sys.executable, "-m", "dmvpn_runtime.cli.lab", "status", "--name", name], check=False
    )
    hubs = [n for n, node in lab.nodes.items() if node.role == "hub"]
    spokes = [n for n, node in lab.nodes.items() if node.role == "spoke"]

    heading(f"NHS state on {SRC} (dmvpnctl show nhs)")
    registered = wait_for(
        lambda: all(
            any(v["state"] == "registered" for v in ask(lab, s, "show_nhs")) for s in spokes
        ),
        timeout=20,
    )
    say(table(ask(lab, SRC, "show_nhs"), SHOW["nhs"][1]))
    if not registered:
        say("!! not every spoke registered within 20 s; see `dmvpn-lab exec NODE -- dmvpnctl ...`")
        return 1
    heading(f"{hubs[0]}'s NHRP cache: the spokes registered with it (dmvpnctl show nhrp)")
    say(table(ask(lab, hubs[0], "show_nhrp"), SHOW["nhrp"][1]))

    src_lan, dst_lan = lan_address(lab, SRC), lan_address(lab, DST)
    heading(f"Traffic: {SRC}-lan ({src_lan}) pings {DST}-lan ({dst_lan})")
    before = hub_forwarded(lab, hubs)
    ti_before = ask(lab, SRC, "show_stats")["engine"]["rx"].get("traffic_indication", 0)
    say("first 3 pings: " + ping(lab, 3))
    via_hub = hub_forwarded(lab, hubs) - before
    say(f"packets the hubs exchanged with {SRC} meanwhile: {via_hub} (the first path is via a hub)")
    ti = ask(lab, SRC, "show_stats")["engine"]["rx"].get("traffic_indication", 0) - ti_before
    say(f"Traffic Indications {SRC} received from a hub: {ti}")

    heading(f"Shortcuts (dmvpnctl show shortcuts) on {SRC} and {DST}")
    wait_for(lambda: ask(lab, SRC, "show_shortcuts"), timeout=5)
    for node in (SRC, DST):
        say(f"{node}:")
        say(table(ask(lab, node, "show_shortcuts"), SHOW["shortcuts"][1]))

    heading("Direct path: 20 more pings")
    hub_before = hub_forwarded(lab, hubs)
    direct_before = peer_packets(lab, SRC, DST)
    say(ping(lab, 20, 0.05))
    say(f"through the hubs: +{hub_forwarded(lab, hubs) - hub_before} packets")
    say(f"{SRC} <-> {DST} directly: +{peer_packets(lab, SRC, DST) - direct_before} packets")

    heading("Event log of spoke1 (JSON lines, last 8)")
    log = lab.node(SRC).path(f"/var/lib/dmvpn/{lab.node(SRC).tunnel}.events.jsonl")
    for line in Path(log).read_text().splitlines()[-8:]:
        event = json.loads(line)
        fields = {k: v for k, v in event.items() if k not in ("ts", "tunnel", "event")}
        say(f"  {event['event']:<18} {fields}")

    heading("The lab keeps running")
    say(f"  dmvpn-lab status --name {name}")
    say(f"  dmvpn-lab exec --name {name} {SRC} -- dmvpnctl show nhrp")
    say(f"  dmvpn-lab exec --name {name} {SRC}-lan -- ping {dst_lan}")
    say(f"  take it down: dmvpn-lab down --name {name}   (or: make demo-clean)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dmvpn-demo", description=__doc__.split("\n", maxsplit=1)[0]
    )
    parser.add_argument("--name", default="demo", help="lab name (default: demo)")
    parser.add_argument("--replace", action="store_true", help="rebuild an existing lab")
    args = parser.parse_args(argv)
    try:
        return run(args.name, args.replace)
    except LabError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
