"""Lab spec: load a YAML (or a dict), validate every key, resolve it into a plan.

The spec format is documented key by key in ``docs/lab.md``; ``DEFAULTS`` below is the
single source of the default values. Validation collects every problem before it fails:
``SpecError.problems`` holds one ``SpecProblem(source, key, message)`` each.

Resolution fills in what the spec leaves out (NBMA and overlay addresses are allocated
in spec order, hubs first), adds one LAN host node per hub/spoke LAN, and computes every
address the builder needs, so that the builder only turns a ``LabSpec`` into commands.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError, SpecProblem
from .model import (
    IPAddr,
    IPNet,
    LabSpec,
    MountSpec,
    NhsRef,
    NodeSpec,
    TunnelSpec,
    WanNetwork,
)
from .reader import Reader, host_port_ok

DEFAULT_SPEC_RESOURCE = "default.yaml"
DEFAULT_LAB_NAME = "lab"

LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
NODE_NAME_MAX = 12  # "w-" + name must fit the 15-character interface name limit
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,200}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
RESERVED_NODE_NAMES = frozenset({"wan", "all"})
RESERVED_IFNAMES = frozenset({"lo", "wan0", "lan0", "inside0"})

# The WAN may only use documentation ranges; LANs, NAT insides and overlays private ones.
# 192.0.2.0/24 (TEST-NET-1) is left out: the build machines' own eth0 sits in it.
DOC_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

# Directories every lab host gets as its own; ``mounts`` adds to the list, never removes these.
REQUIRED_MOUNTS = ("/etc/dmvpn", "/run/dmvpn", "/var/lib/dmvpn")

DEFAULTS: dict[str, Any] = {
    "name": DEFAULT_LAB_NAME,
    "domain": "dmvpn.lab",
    "tunnel": {
        "name": "dmvpn0",
        "overlay": ["10.255.255.0/24", "fd00:255::/64"],
        "transport": "ipv4",
        "holdtime": 300,
        "dataplane": "userspace",
        "gre_key": 42,
        "ipsec": "none",
        "metrics": "127.0.0.1:9477",
        "nhs_by": "address",
        "config": {},
    },
    "wan": {
        "networks": [
            "203.0.113.0/25",
            "198.51.100.0/24",
            "203.0.113.128/25",
            "2001:db8:0:1::/64",
            "2001:db8:0:2::/64",
            "2001:db8:0:3::/64",
        ],
    },
    "mounts": [
        "/etc/dmvpn",
        "/run/dmvpn",
        "/var/lib/dmvpn",
        {"path": "/etc/swanctl", "seed": True},
        {"path": "/etc/strongswan.d", "seed": True},
    ],
    "daemon": "dmvpnd --config {config}",
    "hubs": [],
    "spokes": [],
    "nats": [],
    "hosts": [],
}

NODE_KEYS = {
    "hubs": {"name", "nbma", "overlay", "lan", "lan_host", "nhs", "protected", "daemon", "config"},
    "spokes": {
        "name",
        "nbma",
        "overlay",
        "lan",
        "lan_host",
        "behind",
        "nhs",
        "protected",
        "daemon",
        "config",
    },
    "nats": {"name", "nbma", "inside", "daemon"},
    "hosts": {"name", "nbma", "daemon"},
}
ROLE_OF = {"hubs": "hub", "spokes": "spoke", "nats": "nat", "hosts": "host"}

# --------------------------------------------------------------------------- loading


def default_spec_text() -> str:
    return resources.files(__package__).joinpath(DEFAULT_SPEC_RESOURCE).read_text()


def load_spec(
    spec: str | Path | dict[str, Any] | None = None, *, name: str | None = None
) -> LabSpec:
    """Load and resolve a spec from a path, a dict, or (None) the shipped default."""
    if spec is None:
        source = f"<package>/dmvpn_runtime/lab/{DEFAULT_SPEC_RESOURCE}"
        data = _parse_yaml(default_spec_text(), source)
    elif isinstance(spec, dict):
        source, data = "<spec dict>", copy.deepcopy(spec)
    else:
        source = str(spec)
        try:
            text = Path(spec).read_text()
        except OSError as exc:
            raise SpecError(
                [SpecProblem(source, "(file)", f"cannot read: {exc.strerror}")]
            ) from exc
        data = _parse_yaml(text, source)
    if name is not None:
        if not isinstance(data, dict):
            data = {}
        data["name"] = name
    return resolve(data, source)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            [SpecProblem(source, "(document)", f"not valid YAML{where}: {problem}")]
        ) from exc


def resolve(data: Any, source: str) -> LabSpec:
    """Validate ``data`` (the parsed YAML) and resolve it into a ``LabSpec``."""
    r = Reader(source)
    top = r.mapping(data, "(top level)", DEFAULTS)
    spec = _Resolver(r, top).run()
    if r.problems or spec is None:
        raise SpecError(r.problems)
    return spec


class _Resolver:
    def __init__(self, r: Reader, top: dict[str, Any]) -> None:
        self.r = r
        self.top = top
        self.used: dict[IPAddr, str] = {}  # address -> key that claimed it
        self.nodes: dict[str, NodeSpec] = {}

    def get(self, mapping: dict[str, Any], key: str, default: Any) -> Any:
        value = mapping.get(key, default)
        return copy.deepcopy(default) if value is None and default is not None else value

    # -- the pieces, in order
    def run(self) -> LabSpec | None:
        r, top = self.r, self.top
        name = r.string(
            self.get(top, "name", DEFAULTS["name"]),
            "name",
            LAB_NAME_RE,
            "a lab name: a lowercase letter, then up to 11 lowercase letters or digits",
        )
        domain = r.string(
            self.get(top, "domain", DEFAULTS["domain"]), "domain", DOMAIN_RE, "a DNS domain"
        )
        tunnel = self.tunnel()
        wan = self.wan()
        mounts = self.mounts()
        default_daemon = r.command(top.get("daemon", DEFAULTS["daemon"]), "daemon")
        self.claim_gateways(wan)
        raw_nodes = self.collect_nodes()
        if tunnel is None:  # keep checking the nodes against the default tunnel
            fallback = _Resolver(Reader(r.source), {})
            tunnel = fallback.tunnel()
            assert tunnel is not None
        self.wan_nodes(raw_nodes, wan)
        self.nat_nodes(raw_nodes)
        self.behind_nat(raw_nodes)
        self.tunnel_nodes(raw_nodes, tunnel, default_daemon)
        self.lan_hosts()
        self.check_overlaps(tunnel, wan)
        self.check_transport(tunnel)
        if self.r.problems or name is None or domain is None:
            return None
        order = {"hub": 0, "spoke": 1, "nat": 2, "host": 3, "lan-host": 4}
        nodes = dict(sorted(self.nodes.items(), key=lambda kv: order[kv[1].role]))
        return LabSpec(name, domain, tunnel, wan, mounts, nodes, r.source, self.top)

    def tunnel(self) -> TunnelSpec | None:
        r = self.r
        d = DEFAULTS["tunnel"]
        t = r.mapping(self.top.get("tunnel"), "tunnel", d)
        name = r.string(
            self.get(t, "name", d["name"]),
            "tunnel.name",
            IFNAME_RE,
            "an interface name of at most 15 characters",
        )
        if name in RESERVED_IFNAMES:
            r.problem(
                "tunnel.name", f"expected a name other than {', '.join(sorted(RESERVED_IFNAMES))}"
            )
        overlay = r.networks(
            self.get(t, "overlay", d["overlay"]),
            "tunnel.overlay",
            PRIVATE_RANGES,
            "a private prefix",
        )
        if len({n.version for n in overlay}) != len(overlay):
            r.problem("tunnel.overlay", "expected at most one prefix per address family")
        transport = r.choice(
            self.get(t, "transport", d["transport"]), "tunnel.transport", ("ipv4", "ipv6")
        )
        holdtime = r.integer(self.get(t, "holdtime", d["holdtime"]), "tunnel.holdtime", 1, 65535)
        dataplane = r.choice(
            self.get(t, "dataplane", d["dataplane"]),
            "tunnel.dataplane",
            ("userspace", "kernel", "auto"),
        )
        metrics = self.get(t, "metrics", d["metrics"])
        if metrics is not None and not host_port_ok(metrics):
            r.expected("tunnel.metrics", "ADDRESS:PORT (e.g. 127.0.0.1:9477) or null", metrics)
            metrics = None
        nhs_by = r.choice(self.get(t, "nhs_by", d["nhs_by"]), "tunnel.nhs_by", ("address", "name"))
        gre_key = t.get("gre_key", d["gre_key"])
        if gre_key is not None:
            gre_key = r.integer(gre_key, "tunnel.gre_key", 0, 2**32 - 1)
        ipsec = r.string(
            self.get(t, "ipsec", d["ipsec"]),
            "tunnel.ipsec",
            re.compile(r"^[a-z][a-z0-9-]*$"),
            "an IPsec mode of dmvpnd (none in a lab without strongSwan)",
        )
        config = self.get(t, "config", {})
        if not isinstance(config, dict):
            r.expected("tunnel.config", "a mapping", config)
            config = {}
        if None in (name, transport, holdtime, dataplane, nhs_by, ipsec) or not overlay:
            if not overlay and not r.problems:
                r.problem("tunnel.overlay", "expected at least one prefix")
            return None
        return TunnelSpec(
            name=name,  # type: ignore[arg-type]
            overlay=overlay,
            transport=4 if transport == "ipv4" else 6,
            holdtime=holdtime,  # type: ignore[arg-type]
            dataplane=dataplane,  # type: ignore[arg-type]
            gre_key=gre_key,
            ipsec=ipsec,  # type: ignore[arg-type]
            metrics=metrics,
            nhs_by=nhs_by,  # type: ignore[arg-type]
            config=config,
        )

    def wan(self) -> list[WanNetwork]:
        r = self.r
        w = r.mapping(self.top.get("wan"), "wan", DEFAULTS["wan"])
        out: list[WanNetwork] = []
        for i, item in enumerate(
            r.list_of(self.get(w, "networks", DEFAULTS["wan"]["networks"]), "wan.networks")
        ):
            key = f"wan.networks[{i}]"
            gateway_raw = None
            if isinstance(item, dict):
                item = r.mapping(item, key, {"prefix", "gateway"})
                gateway_raw = item.get("gateway")
                item = item.get("prefix")
                key_prefix = f"{key}.prefix"
            else:
                key_prefix = key
            nets = r.networks(item, key_prefix, DOC_RANGES, "a documentation prefix")
            if not nets:
                continue
            net = nets[0]
            if gateway_raw is None:
                gateway = (
                    net.broadcast_address - 1 if net.version == 4 else net.network_address + 0xFE
                )
            else:
                addrs = r.addresses(gateway_raw, f"{key}.gateway")
                if not addrs:
                    continue
                gateway = addrs[0]
            if gateway not in net or gateway in (net.network_address, net.broadcast_address):
                r.expected(f"{key}.gateway", f"a host address inside {net}", str(gateway))
                continue
            out.append(WanNetwork(net, gateway))
        if not out and not r.problems:
            r.problem("wan.networks", "expected at least one documentation prefix")
        return out

    def mounts(self) -> list[MountSpec]:
        r = self.r
        out: list[MountSpec] = []
        for i, item in enumerate(
            r.list_of(self.get(self.top, "mounts", DEFAULTS["mounts"]), "mounts")
        ):
            key = f"mounts[{i}]"
            seed = False
            if isinstance(item, dict):
                m = r.mapping(item, key, {"path", "seed"})
                item, seed = m.get("path"), m.get("seed", False)
                if not isinstance(seed, bool):
                    r.expected(f"{key}.seed", "true or false", seed)
                key = f"{key}.path"
            if not isinstance(item, str) or not item.startswith("/") or len(Path(item).parts) < 3:
                r.expected(
                    key, "an absolute directory path at least two levels deep, e.g. /etc/frr", item
                )
                continue
            path = str(Path(item))
            if path.startswith(("/proc/", "/sys/", "/dev/")):
                r.expected(key, "a path outside /proc, /sys and /dev", item)
                continue
            out.append(MountSpec(path, bool(seed)))
        paths = [m.path for m in out]
        for required in reversed(REQUIRED_MOUNTS):
            if required not in paths:
                out.insert(0, MountSpec(required))
        if len(set(m.path for m in out)) != len(out):
            r.problem("mounts", "expected every path at most once")
        return out

    def claim(self, addr: IPAddr, key: str) -> bool:
        other = self.used.get(addr)
        if other is not None:
            self.r.problem(key, f"address {addr} is already used by {other}")
            return False
        self.used[addr] = key
        return True

    def claim_gateways(self, wan: list[WanNetwork]) -> None:
        for i, w in enumerate(wan):
            self.claim(w.gateway, f"wan.networks[{i}] (gateway)")

    def allocate(self, net: IPNet, key: str, skip_first: bool = False) -> IPAddr | None:
        hosts: Iterator[IPAddr] = iter(net.hosts())
        if skip_first:
            next(hosts, None)
        for addr in hosts:
            if addr not in self.used:
                self.used[addr] = key
                return addr
        self.r.problem(key, f"no free address left in {net}")
        return None

    def collect_nodes(self) -> list[tuple[str, str, dict[str, Any]]]:
        r = self.r
        seen: dict[str, str] = {}
        out = []
        for section in ("hubs", "spokes", "nats", "hosts"):
            for i, item in enumerate(r.list_of(self.top.get(section), section)):
                key = f"{section}[{i}]"
                m = r.mapping(item, key, NODE_KEYS[section])
                if not isinstance(item, dict):
                    continue
                name = r.string(
                    m.get("name"),
                    f"{key}.name",
                    NODE_NAME_RE,
                    "a node name: lowercase letters, digits and single dashes, "
                    "starting with a letter",
                )
                if name is None:
                    continue
                if (
                    len(name) > NODE_NAME_MAX
                    or name in RESERVED_NODE_NAMES
                    or name.endswith("-lan")
                ):
                    r.expected(
                        f"{key}.name",
                        f"at most {NODE_NAME_MAX} characters, not ending in -lan, not "
                        + " or ".join(sorted(RESERVED_NODE_NAMES)),
                        name,
                    )
                    continue
                if name in seen:
                    r.problem(f"{key}.name", f"name {name!r} is already used by {seen[name]}")
                    continue
                seen[name] = key
                out.append((section, key, m))
        if not any(s == "hubs" for s, _i, _m in out) and not r.problems:
            r.problem("hubs", "expected at least one hub")
        return out

    def explicit_addresses(self, m: dict[str, Any], key: str, field_: str) -> list[IPAddr] | None:
        if m.get(field_) is None:
            return None
        return self.r.addresses(m[field_], f"{key}.{field_}")

    def wan_nodes(self, raw: list[tuple[str, str, dict[str, Any]]], wan: list[WanNetwork]) -> None:
        """Hubs, spokes not behind a NAT, NAT routers and plain hosts: nodes on the WAN."""
        on_wan = [(s, k, m) for s, k, m in raw if not (s == "spokes" and m.get("behind"))]
        pending: list[tuple[NodeSpec, str]] = []
        for section, key, m in on_wan:
            node = NodeSpec(m["name"], ROLE_OF[section], key)
            self.nodes[node.name] = node
            explicit = self.explicit_addresses(m, key, "nbma")
            if explicit is None:
                pending.append((node, key))
                continue
            for addr in explicit:
                w = next((w for w in wan if addr in w.network), None)
                if w is None:
                    self.r.expected(
                        f"{key}.nbma",
                        "an address inside one of wan.networks ("
                        + (", ".join(str(w.network) for w in wan) or "none valid")
                        + ")",
                        str(addr),
                    )
                    continue
                if addr in (w.network.network_address, w.network.broadcast_address):
                    self.r.expected(f"{key}.nbma", f"a host address of {w.network}", str(addr))
                    continue
                if self.claim(addr, f"{key}.nbma"):
                    node.nbma.append(ipaddress.ip_interface(f"{addr}/{w.network.prefixlen}"))
                    node.gateways.append(w.gateway)
        # Nodes without explicit addresses: one address per family, from the first WAN
        # network of that family.
        firsts: dict[int, WanNetwork] = {}
        for w in wan:
            firsts.setdefault(w.network.version, w)
        for node, key in pending:
            for w in firsts.values():
                addr = self.allocate(w.network, f"{key}.nbma")
                if addr is not None:
                    node.nbma.append(ipaddress.ip_interface(f"{addr}/{w.network.prefixlen}"))
                    node.gateways.append(w.gateway)

    def nat_nodes(self, raw: list[tuple[str, str, dict[str, Any]]]) -> None:
        for section, key, m in raw:
            if section != "nats":
                continue
            node = self.nodes[m["name"]]
            if m.get("inside") is None:
                self.r.problem(
                    f"{key}.inside", "expected a private prefix (or a list), e.g. 172.16.1.0/24"
                )
                continue
            node.inside = self.r.networks(
                m["inside"], f"{key}.inside", PRIVATE_RANGES, "a private prefix"
            )
            if len({n.version for n in node.inside}) != len(node.inside):
                self.r.problem(f"{key}.inside", "expected at most one prefix per address family")
            for net in node.inside:
                addr = net.network_address + 1
                if self.claim(addr, f"{key}.inside"):
                    node.inside_addresses.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
            node.daemon = self.r.command(m.get("daemon"), f"{key}.daemon")

    def behind_nat(self, raw: list[tuple[str, str, dict[str, Any]]]) -> None:
        pending: list[tuple[NodeSpec, NodeSpec, str]] = []
        for section, key, m in raw:
            if section != "spokes" or not m.get("behind"):
                continue
            node = NodeSpec(m["name"], "spoke", key, behind=m["behind"])
            self.nodes[node.name] = node
            nat = self.nodes.get(m["behind"])
            if nat is None or nat.role != "nat":
                names = [n.name for n in self.nodes.values() if n.role == "nat"]
                self.r.expected(
                    f"{key}.behind",
                    "the name of a NAT router from nats ("
                    + (", ".join(names) or "none defined")
                    + ")",
                    m["behind"],
                )
                continue
            explicit = self.explicit_addresses(m, key, "nbma")
            if explicit is None:
                pending.append((node, nat, key))
                continue
            for addr in explicit:
                net = next((n for n in nat.inside if addr in n), None)
                if net is None or addr in (net.network_address, net.broadcast_address):
                    self.r.expected(
                        f"{key}.nbma",
                        f"a host address inside {nat.name}'s inside prefix ("
                        + ", ".join(map(str, nat.inside))
                        + ")",
                        str(addr),
                    )
                    continue
                if self.claim(addr, f"{key}.nbma"):
                    node.nbma.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
                    node.gateways.append(net.network_address + 1)
        for node, nat, key in pending:
            for net in nat.inside:
                addr = self.allocate(net, f"{key}.nbma", skip_first=True)
                if addr is not None:
                    node.nbma.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
                    node.gateways.append(net.network_address + 1)

    def tunnel_nodes(
        self,
        raw: list[tuple[str, str, dict[str, Any]]],
        tunnel: TunnelSpec,
        default_daemon: list[str] | None,
    ) -> None:
        r = self.r
        hubs = [m["name"] for s, _i, m in raw if s == "hubs"]
        pending: list[tuple[NodeSpec, str]] = []
        for section, key, m in raw:
            node = self.nodes.get(m["name"])
            if node is None:
                continue
            if section == "hosts":
                node.daemon = r.command(m.get("daemon"), f"{key}.daemon")
            if section not in ("hubs", "spokes"):
                continue
            node.daemon = (
                r.command(m["daemon"], f"{key}.daemon") if "daemon" in m else default_daemon
            )
            node.config = m.get("config") or {}
            if not isinstance(node.config, dict):
                r.expected(f"{key}.config", "a mapping", node.config)
                node.config = {}
            # overlay addresses
            explicit = self.explicit_addresses(m, key, "overlay")
            if explicit is None:
                pending.append((node, key))
            else:
                for addr in explicit:
                    net = next((n for n in tunnel.overlay if addr in n), None)
                    if net is None or addr in (net.network_address, net.broadcast_address):
                        r.expected(
                            f"{key}.overlay",
                            "a host address inside tunnel.overlay ("
                            + ", ".join(map(str, tunnel.overlay))
                            + ")",
                            str(addr),
                        )
                    elif self.claim(addr, f"{key}.overlay"):
                        node.overlay.append(addr)
            # LAN
            if m.get("lan") is not None:
                node.lan = r.networks(m["lan"], f"{key}.lan", PRIVATE_RANGES, "a private prefix")
                if len({n.version for n in node.lan}) != len(node.lan):
                    r.problem(f"{key}.lan", "expected at most one prefix per address family")
                for net in node.lan:
                    addr = net.network_address + 1
                    if self.claim(addr, f"{key}.lan"):
                        node.lan_addresses.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
            lan_host = m.get("lan_host", True)
            if not isinstance(lan_host, bool):
                r.expected(f"{key}.lan_host", "true or false", lan_host)
            elif lan_host and node.lan:
                node.lan_host = f"{node.name}-lan"
            # protected prefixes
            node.protected = list(node.lan)
            if m.get("protected") is not None:
                node.protected += r.networks(
                    m["protected"], f"{key}.protected", PRIVATE_RANGES, "a private prefix"
                )
            # NHS list
            default_nhs = hubs if section == "spokes" else []
            node.nhs = self.nhs_list(m.get("nhs", default_nhs), f"{key}.nhs", hubs, tunnel, node)
        for node, key in pending:
            for net in tunnel.overlay:
                addr = self.allocate(net, f"{key}.overlay")
                if addr is not None:
                    node.overlay.append(addr)

    def nhs_list(
        self, value: Any, key: str, hubs: list[str], tunnel: TunnelSpec, node: NodeSpec
    ) -> list[NhsRef]:
        r = self.r
        out: list[NhsRef] = []
        for i, item in enumerate(r.list_of(value, key)):
            where = f"{key}[{i}]"
            if isinstance(item, str):
                item = {"hub": item}
            m = r.mapping(item, where, {"hub", "priority", "by"})
            if not isinstance(item, dict):
                continue
            hub = m.get("hub")
            if hub not in hubs or hub == node.name:
                r.expected(f"{where}.hub", "the name of another hub (" + ", ".join(hubs) + ")", hub)
                continue
            priority = r.integer(m.get("priority", i), f"{where}.priority", 0, 255)
            by = r.choice(m.get("by", tunnel.nhs_by), f"{where}.by", ("address", "name"))
            if priority is not None and by is not None:
                out.append(NhsRef(hub, priority, by))
        return out

    def lan_hosts(self) -> None:
        for node in list(self.nodes.values()):
            if node.lan_host is None:
                continue
            if node.lan_host in self.nodes:
                self.r.problem(f"{node.key}.lan_host", f"LAN host name {node.lan_host} is taken")
                continue
            host = NodeSpec(node.lan_host, "lan-host", f"{node.key}.lan", parent=node.name)
            for net in node.lan:
                addr = net.network_address + 2
                if self.claim(addr, f"{node.key}.lan (LAN host)"):
                    host.lan_addresses.append(ipaddress.ip_interface(f"{addr}/{net.prefixlen}"))
                    host.gateways.append(net.network_address + 1)
            self.nodes[host.name] = host

    def check_overlaps(self, tunnel: TunnelSpec, wan: list[WanNetwork]) -> None:
        owned: list[tuple[IPNet, str]] = [
            (w.network, f"wan.networks[{i}]") for i, w in enumerate(wan)
        ]
        owned += [(n, "tunnel.overlay") for n in tunnel.overlay]
        for node in self.nodes.values():
            owned += [(n, f"{node.key}.lan") for n in node.lan]
            owned += [(n, f"{node.key}.inside") for n in node.inside]
        for i, (a, ka) in enumerate(owned):
            for b, kb in owned[i + 1 :]:
                if a.version == b.version and a.overlaps(b):  # type: ignore[arg-type]
                    self.r.problem(
                        kb, f"prefix {b} overlaps {a} of {ka}; expected disjoint prefixes"
                    )

    def check_transport(self, tunnel: TunnelSpec) -> None:
        family = tunnel.transport
        for node in self.nodes.values():
            if node.runs_tunnel and node.nbma and node.nbma_address(family) is None:
                self.r.problem(
                    f"{node.key}.nbma",
                    f"expected an IPv{family} NBMA address (tunnel.transport is ipv{family})",
                )
            if node.runs_tunnel and not node.overlay:
                self.r.problem(f"{node.key}.overlay", "expected at least one overlay address")
