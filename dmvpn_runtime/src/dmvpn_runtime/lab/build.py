"""Turn a resolved ``LabSpec`` into namespaces, links, addresses, NAT rules and lab hosts.

Interfaces (all inside lab namespaces; nothing is created in the machine's namespace):

- WAN namespace ``dl-LAB-wan``: bridge ``br-wan`` holding the gateway address of every WAN
  network (it routes between them); one port ``w-NODE`` per node on the WAN.
- Hub, spoke, NAT router, host: ``wan0`` (towards the WAN, or towards the NAT's inside).
- NAT router: bridge ``inside0`` with the inside gateway address; one port ``n-SPOKE`` per
  spoke behind it; nftables masquerade on ``wan0``.
- Hub or spoke with a LAN: ``lan0``, a veth to ``lan0`` of its LAN host.

Every node except the WAN is a *lab host* (docs/lab.md): its network namespace plus a
persistent mount namespace with its own copies of the ``mounts`` directories, ``/sys``
remounted inside its network namespace, and ``/etc/hosts`` from ``/etc/netns/NETNS/hosts``.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

from . import system
from .config import config_path, config_text, control_socket
from .layout import DAEMON_LOG, DAEMON_PID_FILE, WAN, Layout
from .model import IPIface, LabSpec, NodeSpec

WAN_BRIDGE = "br-wan"
INSIDE_BRIDGE = "inside0"
LAN_IF = "lan0"
NBMA_INTERFACE = "wan0"  # the interface of the NBMA address in every node
NAT_TABLE = "dmvpn_lab_nat"

# Drop the copies of namespace handles (nsfs mounts) a new mount namespace inherits, so a
# node never keeps another namespace alive; then remount /sys from inside the node's
# network namespace, as `ip netns exec` does.
_SETUP_PROLOGUE = r"""set -e
nsfs=$(sed -n 's/^[0-9]* [0-9]* [^ ]* [^ ]* \([^ ]*\) .* - nsfs .*/\1/p' /proc/self/mountinfo)
for m in $(printf '%s\n' $nsfs | sort -r); do
  umount -l "$m" 2>/dev/null || :
