"""dmvpnd's configuration file: the schema table, loading, and cross-key rules.

One YAML file per tunnel (``/etc/dmvpn/<tunnel>.yaml``). ``dmvpnd check-config FILE``
prints every problem this module finds, each naming the file, the key and what was
expected; Ansible uses it as the ``validate`` command of the file it writes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml

from .schema import (
    Key,
    Problem,
    Section,
    boolean,
    choice,
    host_port,
    ifname,
    integer,
    ip_address,
    ip_interface,
    ip_network,
    list_of,
    number,
    path,
    string,
    validate,
)

SCHEMA = Section(
    "",
    (
        Key(
            "tunnel",
            ifname,
            help="Tunnel interface name; also names sockets and logs.",
            reloadable=False,
        ),
        Key(
            "role",
            choice("hub", "spoke"),
            help="`hub` serves registrations (NHS); `spoke` registers (NHC). A hub with "
            "`nhs` entries also registers with those upper hubs.",
        ),
        Key(
            "dataplane",
            choice("auto", "kernel", "userspace"),
            "auto",
            help="`kernel`: mGRE link; `userspace`: TAP + GRE over raw sockets; `auto` "
            "picks kernel when the kernel has GRE.",
            reloadable=False,
        ),
        Key(
            "gre_key",
            integer(0, 0xFFFFFFFF),
            None,
            help="GRE key (RFC 2890) of this DMVPN; null sends no key.",
            reloadable=False,
        ),
        Key(
            "nbma_mtu",
            integer(576, 65535),
            1500,
            help="MTU of the transport path; the tunnel MTU subtracts the encapsulation.",
            reloadable=False,
        ),
        Section(
            "nbma",
            (
                Key(
                    "address",
                    ip_address,
                    help="This node's NBMA (transport) address. Behind NAT: the private one.",
                    reloadable=False,
                ),
            ),
            help="Transport network.",
            optional=False,
        ),
        Section(
            "overlay",
            (
                Key(
                    "ipv4",
                    ip_interface,
                    None,
                    help="IPv4 tunnel address with the tunnel prefix length, e.g. 10.255.255.2/24.",
                    reloadable=False,
                ),
                Key(
                    "ipv6",
                    ip_interface,
                    None,
                    help="IPv6 tunnel address with prefix length.",
                    reloadable=False,
                ),
            ),
            help="Overlay (tunnel) addresses; at least one.",
            optional=False,
        ),
        Key(
            "protected_prefixes",
            list_of(ip_network),
            [],
            help="Prefixes behind this node, registered with the NHS and answered in "
            "resolutions (shortcuts use their length).",
        ),
        Key(
            "register_prefixes",
            boolean,
            True,
            help="Register `protected_prefixes` with the NHS, one CIE each, so the hub routes "
            "them and answers for them. Turn off with a hub that accepts only the overlay "
            "address (FRR nhrpd answers prefix CIEs with code 4, see docs/interop.md).",
        ),
        Key(
            "routes_via_nhs",
            list_of(ip_network),
            [],
            help="Prefixes routed via the active NHS (falling back by priority), e.g. the "
            "other sites' LANs, until a routing protocol carries them.",
        ),
        Key(
            "forward_by_route",
            boolean,
            True,
            help="Hub: a Resolution Request for a destination that no registration covers "
            "goes to the registered spoke the kernel routes it through (main table, out of "
            "the tunnel, via the spoke's overlay address; static or from FRR), as Cisco and "
            "FRR hubs do for spokes that register only their own address.",
            reloadable=False,
        ),
        Section(
            "nhs",
            (
                Key("proto", ip_address, help="The NHS's overlay (protocol) address."),
                Key("nbma", ip_address, None, help="The NHS's NBMA address."),
                Key(
                    "name",
                    string,
                    None,
                    help="DNS name of the NHS's NBMA address (seed Req. 6);"
                    " used when `nbma` is not given, resolved again on every retry.",
                ),
                Key("priority", integer(0, 255), 0, help="Lower is preferred (as Cisco)."),
            ),
            help="Next-hop servers to register with.",
            many=True,
        ),
        Key(
            "holdtime",
            integer(1, 65535),
            7200,
            help="Holding time (s) of what this node registers and answers.",
        ),
        Key(
            "unique",
            boolean,
            True,
            help="Register with the U flag: nobody else may take our overlay address.",
        ),
        Key("nat", boolean, True, help="Send and honour the Cisco NAT extension."),
        Section(
            "authentication",
            (
                Key(
                    "secret",
                    string,
                    None,
                    help="Cisco-style cleartext NHRP authentication (up to 8 octets); required "
                    "on every packet received when set. Not a security mechanism: IPsec is.",
                ),
            ),
            help="NHRP authentication extension.",
        ),
        Section(
            "redirect",
            (
                Key("enabled", boolean, True, help="Hub: send Traffic Indications on hairpin."),
                Key(
                    "interval",
                    number(0.0, 3600.0),
                    15.0,
                    help="Seconds between Traffic Indications for one source/destination pair.",
                ),
            ),
            help="Phase 3 redirects.",
        ),
        Section(
            "shortcuts",
            (
                Key(
                    "enabled",
                    boolean,
                    True,
                    help="Spoke: resolve and install shortcuts on Traffic Indication.",
                ),
            ),
            help="Phase 3 shortcuts.",
        ),
        Section(
            "policy",
            (
                Key(
                    "default",
                    choice("allow", "deny"),
                    "allow",
                    help="Verdict for spoke-to-spoke shortcuts no rule matches.",
                ),
                Section(
                    "groups",
                    (
                        Key("name", string, help="Group name."),
                        Key("prefixes", list_of(ip_network), help="Prefixes in the group."),
                    ),
                    help="Named groups of prefixes.",
                    many=True,
                ),
                Section(
                    "rules",
                    (
                        Key("from", string, help="Group name or prefix of the source side."),
                        Key("to", string, help="Group name or prefix of the destination side."),
                        Key("action", choice("allow", "deny"), help="Verdict."),
                    ),
                    help="First match wins; both directions are checked.",
                    many=True,
                ),
            ),
            help="Seed Req. 4: which spoke pairs may build shortcuts.",
        ),
        Section(
            "limits",
            (
                Key(
                    "registrations_per_s",
                    number(0.1, 1e6),
                    20.0,
                    help="Per NBMA source: Registration Requests accepted per second.",
                ),
                Key(
                    "resolutions_per_s",
                    number(0.1, 1e6),
                    50.0,
                    help="Per NBMA source: Resolution Requests accepted per second.",
                ),
                Key(
                    "cache_entries_per_source",
                    integer(1, 1_000_000),
                    1024,
                    help="Per NBMA source: cache entries it may create.",
                ),
            ),
            help="Protection against a misbehaving or hostile peer.",
        ),
        Section(
            "ipsec",
            (
                Key(
                    "mode",
                    choice("none"),
                    help="`none` carries GRE unprotected (labs only; must be chosen "
                    "explicitly). strongSwan protection comes with the IPsec release.",
                ),
            ),
            help="Packet protection.",
            optional=False,
        ),
        Section(
            "control",
            (
                Key(
                    "socket",
                    path,
                    None,
                    help="Unix socket of dmvpnctl; default /run/dmvpn/<tunnel>.sock.",
                    reloadable=False,
                ),
            ),
            help="Control socket.",
        ),
        Section(
            "metrics",
            (
                Key(
                    "listen",
                    host_port,
                    None,
                    help="Prometheus endpoint ADDRESS:PORT, e.g. 127.0.0.1:9477; null disables.",
                    reloadable=False,
                ),
            ),
            help="Prometheus metrics.",
        ),
        Section(
            "log",
            (
                Key(
                    "events",
                    path,
                    None,
                    help="JSON-lines event log; default /var/lib/dmvpn/<tunnel>.events.jsonl.",
                ),
                Key(
                    "level",
                    choice("debug", "info", "warning", "error"),
                    "info",
                    help="Level of the human log on stderr.",
                ),
            ),
            help="Logging.",
        ),
    ),
)


class ConfigError(Exception):
    """The config file cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class DaemonConfig:
    """The validated file: ``values`` mirrors the YAML with defaults filled in."""

    file: str
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def tunnel(self) -> str:
        return self.values["tunnel"]

    @property
    def control_socket(self) -> str:
        return self.values["control"]["socket"] or f"/run/dmvpn/{self.tunnel}.sock"

    @property
    def event_log(self) -> str:
        return self.values["log"]["events"] or f"/var/lib/dmvpn/{self.tunnel}.events.jsonl"

    def restart_only_changes(self, other: DaemonConfig) -> list[str]:
        """Keys that differ from ``other`` and need a restart rather than SIGHUP."""
        return [
            name
            for name, key in _walk(SCHEMA)
            if not key.reloadable and _get(self.values, name) != _get(other.values, name)
        ]


