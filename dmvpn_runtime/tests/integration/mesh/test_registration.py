"""Proof 1, 7, 13: spokes register, hubs list them, dmvpnctl shows and clears."""

from __future__ import annotations

import json

from dmvpn_runtime.lab import Lab

from .conftest import ctl, nhs_states, registered_clients, wait_registered


def test_hub_and_spokes_register(mesh: Lab) -> None:
    spokes = {mesh.node(s).overlay[0]: s for s in ("spoke1", "spoke2", "spoke3")}
    for hub in ("hub1", "hub2"):
        assert set(spokes) <= registered_clients(mesh, hub)
    for spoke in spokes.values():
        states = nhs_states(mesh, spoke)
        assert states == {  # one NHS entry per hub and overlay family
            "10.255.255.1": "registered",
            "10.255.255.2": "registered",
            "fd00:255::1": "registered",
            "fd00:255::2": "registered",
        }
    # The hub registered each spoke's LAN prefix with it.
    entries = {e["proto"]: e for e in ctl(mesh, "hub1", "show", "nhrp")}
    assert entries["10.255.255.11"]["prefixes"] == ["10.1.0.0/24"]
    assert entries["10.255.255.11"]["nbma"] == "198.51.100.11"
    # spoke3 sits behind nat1: the hub binds it to the NAT's outside address and knows
    # the address spoke3 claimed (Cisco NAT extension); spoke3 learned its post-NAT NBMA.
    assert entries["10.255.255.13"]["nbma"] == "203.0.113.129"
    assert entries["10.255.255.13"]["claimed_nbma"] == "172.16.3.11"
    nhs = ctl(mesh, "spoke3", "show", "nhs")
    assert {v["post_nat"] for v in nhs} == {"203.0.113.129"}


def test_dmvpnctl_tables_json_and_exit_codes(mesh: Lab) -> None:
    node = mesh.node("spoke1")
    table = node.exec(["dmvpnctl", "show", "nhs"], check=True).stdout
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["NHS", "NBMA", "NAME"]
    assert len(rows) == 4 and "registered" in rows[0]
    status = ctl(mesh, "spoke1", "show", "status")
    assert status["tunnel"] == "dmvpn0" and status["role"] == "spoke"
    stats = ctl(mesh, "spoke1", "show", "stats")
    assert stats["engine"]["tx"]["registration_request"] >= 2
    assert stats["engine"]["rx"]["registration_reply"] >= 2
    # Explicit socket and tunnel flags work from outside the lab's environment too.
    sock = str(node.path("/run/dmvpn/dmvpn0.sock"))
    proc = node.exec(["dmvpnctl", "show", "nhs", "--json", "-s", "/run/dmvpn/dmvpn0.sock"])
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 4
    assert sock.endswith("/run/dmvpn/dmvpn0.sock")
    # No daemon behind the socket: exit 3 and a one-line reason.
    proc = node.exec(["dmvpnctl", "show", "nhs", "-s", "/run/dmvpn/absent.sock"])
    assert proc.returncode == 3 and "no dmvpnd answers" in proc.stderr
    # A bad address is refused by the daemon: exit 1.
    proc = node.exec(["dmvpnctl", "clear", "nhrp", "not-an-address"])
    assert proc.returncode == 1 and "address" in proc.stderr


def test_clear_nhrp_forgets_one_binding(mesh: Lab) -> None:
    before = registered_clients(mesh, "hub2")
    assert {"10.255.255.11", "10.255.255.12"} <= before
    result = ctl(mesh, "hub2", "clear", "nhrp", "10.255.255.12")
    assert result["cleared"] == 1
    assert registered_clients(mesh, "hub2") == before - {"10.255.255.12"}
    assert "10.255.255.12" in registered_clients(mesh, "hub1")  # only hub2 forgot it
    # spoke2 registers again at its next refresh; a restart makes that immediate.
    mesh.node("spoke2").restart_daemon()
    wait_registered(mesh, ["spoke2"], ["hub1", "hub2"])


def test_hub_found_by_dns_name(lab_factory) -> None:
    lab = lab_factory(
        {
            "tunnel": {"nhs_by": "name"},
            "hubs": [{"name": "hub1"}],
            "spokes": [{"name": "spoke1", "lan": "10.1.0.0/24"}],
        }
    )
    config = lab.node("spoke1").path("/etc/dmvpn/dmvpn0.yaml").read_text()
    assert "name: hub1.dmvpn.lab" in config and "nbma:" not in config.split("nhs:")[1]
    wait_registered(lab, ["spoke1"], ["hub1"])
    for nhs in ctl(lab, "spoke1", "show", "nhs"):
        assert nhs["name"] == "hub1.dmvpn.lab" and nhs["nbma"] == lab.node("hub1").nbma[0]
        assert nhs["state"] == "registered"
