"""The routing table's routes through the tunnel, as the driver reports them.

``Engine.routes_changed`` feeds them (dmvpnd reads the kernel's main table). An NHS uses
them, for clients that register only their overlay address (Cisco and FRR spokes),
whose LANs it knows from routing:

- to find the client a Resolution Request goes to when no registration holds the
  target (RFC 2332 §5.2.1: along the routed path);
- in its policy, where a client stands for its overlay address, the prefixes it
  registered and the prefixes routed through it;
- to purge, when a route moves to another next hop or goes, the shortcuts that the
  nodes which resolved through the old one may hold for it (``Purger.purge_routes``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from ..wire import Address, intern_address
from .cache import PrefixTable

Network = IPv4Network | IPv6Network


class RouteTable:
    """Prefix -> overlay next hop, with a longest-prefix lookup and the reverse index."""

    __slots__ = ("_table", "_through", "lookup")

    def __init__(self) -> None:
        self._table: PrefixTable[Address] = PrefixTable()
        self._through: dict[Address, set[Network]] = {}  # next hop -> its prefixes
        # The longest route holding an address: (prefix, next hop). The table's own
        # method, bound once: an NHS looks up every Resolution Request's target.
        self.lookup: Callable[[Address], tuple[Network, Address] | None] = self._table.lookup

    def update(
        self, added: Iterable[tuple[Network, Address]], removed: Iterable[Network]
    ) -> dict[Network, Address]:
        """``added`` replace any route of their prefix, ``removed`` go. Returns the routes
        that went or changed next hop, each with its earlier next hop (one that ends where
        it started is not among them, however often it moved). Raises TypeError, changing
        nothing, for a malformed route."""
        added, removed = list(added), list(removed)
        for prefix, via in added:
            if not isinstance(prefix, IPv4Network | IPv6Network) or not isinstance(
                via, IPv4Address | IPv6Address
            ):
                raise TypeError(f"route: expected (network, address), got ({prefix!r}, {via!r})")
            if via.version != prefix.version:
                raise TypeError(f"route {prefix} via {via}: the next hop is of another family")
        for prefix in removed:
            if not isinstance(prefix, IPv4Network | IPv6Network):
                raise TypeError(f"withdrawn route: expected a network, got {prefix!r}")
        table = self._table
        before = {prefix: table.get(prefix) for prefix in removed}
        before.update((prefix, table.get(prefix)) for prefix, _via in added)
        for prefix in removed:
            self._unlink(prefix, table.remove(prefix))
        for prefix, via in added:
            via = intern_address(via)
            self._unlink(prefix, table.get(prefix))
            table.insert(prefix, via)
            self._through.setdefault(via, set()).add(prefix)
        return {
            prefix: via
            for prefix, via in before.items()
            if via is not None and table.get(prefix) != via
        }

    def _unlink(self, prefix: Network, via: Address | None) -> None:
        if via is None:
            return
        prefixes = self._through.get(via)
        if prefixes is not None:
            prefixes.discard(prefix)
            if not prefixes:
                del self._through[via]

    def items(self) -> Iterator[tuple[Network, Address]]:
        """Every route: (prefix, next hop)."""
        return self._table.items()

    def through(self, via: Address) -> tuple[Network, ...]:
        """The prefixes routed via overlay address ``via``."""
        prefixes = self._through.get(via)
        return tuple(prefixes) if prefixes else ()

    def __len__(self) -> int:
        return len(self._table)
