"""Whether this host can run the kernel data plane, and if not, why.

Asked by ``dataplane.create("auto")`` before any plane exists, and by the plane's
constructor. The host part is probed once per process by making a GRE link and an
nftables table in a throw-away network namespace (``unshare --net``), so nothing
appears in the caller's namespace; the configuration part (IPv4 NBMA only) is checked
on every call.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from ..base import DataPlaneConfig

PROBE_TIMEOUT = 10.0


def _probe_command() -> list[str]:
    # A throw-away network namespace: nothing appears in the caller's namespace.
    script = (
        "ip link add kdpprobe0 type gre local 127.0.0.1 key 1 ttl 64 && nft add table inet kdpprobe"
    )
    return ["unshare", "--net", "--", "sh", "-c", script]


@functools.cache
def _kernel_reason() -> str | None:
    """Why this host cannot run the kernel data plane, or None. Cached per process."""
    missing = [tool for tool in ("ip", "nft", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH (iproute2, nftables, util-linux)"
    try:
        done = subprocess.run(
            _probe_command(), capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not probe for GRE support: {exc}"
    if done.returncode == 0:
        return None
    detail = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
    if "Unknown device type" in detail:
        return (
            f"this kernel ({os.uname().release}) cannot create a GRE link, ip_gre is missing"
            f" (probe in a scratch namespace: ip link add ... type gre: {detail})"
        )
    return f"the GRE and nftables probe in a scratch network namespace failed: {detail}"


def unavailable_reason(config: DataPlaneConfig | None = None) -> str | None:
    """None when the kernel data plane can run here (for ``config``), else why not."""
    if config is not None:
        v6 = [str(a) for a in config.local_nbma if a.version == 6]
        if v6:
            return (
                f"local_nbma {', '.join(v6)}: the kernel data plane carries IPv4 NBMA only"
                " (Linux ip6gre has no multipoint transmit); use the userspace data plane"
            )
    reason = _kernel_reason()
    return None if reason is None else f"kernel data plane unavailable: {reason}"


def available(config: DataPlaneConfig | None = None) -> bool:
    """True when a multipoint GRE link (and our nftables table) can be made here."""
    return unavailable_reason(config) is None
