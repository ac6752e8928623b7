"""Typed, problem-collecting access to a raw (parsed YAML) lab spec."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from typing import Any

from .errors import SpecProblem
from .model import IPAddr, IPNet


def host_port_ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Reader:
    """Typed access to the raw spec that records a problem instead of raising."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[SpecProblem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(SpecProblem(self.source, key, message))

    def expected(self, key: str, what: str, value: Any) -> None:
        self.problem(key, f"expected {what}, got {_describe(value)}")

    def mapping(self, value: Any, key: str, allowed: Iterable[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.expected(key, "a mapping", value)
            return {}
        allowed = set(allowed)
        for k in value:
            if k not in allowed:
                where = f"{key}.{k}" if key != "(top level)" else str(k)
                self.problem(where, f"unknown key; expected one of: {', '.join(sorted(allowed))}")
        return {k: v for k, v in value.items() if k in allowed}

    def list_of(self, value: Any, key: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.expected(key, "a list", value)
            return []
        return value

    def string(
        self, value: Any, key: str, pattern: re.Pattern[str] | None, what: str
    ) -> str | None:
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            self.expected(key, what, value)
            return None
        return value

    def choice(self, value: Any, key: str, choices: Iterable[str]) -> str | None:
        choices = list(choices)
        if value not in choices:
            self.expected(key, "one of " + ", ".join(choices), value)
            return None
        return value

    def integer(self, value: Any, key: str, low: int, high: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.expected(key, f"an integer from {low} to {high}", value)
            return None
        return value

    def addresses(self, value: Any, key: str) -> list[IPAddr]:
        items = value if isinstance(value, list) else [value]
        out: list[IPAddr] = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            try:
                out.append(ipaddress.ip_address(str(item)))
            except ValueError:
                self.expected(where, "an IPv4 or IPv6 address (or a list of them)", item)
        if len({a.version for a in out}) != len(out):
            self.problem(key, "expected at most one address per address family")
        return out

    def networks(self, value: Any, key: str, within: tuple[IPNet, ...], what: str) -> list[IPNet]:
        items = value if isinstance(value, list) else [value]
        out: list[IPNet] = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]" if isinstance(value, list) else key
            try:
                net = ipaddress.ip_network(str(item), strict=True)
            except ValueError:
                self.expected(where, "an IP prefix such as 10.1.0.0/24 (host bits zero)", item)
                continue
            if not any(net.version == r.version and net.subnet_of(r) for r in within):  # type: ignore[arg-type]
                self.expected(where, f"{what} ({', '.join(map(str, within))})", item)
                continue
            if net.num_addresses < 4:
                self.expected(where, "a prefix with room for at least two hosts", item)
                continue
            out.append(net)
        return out

    def command(self, value: Any, key: str) -> list[str] | None:
        if value is None or value is False:
            return None
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                self.expected(key, f"a shell-style command line ({exc})", value)
                return None
        elif isinstance(value, list) and all(isinstance(a, str | int | float) for a in value):
            argv = [str(a) for a in value]
        else:
            self.expected(key, "a command (string or list of strings) or null", value)
            return None
        if not argv:
            self.expected(key, "a non-empty command or null", value)
            return None
        return argv
