"""Seed Req. 4: spokes talk directly only if both the hub's and the spokes' policies allow.

A policy is an ordered list of rules over two *sides*. A side is a set of networks: a
node is named by its overlay address and its protected prefixes, a destination by the
address or prefix being resolved. A rule matches a pair when one side falls in ``src``
and the other in ``dst`` (both directions are checked, as in the daemon's config); the
first match wins, then ``default``. Selectors are prefixes or names of groups.

Where it is applied:

- hub (NHS): no Traffic Indication for a denied pair; a Resolution Request for a denied
  pair is answered with CIE code 4 (Administratively Prohibited);
- ingress spoke: no resolution for a denied destination, no shortcut installed;
- egress spoke: answers code 4 instead of its binding.

A shortcut prefix is never wider than the policy allows: :meth:`Policy.shortcut_prefix`
narrows the prefix of a Resolution Reply until no denied address falls inside it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network

from ..wire import Address
from .cache import host, network

Network = IPv4Network | IPv6Network


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class PolicyRule:
    """``src``/``dst``: group names or prefixes (strings or networks); empty means any."""

    action: Verdict | str
    src: tuple[str | Network, ...] = ()
    dst: tuple[str | Network, ...] = ()


@dataclass(frozen=True)
class Policy:
    groups: Mapping[str, Sequence[str | Network]] = field(default_factory=dict)
    rules: tuple[PolicyRule, ...] = ()
    default: Verdict | str = Verdict.ALLOW
    # compiled: (allow?, src networks or None for any, dst networks or None)
    _compiled: tuple = field(init=False, repr=False, compare=False, default=())
    trivial: bool = field(init=False, repr=False, compare=False, default=False)
    _default_allow: bool = field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        compiled = []
        for rule in self.rules:
            action = Verdict(rule.action)
            compiled.append(
                (action is Verdict.ALLOW, self._selector(rule.src), self._selector(rule.dst))
            )
        object.__setattr__(self, "_compiled", tuple(compiled))
        # Allows everything: callers skip building the sides.
        object.__setattr__(self, "trivial", not compiled and Verdict(self.default) is Verdict.ALLOW)
        object.__setattr__(self, "_default_allow", Verdict(self.default) is Verdict.ALLOW)

    def _selector(self, names: Iterable[str | Network]) -> tuple[Network, ...] | None:
        nets: list[Network] = []
        for name in names:
            if isinstance(name, IPv4Network | IPv6Network):
                nets.append(name)
            elif name in self.groups:
                nets.extend(ip_network(p) for p in self.groups[name])
            elif name == "any":
                return None
            else:
                try:
                    nets.append(ip_network(name))
                except ValueError:
                    raise ValueError(f"policy: {name!r} is neither a group nor a prefix") from None
        return tuple(nets) if nets else None

    # -- decisions ---------------------------------------------------------------------
    def allows(self, side_a: Iterable[Network], dst: Network | Address) -> bool:
        """May the node described by ``side_a`` reach ``dst`` (all of it) directly?"""
        if self.trivial:
            return True
        if not isinstance(dst, IPv4Network | IPv6Network):
            dst = host(dst)
        return self._uniform(tuple(side_a), dst) is True

    def shortcut_prefix(
        self, side_a: Iterable[Network], target: Address, prefix: Network
    ) -> Network | None:
        """The widest prefix inside ``prefix`` that holds ``target`` and is wholly allowed."""
        if self.trivial:
            return prefix
        side = tuple(side_a)
        for length in range(prefix.prefixlen, target.max_prefixlen + 1):
            candidate = network(target, length)
            verdict = self._uniform(side, candidate)
            if verdict is True:
                return candidate
            if verdict is False:  # the target itself is denied: nothing narrower helps
                return None
        return None

    def _uniform(self, side: tuple[Network, ...], dst: Network) -> bool | None:
        """True: all of ``dst`` is allowed; False: all denied; None: some of each."""
        part_allow = part_deny = False
        for allow, src_sel, dst_sel in self._compiled:
            for a_sel, b_sel in ((src_sel, dst_sel), (dst_sel, src_sel)):
                if not _side_in(side, a_sel):
                    continue
                cover = _covers(b_sel, dst)
                if cover == "all":
                    return _verdict(allow, part_allow, part_deny)
                if cover == "part":
                    if allow:
                        part_allow = True
                    else:
                        part_deny = True
        return _verdict(self._default_allow, part_allow, part_deny)


def _verdict(allow: bool, part_allow: bool, part_deny: bool) -> bool | None:
    """The rest of ``dst`` gets ``allow``; earlier partial matches may make it mixed."""
    if allow:
        return None if part_deny else True
    return None if part_allow else False


def _side_in(side: tuple[Network, ...], selector: tuple[Network, ...] | None) -> bool:
    if selector is None:
        return True
    for net in side:
        for sel in selector:
            # Versions compared first: typeshed's subnet_of wants both typed alike.
            if net.version == sel.version and net.subnet_of(sel):  # type: ignore[arg-type]
                return True
    return False


def _covers(selector: tuple[Network, ...] | None, dst: Network) -> str:
    """'all' when ``dst`` lies inside the selector, 'part' when they overlap, else ''."""
    if selector is None:
        return "all"
    part = False
    for sel in selector:
        if sel.version != dst.version:
            continue
        # Of one version (compared above): typeshed's subnet_of wants both typed alike.
        if dst.subnet_of(sel):  # type: ignore[arg-type]
            return "all"
        if sel.subnet_of(dst):  # type: ignore[arg-type]
            part = True
    return "part" if part else ""
