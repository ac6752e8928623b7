"""dmvpnctl's daemon subcommands: ``show …`` and ``clear …`` over the control socket.

Which daemon: ``-s SOCKET``, else ``--tunnel NAME`` (/run/dmvpn/NAME.sock), else the
environment (DMVPNCTL_SOCKET, DMVPN_TUNNEL — ``dmvpn-lab exec`` sets them), else the
only socket in /run/dmvpn. Exit status: 0 done, 1 the daemon refused, 2 usage,
3 no daemon answered.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any

from ..daemon.control import ControlError, request

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
RUN_DIR = "/run/dmvpn"

# What each ``show`` asks for, and the table columns (key, heading) it prints.
SHOW: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "nhrp": (
        "show_nhrp",
        [
            ("type", "TYPE"),
            ("proto", "PROTOCOL"),
            ("prefix_length", "LEN"),
            ("nbma", "NBMA"),
            ("claimed_nbma", "CLAIMED NBMA"),
            ("expires", "EXPIRES(s)"),
            ("flags", "FLAGS"),
            ("prefixes", "PREFIXES"),
        ],
    ),
    "nhs": (
        "show_nhs",
        [
            ("proto", "NHS"),
            ("nbma", "NBMA"),
            ("name", "NAME"),
            ("priority", "PRI"),
            ("state", "STATE"),
            ("active", "ACTIVE"),
            ("misses", "MISSES"),
            ("registered_until", "EXPIRES(s)"),
            ("post_nat", "OUR POST-NAT"),
            ("refused", "REFUSED"),
        ],
    ),
    "shortcuts": (
        "show_shortcuts",
        [
            ("prefix", "PREFIX"),
            ("via", "VIA"),
            ("nbma", "NBMA"),
            ("expires", "EXPIRES(s)"),
            ("used", "USED"),
            ("route", "ROUTE"),
        ],
    ),
    "routes": (
        "show_routes",
        [("prefix", "PREFIX"), ("via", "VIA"), ("client_nbma", "CLIENT NBMA")],
    ),
    "peers": ("show_peers", []),  # columns from the data: peers carry per-kind fields
    "stats": ("show_stats", []),
    "status": ("show_status", []),
}


def socket_path(args: argparse.Namespace) -> str | None:
    if args.socket:
        return args.socket
    if args.tunnel:
        return os.path.join(RUN_DIR, f"{args.tunnel}.sock")
    if os.environ.get("DMVPNCTL_SOCKET"):
        return os.environ["DMVPNCTL_SOCKET"]
    if os.environ.get("DMVPN_TUNNEL"):
        return os.path.join(RUN_DIR, f"{os.environ['DMVPN_TUNNEL']}.sock")
    found = sorted(glob.glob(os.path.join(RUN_DIR, "*.sock")))
    return found[0] if len(found) == 1 else None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--socket", help="control socket of the daemon")
    parser.add_argument("-t", "--tunnel", help="tunnel name: /run/dmvpn/TUNNEL.sock")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")


def _ask(args: argparse.Namespace, command: str, params: dict[str, Any] | None = None):
    path = socket_path(args)
    if path is None:
        print(
            "error: which daemon? give -s SOCKET or --tunnel NAME "
            f"(none or several sockets in {RUN_DIR})",
            file=sys.stderr,
        )
        return EXIT_USAGE, None
    try:
        return 0, request(path, command, params)
    except ControlError as exc:
        print(f"error: dmvpnd refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED, None
    except (OSError, ValueError) as exc:
        print(f"error: no dmvpnd answers on {path}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE, None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    if not columns:
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        columns = [(k, k.upper()) for k in keys]
    cells = [[head for _key, head in columns]]
    cells += [[_cell(row.get(key)) for key, _head in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out.append((prefix, _cell(value)))


def add_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=sorted(SHOW), help="what to show")
    _common(parser)


def run_show(args: argparse.Namespace) -> int:
    command, columns = SHOW[args.what]
    status, result = _ask(args, command)
    if status:
        return status
    if args.json:
        print(json.dumps(result, indent=2))
    elif isinstance(result, list):
        print(table(result, columns) if result else f"(no {args.what} entries)")
    else:
        pairs: list[tuple[str, str]] = []
        _flatten("", result, pairs)
        width = max((len(k) for k, _v in pairs), default=0)
        print("\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs))
    return 0


def add_clear(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["nhrp", "shortcuts"], help="what to clear")
    parser.add_argument("address", nargs="?", help="nhrp: only this protocol address")
    _common(parser)


def run_clear(args: argparse.Namespace) -> int:
    if args.what == "shortcuts" and args.address:
        print("error: clear shortcuts takes no address", file=sys.stderr)
        return EXIT_USAGE
    params = {"address": args.address} if args.address else {}
    status, result = _ask(args, f"clear_{args.what}", params)
    if status:
        return status
    print(json.dumps(result) if args.json else f"cleared {result['cleared']} {args.what} entries")
    return 0
