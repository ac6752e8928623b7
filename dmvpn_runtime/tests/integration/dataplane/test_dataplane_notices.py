"""Userspace data plane, what it tells the daemon: no_mapping, hairpin, NHRP, traffic."""

from __future__ import annotations

import time

import pytest
from dataplane_netns import (
    Topology,
    lan4,
    lan6,
    mesh_mappings,
    nbma4,
    nbma6,
    overlay4,
    overlay6,
    peer_stats,
    spec,
    start_many,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("family", [4, 6])
def test_no_mapping_then_mapping_releases_the_queued_packet(
    topo: Topology, start, family: int
) -> None:
    """A route via an unmapped next hop: the kernel asks (ARP / NS), the sink hears
    no_mapping(next hop); once the mapping is added the waiting packet is sent."""
    lan, next_hop = (
        ("10.1.2.0/24", overlay4("s2")) if family == 4 else ("fd01:2::/64", overlay6("s2"))
    )
    back = {"10.1.1.0/24": overlay4("s1"), "fd01:1::/64": overlay6("s1")}
    runners = start_many(
        start,
        {
            "s1": spec("s1", routes={lan: next_hop}),
            "s2": spec("s2", mappings=mesh_mappings("s2", ("s1",)), routes=back),
        },
    )
    s1 = runners["s1"]
    dst = lan4("s2") if family == 4 else lan6("s2")
    pinger = topo.popen("lan1", "ping", "-n", "-c", "1", "-W", "5", dst)
    try:
        notice = s1.wait_notice("no_mapping", {"next_hop": next_hop}, timeout=4)
        assert notice["next_hop"] == next_hop
        s1.call("add_mapping", next_hop, nbma4("s2"))
        out = pinger.communicate(timeout=8)[0]
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert pinger.returncode == 0 and " 0% packet loss" in out, out
    events = s1.call("stats")["events"]
    assert events["no_mapping_notices"] >= 1
    assert events["arp_requests" if family == 4 else "neighbour_solicitations"] >= 1


def test_hairpin_notice_on_hub(topo: Topology, start) -> None:
    """Spoke to spoke through the hub: one notice per direction and second, with the
    start of the inner packet; the hub's ICMP redirects do not reach the spokes."""
    runners = start_many(
        start,
        {
            "hub": spec(
                "hub",
                mappings=mesh_mappings("hub", ("s1", "s2")),
                routes={"10.1.1.0/24": overlay4("s1"), "10.1.2.0/24": overlay4("s2")},
            ),
            "s1": spec(
                "s1",
                mappings=mesh_mappings("s1", ("hub",)),
                routes={"10.1.2.0/24": overlay4("hub")},
            ),
            "s2": spec(
                "s2",
                # s1's overlay address too, for the reply to s1's own ping below.
                mappings=mesh_mappings("s2", ("hub", "s1")),
                routes={"10.1.1.0/24": overlay4("hub")},
            ),
        },
    )
    hub = runners["hub"]
    res = topo.sh("lan1", "ping", "-n", "-c", "4", "-i", "0.2", "-W", "2", lan4("s2"), check=False)
    assert res.returncode == 0, res.stdout
    forward = hub.wait_notice("hairpin", {"inner_src": lan4("s1")}, timeout=3)
    assert forward["in_nbma"] == nbma4("s1") and forward["out_nbma"] == nbma4("s2")
    assert forward["inner_dst"] == lan4("s2")
    head = bytes.fromhex(forward["head"])
    assert head[0] >> 4 == 4 and head[16:20] == bytes(map(int, lan4("s2").split(".")))
    reverse = hub.wait_notice("hairpin", {"inner_src": lan4("s2")}, timeout=3)
    assert reverse["in_nbma"] == nbma4("s2") and reverse["out_nbma"] == nbma4("s1")
    # Four echo requests within 0.6 s: rate limited to one notice per pair.
    time.sleep(0.2)
    assert [n for n in hub.drain("hairpin") if n["inner_src"] == lan4("s1")] == []
    assert hub.call("stats")["events"]["hairpin_notices"] == 2
    # From s1's own overlay address the hub's kernel would also send an ICMP redirect
    # (source and next hop share the subnet): the data plane keeps it off the tunnel.
    res = topo.sh("s1", "ping", "-n", "-c", "1", "-W", "2", lan4("s2"), check=False)
    assert res.returncode == 0 and "Redirect" not in res.stdout, res.stdout
    assert hub.call("stats")["events"]["redirects_suppressed"] >= 1
    # Not a hub: the same traffic pattern never produces hairpin notices on a spoke.
    assert runners["s1"].drain("hairpin") == []


@pytest.mark.parametrize("family", [4, 6])
def test_nhrp_reaches_the_sink_with_its_nbma_source(topo: Topology, start, family: int) -> None:
    runners = start_many(start, {"s1": spec("s1"), "s2": spec("s2")})
    payload = bytes(range(40)).hex()
    dst, src = (nbma4("s2"), nbma4("s1")) if family == 4 else (nbma6("s2"), nbma6("s1"))
    runners["s1"].call("send_nhrp", dst, payload)
    notice = runners["s2"].wait_notice("nhrp_received", timeout=3)
    assert notice == {
        "notice": "nhrp_received",
        "nbma_src": src,
        "data": payload,
        "protected": False,
    }
    assert runners["s1"].call("stats")["events"]["nhrp_out"] == 1
    assert runners["s2"].call("stats")["events"]["nhrp_in"] == 1


def test_nhrp_from_the_protected_interface_is_marked_protected(topo: Topology, start) -> None:
    # Stand-in for ipsec0: name the WAN interface as the one protected GRE arrives on.
    runners = start_many(start, {"s1": spec("s1"), "s2": spec("s2", protected_ifname="wan0")})
    for dst in (nbma4("s2"), nbma6("s2")):
        runners["s1"].call("send_nhrp", dst, "abcd")
        notice = runners["s2"].wait_notice("nhrp_received", timeout=3)
        assert notice["protected"] is True and notice["data"] == "abcd"


def test_traffic_notices_report_per_peer_usage(topo: Topology, start) -> None:
    runners = start_many(
        start,
        {
            h: spec(h, mappings=mesh_mappings(h, ("s1", "s2")), traffic_interval=0.3)
            for h in ("s1", "s2")
        },
    )
    s1 = runners["s1"]
    res = topo.sh("s1", "ping", "-n", "-c", "3", "-i", "0.2", overlay4("s2"), check=False)
    assert res.returncode == 0
    seen = 0
    deadline = time.monotonic() + 3
    while seen < 3 and time.monotonic() < deadline:
        notice = s1.wait_notice("traffic", {"peer": nbma4("s2")}, timeout=3)
        assert notice["bytes"] == notice["packets"] * 84  # 20 IP + 8 ICMP + 56 data
        seen += notice["packets"]
    assert seen == 3 == peer_stats(s1, nbma4("s2"))["tx_packets"]
    # Idle: no more reports for that peer.
    time.sleep(0.8)
    assert s1.drain("traffic") == []
