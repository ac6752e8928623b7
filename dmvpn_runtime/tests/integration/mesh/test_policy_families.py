"""Proof 8 and 9: policy deny between spoke groups; IPv6 overlay on IPv4 NBMA and back."""

from __future__ import annotations

import time

from dmvpn_runtime.lab import Lab

from .conftest import ctl, lan_address, peer_packets, ping, wait_registered, wait_until

THREE_SPOKES = {
    "hubs": [{"name": "hub1"}],
    "spokes": [
        {
            "name": f"spoke{i}",
            "overlay": [f"10.255.255.1{i}", f"fd00:255::1{i}"],
            "lan": [f"10.{i}.0.0/24", f"fd00:{i}::/64"],
        }
        for i in (1, 2, 3)
    ],
}
# A site is its LAN and its tunnel address: a spoke answering a resolution sees the
# requester by its overlay address only (docs/config.md, policy).
GROUPS = [
    {"name": "sales", "prefixes": ["10.1.0.0/24", "10.255.255.11/32"]},
    {"name": "finance", "prefixes": ["10.2.0.0/24", "10.255.255.12/32"]},
]


def shortcut_prefixes(lab: Lab, node: str) -> set[str]:
    return {s["prefix"] for s in ctl(lab, node, "show", "shortcuts") if s["route"]}


def traffic_indications(lab: Lab, node: str) -> int:
    return ctl(lab, node, "show", "stats")["engine"]["rx"].get("traffic_indication", 0)


def test_hub_policy_denies_shortcuts_between_groups(lab_factory) -> None:
    spec = dict(THREE_SPOKES)
    spec["hubs"] = [
        {
            "name": "hub1",
            "config": {
                "policy": {
                    "groups": GROUPS,
                    "rules": [{"from": "sales", "to": "finance", "action": "deny"}],
                }
            },
        }
    ]
    lab = lab_factory(spec)
    wait_registered(lab, ["spoke1", "spoke2", "spoke3"], ["hub1"])
    # Denied pair: traffic still flows, through the hub, and no shortcut forms.
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=10, interval=0.1) == 10
    time.sleep(1.0)
    assert traffic_indications(lab, "spoke1") == 0
    assert shortcut_prefixes(lab, "spoke1") == set()
    assert shortcut_prefixes(lab, "spoke2") == set()
    hub_before = peer_packets(lab, "hub1", "spoke1")
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=5, interval=0.1) == 5
    assert peer_packets(lab, "hub1", "spoke1") - hub_before >= 10  # 5 there, 5 back
    # A pair the policy allows still gets its shortcut.
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke3"), count=5, interval=0.1) == 5
    assert wait_until(lambda: "10.3.0.0/24" in shortcut_prefixes(lab, "spoke1"), 5)


def test_spoke_policy_refuses_to_answer(lab_factory) -> None:
    spec = dict(THREE_SPOKES)
    spec["spokes"] = [dict(s) for s in THREE_SPOKES["spokes"]]
    spec["spokes"][1]["config"] = {  # spoke2 will not build shortcuts with sales
        "policy": {
            "groups": GROUPS,
            "rules": [{"from": "finance", "to": "sales", "action": "deny"}],
        }
    }
    lab = lab_factory(spec)
    wait_registered(lab, ["spoke1", "spoke2", "spoke3"], ["hub1"])
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=10, interval=0.1) == 10
    # The hub redirected (its policy allows), spoke1 asked, spoke2 said no (code 4).
    assert wait_until(lambda: traffic_indications(lab, "spoke1") >= 1, 5)
    time.sleep(1.5)
    assert shortcut_prefixes(lab, "spoke1") == set()
    assert shortcut_prefixes(lab, "spoke2") == set()
    counters = ctl(lab, "spoke2", "show", "stats")["engine"]["counters"]
    assert any("policy" in name and value for name, value in counters.items()), counters


def test_ipv6_overlay_over_ipv4_nbma(mesh: Lab) -> None:
    dst = next(a for a in mesh.node("spoke2-lan").addresses if ":" in a)
    assert ping(mesh, "spoke1-lan", dst, count=10, interval=0.1) == 10
    assert wait_until(lambda: "fd00:2::/64" in shortcut_prefixes(mesh, "spoke1"), 5)
    shortcut = next(
        s for s in ctl(mesh, "spoke1", "show", "shortcuts") if s["prefix"] == "fd00:2::/64"
    )
    assert shortcut["nbma"] == "198.51.100.12"  # IPv4 transport carries the IPv6 overlay


def test_ipv4_overlay_over_ipv6_nbma(lab_factory) -> None:
    spec = dict(THREE_SPOKES)
    spec["tunnel"] = {"transport": "ipv6"}
    lab = lab_factory(spec)
    wait_registered(lab, ["spoke1", "spoke2"], ["hub1"])
    nhs = ctl(lab, "spoke1", "show", "nhs")
    assert all(":" in v["nbma"] for v in nhs)
    assert ping(lab, "spoke1-lan", lan_address(lab, "spoke2"), count=10, interval=0.1) == 10
    assert wait_until(lambda: "10.2.0.0/24" in shortcut_prefixes(lab, "spoke1"), 5)
    shortcut = next(
        s for s in ctl(lab, "spoke1", "show", "shortcuts") if s["prefix"] == "10.2.0.0/24"
    )
    assert shortcut["nbma"] in lab.node("spoke2").nbma and ":" in shortcut["nbma"]
