"""Proof 5: dual hub. hub1's daemon is killed; the spokes mark it down after 3 missed
registration replies and carry on through hub2 (hub-and-spoke traffic and new shortcuts);
shortcuts between spokes do not depend on a hub and keep carrying traffic; hub1 comes
back and the spokes register with it again (and prefer it again: priority 0).
"""

from __future__ import annotations

import signal
import time

from dmvpn_runtime.lab import Lab
from dmvpn_runtime.nhrp.engine.timers import (
    NHS_DOWN_AFTER_MISSES,
    REFRESH_DIVISOR,
    REGISTRATION_RETRY_FIRST,
    REGISTRATION_RETRY_MAX,
)

from .conftest import ctl, lan_address, ping, registered_clients, wait_registered, wait_until
from .test_phase3 import (
    HUBS,
    ROUND,
    SLACK,
    BackgroundPing,
    counters,
    engine_count,
    events,
    hub_counters,
    kernel_route,
    lan_prefix,
    rose,
    wait_shortcut,
)

HOLDTIME = 9  # the spokes refresh their registrations every HOLDTIME / REFRESH_DIVISOR s
SPOKES = ("spoke1", "spoke2", "spoke3")
SPEC = {
    "tunnel": {"holdtime": HOLDTIME},
    "hubs": [{"name": "hub1"}, {"name": "hub2"}],  # every spoke: hub1 priority 0, hub2 1
    "spokes": [{"name": s, "lan": f"10.{i}.0.0/24"} for i, s in enumerate(SPOKES, 1)],
}
# A registration request waits REGISTRATION_RETRY_FIRST, then twice as long per miss.
MISSES_TIME = sum(REGISTRATION_RETRY_FIRST * 2**i for i in range(NHS_DOWN_AFTER_MISSES))
# After the kill, the next refresh is due within HOLDTIME / REFRESH_DIVISOR; it and its
# retries go unanswered; the third miss marks hub1 down.
DOWN_WITHIN = HOLDTIME / REFRESH_DIVISOR + MISSES_TIME


def retry_interval(misses: int) -> float:
    """The wait before the next registration retry after ``misses`` misses (nhc.py)."""
    interval = REGISTRATION_RETRY_FIRST * 2**misses
    return interval if interval <= REGISTRATION_RETRY_MAX else REGISTRATION_RETRY_FIRST


def nhs(lab: Lab, spoke: str, hub: str) -> dict:
    proto = lab.node(hub).overlay[0]
    return next(v for v in ctl(lab, spoke, "show", "nhs") if v["proto"] == proto)


