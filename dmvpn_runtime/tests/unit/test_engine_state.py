"""Config validation, NAT helpers and the read-only state the control socket serves."""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_interface

import pytest
from enginekit import HUB_NBMA, SPOKE_NBMA, feed, hub_config, registration, spoke_config, started

from dmvpn_runtime.nhrp.engine import EngineConfig, NhsConfig, Role, nat


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"addresses": ()}, "at least one overlay"),
        ({"auth_secret": b"123456789"}, "1 to 8 octets"),
        ({"holdtime": 0}, "holdtime"),
        ({"nhs": ()}, "needs at least one NHS"),
        ({"nhs": (NhsConfig(ip_address("fd00::1"), HUB_NBMA),)}, "no overlay address"),
        ({"nhs": (NhsConfig(ip_address("172.16.0.1"), ip_address("2001:db8::1")),)}, "NBMA family"),
        (
            {"addresses": (ip_interface("172.16.0.2/24"), ip_interface("172.16.0.3/24"))},
            "one overlay address per address family",
        ),
    ],
)
def test_config_is_validated(kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        spoke_config(**kw)


def test_nhs_needs_exactly_one_of_nbma_and_name() -> None:
    with pytest.raises(ValueError):
        NhsConfig(ip_address("172.16.0.1"))
    with pytest.raises(ValueError):
        NhsConfig(ip_address("172.16.0.1"), HUB_NBMA, "hub.example.net")


def test_string_secret_and_roles() -> None:
    config = spoke_config(auth_secret="abc")
    assert config.auth_secret == b"abc" and config.is_nhc and not config.is_nhs
    both = EngineConfig(HUB_NBMA, (ip_interface("172.16.0.1/24"),), role="both")
    assert both.role is Role.BOTH and both.is_nhs and both.is_nhc


def test_nat_reachable_address_rules() -> None:
    private, public, other = (
        ip_address(a) for a in ("192.168.1.2", "198.51.100.9", "198.51.100.7")
    )
    assert nat.reachable(private, public, other, None) == public  # post-NAT wins
    assert nat.reachable(private, public, other, public) == private  # behind our own NAT
    assert nat.reachable(private, None, other, None) == private
    assert nat.reachable(None, None, other, None) == other


def test_state_accessors_are_json_ready() -> None:
    hub = started(hub_config())
    feed(hub, 1.0, SPOKE_NBMA, registration())
    spoke = started(spoke_config())
    for view in (*hub.cache_entries(), *spoke.nhs_states(), *hub.peers()):
        json.dumps(view.as_dict())
    (entry,) = hub.cache_entries()
    assert entry.as_dict()["prefixes"] == ["10.1.0.0/24"]
    (nhs,) = spoke.nhs_states()
    assert (nhs.state, nhs.active, nhs.priority) == ("registering", True, 0)
    stats = hub.stats()
    assert stats["rx"] == {"registration_request": 1}
    assert stats["tx"] == {"registration_reply": 1}
    assert stats["cache_entries"] == {"registered": 1}
    json.dumps(stats)
