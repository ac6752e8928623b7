"""From the daemon's validated YAML to the engine's and the data plane's own configs.

The file format belongs to operators and stays stable; the engine's dataclasses belong
to the protocol code and may change. This module is the only place that knows both.
"""

from __future__ import annotations

from typing import Any

from ..dataplane import DataPlaneConfig
from ..nhrp.engine.config import EngineConfig, Limits, NhsConfig, Role
from ..nhrp.engine.policy import Policy, PolicyRule


def _values(config: Any) -> dict[str, Any]:
    return config if isinstance(config, dict) else config.values


def overlay_addresses(values: dict[str, Any]) -> tuple:
    return tuple(a for a in (values["overlay"]["ipv4"], values["overlay"]["ipv6"]) if a)


def engine_config(config: Any) -> EngineConfig:
    """Raises ValueError when the engine refuses the combination."""
    v = _values(config)
    hub_role = Role.BOTH if v["nhs"] else Role.NHS  # a hub with NHSs registers upward
    role = Role.NHC if v["role"] == "spoke" else hub_role
    policy = v["policy"]
    limits = v["limits"]
    secret = v["authentication"]["secret"]
    return EngineConfig(
        nbma=v["nbma"]["address"],
        addresses=overlay_addresses(v),
        role=role,
        protected=tuple(v["protected_prefixes"]),
        register_prefixes=v["register_prefixes"],
        nhs=tuple(NhsConfig(n["proto"], n["nbma"], n["name"], n["priority"]) for n in v["nhs"]),
        holdtime=v["holdtime"],
        unique=v["unique"],
        auth_secret=secret.encode() if secret else None,
        nat=v["nat"],
        redirect=v["redirect"]["enabled"],
        redirect_interval=v["redirect"]["interval"],
        shortcuts=v["shortcuts"]["enabled"],
        policy=Policy(
            groups={g["name"]: tuple(g["prefixes"]) for g in policy["groups"]},
            rules=tuple(PolicyRule(r["action"], (r["from"],), (r["to"],)) for r in policy["rules"]),
            default=policy["default"],
        ),
        limits=Limits(
            registrations_per_s=limits["registrations_per_s"],
            resolutions_per_s=limits["resolutions_per_s"],
            cache_entries_per_source=limits["cache_entries_per_source"],
        ),
        nhs_routes=tuple(v["routes_via_nhs"]),
    )


def dataplane_config(config: Any) -> DataPlaneConfig:
    v = _values(config)
    return DataPlaneConfig(
        tunnel=v["tunnel"],
        local_nbma=(v["nbma"]["address"],),
        overlay=overlay_addresses(v),
        role="hub" if v["role"] == "hub" else "spoke",
        key=v["gre_key"],
        nbma_mtu=v["nbma_mtu"],
    )