def test_hub1_dies_spokes_fail_over_to_hub2_and_come_back(lab_factory) -> None:
    lab = lab_factory(SPEC)
    wait_registered(lab, list(SPOKES), list(HUBS))
    hub1, hub2 = lab.node("hub1"), lab.node("hub2")
    for spoke in SPOKES:
        assert nhs(lab, spoke, "hub1")["active"] and not nhs(lab, spoke, "hub2")["active"]

    # A shortcut between spoke1 and spoke2, busy for the whole test.
    busy = BackgroundPing(lab, "spoke1-lan", lan_address(lab, "spoke2"), interval=0.2, limit=90)
    try:
        wait_shortcut(lab, "spoke1", "spoke2")
        wait_shortcut(lab, "spoke2", "spoke1")

        killed = time.time()
        assert hub1.signal_daemon(signal.SIGKILL)
        assert wait_until(lambda: hub1.daemon_pid is None, 5)

        # Every spoke marks hub1 down after NHS_DOWN_AFTER_MISSES missed replies, not
        # before, and makes hub2 its active NHS.
        def all_down() -> bool:
            return all(nhs(lab, s, "hub1")["state"] == "down" for s in SPOKES)

        assert wait_until(all_down, DOWN_WITHIN + SLACK - (time.time() - killed)), {
            s: ctl(lab, s, "show", "nhs") for s in SPOKES
        }
        for spoke in SPOKES:
            one, two = nhs(lab, spoke, "hub1"), nhs(lab, spoke, "hub2")
            assert one["misses"] >= NHS_DOWN_AFTER_MISSES and not one["active"], one
            assert two["state"] == "registered" and two["active"], two
            down = [e for e in events(lab, spoke, "nhs_down") if e["nhs"] == hub1.overlay[0]]
            assert down and down[0]["ts"] - killed >= MISSES_TIME - 0.5, (spoke, down, killed)

        # Hub-and-spoke traffic goes through hub2, and a new shortcut is built through it.
        pair = ("spoke1", "spoke3")
        route = kernel_route(lab, "spoke1", lan_prefix(lab, "spoke3"))
        assert f"via {hub2.overlay[0]} dev" in route, route
        before = hub_counters(lab, pair, ("hub2",))
        ti_before = engine_count(lab, "spoke1", "rx", "traffic_indication")
        assert ping(lab, "spoke1-lan", lan_address(lab, "spoke3"), count=3) == 3
        after = hub_counters(lab, pair, ("hub2",))
        for spoke in pair:
            assert rose(before[("hub2", spoke)], after[("hub2", spoke)]), (spoke, before, after)
        assert wait_until(
            lambda: engine_count(lab, "spoke1", "rx", "traffic_indication") > ti_before, ROUND
        )
        wait_shortcut(lab, "spoke1", "spoke3")
        wait_shortcut(lab, "spoke3", "spoke1")
        # (spoke3's counters: spoke1 also carries the busy flow to spoke2.)
        before = hub_counters(lab, ("spoke3",), ("hub2",))
        assert ping(lab, "spoke1-lan", lan_address(lab, "spoke3"), count=10, interval=0.05) == 10
        assert hub_counters(lab, ("spoke3",), ("hub2",)) == before

        # hub1 comes back: each spoke's next retry (its interval grows with its misses)
        # registers again, and hub1, priority 0, is active again.
        misses = {s: nhs(lab, s, "hub1")["misses"] for s in SPOKES}
        hub1.start_daemon()
        back_within = max(retry_interval(m + 1) for m in misses.values()) + SLACK

        def all_back() -> bool:
            if set(registered_clients(lab, "hub1")) < {lab.node(s).overlay[0] for s in SPOKES}:
                return False
            return all(
                nhs(lab, s, "hub1")["state"] == "registered" and nhs(lab, s, "hub1")["active"]
                for s in SPOKES
            )

        assert wait_until(all_back, back_within), (
            misses,
            sorted(registered_clients(lab, "hub1")),
            {s: ctl(lab, s, "show", "nhs") for s in SPOKES},
        )
    finally:
        log = busy.stop()

    # Shortcuts between spokes survived the hub's death and return, and carried their
    # traffic straight all along: not one packet lost (one may be in flight at the end),
    # their routes still point at the other spoke, the hubs see none of their packets.
    problems = []
    if log.sent - log.received > 1:
        problems.append(f"busy shortcut lost {log.sent - log.received} of {log.sent} packets")
    for node, peer in (("spoke1", "spoke2"), ("spoke2", "spoke1")):
        route = kernel_route(lab, node, lan_prefix(lab, peer))
        if f"via {lab.node(peer).overlay[0]} dev" not in route:
            problems.append(f"{node}: route to {peer}'s LAN is {route!r}, not the shortcut")
    before = hub_counters(lab, SPOKES)
    direct = counters(lab, "spoke1", set(lab.node("spoke2").nbma))
    if ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=10, interval=0.05) != 10:
        problems.append("spoke1-lan -> spoke2-lan: replies missing after hub1 came back")
    if hub_counters(lab, SPOKES) != before:
        problems.append(
            f"a hub carried spoke1<->spoke2 traffic: {before} -> {hub_counters(lab, SPOKES)}"
        )
    if sum(counters(lab, "spoke1", set(lab.node("spoke2").nbma))) - sum(direct) < 20:
        problems.append("spoke1<->spoke2 traffic did not go direct")
    # The shortcut to spoke3 went idle and may have expired: spoke3-lan is reachable still.
    if ping(lab, "spoke1-lan", lan_address(lab, "spoke3"), count=3) != 3:
        problems.append("spoke1-lan -> spoke3-lan: replies missing after hub1 came back")
    assert not problems, "\n".join(problems) + "\n" + log.text[-400:]
