"""Proof 4: roaming. spoke2's NBMA address changes while spoke1-lan talks to spoke2-lan
over a shortcut; spoke2 re-registers from the new address, the hub purges the old binding
from spoke1, spoke1 resolves again and its shortcut follows; no traffic is black-holed
for longer than one resolution round once the network can know of the move.

The roam: spoke2 sits behind nat2 (nftables masquerade, as a home router or a mobile
carrier's NAT), and nat2's outside address changes (a new DHCP lease, a new carrier
address). Nothing on spoke2 changes and its daemon keeps running; the NHS sees a new
post-NAT NBMA on spoke2's next registration.
"""

from __future__ import annotations

import time

from dmvpn_runtime.lab import Lab
from dmvpn_runtime.nhrp.engine.timers import (
    REFRESH_DIVISOR,
    RESOLUTION_RETRY_FIRST,
    RESOLUTION_RETRY_MAX,
)

from .conftest import ctl, lan_address, ping, wait_registered, wait_until
from .test_phase3 import (
    SLACK,
    BackgroundPing,
    counters,
    engine_count,
    events,
    wait_shortcut,
)

HOLDTIME = 9  # spoke2 registers again every HOLDTIME / REFRESH_DIVISOR = 3 s
REDIRECT_INTERVAL = 2.0  # the hub's per-pair Traffic Indication interval (15 s default)
OLD, NEW = "198.51.100.20", "198.51.100.21"  # nat2's outside address before and after
INTERVAL = 0.1  # of the background ping
SPEC = {
    "tunnel": {"holdtime": HOLDTIME},
    "hubs": [{"name": "hub1", "config": {"redirect": {"interval": REDIRECT_INTERVAL}}}],
    "spokes": [
        {"name": "spoke1", "nbma": "198.51.100.11", "lan": "10.1.0.0/24"},
        {"name": "spoke2", "lan": "10.2.0.0/24", "behind": "nat2"},
    ],
    "nats": [{"name": "nat2", "nbma": [OLD], "inside": ["172.16.2.0/24"]}],
}
# One resolution round: a Resolution Request answered before its first retransmission.
RESOLUTION_ROUND = RESOLUTION_RETRY_FIRST
# spoke2 cannot know that its NAT rebound before it next talks to its NHS: its next
# registration comes at most HOLDTIME / REFRESH_DIVISOR after the move. From then on the
# mesh must heal within one resolution round (the hub learns the new address, purges the
# old binding from spoke1, and traffic flows again: via the hub, then over the new
# shortcut). GAP_SLACK covers the ping interval, the daemons' 1 s traffic reports and a
# loaded machine.
GAP_SLACK = 1.0
NOTICE = HOLDTIME / REFRESH_DIVISOR


def renumber_nat(lab: Lab, new: str) -> None:
    """nat2's outside address changes: the old one goes, the new one comes (the
    masquerade follows it; the kernel drops the conntrack entries of the old one)."""
    nat = lab.node("nat2")
    addr = nat.exec(["ip", "-4", "-o", "addr", "show", "dev", "wan0"], check=True).stdout.split()
    plen = addr[addr.index("inet") + 1].split("/")[1]
    default = nat.exec(["ip", "-4", "route", "show", "default"], check=True).stdout.split()
    script = (
        "ip -4 addr flush dev wan0 && "
        f"ip addr add {new}/{plen} dev wan0 && "
        f"ip route replace {' '.join(default)}"
    )
    nat.exec(["sh", "-c", script], check=True)


def test_spoke_behind_a_renumbered_nat_roams_and_the_shortcut_follows(lab_factory) -> None:
    lab = lab_factory(SPEC)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    overlay2 = lab.node("spoke2").overlay[0]
    inside2 = lab.node("spoke2").nbma[0]
    dst = lan_address(lab, "spoke2")

    pinger = BackgroundPing(lab, "spoke1-lan", dst, interval=INTERVAL, limit=60)
    try:
        sc = wait_shortcut(lab, "spoke1", "spoke2")
        assert sc["nbma"] == OLD
        wait_shortcut(lab, "spoke2", "spoke1")
        time.sleep(1.0)  # direct traffic for a while
        purges_before = engine_count(lab, "spoke1", "rx", "purge_request")
        resolutions_before = engine_count(lab, "spoke1", "tx", "resolution_request")

        moved = time.time()
        renumber_nat(lab, NEW)

        # spoke2 re-registers: the hub binds it to the new post-NAT address, keeps the
        # claimed one, and spoke2 learns its new post-NAT address.
        def rebound() -> dict | None:
            for entry in ctl(lab, "hub1", "show", "nhrp"):
                if entry["proto"] == overlay2 and entry["type"] == "registered":
                    return entry if entry["nbma"] == NEW else None
            return None  # purged, not registered again yet

        entry = wait_until(rebound, HOLDTIME + SLACK)
        assert entry, ctl(lab, "hub1", "show", "nhrp")
        assert entry["claimed_nbma"] == inside2, entry
        assert wait_until(
            lambda: {v["post_nat"] for v in ctl(lab, "spoke2", "show", "nhs")} == {NEW},
            SLACK,
        ), ctl(lab, "spoke2", "show", "nhs")

        # spoke1 was told (a purge from the hub), resolved again, and its shortcut now
        # goes to the new address.
        sc = wait_shortcut(
            lab,
            "spoke1",
            "spoke2",
            timeout=REDIRECT_INTERVAL + RESOLUTION_RETRY_MAX + SLACK,
            nbma={NEW},
        )
        assert engine_count(lab, "spoke1", "rx", "purge_request") > purges_before
        assert engine_count(lab, "spoke1", "tx", "resolution_request") > resolutions_before
        time.sleep(1.0)  # traffic on the new shortcut
    finally:
        log = pinger.stop()
    end = time.time()

    assert log.replies, log.text[-800:]
    heard = min(
        (e["ts"] for e in events(lab, "hub1") if NEW in (e.get("nbma"), e.get("src"))), default=None
    )
    assert heard is not None and heard > moved, "the hub never heard from the new address"
    gap = log.longest_gap(moved, end)
    after = min((t for t in log.replies if t > heard), default=end) - heard
    # Not black-holed longer than spoke2 needed to notice plus one resolution round...
    assert gap <= NOTICE + RESOLUTION_ROUND + GAP_SLACK, (
        f"traffic to spoke2-lan black-holed for {gap:.1f} s after the move (bound "
        f"{NOTICE + RESOLUTION_ROUND + GAP_SLACK:.1f} s); {log.sent} sent, {log.received} "
        f"received; the hub heard from {NEW} {heard - moved:.1f} s after the move, the "
        f"next reply came {after:.1f} s after that"
    )
    # ...and once the hub heard from the new address, within one resolution round.
    assert after <= RESOLUTION_ROUND + GAP_SLACK, (
        f"the hub heard from {NEW} {heard - moved:.1f} s after the move, but the next reply "
        f"came only {after:.1f} s later"
    )

    # Direct again: the hub carries none of it, spoke1 talks to the new address.
    def at_hub() -> tuple[tuple[int, int], tuple[int, int]]:
        spoke1 = set(lab.node("spoke1").nbma)
        return counters(lab, "hub1", spoke1), counters(lab, "hub1", {OLD, NEW})

    hub_before = at_hub()
    direct_before = counters(lab, "spoke1", {NEW})
    n = 20
    assert ping(lab, "spoke1-lan", dst, count=n, interval=0.05) == n
    assert at_hub() == hub_before
    rx1, tx1 = counters(lab, "spoke1", {NEW})
    assert rx1 - direct_before[0] >= n and tx1 - direct_before[1] >= n
