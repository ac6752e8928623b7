"""Data planes behind one interface (:class:`DataPlane`); :func:`create` picks one.

``kernel``: a multipoint ip_gre link (production, stock kernels). ``userspace``: TAP +
GRE over raw sockets (kernels and containers without ip_gre, such as our CI).
``auto``: kernel when this host can create a GRE link and the configuration suits it
(IPv4 NBMA), else userspace.
"""

from __future__ import annotations

import logging
from typing import Literal

from . import kernel
from .base import (
    Address,
    DataPlane,
    DataPlaneConfig,
    DataPlaneError,
    DataPlaneNotImplemented,
    DataPlaneSink,
    DataPlaneStats,
    DataPlaneUnavailable,
    Drop,
    NullSink,
    PeerCounters,
    Role,
    StaleStateError,
)
from .userspace import UserspaceDataPlane

__all__ = [
    "Address",
    "DataPlane",
    "DataPlaneConfig",
    "DataPlaneError",
    "DataPlaneNotImplemented",
    "DataPlaneSink",
    "DataPlaneStats",
    "DataPlaneUnavailable",
    "Drop",
    "Kind",
    "NullSink",
    "PeerCounters",
    "Role",
    "StaleStateError",
    "UserspaceDataPlane",
    "create",
]

log = logging.getLogger(__name__)

Kind = Literal["auto", "userspace", "kernel"]


def create(kind: Kind | str, config: DataPlaneConfig, sink: DataPlaneSink) -> DataPlane:
    """A data plane of ``kind`` for ``config``, not yet opened.

    ``kernel`` raises DataPlaneUnavailable where ip_gre is missing or the config needs
    what the kernel plane cannot do (IPv6 NBMA); ``auto`` then picks userspace. An
    unknown kind is a ValueError.
    """
    if kind == "userspace":
        return UserspaceDataPlane(config, sink)
    if kind == "kernel":
        return kernel.KernelDataPlane(config, sink)
    if kind == "auto":
        reason = kernel.unavailable_reason(config)
        if reason is None:
            return kernel.KernelDataPlane(config, sink)
        log.info("data plane auto: %s; using the userspace data plane", reason)
        return UserspaceDataPlane(config, sink)
    raise ValueError(f"data plane kind {kind!r}: expected auto, userspace or kernel")
