"""The userspace data plane: TAP device + GRE over raw IP sockets (no ip_gre needed)."""

from .plane import UserspaceDataPlane

__all__ = ["UserspaceDataPlane"]
