"""dmvpn-lab: DMVPN lab hosts (network + mount namespaces) on one machine.

  dmvpn-lab up [SPEC.yaml] [--name LAB] [--replace] [--no-daemons]
  dmvpn-lab down [--name LAB | --all]
  dmvpn-lab status [--name LAB] [--json]
  dmvpn-lab exec [--name LAB] NODE [-- CMD ...]      (no CMD: a shell)
  dmvpn-lab daemon {start,stop,restart} NODE ... [--name LAB]
  dmvpn-lab check [SPEC.yaml]                        validate a spec, build nothing
  dmvpn-lab spec                                     print the default spec

Exit status: 0 success; 1 failure (build failed, lab exists, something left after down);
2 usage or spec error; 3 no such lab; exec: the command's own status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..lab import (
    DEFAULT_STATE_ROOT,
    Lab,
    LabError,
    LabExistsError,
    LabNotFoundError,
    SpecError,
    default_spec_text,
    list_labs,
    load_spec,
    pick_lab,
    teardown,
)

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dmvpn-lab",
        description="DMVPN lab hosts (network + mount namespaces) on one machine.",
        epilog="Exit status: 0 ok, 1 failure, 2 usage or spec error, 3 no such lab.",
    )
    p.add_argument(
        "--state-root",
        type=Path,
        default=DEFAULT_STATE_ROOT,
        help=f"where labs keep their state (default {DEFAULT_STATE_ROOT})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = argparse.ArgumentParser(add_help=False)
    named.add_argument(
        "--name",
        default=os.environ.get("DMVPN_LAB"),
        help="lab name (default: $DMVPN_LAB, else the only lab that is up)",
    )

    up = sub.add_parser("up", help="build a lab from a spec (default: the shipped one)")
    up.add_argument("spec", nargs="?", help="lab spec YAML (default: the shipped default spec)")
    up.add_argument("--name", help="lab name, overriding the spec's name")
    up.add_argument("--replace", action="store_true", help="tear down a lab of that name first")
    up.add_argument("--no-daemons", action="store_true", help="build the network, start no daemon")
    up.add_argument(
        "--keep-on-error", action="store_true", help="leave a failed build for inspection"
    )
    up.add_argument("--json", action="store_true", help="print the status as JSON")

    down = sub.add_parser("down", parents=[named], help="remove a lab and everything it made")
    down.add_argument("--all", action="store_true", help="remove every lab")
    down.add_argument("--json", action="store_true", help="print what was removed as JSON")

    status = sub.add_parser("status", parents=[named], help="nodes, addresses, daemons")
    status.add_argument("--json", action="store_true")

    ex = sub.add_parser(
        "exec",
        parents=[named],
        help="run a command inside a node",
        description="Run CMD inside NODE's network and mount namespaces, with DMVPN_TUNNEL and "
        "DMVPNCTL_SOCKET set for hubs and spokes. NODE may be a hub, spoke, LAN host "
        "(spoke1-lan), NAT router, host, or wan.",
    )
    ex.add_argument("node")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ... (default: a shell)")

    dm = sub.add_parser("daemon", parents=[named], help="start, stop or restart node daemons")
    dm.add_argument("action", choices=("start", "stop", "restart"))
    dm.add_argument("nodes", nargs="+", metavar="NODE")

    check = sub.add_parser("check", help="validate a spec without building anything")
    check.add_argument("spec", nargs="?")
    sub.add_parser("spec", help="print the default spec")
    return p


def _err(message: str) -> None:
    print(f"dmvpn-lab: {message}", file=sys.stderr)


def _join(items: Any) -> str:
    return " ".join(items) if items else "-"


def _daemon_text(d: dict[str, Any]) -> str:
    state = d.get("state", "none")
    if state == "running":
        return f"running (pid {d.get('pid')})"
    return state


def print_status(status: dict[str, Any]) -> None:
    t = status.get("tunnel") or {}
    print(
        f"lab {status['lab']}: {status.get('phase')}; state {status['state_dir']}; "
        f"namespaces {status['netns_prefix']}*"
    )
    print(
        f"tunnel {t.get('name')}: overlay {_join(t.get('overlay'))}, transport "
        f"{t.get('transport')}, dataplane {t.get('dataplane')}"
    )
    rows = [("NODE", "ROLE", "NBMA", "OVERLAY", "LAN", "DAEMON")]
    for n in status["nodes"]:
        lan = n.get("lan") or n.get("lan_addresses") or n.get("inside")
        nbma = n.get("nbma") or []
        if n.get("behind"):
            nbma = [f"{a} (behind {n['behind']})" for a in nbma]
        rows.append(
            (
                n["name"],
                n["role"],
                _join(nbma),
                _join(n.get("overlay")),
                _join(lan),
                _daemon_text(n["daemon"]) if n["daemon"].get("command") else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_up(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, name=args.name)
    lab = Lab.up(
        spec,
        daemons=not args.no_daemons,
        replace=args.replace,
        state_root=args.state_root,
        keep_on_error=args.keep_on_error,
    )
    for w in lab.warnings:
        _err(f"warning: {w}")
    if args.json:
        print(json.dumps(lab.status(), indent=2))
        return EXIT_OK
    print_status(lab.status())
    first = next((n for n in lab.nodes.values() if n.role == "spoke"), None)
    name_opt = f" --name {lab.name}" if len(list_labs(args.state_root)) > 1 else ""
    print()
    if first is not None:
        print(f"look around:  dmvpn-lab exec{name_opt} {first.name} -- ip addr")
    print(f"take it down: dmvpn-lab down{name_opt}")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    if args.all:
        names = list_labs(args.state_root)
    else:
        try:
            names = [pick_lab(args.name, args.state_root)]
        except LabNotFoundError as exc:
            if args.name is None:
                print(f"{exc}; nothing to do")
                return EXIT_OK
            raise
    rc = EXIT_OK
    reports = []
    for name in names:
        report = teardown(name, args.state_root)
        reports.append(report.as_dict())
        if not args.json:
            if report.found_anything:
                print(
                    f"lab {name} removed: {len(report.netns)} namespaces, {len(report.killed)} "
                    f"processes, {len(report.unmounted)} mounts, {len(report.etc_netns)} "
                    "/etc/netns directories"
                )
            else:
                print(f"lab {name}: nothing found")
        for problem in report.problems:
            _err(f"{name}: {problem}")
            rc = EXIT_FAIL
    if args.json:
        print(json.dumps(reports if args.all else reports[0], indent=2))
    return rc


def cmd_status(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.name, state_root=args.state_root)
    if args.json:
        print(json.dumps(lab.status(), indent=2))
    else:
        print_status(lab.status())
    return EXIT_OK


def cmd_exec(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.name, state_root=args.state_root)
    node = lab.node(args.node)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = [os.environ.get("SHELL", "/bin/sh")]
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        cwd = "/"
    argv = node.argv(cmd, cwd=cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, node.env())
    except OSError as exc:
        _err(f"cannot run {argv[0]}: {exc.strerror}")
        return 127
    return EXIT_FAIL  # not reached


def cmd_daemon(args: argparse.Namespace) -> int:
    lab = Lab.attach(args.name, state_root=args.state_root)
    nodes = [lab.node(n) for n in args.nodes]
    rc = EXIT_OK
    for node in nodes:
        if args.action == "stop":
            state = node.stop_daemon()
        elif args.action == "restart":
            state = node.restart_daemon()
        else:
            state = node.start_daemon()
        print(
            f"{node.name}: {_daemon_text(state)}"
            + (f" ({state['message']})" if state.get("message") else "")
        )
        if args.action != "stop" and state["state"] != "running":
            rc = EXIT_FAIL
    return rc


def cmd_check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    hubs = sum(1 for n in spec.nodes.values() if n.role == "hub")
    spokes = sum(1 for n in spec.nodes.values() if n.role == "spoke")
    print(
        f"{spec.source}: ok (lab {spec.name}: {hubs} hubs, {spokes} spokes, "
        f"{len(spec.nodes)} lab hosts)"
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "exec": cmd_exec,
        "daemon": cmd_daemon,
        "check": cmd_check,
    }
    if args.command == "spec":
        sys.stdout.write(default_spec_text())
        return EXIT_OK
    try:
        return handlers[args.command](args)
    except SpecError as exc:
        for problem in exc.problems:
            _err(str(problem))
        return EXIT_USAGE
    except LabNotFoundError as exc:
        _err(str(exc))
        return EXIT_NOT_FOUND
    except LabExistsError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except LabError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `dmvpn-lab status --json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
