"""Phase 3 with spokes that register only their own address, as Cisco and FRR spokes do.

The hub knows the spokes' LANs only from its routing table (here static routes out of
the tunnel via each spoke's overlay address; in production BGP or OSPF through FRR).
dmvpnd's route watcher reads them, and the hub forwards a resolution for such a LAN to
the spoke it routes through (RFC 2332 §5.2.1), which answers with its prefix: shortcuts
form in both directions, as with spokes that register their prefixes.
"""

from __future__ import annotations

import sys

from dmvpn_runtime.lab import Lab

from .conftest import ctl, lan_address, ping, wait_registered, wait_until
from .test_daemon_ops import SCRAPE, metric
from .test_phase3 import ROUND, lan_prefix, wait_shortcut

SPEC = {
    "hubs": [{"name": "hub1"}],
    "spokes": [
        {"name": f"spoke{i}", "lan": f"10.{i}.0.0/24", "config": {"register_prefixes": False}}
        for i in (1, 2)
    ],
}


def route_via_tunnel(lab: Lab, hub: str, spoke: str) -> None:
    """What a routing protocol would install on the hub: the spoke's LAN via its overlay."""
    node = lab.node(hub)
    out = node.exec(
        [
            "ip",
            "route",
            "replace",
            lan_prefix(lab, spoke),
            "via",
            lab.node(spoke).overlay[0],
            "dev",
            node.tunnel,
            "onlink",
        ]
    )
    assert out.returncode == 0, out.stderr


def by_route(lab: Lab, hub: str) -> int:
    return ctl(lab, hub, "show", "stats")["engine"]["counters"].get("resolution_by_route", 0)


def scrape(lab: Lab, node: str) -> str:
    return lab.node(node).exec([sys.executable, "-c", SCRAPE], check=True).stdout


def test_shortcuts_form_to_lans_the_hub_knows_only_by_route(lab_factory) -> None:
    lab = lab_factory(SPEC)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    registered = [e for e in ctl(lab, "hub1", "show", "nhrp") if e["type"] == "registered"]
    assert registered and not any(e["prefixes"] for e in registered), registered
    for spoke in ("spoke1", "spoke2"):
        route_via_tunnel(lab, "hub1", spoke)
    assert wait_until(
        lambda: ctl(lab, "hub1", "show", "stats")["engine"]["gauges"]["routes"] == 2, 5.0
    ), ctl(lab, "hub1", "show", "stats")["engine"]["gauges"]
    # What the operator sees: each route and the client its next hop is.
    shown = {r["prefix"]: r for r in ctl(lab, "hub1", "show", "routes")}
    for spoke in ("spoke1", "spoke2"):
        route = shown[lan_prefix(lab, spoke)]
        assert route["via"] == lab.node(spoke).overlay[0]
        assert route["client_nbma"] == lab.node(spoke).nbma[0]

    # The first packets cross the hub (its routes); its redirect makes spoke1 resolve
    # spoke2's LAN, and the hub forwards that request to spoke2 by route.
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=3) == 3
    sc1 = wait_shortcut(lab, "spoke1", "spoke2", timeout=2 * ROUND)
    assert sc1["prefix"] == "10.2.0.0/24"
    assert by_route(lab, "hub1") >= 1
    # And back: spoke2's first packet to spoke1's LAN is redirected the same way.
    assert ping(lab, "spoke2-lan", lan_address(lab, "spoke1"), count=3) == 3
    sc2 = wait_shortcut(lab, "spoke2", "spoke1", timeout=2 * ROUND)
    assert sc2["prefix"] == "10.1.0.0/24"
    assert by_route(lab, "hub1") >= 2
    # What a monitoring system sees.
    text = scrape(lab, "hub1")
    assert metric(text, "dmvpn_routes") == 2
    assert metric(text, "dmvpn_nhrp_events_total", event="resolution_by_route") >= 2
