"""Removing a lab: from its state file, and by scanning for what carries its prefix.

``teardown`` does not trust the state file to be complete: a lab that crashed while being
built, or whose state directory was removed, is found by its namespace prefix
``dl-LAB-`` (``ip netns list``, ``/etc/netns``) and by the mounts under its state
directory. What it removes, in order:

1. every process inside any of the lab's network namespaces (``ip netns pids``:
   SIGTERM, then SIGKILL after a grace period), and the pids in the state file that
   still live in one of those namespaces;
2. every mount under the state directory (the mount-namespace files, then the private
   bind mount that holds them), which ends the nodes' mount namespaces;
3. the network namespaces (which removes their interfaces, bridges and nftables rules);
4. ``/etc/netns/dl-LAB-*`` directories;
5. the state directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import system
from .layout import DEFAULT_STATE_ROOT, Layout, lab_of_netns, netns_prefix


@dataclass
class TeardownReport:
    lab: str
    killed: list[int] = field(default_factory=list)
    unmounted: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)
    state_dir_removed: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def found_anything(self) -> bool:
        return bool(
            self.killed or self.unmounted or self.netns or self.etc_netns or self.state_dir_removed
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_state(layout: Layout) -> dict[str, Any] | None:
    try:
        data = json.loads(layout.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def list_labs(state_root: Path = DEFAULT_STATE_ROOT) -> list[str]:
    """Names of labs that exist in any form: a state directory, namespaces or /etc/netns dirs."""
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        names |= {p.name for p in state_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for ns in system.list_netns():
        lab = lab_of_netns(ns)
        if lab:
            names.add(lab)
    try:
        for d in system.ETC_NETNS.iterdir():
            lab = lab_of_netns(d.name)
            if lab:
                names.add(lab)
    except FileNotFoundError:
        pass
    return sorted(names)


def _scan_etc_netns(prefix: str) -> list[str]:
    try:
        return sorted(str(d) for d in system.ETC_NETNS.iterdir() if d.name.startswith(prefix))
    except FileNotFoundError:
        return []


def leftovers(name: str, state_root: Path = DEFAULT_STATE_ROOT) -> dict[str, list[str]]:
    """What of lab ``name`` still exists; all lists empty means nothing is left."""
    layout = Layout(state_root, name)
    prefix = netns_prefix(name)
    namespaces = [n for n in system.list_netns() if n.startswith(prefix)]
    pids = sorted({str(p) for ns in namespaces for p in system.netns_pids(ns)})
    return {
        "netns": namespaces,
        "processes": pids,
        "mounts": system.mounts_under(layout.dir),
        "etc_netns": _scan_etc_netns(prefix),
        "state_dir": [str(layout.dir)] if layout.dir.exists() else [],
    }


def teardown(
    name: str, state_root: Path = DEFAULT_STATE_ROOT, *, grace: float = 2.0
) -> TeardownReport:
    layout = Layout(state_root, name)
    report = TeardownReport(name)
    state = read_state(layout) or {}
    prefix = netns_prefix(name)

    namespaces = {n for n in state.get("netns", []) if isinstance(n, str) and n.startswith(prefix)}
    namespaces |= {n for n in system.list_netns() if n.startswith(prefix)}
    namespaces = {n for n in namespaces if system.netns_exists(n)}

    # 1. processes (twice: a dying process may have started another)
    for _attempt in range(2):
        pids = {p for ns in namespaces for p in system.netns_pids(ns)}
        for node in state.get("nodes", []):
            pid = _state_pid(node)
            if pid and any(system.pid_in_netns(pid, ns) for ns in namespaces):
                pids.add(pid)
        if not pids:
            break
        report.killed += system.kill_pids(pids, grace=grace)
    report.killed = sorted(set(report.killed))

    # 2. mounts under the state directory, deepest first
    for mount_point in system.mounts_under(layout.dir):
        err = system.umount(mount_point)
        if err:
            report.problems.append(f"cannot unmount {mount_point}: errno {err}")
        else:
            report.unmounted.append(mount_point)

    # 3. network namespaces
    for ns in sorted(namespaces):
        proc = system.run(["ip", "netns", "del", ns], check=False)
        if proc.returncode != 0 and system.netns_exists(ns):
            report.problems.append(f"cannot delete namespace {ns}: {proc.stderr.strip()}")
        else:
            report.netns.append(ns)

    # 4. /etc/netns/<namespace> directories
    dirs = {d for d in state.get("etc_netns", []) if isinstance(d, str)}
    dirs = {
        d for d in dirs if Path(d).parent == system.ETC_NETNS and Path(d).name.startswith(prefix)
    }
    for d in sorted(dirs | set(_scan_etc_netns(prefix))):
        if Path(d).exists():
            shutil.rmtree(d, ignore_errors=True)
            report.etc_netns.append(d)

    # 5. the state directory (only if nothing is still mounted under it)
    if layout.dir.exists():
        if system.mounts_under(layout.dir):
            report.problems.append(f"kept {layout.dir}: mounts remain under it")
        else:
            shutil.rmtree(layout.dir, ignore_errors=True)
            report.state_dir_removed = not layout.dir.exists()
            if not report.state_dir_removed:
                report.problems.append(f"cannot remove {layout.dir}")
    if state_root == DEFAULT_STATE_ROOT:
        with contextlib.suppress(OSError):
            state_root.rmdir()  # only if no other lab is left

    left = leftovers(name, state_root)
    for kind, items in left.items():
        if items:
            report.problems.append(f"left behind ({kind}): {', '.join(items)}")
    return report


def _state_pid(node: Any) -> int | None:
    if not isinstance(node, dict):
        return None
    daemon = node.get("daemon")
    pid = daemon.get("pid") if isinstance(daemon, dict) else None
    return pid if isinstance(pid, int) and pid > 1 else None
