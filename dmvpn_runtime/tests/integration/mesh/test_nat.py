"""Proof 6: a spoke behind NAT registers with the NAT extension and gets shortcuts to and
from another spoke, with the data plane going straight through the NAT (no IPsec here).

In the shipped lab spoke3 (172.16.3.11) sits behind nat1, an nftables masquerade to
203.0.113.129. The NHS binds spoke3 to the post-NAT address and keeps the one spoke3
claimed; spoke3 learns its post-NAT address from the NAT extension of the reply. A peer
then reaches spoke3 at the post-NAT address: the GRE "connection" nat1's conntrack made
for spoke3's own packets to that peer carries the peer's packets back in.
"""

from __future__ import annotations

import pytest

from dmvpn_runtime.lab import Lab

from .conftest import ctl, lan_address, ping, registered_clients, wait_until
from .test_phase3 import (
    HUBS,
    ROUND,
    GreCapture,
    counters,
    engine_count,
    hub_counters,
    nbmas,
    rose,
    shortcut,
    wait_shortcut,
)

POST_NAT = "203.0.113.129"  # nat1's outside address in the shipped lab
INSIDE = "172.16.3.11"  # spoke3's own (claimed) NBMA address


def test_spoke_behind_nat_registers_with_the_nat_extension(mesh: Lab) -> None:
    assert mesh.node("spoke3").nbma == [INSIDE] and mesh.node("nat1").nbma[0] == POST_NAT
    overlay = mesh.node("spoke3").overlay[0]
    for hub in HUBS:
        assert overlay in registered_clients(mesh, hub)
        entry = next(e for e in ctl(mesh, hub, "show", "nhrp") if e["proto"] == overlay)
        assert entry["nbma"] == POST_NAT and entry["claimed_nbma"] == INSIDE, entry
        assert "nat" in entry["flags"] and entry["prefixes"] == ["10.3.0.0/24"], entry
    for nhs in ctl(mesh, "spoke3", "show", "nhs"):
        assert nhs["state"] == "registered" and nhs["post_nat"] == POST_NAT, nhs
    # The spokes outside the NAT learned nothing of the kind about themselves.
    assert {v["post_nat"] for v in ctl(mesh, "spoke1", "show", "nhs")} == {None}


@pytest.mark.parametrize(
    ("ingress", "egress"),
    [("spoke3", "spoke1"), ("spoke2", "spoke3")],
    ids=["from-behind-nat", "to-behind-nat"],
)
def test_shortcuts_to_and_from_a_spoke_behind_nat(mesh: Lab, ingress: str, egress: str) -> None:
    """``ingress``-lan pings ``egress``-lan: first via the hub, then a Traffic Indication,
    shortcuts on both spokes, and direct GRE through nat1 in both directions."""
    src, dst = lan_address(mesh, ingress), lan_address(mesh, egress)
    pair = (ingress, egress)
    assert shortcut(mesh, ingress, str(mesh.node(egress).lan[0])) is None
    hubs_before = hub_counters(mesh, pair)
    ti_before = engine_count(mesh, ingress, "rx", "traffic_indication")

    assert ping(mesh, f"{ingress}-lan", dst, count=3) == 3
    hubs_after = hub_counters(mesh, pair)
    for spoke in pair:  # both spokes prefer hub1 (priority 0): the first packets crossed it
        assert rose(hubs_before[("hub1", spoke)], hubs_after[("hub1", spoke)]), (
            spoke,
            hubs_before,
            hubs_after,
        )
    assert wait_until(
        lambda: engine_count(mesh, ingress, "rx", "traffic_indication") > ti_before, ROUND
    )
    # Shortcuts both ways; a peer reaches spoke3 at nat1's outside address.
    wait_shortcut(mesh, ingress, egress)
    wait_shortcut(mesh, egress, ingress)
    peer = "spoke1" if "spoke1" in pair else "spoke2"
    cached = {e["proto"]: e for e in ctl(mesh, peer, "show", "nhrp")}
    entry = cached[mesh.node("spoke3").overlay[0]]
    assert (entry["type"], entry["nbma"], entry["claimed_nbma"]) == ("cached", POST_NAT, INSIDE)

    # Direct from now on: the hubs see nothing, nat1 forwards GRE both ways.
    hubs_before = hub_counters(mesh, pair)
    direct_before = {
        ingress: counters(mesh, ingress, nbmas(mesh, egress)),
        egress: counters(mesh, egress, nbmas(mesh, ingress)),
    }
    n = 20
    with (
        GreCapture(mesh, "hub1") as c1,
        GreCapture(mesh, "hub2") as c2,
        GreCapture(mesh, "nat1") as outside,
    ):
        assert ping(mesh, f"{ingress}-lan", dst, count=n, interval=0.05) == n
    assert hub_counters(mesh, pair) == hubs_before
    assert c1.carrying(src, dst) == [] and c2.carrying(src, dst) == [], (c1.lines, c2.lines)
    for node, other in ((ingress, egress), (egress, ingress)):
        rx0, tx0 = direct_before[node]
        rx1, tx1 = counters(mesh, node, nbmas(mesh, other))
        assert rx1 - rx0 >= n and tx1 - tx0 >= n, (node, direct_before[node], (rx1, tx1))
    # On nat1's outside: spoke3's packets leave as 203.0.113.129, its peer's come back to it.
    other = mesh.node(peer).nbma[0]
    seen = outside.carrying(src, dst)
    spoke3_lan, peer_lan = lan_address(mesh, "spoke3"), lan_address(mesh, peer)
    assert seen.count((POST_NAT, other, spoke3_lan, peer_lan)) >= n, outside.lines
    assert seen.count((other, POST_NAT, peer_lan, spoke3_lan)) >= n, outside.lines
