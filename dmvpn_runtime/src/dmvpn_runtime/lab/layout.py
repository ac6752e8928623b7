"""Where a lab keeps things: its state directory, namespace names, per-node roots."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NETNS_PREFIX = "dl-"  # every namespace of every lab starts with this
DEFAULT_STATE_ROOT = Path(os.environ.get("DMVPN_LAB_STATE_ROOT", "/run/dmvpn-lab"))
WAN = "wan"

# Paths inside a node's view
DAEMON_PID_FILE = "/run/dmvpn/daemon.pid"
DAEMON_LOG = "/var/lib/dmvpn/daemon.log"


def netns_prefix(lab: str) -> str:
    return f"{NETNS_PREFIX}{lab}-"


def lab_of_netns(netns: str) -> str | None:
    """The lab a namespace name belongs to (lab names contain no dash)."""
    if not netns.startswith(NETNS_PREFIX):
        return None
    rest = netns[len(NETNS_PREFIX) :]
    lab, dash, node = rest.partition("-")
    return lab if dash and lab and node else None


@dataclass(frozen=True)
class Layout:
    state_root: Path
    lab: str

    @property
    def dir(self) -> Path:
        return self.state_root / self.lab

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def spec_file(self) -> Path:
        return self.dir / "spec.yaml"

    @property
    def log_file(self) -> Path:
        return self.dir / "lab.log"

    @property
    def mnt_dir(self) -> Path:
        return self.dir / "mnt"

    @property
    def roots_dir(self) -> Path:
        return self.dir / "roots"

    @property
    def prefix(self) -> str:
        return netns_prefix(self.lab)

    def netns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    def mount_ns(self, node: str) -> Path:
        return self.mnt_dir / node

    def root(self, node: str) -> Path:
        return self.roots_dir / node

    def host_path(self, node: str, node_path: str) -> Path:
        """Where a path of a node's private directories lives on the machine."""
        return self.root(node) / node_path.lstrip("/")
