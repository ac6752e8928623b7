"""The Python API of the lab: ``Lab.up(spec)``, ``lab.node(name).exec(...)``, ``lab.down()``.

    with Lab.up("spec.yaml", daemons=False) as lab:
        lab.node("spoke1").exec(["ping", "-c1", "203.0.113.1"], check=True)

A ``Lab`` is a handle on the state directory ``/run/dmvpn-lab/LAB``; ``Lab.attach(name)``
makes one for a lab another process built. The daemon processes a ``Lab`` object started
are its children (it reaps them); a lab built by the CLI leaves them to the system.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import system
from .build import Builder
from .errors import CommandError, LabError, LabExistsError, LabNotFoundError
from .layout import DAEMON_LOG, DAEMON_PID_FILE, DEFAULT_STATE_ROOT, WAN, Layout
from .model import LabSpec
from .spec import load_spec
from .teardown import TeardownReport, leftovers, list_labs, read_state, teardown

REQUIRED_TOOLS = ("ip", "nsenter", "unshare", "mount", "nft", "sysctl")
Command = str | Sequence[str]


def tool_path() -> str:
    """PATH for commands in nodes: this interpreter's bin directory first (dmvpnd, dmvpnctl)."""
    bindir = str(Path(sys.executable).parent)
    parts = [p for p in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") if p]
    return ":".join([bindir] + [p for p in parts if p != bindir])


def _argv(cmd: Command) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]


def pick_lab(name: str | None, state_root: Path = DEFAULT_STATE_ROOT) -> str:
    """``name``, or the only lab there is; a clear error otherwise."""
    if name is not None:
        return name
    labs = list_labs(state_root)
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabNotFoundError("no lab is up")
    raise LabNotFoundError(f"several labs exist ({', '.join(labs)}); choose one with --name")


