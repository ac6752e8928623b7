"""The lab builder: real namespaces, mounts, links, NAT and processes on this machine."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dmvpn_runtime.lab import (
    Lab,
    LabExistsError,
    SpecError,
    default_spec_text,
    leftovers,
    load_spec,
    render_node_config,
    teardown,
)
from dmvpn_runtime.lab.layout import DEFAULT_STATE_ROOT
from dmvpn_runtime.lab.system import pid_alive

pytestmark = pytest.mark.integration

DMVPN_LAB = [sys.executable, "-m", "dmvpn_runtime.cli.lab"]
DEFAULT_NODES = {
    "hub1": "hub",
    "hub2": "hub",
    "spoke1": "spoke",
    "spoke2": "spoke",
    "spoke3": "spoke",
    "nat1": "nat",
    "spoke1-lan": "lan-host",
    "spoke2-lan": "lan-host",
    "spoke3-lan": "lan-host",
}

# A small lab: one hub, one spoke behind a NAT with a LAN; daemons are plain sleeps.
SMALL = {
    "daemon": ["sleep", "300"],
    "hubs": [{"name": "hub1", "nbma": "203.0.113.1"}],
    "spokes": [{"name": "spoke1", "behind": "nat1", "lan": "10.1.0.0/24"}],
    "nats": [{"name": "nat1", "nbma": "203.0.113.129", "inside": "172.16.1.0/24"}],
}


def machine_network() -> set[str]:
    """Addresses and routes of the machine's own network namespace."""
    out = set()
    for argv in (["ip", "-br", "addr"], ["ip", "route"], ["ip", "-6", "route"]):
        out |= set(
            subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()
        )
    return out


MACHINE_BEFORE_LAB: set[str] = set()


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:
    """The shipped default lab (`dmvpn-lab up` without a spec), without daemons."""
    MACHINE_BEFORE_LAB.update(machine_network())
    name = module_lab_factory.reserve_name()
    cli("up", "--name", name, "--no-daemons")
    return Lab.attach(name)


def ping(lab: Lab, node: str, address: str) -> bool:
    return lab.node(node).exec(["ping", "-c1", "-W1", "-n", address], timeout=10).returncode == 0


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*DMVPN_LAB, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dmvpn-lab {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")
    return proc


def mountinfo_mentions(text: str) -> list[str]:
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if text in line]


# ----------------------------------------------------------------------------- the default lab


def test_default_spec_comes_up(lab: Lab) -> None:
    status = lab.status()
    assert status["phase"] == "up"
    assert {n["name"]: n["role"] for n in status["nodes"]} == DEFAULT_NODES
    assert status["wan"]["present"]
    for node in status["nodes"]:
        assert node["present"]
        assert node["netns"] == f"dl-{lab.name}-{node['name']}"
        assert os.path.exists(f"/run/netns/{node['netns']}")
        assert Path(node["mount_ns"]).is_file()
    assert lab.node("hub1").daemon["state"] == "disabled"
    assert lab.node("nat1").daemon["state"] == "none"


def test_nothing_in_the_machines_namespace(lab: Lab) -> None:
    """The machine's own addresses and routes are as before the lab; no lab link is there."""
    assert machine_network() == MACHINE_BEFORE_LAB
    links = subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=False
    ).stdout
    names = {line.split()[0].split("@")[0] for line in links.splitlines()}
    assert not names & {"br-wan", "wan0", "lan0", "inside0", "w-hub1", "n-spoke3"}


def test_private_etc_dmvpn(lab: Lab) -> None:
    marker = f"written-in-hub1-{os.getpid()}"
    lab.node("hub1").exec(f"echo {marker} > /etc/dmvpn/marker", check=True)
    assert lab.node("hub1").exec("cat /etc/dmvpn/marker").stdout.strip() == marker
    assert lab.node("hub1").path("/etc/dmvpn/marker").read_text().strip() == marker
    assert lab.node("spoke1").exec("test -e /etc/dmvpn/marker").returncode == 1
    assert not Path("/etc/dmvpn/marker").exists()  # the machine's own view stays empty
    for path in ("/run/dmvpn", "/var/lib/dmvpn", "/etc/swanctl"):
        assert lab.node("spoke1").exec(["findmnt", "-n", path]).returncode == 0, path
    # seeded from the machine's directory
    assert lab.node("spoke1").exec("test -f /etc/swanctl/swanctl.conf").returncode == 0


