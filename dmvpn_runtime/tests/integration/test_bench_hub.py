"""Smoke test of the hub benchmark tool: 50 emulated spokes register with a real dmvpnd.

Not a timing assertion: the tool must build its namespaces, register every spoke (seen
by the generator and by the hub's ``show_nhrp``), report the figures, and leave nothing
behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from dmvpn_runtime.bench import hub

pytestmark = pytest.mark.integration


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets)"
    if shutil.which("ip") is None:
        return "needs `ip`"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def _our_namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    return [
        line.split()[0]
        for line in out.splitlines()
        if line.startswith(f"{hub.NS_PREFIX}{os.getpid()}-")
    ]


def test_fifty_spokes_register(capsys: pytest.CaptureFixture[str]) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    rc = hub.main(["--spokes", "50", "--timeout", "60", "--json"])
    out = capsys.readouterr().out
    result = json.loads(out)
    assert rc == 0, out
    assert result["spokes"] == 50
    assert result["registered"] == 50
    assert result["hub_registered"] == 50
    assert result["replies_ok"] >= 50
    assert result["seconds_to_all_registered"] is not None
    assert result["hub_cpu_s"] >= 0
    assert result["hub_rss_mb"] > 0
    for key in ("retransmits", "method", "unmatched", "wrong_address"):
        assert key in result
    assert result["unmatched"] == result["wrong_address"] == 0
    assert _our_namespaces() == []


def test_request_is_what_a_spoke_sends() -> None:
    from dmvpn_runtime.nhrp.wire import (
        ForwardTransitNhs,
        NatAddress,
        PacketType,
        ResponderAddress,
        ReverseTransitNhs,
        decode,
    )

    pkt = decode(hub.registration_request(3, 77))
    assert pkt.type is PacketType.REGISTRATION_REQUEST
    assert pkt.hop_count == 1
    assert pkt.flags == 0x8002  # unique + NAT-capable
    assert pkt.request_id == 77
    assert pkt.src_nbma == hub.spoke_nbma(3)
    assert pkt.src_proto == hub.spoke_overlay(3)
    assert pkt.dst_proto == hub.HUB_OVERLAY
    (cie,) = pkt.cies
    assert (cie.prefix_length, cie.holding_time) == (255, hub.HOLDTIME)
    assert [type(e) for e in pkt.extensions[:4]] == [
        ResponderAddress,
        ForwardTransitNhs,
        ReverseTransitNhs,
        NatAddress,
    ]
    nat = pkt.find(NatAddress)
    assert nat is not None
    assert (nat.cies[0].client_nbma, nat.cies[0].client_proto) == (hub.HUB_NBMA, hub.HUB_OVERLAY)
    frame = hub.ip_gre_packet(hub.spoke_nbma(3), hub.HUB_NBMA, b"x")
    assert frame[9] == 47 and frame[12:16] == hub.spoke_nbma(3).packed
    assert frame[20:28] == bytes.fromhex("20002001") + (42).to_bytes(4, "big")