class Node:
    """One lab host (or the WAN namespace, ``lab.node("wan")``)."""

    def __init__(self, lab: Lab, info: dict[str, Any]) -> None:
        self.lab = lab
        self.info = info

    def __repr__(self) -> str:
        return f"<Node {self.name} ({self.role}) in lab {self.lab.name}>"

    # -- facts
    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def role(self) -> str:
        return self.info["role"]

    @property
    def netns(self) -> str:
        return self.info["netns"]

    @property
    def mount_ns(self) -> str | None:
        return self.info.get("mount_ns")

    @property
    def nbma(self) -> list[str]:
        return list(self.info.get("nbma", []))

    @property
    def overlay(self) -> list[str]:
        return list(self.info.get("overlay", []))

    @property
    def lan(self) -> list[str]:
        return list(self.info.get("lan", []))

    @property
    def addresses(self) -> list[str]:
        """Every address of the node outside the overlay (NBMA, LAN, NAT inside)."""
        ifaces = self.info.get("interfaces", {})
        return [a.split("/")[0] for addrs in ifaces.values() for a in addrs]

    @property
    def tunnel(self) -> str | None:
        return self.info.get("tunnel")

    @property
    def control_socket(self) -> str | None:
        return self.info.get("control_socket")

    @property
    def config_path(self) -> str | None:
        return self.info.get("config_path")

    # -- running things inside
    def argv(self, cmd: Command, *, cwd: str | None = None) -> list[str]:
        """The command line that runs ``cmd`` inside this node's namespaces."""
        out = ["nsenter", f"--net={system.netns_path(self.netns)}"]
        if self.mount_ns:
            out.insert(1, f"--mount={self.mount_ns}")
            out.append(f"--wdns={cwd or '/'}")
        return [*out, "--", *_argv(cmd)]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = tool_path()
        env["DMVPN_LAB"] = self.lab.name
        env["DMVPN_LAB_NODE"] = self.name
        for key in ("DMVPN_TUNNEL", "DMVPNCTL_SOCKET"):
            env.pop(key, None)
        if self.tunnel:
            env["DMVPN_TUNNEL"] = self.tunnel
            env["DMVPNCTL_SOCKET"] = self.control_socket or ""
        env.update(extra or {})
        return env

    def exec(
        self,
        cmd: Command,
        *,
        check: bool = False,
        timeout: float | None = 30,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (a list, or a string for ``sh -c``) inside the node; capture text output."""
        cwd = cwd or _cwd()
        argv = self.argv(cmd, cwd=cwd)
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(env),
            cwd=None if self.mount_ns else cwd,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(_argv(cmd), proc.returncode, proc.stderr + proc.stdout)
        return proc

    def popen(
        self, cmd: Command, *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the node in the background; ``lab.down()`` ends it."""
        cwd = kwargs.pop("cwd", None) or _cwd()
        proc = subprocess.Popen(
            self.argv(cmd, cwd=cwd), env=self.env(env), cwd=None if self.mount_ns else cwd, **kwargs
        )
        self.lab._children.append(proc)
        return proc

    def path(self, node_path: str) -> Path:
        """The machine's path of a file under one of the node's private directories."""
        clean = "/" + node_path.strip("/")
        for m in self.lab.state.get("mounts", []):
            if clean == m["path"] or clean.startswith(m["path"] + "/"):
                return Path(self.info["root"]) / clean.lstrip("/")
        raise ValueError(f"{node_path} is not under a private directory of {self.name}")

    # -- the daemon
    @property
    def daemon(self) -> dict[str, Any]:
        """The daemon's state, checked now: running, exited, stopped, absent, disabled, none."""
        d = dict(self.info.get("daemon") or {"state": "none", "pid": None})
        proc = self.lab._daemons.get(self.name)
        if proc is not None:
            proc.poll()  # reap it if it ended
        pid = d.get("pid")
        if d.get("state") in ("running", "exited"):
            if pid and system.pid_alive(pid) and system.pid_in_netns(pid, self.netns):
                d["state"] = "running"
            else:
                d["state"] = "exited"
                if proc is not None and proc.returncode is not None:
                    d["returncode"] = proc.returncode
        return d

    @property
    def daemon_pid(self) -> int | None:
        d = self.daemon
        return d["pid"] if d["state"] == "running" else None

    def start_daemon(self) -> dict[str, Any]:
        d = self.info.setdefault("daemon", {})
        argv = d.get("command")
        if not argv:
            d.update(state="none", pid=None, message="no daemon command for this node")
            return self.daemon
        if self.daemon["state"] == "running":
            return self.daemon
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=tool_path())
        if exe is None or not os.access(exe, os.X_OK):
            d.update(
                state="absent",
                pid=None,
                message=f"{argv[0]}: executable not found (PATH={tool_path()}); "
                "the node has its network and config but no daemon",
            )
            self.lab.save()
            return self.daemon
        log_path = self.path(DAEMON_LOG)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} dmvpn-lab starts: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.argv([exe, *argv[1:]]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env({"PYTHONUNBUFFERED": "1"}),
            )
        self.lab._daemons[self.name] = proc
        pid_file = self.path(DAEMON_PID_FILE)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{proc.pid}\n")
        d.update(state="running", pid=proc.pid, started=time.time(), message="")
        # The child is nsenter until it has entered the node's namespaces; "running" is
        # judged by the netns, so give it a moment (a loaded machine needs it).
        deadline = time.monotonic() + 2.0
        while proc.poll() is None and time.monotonic() < deadline:
            if system.pid_in_netns(proc.pid, self.netns):
                break
            time.sleep(0.01)
        self.lab.save()
        return self.daemon

    def signal_daemon(self, sig: int = signal.SIGTERM) -> bool:
        pid = self.daemon_pid
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> dict[str, Any]:
        pid = self.daemon_pid
        if pid is not None:
            os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            proc = self.lab._daemons.get(self.name)
            while time.monotonic() < deadline:
                if proc is not None:
                    proc.poll()
                if not system.pid_alive(pid):
                    break
                time.sleep(0.02)
            else:
                system.kill_pids([pid], grace=0)
        d = self.info.get("daemon", {})
        if d.get("state") in ("running", "exited"):
            d.update(state="stopped", message="")
        self.path(DAEMON_PID_FILE).unlink(missing_ok=True)
        self.lab.save()
        return self.daemon

    def restart_daemon(self) -> dict[str, Any]:
        self.stop_daemon()
        return self.start_daemon()

    def daemon_log(self) -> str:
        try:
            return self.path(DAEMON_LOG).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def status(self) -> dict[str, Any]:
        keys = (
            "name",
            "role",
            "netns",
            "mount_ns",
            "nbma",
            "overlay",
            "lan",
            "lan_host",
            "lan_addresses",
            "behind",
            "parent",
            "inside",
            "dns_name",
            "interfaces",
            "tunnel",
            "config_path",
            "control_socket",
            "nhs",
            "protected",
        )
        out = {k: self.info[k] for k in keys if k in self.info}
        out["present"] = system.netns_exists(self.netns)
        out["daemon"] = self.daemon
        return out


def _cwd() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return "/"