def test_sys_shows_only_the_nodes_interfaces(lab: Lab) -> None:
    def interfaces(node: str) -> set[str]:
        return set(lab.node(node).exec("ls /sys/class/net", check=True).stdout.split())

    assert interfaces("hub1") == {"lo", "wan0"}
    assert interfaces("spoke1") == {"lo", "wan0", "lan0"}
    assert interfaces("spoke1-lan") == {"lo", "lan0"}
    assert interfaces("nat1") == {"lo", "wan0", "inside0", "n-spoke3"}


def test_nodes_hold_no_namespace_handles(lab: Lab) -> None:
    """A node's mount namespace keeps no copy of other namespaces' nsfs mounts."""
    mountinfo = lab.node("spoke2").exec("cat /proc/self/mountinfo", check=True).stdout
    assert " - nsfs " not in mountinfo


def test_nbma_reachability(lab: Lab) -> None:
    assert ping(lab, "hub1", "198.51.100.11")
    assert ping(lab, "spoke1", "203.0.113.2")
    assert ping(lab, "spoke2", "2001:db8:0:1::1")  # IPv6 NBMA
    assert ping(lab, "hub2", "2001:db8:0:2::11")
    assert ping(lab, "spoke3", "203.0.113.1")  # from behind the NAT
    assert ping(lab, "spoke3", "198.51.100.12")
    assert not ping(lab, "hub1", "172.16.3.11")  # the NATed spoke's private address
    assert not ping(lab, "spoke1", "10.2.0.2")  # LANs are only reachable over the overlay


ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(100)
    s.sendto(addr[0].encode(), addr)
"""
ECHO_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", (sys.argv[1], 40000))
print(s.recvfrom(100)[0].decode())
"""


def test_nat_masquerade(lab: Lab) -> None:
    server = lab.node("hub1").popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"

        def source_seen_by_hub(node: str) -> str:
            out = lab.node(node).exec(
                [sys.executable, "-c", ECHO_CLIENT, "203.0.113.1"], check=True
            )
            return out.stdout.strip()

        assert source_seen_by_hub("spoke3") == "203.0.113.129"  # nat1's outside address
        assert source_seen_by_hub("spoke1") == "198.51.100.11"  # not NATed
    finally:
        server.kill()
        server.wait()
    rules = lab.node("nat1").exec(["nft", "list", "ruleset"], check=True).stdout
    assert "masquerade" in rules


def test_hub_names_resolve_through_the_hosts_file(lab: Lab) -> None:
    out = lab.node("spoke1").exec(["getent", "ahostsv4", "hub1.dmvpn.lab"], check=True).stdout
    assert out.split()[0] == "203.0.113.1"
    out = lab.node("spoke3").exec(["getent", "hosts", "hub2.dmvpn.lab"], check=True).stdout
    assert out.split()[0] in lab.node("hub2").nbma
    hosts = Path(f"/etc/netns/dl-{lab.name}-spoke1/hosts").read_text()
    assert "hub1.dmvpn.lab" in hosts
    assert "dmvpn.lab" not in Path("/etc/hosts").read_text()


def test_lan_host_reaches_its_spoke(lab: Lab) -> None:
    assert ping(lab, "spoke1-lan", "10.1.0.1")
    assert ping(lab, "spoke1-lan", "fd00:1::1")
    route = lab.node("spoke2-lan").exec("ip route show default", check=True).stdout
    assert "via 10.2.0.1 dev lan0" in route
    forwarding = lab.node("spoke2").exec("cat /proc/sys/net/ipv4/ip_forward").stdout.strip()
    assert forwarding == "1"


def test_status_json(lab: Lab) -> None:
    status = json.loads(cli("status", "--json", "--name", lab.name).stdout)
    assert status["lab"] == lab.name
    nodes = {n["name"]: n for n in status["nodes"]}
    assert set(nodes) == set(DEFAULT_NODES)
    spoke1 = nodes["spoke1"]
    assert spoke1["role"] == "spoke"
    assert spoke1["netns"] == f"dl-{lab.name}-spoke1"
    assert spoke1["mount_ns"] == f"{DEFAULT_STATE_ROOT}/{lab.name}/mnt/spoke1"
    assert spoke1["nbma"] == ["198.51.100.11", "2001:db8:0:2::11"]
    assert spoke1["overlay"] == ["10.255.255.11", "fd00:255::11"]
    assert spoke1["lan"] == ["10.1.0.0/24", "fd00:1::/64"]
    assert spoke1["lan_host"] == "spoke1-lan"
    assert spoke1["control_socket"] == "/run/dmvpn/dmvpn0.sock"
    assert spoke1["daemon"]["state"] == "disabled"
    assert {"pid", "command", "log", "pid_file"} <= set(spoke1["daemon"])
    assert nodes["spoke3"]["behind"] == "nat1"
    assert nodes["spoke1-lan"]["lan_addresses"] == ["10.1.0.2", "fd00:1::2"]
    assert nodes["nat1"]["inside"] == ["172.16.3.0/24"]
    table = cli("status", "--name", lab.name).stdout
    assert "spoke3" in table and "behind nat1" in table