def _walk(section: Section, prefix: str = ""):
    for entry in section.entries:
        name = f"{prefix}.{entry.name}" if prefix else entry.name
        if isinstance(entry, Section):
            if not entry.many:
                yield from _walk(entry, name)
        else:
            yield name, entry


def _get(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def parse(text: str, file: str) -> DaemonConfig:
    """Validate YAML text; raises ConfigError listing every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError([Problem(file, where, "valid YAML", str(exc).splitlines()[0])]) from None
    values, problems = validate(SCHEMA, data, file)
    if not problems:
        problems = _cross_checks(values, file)
    if not problems:
        problems = _engine_checks(values, file)
    if problems:
        raise ConfigError(problems)
    return DaemonConfig(file, values)


def load(file: str) -> DaemonConfig:
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(
            [Problem(file, "(file)", "a readable file", exc.strerror or "")]
        ) from None
    return parse(text, file)


def _cross_checks(values: dict[str, Any], file: str) -> list[Problem]:
    """Rules that involve more than one key."""
    problems = []
    overlay = values["overlay"]
    if overlay["ipv4"] is None and overlay["ipv6"] is None:
        problems.append(Problem(file, "overlay", "at least one of ipv4, ipv6"))
    if values["role"] == "spoke" and not values["nhs"]:
        problems.append(Problem(file, "nhs", "at least one NHS for a spoke"))
    for i, nhs in enumerate(values["nhs"]):
        where = f"nhs[{i}]"
        if (nhs["nbma"] is None) == (nhs["name"] is None):
            problems.append(Problem(file, where, "exactly one of nbma, name"))
        fam = overlay["ipv4"] if nhs["proto"].version == 4 else overlay["ipv6"]
        if fam is None or nhs["proto"] not in fam.network:
            problems.append(
                Problem(
                    file,
                    f"{where}.proto",
                    "an address inside the overlay prefix",
                    str(nhs["proto"]),
                )
            )
        if nhs["nbma"] is not None and nhs["nbma"].version != values["nbma"]["address"].version:
            problems.append(
                Problem(
                    file,
                    f"{where}.nbma",
                    f"an IPv{values['nbma']['address'].version} address like nbma.address",
                    str(nhs["nbma"]),
                )
            )
    secret = values["authentication"]["secret"]
    if secret is not None and len(secret.encode()) > 8:
        problems.append(Problem(file, "authentication.secret", "at most 8 octets (Cisco limit)"))
    groups = {g["name"] for g in values["policy"]["groups"]}
    for i, rule in enumerate(values["policy"]["rules"]):
        for side in ("from", "to"):
            ref = rule[side]
            if ref not in groups and not _is_prefix(ref):
                problems.append(
                    Problem(file, f"policy.rules[{i}].{side}", "a group name or a prefix", ref)
                )
    return problems


def _is_prefix(text: str) -> bool:
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def _engine_checks(values: dict[str, Any], file: str) -> list[Problem]:
    """What the engine and data plane refuse, in the same form as the schema's problems."""
    from .engine_config import dataplane_config, engine_config  # late: avoids import cycle

    problems = []
    for what, build in (("engine", engine_config), ("data plane", dataplane_config)):
        try:
            build(values)
        except ValueError as exc:
            problems.append(
                Problem(file, "(combination)", f"a config the {what} accepts", str(exc))
            )
    return problems