class Lab:
    """A running lab. Use ``Lab.up`` to build one and ``Lab.attach`` to find one."""

    def __init__(self, layout: Layout, state: dict[str, Any]) -> None:
        self.layout = layout
        self.state = state
        self.warnings: list[str] = []
        self._daemons: dict[str, subprocess.Popen[Any]] = {}
        self._children: list[subprocess.Popen[Any]] = []
        self._nodes = {n["name"]: Node(self, n) for n in state.get("nodes", [])}
        wan = state.get("wan", {})
        self._wan = Node(
            self, {"name": WAN, "role": "wan", "netns": wan.get("netns", layout.netns(WAN))}
        )

    def __repr__(self) -> str:
        return f"<Lab {self.name} ({len(self._nodes)} nodes) at {self.layout.dir}>"

    # -- life cycle
    @classmethod
    def up(
        cls,
        spec: str | Path | dict[str, Any] | LabSpec | None = None,
        *,
        name: str | None = None,
        daemons: bool = True,
        replace: bool = False,
        state_root: Path | None = None,
        daemon_grace: float = 0.3,
        keep_on_error: bool = False,
    ) -> Lab:
        """Build the lab ``spec`` describes (a path, a dict, a ``LabSpec`` or None: the default)."""
        lab_spec = spec if isinstance(spec, LabSpec) else load_spec(spec, name=name)
        layout = Layout(Path(state_root or DEFAULT_STATE_ROOT), lab_spec.name)
        preflight()
        if any(leftovers(lab_spec.name, layout.state_root).values()):
            if not replace:
                raise LabExistsError(
                    f"lab {lab_spec.name!r} already exists (state {layout.dir}, namespaces "
                    f"{layout.prefix}*); take it down with `dmvpn-lab down --name {lab_spec.name}` "
                    "or rebuild it with --replace"
                )
            teardown(lab_spec.name, layout.state_root)
        layout.dir.mkdir(parents=True)
        builder = Builder(lab_spec, layout, system.CommandLog(layout.log_file))
        state = builder.plan()
        state.update(created=time.time(), owner_pid=os.getpid())
        lab = cls(layout, state)
        lab.save()
        layout.spec_file.write_text(yaml.safe_dump(lab_spec.raw, sort_keys=False))
        try:
            builder.build()
            state["phase"] = "up"
            lab.save()
            if daemons:
                lab.start_daemons(grace=daemon_grace)
            else:
                for node in lab.nodes.values():
                    d = node.info["daemon"]
                    if d.get("command"):
                        d.update(state="disabled", message="started with --no-daemons")
                lab.save()
        except BaseException:
            if not keep_on_error:
                lab.down()
            raise
        return lab

    @classmethod
    def attach(cls, name: str | None = None, *, state_root: Path | None = None) -> Lab:
        root = Path(state_root or DEFAULT_STATE_ROOT)
        name = pick_lab(name, root)
        layout = Layout(root, name)
        state = read_state(layout)
        if state is None:
            if any(leftovers(name, root).values()):
                raise LabNotFoundError(
                    f"lab {name!r} has no readable state file ({layout.state_file}); it looks "
                    f"left over from a crash: `dmvpn-lab down --name {name}` removes it"
                )
            raise LabNotFoundError(f"no lab named {name!r}")
        return cls(layout, state)

    def start_daemons(self, grace: float = 0.3) -> list[str]:
        """Start every node's daemon; after ``grace`` seconds report those that ended."""
        started = []
        for node in self.nodes.values():
            if not node.info["daemon"].get("command"):
                continue
            state = node.start_daemon()
            if state["state"] == "absent":
                self.warnings.append(f"{node.name}: daemon absent: {state['message']}")
            else:
                started.append(node)
        if started and grace > 0:
            time.sleep(grace)
        for node in started:
            state = node.daemon
            if state["state"] == "exited":
                tail = node.daemon_log().strip().splitlines()[-3:]
                node.info["daemon"].update(state="exited", message=" | ".join(tail))
                self.warnings.append(
                    f"{node.name}: daemon exited at once (exit {state.get('returncode', '?')}); "
                    f"log {node.path(DAEMON_LOG)}: " + " | ".join(tail)
                )
        self.save()
        return self.warnings

    def down(self, grace: float = 2.0) -> TeardownReport:
        """Remove everything of this lab; safe to call twice."""
        report = teardown(self.name, self.layout.state_root, grace=grace)
        for proc in [*self._daemons.values(), *self._children]:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=2)
        self._daemons.clear()
        self._children.clear()
        self.state["phase"] = "down"
        return report

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- facts
    @property
    def name(self) -> str:
        return self.state["lab"]

    @property
    def state_dir(self) -> Path:
        return self.layout.dir

    @property
    def nodes(self) -> dict[str, Node]:
        return dict(self._nodes)

    def node(self, name: str) -> Node:
        if name == WAN:
            return self._wan
        try:
            return self._nodes[name]
        except KeyError:
            raise LabNotFoundError(
                f"lab {self.name} has no node {name!r}; nodes: {', '.join(self._nodes)}, wan"
            ) from None

    def save(self) -> None:
        if self.state.get("phase") == "down" or not self.layout.dir.exists():
            return
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2) + "\n")
        tmp.replace(self.layout.state_file)

    def status(self) -> dict[str, Any]:
        s = self.state
        return {
            "lab": self.name,
            "phase": s.get("phase"),
            "state_dir": str(self.layout.dir),
            "netns_prefix": self.layout.prefix,
            "created": s.get("created"),
            "spec_source": s.get("spec_source"),
            "domain": s.get("domain"),
            "tunnel": s.get("tunnel"),
            "wan": s.get("wan") | {"present": system.netns_exists(self._wan.netns)},
            "nodes": [n.status() for n in self._nodes.values()],
        }


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network and mount namespaces)")
    missing = [
        t for t in REQUIRED_TOOLS if shutil.which(t, path=tool_path() + ":/usr/sbin:/sbin") is None
    ]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)} (iproute2, util-linux, nftables, procps)"
        )