def test_cli_exec_sets_the_node_environment(lab: Lab) -> None:
    out = cli(
        "exec",
        "--name",
        lab.name,
        "spoke2",
        "--",
        "sh",
        "-c",
        "echo $DMVPN_TUNNEL $DMVPNCTL_SOCKET",
    )
    assert out.stdout.split() == ["dmvpn0", "/run/dmvpn/dmvpn0.sock"]
    assert (
        cli("exec", "--name", lab.name, "spoke2", "--", "which", "dmvpnctl", check=False).returncode
        == 0
    )
    out = cli("exec", "--name", lab.name, "spoke1-lan", "--", "ip", "-br", "addr", "show", "lan0")
    assert "10.1.0.2/24" in out.stdout
    assert cli("exec", "--name", lab.name, "nat1", "--", "false", check=False).returncode == 1
    missing = cli("exec", "--name", lab.name, "nosuchnode", "--", "true", check=False)
    assert missing.returncode == 3 and "nosuchnode" in missing.stderr


def test_rendered_config_in_the_node_view(lab: Lab) -> None:
    text = lab.node("spoke3").exec("cat /etc/dmvpn/dmvpn0.yaml", check=True).stdout
    config = yaml.safe_load(text)
    assert config["tunnel"] == "dmvpn0"
    assert config["role"] == "spoke"
    assert config["nbma"]["address"] == "172.16.3.11"
    assert config["overlay"] == {"ipv4": "10.255.255.13/24", "ipv6": "fd00:255::13/64"}
    assert config["nhs"][0] == {"proto": "10.255.255.1", "nbma": "203.0.113.1", "priority": 0}
    assert config["protected_prefixes"] == ["10.3.0.0/24", "fd00:3::/64"]
    assert config["dataplane"] == "userspace"
    assert config["control"]["socket"] == "/run/dmvpn/dmvpn0.sock"
    assert config["log"]["events"].startswith("/var/lib/dmvpn/")
    assert lab.node("hub1").exec("cat /etc/dmvpn/dmvpn0.yaml", check=True).stdout != text
    daemon_config = pytest.importorskip("dmvpn_runtime.daemon.config")
    daemon_config.parse(text, "spoke3")  # the daemon's own schema accepts it


# ----------------------------------------------------------------------------- spec handling


def test_spec_errors_name_the_key() -> None:
    bad = {
        "tunnel": {"overlay": "8.8.8.0/24", "holdtime": "long", "colour": 1},
        "hubs": [{"name": "hub1", "nbma": "10.0.0.1"}],
        "spokes": [{"name": "spoke1", "behind": "nat9"}, {"name": "Spoke2"}],
    }
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    keys = {p.key for p in err.value.problems}
    assert {
        "tunnel.overlay",
        "tunnel.holdtime",
        "tunnel.colour",
        "hubs[0].nbma",
        "spokes[0].behind",
        "spokes[1].name",
    } <= keys
    assert all(p.source == "<spec dict>" for p in err.value.problems)
    assert "expected an integer from 1 to 65535, got 'long'" in str(err.value)


def test_cli_rejects_a_bad_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("hubs:\n  - name: hub1\n    nbma: 203.0.113.300\n")
    proc = cli("up", str(spec), "--name", "neverbuilt", check=False)
    assert proc.returncode == 2
    assert f"{spec}: hubs[0].nbma: expected an IPv4 or IPv6 address" in proc.stderr
    assert not any(leftovers("neverbuilt").values())
    spec.write_text("hubs: [\n")
    proc = cli("check", str(spec), check=False)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr


def test_default_spec_renders_valid_configs() -> None:
    spec = load_spec(yaml.safe_load(default_spec_text()))
    hubs = [n for n in spec.nodes.values() if n.role == "hub"]
    spokes = [n for n in spec.nodes.values() if n.role == "spoke"]
    assert len(hubs) == 2 and len(spokes) == 3
    assert sum(1 for n in spokes if n.behind) == 1
    for node in spokes:
        config = render_node_config(node, spec)
        # One NHS entry per hub and overlay family, hub1 preferred.
        assert [(n["proto"], n["priority"]) for n in config["nhs"]] == [
            ("10.255.255.1", 0),
            ("fd00:255::1", 0),
            ("10.255.255.2", 1),
            ("fd00:255::2", 1),
        ]
        assert all(ipaddress.ip_network(p).version in (4, 6) for p in config["protected_prefixes"])
        assert ipaddress.ip_address(config["nbma"]["address"])