done
umount -l /sys 2>/dev/null || :
mount -t sysfs sysfs /sys
"""


def _addr_cmd(iface: IPIface, dev: str) -> str:
    return f"addr add {iface} dev {dev}" + (" nodad" if iface.version == 6 else "")


def _strs(items: Any) -> list[str]:
    return [str(i) for i in items]


class Builder:
    def __init__(self, spec: LabSpec, layout: Layout, log: system.CommandLog) -> None:
        self.spec = spec
        self.layout = layout
        self.log = log

    # ------------------------------------------------------------------ the plan
    def plan(self) -> dict[str, Any]:
        """The state document, written before anything is created (so `down` can find it)."""
        spec, lay = self.spec, self.layout
        nodes = [self.node_state(n) for n in spec.nodes.values()]
        return {
            "version": 1,
            "lab": spec.name,
            "phase": "building",
            "state_dir": str(lay.dir),
            "netns_prefix": lay.prefix,
            "spec_source": spec.source,
            "domain": spec.domain,
            "tunnel": {
                "name": spec.tunnel.name,
                "overlay": _strs(spec.tunnel.overlay),
                "transport": f"ipv{spec.tunnel.transport}",
                "holdtime": spec.tunnel.holdtime,
                "dataplane": spec.tunnel.dataplane,
            },
            "wan": {
                "netns": lay.netns(WAN),
                "bridge": WAN_BRIDGE,
                "networks": [
                    {"prefix": str(w.network), "gateway": str(w.gateway)} for w in spec.wan
                ],
            },
            "mounts": [{"path": m.path, "seed": m.seed} for m in spec.mounts],
            "nodes": nodes,
            "netns": [lay.netns(WAN)] + [n["netns"] for n in nodes],
            "etc_netns": [str(system.ETC_NETNS / n["netns"]) for n in nodes],
        }

    def node_state(self, node: NodeSpec) -> dict[str, Any]:
        lay, tunnel = self.layout, self.spec.tunnel.name
        interfaces: dict[str, list[str]] = {}
        if node.nbma:
            interfaces[NBMA_INTERFACE] = _strs(node.nbma)
        if node.lan_addresses:
            interfaces[LAN_IF] = _strs(node.lan_addresses)
        if node.inside_addresses:
            interfaces[INSIDE_BRIDGE] = _strs(node.inside_addresses)
        state: dict[str, Any] = {
            "name": node.name,
            "role": node.role,
            "netns": lay.netns(node.name),
            "mount_ns": str(lay.mount_ns(node.name)),
            "root": str(lay.root(node.name)),
            "hosts_file": str(system.ETC_NETNS / lay.netns(node.name) / "hosts"),
            "interfaces": interfaces,
            "nbma": [str(i.ip) for i in node.nbma],
            "gateways": _strs(node.gateways),
            "overlay": _strs(node.overlay),
            "lan": _strs(node.lan),
            "lan_host": node.lan_host,
            "behind": node.behind,
            "parent": node.parent,
            "dns_name": f"{node.name}.{self.spec.domain}",
            "daemon": {
                "command": None,
                "state": "none",
                "pid": None,
                "pid_file": DAEMON_PID_FILE,
                "log": DAEMON_LOG,
                "message": "",
            },
        }
        if node.runs_tunnel:
            state.update(
                tunnel=tunnel,
                config_path=config_path(tunnel),
                control_socket=control_socket(tunnel),
                nhs=[{"hub": r.hub, "priority": r.priority, "by": r.by} for r in node.nhs],
                protected=_strs(node.protected),
            )
        if node.role == "lan-host":
            state["lan_addresses"] = [str(i.ip) for i in node.lan_addresses]
        if node.role == "nat":
            state["inside"] = _strs(node.inside)
        if node.daemon is not None:
            placeholders = {
                "{config}": config_path(tunnel),
                "{tunnel}": tunnel,
                "{node}": node.name,
                "{lab}": self.spec.name,
                "{socket}": control_socket(tunnel),
            }
            argv = []
            for arg in node.daemon:
                for key, value in placeholders.items():
                    arg = arg.replace(key, value)
                argv.append(arg)
            state["daemon"]["command"] = argv
            state["daemon"]["state"] = "not-started"
        return state

    # ------------------------------------------------------------------ building
    def build(self) -> None:
        spec, lay = self.spec, self.layout
        for m in spec.mounts:
            Path(m.path).mkdir(parents=True, exist_ok=True)  # the machine's mount points
        lay.mnt_dir.mkdir(parents=True, exist_ok=True)
        system.make_private_bind(lay.mnt_dir, self.log)
        names = [lay.netns(WAN)] + [lay.netns(n) for n in spec.nodes]
        system.ip_batch(None, [f"netns add {n}" for n in names], self.log)
        self.sysctls()
        self.links()
        self.addresses()
        self.nat_rules()
        self.hosts_files()
        for node in spec.nodes.values():
            self.lab_host(node)
        self.write_configs()

    def sysctls(self) -> None:
        # Set before any link exists, so every interface (the tunnel dmvpnd makes later
        # too) inherits them: no DAD delay, no router advertisements, and no ICMP
        # redirects sent or obeyed (the WAN router and hairpinning hubs would send them).
        base = {
            "net.ipv6.conf.all.accept_dad": 0,
            "net.ipv6.conf.default.accept_dad": 0,
            "net.ipv6.conf.default.dad_transmits": 0,
            "net.ipv6.conf.default.accept_ra": 0,
            "net.ipv4.conf.all.send_redirects": 0,
            "net.ipv4.conf.default.send_redirects": 0,
            "net.ipv4.conf.all.accept_redirects": 0,
            "net.ipv4.conf.default.accept_redirects": 0,
            "net.ipv6.conf.all.accept_redirects": 0,
            "net.ipv6.conf.default.accept_redirects": 0,
        }
        routing = {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1}
        system.sysctl(self.layout.netns(WAN), base | routing, self.log)
        for node in self.spec.nodes.values():
            forwards = node.role in ("hub", "spoke", "nat")
            system.sysctl(
                self.layout.netns(node.name), base | (routing if forwards else {}), self.log
            )

    def links(self) -> None:
        """Create every veth pair directly between the two namespaces it joins."""
        lay = self.layout
        wan_cmds = [
            "link set lo up",
            f"link add {WAN_BRIDGE} type bridge",
            f"link set {WAN_BRIDGE} up",
        ]
        wan_cmds += [_addr_cmd(w.gateway_interface, WAN_BRIDGE) for w in self.spec.wan]
        per_node: dict[str, list[str]] = {n: [] for n in self.spec.nodes}
        for node in self.spec.nodes.values():
            ns = lay.netns(node.name)
            if node.role == "lan-host":
                continue
            if node.nbma and node.behind is None:
                port = f"w-{node.name}"
                wan_cmds += [
                    f"link add {port} type veth peer name {NBMA_INTERFACE} netns {ns}",
                    f"link set {port} master {WAN_BRIDGE} up",
                ]
            if node.role == "nat":
                cmds = per_node[node.name]
                cmds += [f"link add {INSIDE_BRIDGE} type bridge", f"link set {INSIDE_BRIDGE} up"]
                for spoke in self.spec.nodes.values():
                    if spoke.behind == node.name:
                        port = f"n-{spoke.name}"
                        cmds += [
                            f"link add {port} type veth peer name {NBMA_INTERFACE} "
                            f"netns {lay.netns(spoke.name)}",
                            f"link set {port} master {INSIDE_BRIDGE} up",
                        ]
            if node.lan_host is not None:
                peer_ns = lay.netns(node.lan_host)
                per_node[node.name].append(
                    f"link add {LAN_IF} type veth peer name {LAN_IF} netns {peer_ns}"
                )
        system.ip_batch(lay.netns(WAN), wan_cmds, self.log)
        for name, cmds in per_node.items():
            system.ip_batch(lay.netns(name), cmds, self.log)

    def addresses(self) -> None:
        for node in self.spec.nodes.values():
            cmds = ["link set lo up"]
            uplink = LAN_IF if node.role == "lan-host" else NBMA_INTERFACE
            if node.nbma:
                cmds.append(f"link set {NBMA_INTERFACE} up")
                cmds += [_addr_cmd(i, NBMA_INTERFACE) for i in node.nbma]
            if node.lan_addresses:
                cmds.append(f"link set {LAN_IF} up")
                cmds += [_addr_cmd(i, LAN_IF) for i in node.lan_addresses]
            cmds += [_addr_cmd(i, INSIDE_BRIDGE) for i in node.inside_addresses]
            cmds += [f"route add default via {gw} dev {uplink}" for gw in node.gateways]
            system.ip_batch(self.layout.netns(node.name), cmds, self.log)

    def nat_rules(self) -> None:
        for node in self.spec.by_role("nat"):
            rules = (
                f"table inet {NAT_TABLE} {{\n"
                "  chain postrouting {\n"
                "    type nat hook postrouting priority srcnat; policy accept;\n"
                f'    oifname "{NBMA_INTERFACE}" masquerade\n'
                "  }\n"
                "}\n"
            )
            system.run(
                system.in_netns(self.layout.netns(node.name), ["nft", "-f", "-"]),
                input=rules,
                log=self.log,
            )

    def hosts_text(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for node in self.spec.nodes.values():
            addresses = node.nbma if node.role != "lan-host" else node.lan_addresses
            for iface in addresses:
                lines.append(f"{iface.ip}\t{node.name}.{self.spec.domain} {node.name}")
        return "# written by dmvpn-lab for lab " + self.spec.name + "\n" + "\n".join(lines) + "\n"

    def hosts_files(self) -> None:
        text = self.hosts_text()
        for name in self.spec.nodes:
            d = system.ETC_NETNS / self.layout.netns(name)
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text(text)

    def lab_host(self, node: NodeSpec) -> None:
        """The node's own directories, then its persistent mount namespace."""
        lay = self.layout
        root = lay.root(node.name)
        script = [_SETUP_PROLOGUE]
        for m in self.spec.mounts:
            own = lay.host_path(node.name, m.path)
            if m.seed and Path(m.path).is_dir() and not own.exists():
                shutil.copytree(m.path, own, symlinks=True)
            own.mkdir(parents=True, exist_ok=True)
            script.append(f"mount --bind {shlex.quote(str(own))} {shlex.quote(m.path)}")
        hosts = system.ETC_NETNS / lay.netns(node.name) / "hosts"
        script.append(f"mount --bind {shlex.quote(str(hosts))} /etc/hosts")
        root.mkdir(parents=True, exist_ok=True)
        ns_file = lay.mount_ns(node.name)
        ns_file.touch()
        argv = system.in_netns(
            lay.netns(node.name),
            [
                "unshare",
                f"--mount={ns_file}",
                "--propagation",
                "private",
                "sh",
                "-c",
                "\n".join(script),
            ],
        )
        system.run(argv, log=self.log)

    def write_configs(self) -> None:
        for node in self.spec.nodes.values():
            if not node.runs_tunnel:
                continue
            path = self.layout.host_path(node.name, config_path(self.spec.tunnel.name))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config_text(node, self.spec))
