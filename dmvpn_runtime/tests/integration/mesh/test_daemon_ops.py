"""What an operator does to a running dmvpnd: reload with SIGHUP, scrape metrics, read the
event log, and recover from kill -9 with the shortcuts coming back."""

from __future__ import annotations

import json
import signal
import sys

import yaml

from dmvpn_runtime.lab import Lab

from .conftest import ctl, lan_address, ping, wait_registered, wait_until

SCRAPE = """
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=5).read().decode())
"""
TWO_SPOKES = {
    "hubs": [{"name": "hub1"}],
    "spokes": [
        {"name": "spoke1", "lan": "10.1.0.0/24"},
        {"name": "spoke2", "lan": "10.2.0.0/24"},
    ],
}


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in the scrape")


def shortcut_prefixes(lab: Lab, node: str) -> set[str]:
    return {s["prefix"] for s in ctl(lab, node, "show", "shortcuts") if s["route"]}


def test_metrics_and_event_log(lab_factory) -> None:
    lab = lab_factory(TWO_SPOKES)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=5, interval=0.1) == 5
    assert wait_until(lambda: "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1"), 5)
    text = lab.node("hub1").exec([sys.executable, "-c", SCRAPE], check=True).stdout
    assert metric(text, "dmvpn_nhrp_packets_total", direction="in", type="registration_request")
    assert metric(text, "dmvpn_nhrp_packets_total", direction="out", type="traffic_indication")
    assert metric(text, "dmvpn_cache_entries", type="registered") == 4  # 2 spokes x v4, v6
    spoke = lab.node("spoke1").exec([sys.executable, "-c", SCRAPE], check=True).stdout
    assert metric(spoke, "dmvpn_nhs_up", nhs="10.255.255.1") == 1
    assert metric(spoke, "dmvpn_shortcuts") >= 1
    nbma2 = lab.node("spoke2").nbma[0]
    assert metric(spoke, "dmvpn_peer_packets_total", peer=nbma2, direction="out") >= 1
    # The event log tells the same story, one JSON object per line.
    log = lab.node("spoke1").path("/var/lib/dmvpn/dmvpn0.events.jsonl").read_text()
    events = [json.loads(line) for line in log.splitlines()]
    kinds = [e["event"] for e in events]
    assert "registration_up" in kinds and "shortcut_up" in kinds
    up = next(e for e in events if e["event"] == "shortcut_up")
    assert up["prefix"] == "10.2.0.0/24" and up["tunnel"] == "dmvpn0" and up["ts"] > 0


def test_sighup_reload_keeps_state_and_refuses_bad_files(lab_factory) -> None:
    lab = lab_factory(TWO_SPOKES)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=5, interval=0.1) == 5
    assert wait_until(lambda: "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1"), 5)
    spoke = lab.node("spoke1")
    path = spoke.path("/etc/dmvpn/dmvpn0.yaml")
    original = path.read_text()
    pid = spoke.daemon_pid
    # A reloadable change: the holding time. Registration and shortcut stay.
    config = yaml.safe_load(original)
    config["holdtime"] = 120
    path.write_text(yaml.safe_dump(config))
    spoke.signal_daemon(signal.SIGHUP)
    assert wait_until(lambda: ctl(lab, "spoke1", "show", "stats")["daemon"].get("reload"), 5)
    assert spoke.daemon_pid == pid
    assert "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1")
    assert all(v["state"] == "registered" for v in ctl(lab, "spoke1", "show", "nhs"))
    # A broken file is refused with the file, key and expectation; the daemon runs on.
    path.write_text(original + "holdtime: 0\n")
    spoke.signal_daemon(signal.SIGHUP)
    assert wait_until(
        lambda: ctl(lab, "spoke1", "show", "stats")["daemon"].get("reload_refused"), 5
    )
    assert "holdtime: expected an integer from 1 to 65535" in spoke.daemon_log()
    # A restart-only key is refused too, by name.
    config["nbma_mtu"] = 1400
    path.write_text(yaml.safe_dump(config))
    spoke.signal_daemon(signal.SIGHUP)
    assert wait_until(lambda: "nbma_mtu" in spoke.daemon_log(), 5)
    assert spoke.daemon_pid == pid
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=3, interval=0.1) == 3


def test_kill_9_restart_brings_shortcuts_back(lab_factory) -> None:
    spec = dict(TWO_SPOKES)
    # The hub redirects a pair again after 2 s (default 15 s), so the test is quick.
    spec["hubs"] = [{"name": "hub1", "config": {"redirect": {"interval": 2}}}]
    lab = lab_factory(spec)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=5, interval=0.1) == 5
    assert wait_until(lambda: "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1"), 5)
    spoke = lab.node("spoke1")
    assert spoke.signal_daemon(signal.SIGKILL)
    assert wait_until(lambda: spoke.daemon_pid is None, 5)
    # The TAP device dies with the process: nothing of the tunnel is left behind.
    assert wait_until(
        lambda: "dmvpn0" not in spoke.exec(["ip", "-br", "link"], check=True).stdout, 5
    )
    spoke.start_daemon()
    wait_registered(lab, ["spoke1"], ["hub1"])
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=20, interval=0.2) >= 18
    assert wait_until(lambda: "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1"), 10)
    routes = spoke.exec(["ip", "route", "show", "10.2.0.0/24"], check=True).stdout
    via = lab.node("spoke2").overlay[0]
    assert routes.count("10.2.0.0/24") == 1 and f"via {via}" in routes
