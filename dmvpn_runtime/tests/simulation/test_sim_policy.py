"""Seed Req. 4: spoke-to-spoke shortcuts only when the hub's and both spokes' policies allow."""

from __future__ import annotations

from ipaddress import ip_network

from nhrpsim import Net, star

from dmvpn_runtime.nhrp.engine import Policy, PolicyRule
from dmvpn_runtime.nhrp.wire import CieCode, PacketType

GROUPS = {"branch1": ["10.1.0.0/24", "172.16.0.11/32"], "branch2": ["10.2.0.0/24"]}
DENY_1_2 = Policy(groups=GROUPS, rules=(PolicyRule("deny", ("branch1",), ("branch2",)),))


def test_hub_policy_deny_sends_no_redirect_and_answers_code_4(net: Net) -> None:
    (hub,), (s1, s2, _s3) = star(net, spokes=3, hub_kw={"policy": DENY_1_2})
    net.run(until=2)
    net.flow("s1", "10.1.0.5", "10.2.0.7", every=1.0, until=30)
    net.flow("s1", "10.1.0.5", "10.3.0.7", every=1.0, until=30)
    net.run(until=31)
    tis = [w for w in net.wire if w.packet.type == PacketType.TRAFFIC_INDICATION]
    assert tis and all(w.packet.payload[16:20] != bytes([10, 2, 0, 7]) for w in tis)
    assert ip_network("10.2.0.0/24") not in s1.eroutes  # denied pair stays on the hub
    assert ip_network("10.3.0.0/24") in s1.eroutes  # other pairs are unaffected
    assert hub.events_of("policy_deny")
    # Both directions are checked: s2 -> s1 gets no shortcut either.
    net.flow("s2", "10.2.0.5", "10.1.0.7", every=1.0, until=45)
    net.run(until=46)
    assert ip_network("10.1.0.0/24") not in s2.eroutes
    # A resolution asked anyway (Phase 2 style) is answered with code 4.
    net.apply(s1, s1.engine.no_mapping(net.now, s2.overlay()))
    net.run(until=48)
    nak = [
        w
        for w in net.wire
        if w.packet.type == PacketType.RESOLUTION_REPLY
        and w.receiver == "s1"
        and w.packet.dst_proto == s2.overlay()
    ]
    assert nak[0].packet.cies[0].code == CieCode.ADMINISTRATIVELY_PROHIBITED
    assert s2.overlay() not in s1.mappings


def test_egress_spoke_policy_refuses_to_answer(net: Net) -> None:
    deny_from_1 = Policy(groups=GROUPS, rules=(PolicyRule("deny", ("branch1",), ("branch2",)),))
    (_hub,), (s1, s2) = star(net, spokes=2, start=False)
    net.reconfigure("s2", s2.config.__class__(**{**s2.config.__dict__, "policy": deny_from_1}))
    net.start()
    net.run(until=2)
    net.flow("s1", "10.1.0.5", "10.2.0.7", every=1.0, until=20)
    net.run(until=21)
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert s2.events_of("policy_deny")[0]["role"] == "egress"
    replies = [
        w for w in net.wire if w.packet.type == PacketType.RESOLUTION_REPLY and w.sender == "s2"
    ]
    assert replies and all(
        w.packet.cies[0].code == CieCode.ADMINISTRATIVELY_PROHIBITED for w in replies
    )
    # s1 cached the refusal and does not ask again for every redirect.
    asked = [
        w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert len(asked) <= 2


def test_ingress_spoke_policy_does_not_resolve_or_install(net: Net) -> None:
    deny = Policy(groups=GROUPS, rules=(PolicyRule("deny", ("branch1",), ("branch2",)),))
    (_hub,), (s1, _s2) = star(net, spokes=2, start=False)
    net.reconfigure("s1", s1.config.__class__(**{**s1.config.__dict__, "policy": deny}))
    net.start()
    net.run(until=2)
    net.flow("s1", "10.1.0.5", "10.2.0.7", every=1.0, until=20)
    net.run(until=21)
    assert not [
        w for w in net.wire if w.sender == "s1" and w.packet.type == PacketType.RESOLUTION_REQUEST
    ]
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert s1.events_of("policy_deny")


def test_shortcut_prefix_is_narrowed_to_what_policy_allows(net: Net) -> None:
    # s2 protects 10.2.0.0/24 but 10.2.0.128/25 must stay on the hub path for s1.
    narrow = Policy(rules=(PolicyRule("deny", ("10.1.0.0/24",), ("10.2.0.128/25",)),))
    (_hub,), (s1, s2) = star(net, spokes=2, start=False)
    net.reconfigure("s1", s1.config.__class__(**{**s1.config.__dict__, "policy": narrow}))
    net.start()
    net.run(until=2)
    net.ping("s1", "10.1.0.5", "10.2.0.7")
    net.run(until=5)
    assert s1.eroutes.get(ip_network("10.2.0.0/25")) == s2.overlay()
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert net.ping("s1", "10.1.0.5", "10.2.0.200").path[1] == "hub1"


def test_policy_change_removes_shortcuts_no_longer_allowed(net: Net) -> None:
    (_hub,), (s1, _s2, _s3) = star(net, spokes=3)
    net.run(until=2)
    for dst in ("10.2.0.7", "10.3.0.7"):
        net.ping("s1", "10.1.0.5", dst)
    net.run(until=6)
    assert {ip_network("10.2.0.0/24"), ip_network("10.3.0.0/24")} <= set(s1.eroutes)
    net.reconfigure("s1", s1.config.__class__(**{**s1.config.__dict__, "policy": DENY_1_2}))
    assert ip_network("10.2.0.0/24") not in s1.eroutes
    assert ip_network("10.3.0.0/24") in s1.eroutes  # still allowed: kept
    assert s1.events_of("shortcut_down")[0]["reason"] == "policy"
