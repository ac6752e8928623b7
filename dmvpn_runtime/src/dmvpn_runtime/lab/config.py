"""The dmvpnd configuration the lab writes for each hub and spoke.

``render_node_config`` is the one place that maps a lab node onto the daemon's config
schema; when the schema changes, change this function (and its test) and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .model import LabSpec, NodeSpec


def config_path(tunnel: str) -> str:
    """Path of the config file inside the node's view."""
    return f"/etc/dmvpn/{tunnel}.yaml"


def control_socket(tunnel: str) -> str:
    return f"/run/dmvpn/{tunnel}.sock"


def event_log(tunnel: str) -> str:
    return f"/var/lib/dmvpn/{tunnel}.events.jsonl"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_node_config(node: NodeSpec, lab: LabSpec) -> dict[str, Any]:
    """The dmvpnd config (docs/config.md) of one hub or spoke, as a dict ready for YAML.

    ``tunnel.config`` of the spec, then the node's own ``config``, are merged on top
    (mappings deeply), so a test can set any key of the daemon's schema.
    """
    if not node.runs_tunnel:
        raise ValueError(f"{node.name} is a {node.role}; only hubs and spokes run dmvpnd")
    tunnel = lab.tunnel
    family = tunnel.transport
    overlay: dict[str, str] = {}
    for addr in node.overlay:
        prefix = next(n for n in tunnel.overlay if addr in n)
        overlay[f"ipv{addr.version}"] = f"{addr}/{prefix.prefixlen}"
    nhs = []
    families = {a.version for a in node.overlay}
    for ref in node.nhs:
        hub = lab.node(ref.hub)
        # One NHS entry per overlay family both ends have (Cisco: `ip nhrp nhs` and
        # `ipv6 nhrp nhs`): each family registers and resolves on its own.
        for proto in (a for a in hub.overlay if a.version in families):
            entry: dict[str, Any] = {"proto": str(proto)}
            if ref.by == "name":
                entry["name"] = f"{hub.name}.{lab.domain}"
            else:
                entry["nbma"] = str(hub.nbma_address(family))
            entry["priority"] = ref.priority
            nhs.append(entry)
    config: dict[str, Any] = {
        "tunnel": tunnel.name,
        "role": node.role,
        "dataplane": tunnel.dataplane,
    }
    if tunnel.gre_key is not None:
        config["gre_key"] = tunnel.gre_key
    config |= {
        "nbma": {"address": str(node.nbma_address(family))},
        "overlay": overlay,
        # Only families the tunnel carries for this node (a LAN may be dual-stack).
        "protected_prefixes": [str(p) for p in node.protected if p.version in families],
        "nhs": nhs,
        # What a routing protocol would carry: the other sites' prefixes via the hub.
        "routes_via_nhs": _other_sites(node, lab) if nhs else [],
        "holdtime": tunnel.holdtime,
        "ipsec": {"mode": tunnel.ipsec},
        "control": {"socket": control_socket(tunnel.name)},
        "metrics": {"listen": tunnel.metrics},  # in the node's own network namespace
        "log": {"events": event_log(tunnel.name)},
    }
    return _merge(_merge(config, tunnel.config), node.config)


def _other_sites(node: NodeSpec, lab: LabSpec) -> list[str]:
    families = {a.version for a in node.overlay}
    return [
        str(prefix)
        for other in lab.nodes.values()
        if other.runs_tunnel and other.name != node.name
        for prefix in other.protected
        if prefix.version in families
    ]


def config_text(node: NodeSpec, lab: LabSpec) -> str:
    header = (
        f"# dmvpnd configuration of node {node.name} in lab {lab.name}, written by dmvpn-lab\n"
        f"# from {lab.source}; `dmvpn-lab up` rewrites it.\n"
    )
    return header + yaml.safe_dump(render_node_config(node, lab), sort_keys=False)
