"""A small declarative schema for dmvpnd's YAML config.

One table describes every key: its type, default, meaning and whether SIGHUP can
change it. The same table validates a file (every problem reported with the file,
the key and what was expected) and renders docs/config.md, so the two cannot drift.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    key: str
    expected: str
    got: str = ""

    def __str__(self) -> str:
        got = f", got {self.got}" if self.got else ""
        return f"{self.file}: {self.key}: expected {self.expected}{got}"


class Invalid(Exception):
    """A value that does not fit its key; the caller adds file and key."""

    def __init__(self, expected: str, got: Any = _MISSING) -> None:
        super().__init__(expected)
        self.expected = expected
        self.got = "" if got is _MISSING else _show(got)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- value checkers: each returns the parsed value or raises Invalid ----------------


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid("true or false", value)


def integer(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(_range_text("an integer", low, high), value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(_range_text("an integer", low, high), value)
        return value

    check.describe = _range_text("integer", low, high)  # type: ignore[attr-defined]
    return check


def number(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(_range_text("a number", low, high), value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(_range_text("a number", low, high), value)
        return float(value)

    check.describe = _range_text("number", low, high)  # type: ignore[attr-defined]
    return check


def _range_text(what: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{what} from {low} to {high}"
    if low is not None:
        return f"{what} >= {low}"
    if high is not None:
        return f"{what} <= {high}"
    return what


def choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise Invalid("one of " + ", ".join(options), value)
        return value

    check.describe = "one of " + ", ".join(f"`{o}`" for o in options)  # type: ignore[attr-defined]
    return check


_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def ifname(value: Any) -> str:
    if isinstance(value, str) and _IFNAME.match(value):
        return value
    raise Invalid("an interface name of 1-15 letters, digits, '_', '.', '-'", value)


def string(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise Invalid("a non-empty string", value)


def path(value: Any) -> str:
    if isinstance(value, str) and value.startswith("/"):
        return value
    raise Invalid("an absolute path", value)


def ip_address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise Invalid("an IPv4 or IPv6 address", value) from None


def ip_interface(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(value)
    except (ValueError, TypeError):
        raise Invalid("an address with prefix length, e.g. 10.255.255.2/24", value) from None


def ip_network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value)
    except (ValueError, TypeError):
        raise Invalid("a prefix with no host bits, e.g. 10.1.0.0/24", value) from None


def host_port(value: Any) -> tuple[str, int]:
    """``ADDRESS:PORT`` or ``[IPV6]:PORT`` (metrics listener)."""
    if isinstance(value, str):
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if sep and port.isdigit() and 0 < int(port) < 65536:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                pass
            else:
                return host, int(port)
    raise Invalid("ADDRESS:PORT, e.g. 127.0.0.1:9477", value)


def list_of(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise Invalid("a list", value)
        return [item(v) for v in value]

    check.describe = "list of " + _describe(item)  # type: ignore[attr-defined]
    return check


def _describe(check: Callable[[Any], Any]) -> str:
    return getattr(check, "describe", check.__name__.replace("_", " "))


# --- the schema ----------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One config key. ``default`` of _MISSING means required."""

    name: str
    check: Callable[[Any], Any]
    default: Any = _MISSING
    help: str = ""
    reloadable: bool = True

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class Section:
    """A mapping of keys (and nested sections). ``many`` makes it a list of mappings."""

    name: str
    entries: tuple[Key | Section, ...]
    help: str = ""
    many: bool = False
    optional: bool = True


def validate(section: Section, data: Any, file: str, prefix: str = "") -> tuple[dict, list]:
    """Check ``data`` against ``section``; returns (values with defaults, problems)."""
    problems: list[Problem] = []
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, [Problem(file, prefix or "(top level)", "a mapping", _show(data))]
    known = {e.name for e in section.entries}
    for key in data:
        if key not in known:
            expected = "a known key (one of: " + _known(known) + ")"
            problems.append(Problem(file, _join(prefix, str(key)), expected, "an unknown key"))
    out: dict[str, Any] = {}
    for entry in section.entries:
        where = _join(prefix, entry.name)
        if isinstance(entry, Section):
            raw = data.get(entry.name)
            if raw is None and not entry.optional:
                problems.append(Problem(file, where, "a section (required)"))
                continue
            if entry.many:
                if raw is None:
                    out[entry.name] = []
                    continue
                if not isinstance(raw, list):
                    problems.append(Problem(file, where, "a list of mappings", _show(raw)))
                    continue
                items = []
                for i, item in enumerate(raw):
                    value, sub = validate(entry, item, file, f"{where}[{i}]")
                    items.append(value)
                    problems += sub
                out[entry.name] = items
            else:
                out[entry.name], sub = validate(entry, raw, file, where)
                problems += sub
            continue
        if entry.name not in data or data[entry.name] is None:
            if entry.required:
                problems.append(Problem(file, where, _describe(entry.check) + " (required)"))
            else:
                out[entry.name] = entry.default
            continue
        try:
            out[entry.name] = entry.check(data[entry.name])
        except Invalid as exc:
            problems.append(Problem(file, where, exc.expected, exc.got))
    return out, problems


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _known(names: set[str]) -> str:
    return ", ".join(sorted(names))


def render_markdown(section: Section, prefix: str = "") -> list[str]:
    """Rows of a Markdown table documenting every key."""
    rows: list[str] = []
    for entry in section.entries:
        where = _join(prefix, entry.name)
        if isinstance(entry, Section):
            where_list = f"{where}[]" if entry.many else where
            rows.append(f"| `{where_list}` | section | | {entry.help} | |")
            rows += render_markdown(entry, where_list)
            continue
        default = "required" if entry.required else f"`{entry.default!r}`"
        reload = "yes" if entry.reloadable else "restart"
        kind = _describe(entry.check)
        rows.append(f"| `{where}` | {kind} | {default} | {entry.help} | {reload} |")
    return rows
