"""Seed Req. 4 policies: groups, both directions, first match, narrowing."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmvpn_runtime.nhrp.engine import Policy, PolicyRule

GROUPS = {"guests": ["10.50.0.0/16"], "finance": ["10.60.0.0/16"]}
GUEST = (ip_network("172.16.0.50/32"), ip_network("10.50.1.0/24"))
FIN = (ip_network("172.16.0.60/32"), ip_network("10.60.1.0/24"))


def test_deny_between_groups_applies_in_both_directions() -> None:
    policy = Policy(groups=GROUPS, rules=(PolicyRule("deny", ("guests",), ("finance",)),))
    assert not policy.allows(GUEST, ip_address("10.60.1.5"))
    assert not policy.allows(FIN, ip_address("10.50.1.5"))
    assert policy.allows(GUEST, ip_address("10.70.1.5"))
    assert not policy.trivial


def test_first_match_wins_and_default_applies() -> None:
    policy = Policy(
        groups=GROUPS,
        rules=(
            PolicyRule("allow", ("guests",), ("10.60.9.0/24",)),
            PolicyRule("deny", ("guests",), ("finance",)),
        ),
        default="deny",
    )
    assert policy.allows(GUEST, ip_address("10.60.9.1"))
    assert not policy.allows(GUEST, ip_address("10.60.1.1"))
    assert not policy.allows(GUEST, ip_address("10.70.1.1"))  # default deny


def test_shortcut_prefix_is_narrowed_around_a_denied_part() -> None:
    policy = Policy(rules=(PolicyRule("deny", ("10.1.0.0/24",), ("10.2.0.128/25",)),))
    side = (ip_network("10.1.0.0/24"),)
    got = policy.shortcut_prefix(side, ip_address("10.2.0.7"), ip_network("10.2.0.0/24"))
    assert got == ip_network("10.2.0.0/25")
    assert policy.shortcut_prefix(side, ip_address("10.2.0.200"), ip_network("10.2.0.0/24")) is None
    other = (ip_network("10.9.0.0/24"),)
    assert policy.shortcut_prefix(other, ip_address("10.2.0.7"), ip_network("10.2.0.0/24")) == (
        ip_network("10.2.0.0/24")
    )


def test_an_unknown_group_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="neither a group nor a prefix"):
        Policy(rules=(PolicyRule("deny", ("nosuch",), ()),))


def test_empty_policy_is_trivial() -> None:
    assert Policy().trivial
    assert Policy().allows(GUEST, ip_address("10.60.1.1"))


addr = st.integers(int(ip_address("10.2.0.0")), int(ip_address("10.2.255.255"))).map(IPv4Address)
rule = st.builds(
    lambda action, a, n: PolicyRule(
        action, ("10.1.0.0/16",), (str(ip_network((a, n), strict=False)),)
    ),
    st.sampled_from(["allow", "deny"]),
    addr,
    st.integers(16, 32),
)


@given(
    st.lists(rule, max_size=5),
    st.sampled_from(["allow", "deny"]),
    addr,
    st.integers(16, 24),
    st.lists(addr, max_size=20),
)
def test_narrowed_prefix_never_holds_a_denied_address(rules, default, target, length, probes):
    policy = Policy(rules=tuple(rules), default=default)
    side = (ip_network("10.1.0.0/24"),)
    prefix = ip_network((target, length), strict=False)
    got = policy.shortcut_prefix(side, target, prefix)
    if got is None:
        return
    assert target in got and got.subnet_of(prefix)
    for probe in [*probes, got.network_address, got.broadcast_address]:
        if probe in got:
            assert policy.allows(side, probe), (got, probe)