# ----------------------------------------------------------------------------- daemons, down


def test_daemons_are_supervised_and_down_removes_everything(lab_factory) -> None:
    spec = dict(SMALL, hosts=[{"name": "probe", "daemon": "no-such-daemon-xyz --flag"}])
    small = lab_factory(spec, daemon_grace=0.1)
    assert any("probe: daemon absent" in w for w in small.warnings)
    assert small.node("probe").daemon["state"] == "absent"
    assert ping(small, "probe", "203.0.113.1")  # the network is there all the same

    hub = small.node("hub1")
    assert hub.daemon["state"] == "running"
    pid = hub.daemon_pid
    assert pid in [int(p) for p in leftovers(small.name)["processes"]]
    assert hub.path("/run/dmvpn/daemon.pid").read_text().strip() == str(pid)
    assert "dmvpn-lab starts: sleep 300" in hub.daemon_log()
    assert os.getsid(pid) == pid  # its own session
    hub.signal_daemon(signal.SIGKILL)
    deadline = time.monotonic() + 3
    while hub.daemon["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.daemon["state"] == "exited"
    assert hub.start_daemon()["state"] == "running" and hub.daemon_pid != pid
    spoke_pid = small.node("spoke1").daemon_pid
    assert spoke_pid

    report = small.down()
    assert report.problems == []
    assert not any(leftovers(small.name).values())
    assert not mountinfo_mentions(f"/{small.name}/")
    assert not [p for p in os.listdir("/run/netns") if p.startswith(f"dl-{small.name}-")]
    assert not Path(f"/etc/netns/dl-{small.name}-hub1").exists()
    for p in (hub.info["daemon"]["pid"], spoke_pid):
        assert not Path(f"/proc/{p}").exists()  # ended and reaped
    assert small.down().problems == []  # twice is fine


def test_up_refuses_an_existing_lab_and_replace_rebuilds(lab_factory) -> None:
    small = lab_factory(SMALL, daemons=False)
    with pytest.raises(LabExistsError, match="already exists"):
        Lab.up(SMALL, name=small.name, daemons=False)
    again = Lab.up(SMALL, name=small.name, daemons=False, replace=True)
    lab_factory.labs.append(again)  # torn down by the fixture
    assert ping(again, "spoke1", "203.0.113.1")


def test_down_after_a_crash(tmp_path: Path, lab_factory) -> None:
    """State file gone, one daemon killed, one still running: `down` finds it all by prefix."""
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    name = lab_factory.reserve_name()  # the fixture removes it should this test fail
    cli("up", str(spec), "--name", name)
    crashed = Lab.attach(name)
    os.kill(crashed.node("hub1").daemon_pid, signal.SIGKILL)
    survivor = crashed.node("spoke1").daemon_pid
    assert survivor
    (DEFAULT_STATE_ROOT / name / "state.json").unlink()

    out = cli("status", "--name", name, check=False)
    assert out.returncode == 3 and "left over from a crash" in out.stderr
    assert cli("down", "--name", name).returncode == 0
    assert not any(leftovers(name).values())
    assert not mountinfo_mentions(f"/{name}/")
    assert not pid_alive(survivor)  # (a zombie at most: its parent, the CLI, is gone)


def test_down_finds_namespaces_without_any_state(lab_factory) -> None:
    name = lab_factory.reserve_name()
    subprocess.run(["ip", "netns", "add", f"dl-{name}-ghost"], check=True)
    Path(f"/etc/netns/dl-{name}-ghost").mkdir(parents=True)
    report = teardown(name)
    assert report.netns == [f"dl-{name}-ghost"]
    assert report.etc_netns == [f"/etc/netns/dl-{name}-ghost"]
    assert not any(leftovers(name).values())


def test_a_failed_build_is_rolled_back(lab_factory, monkeypatch) -> None:
    from dmvpn_runtime.lab.build import Builder

    def broken(self) -> None:
        raise RuntimeError("injected failure while building")

    monkeypatch.setattr(Builder, "nat_rules", broken)
    name = lab_factory.reserve_name()
    with pytest.raises(RuntimeError, match="injected"):
        Lab.up(SMALL, name=name)
    assert not any(leftovers(name).values())
