"""Protocol -> NBMA bindings (FRR nhrp_cache.c) and a longest-prefix-match table.

An entry is keyed by overlay address and has a *current* binding (``nbma``, what the
data plane was told) and, while a replacement waits for authorisation (IPsec up with an
identity the authoriser accepts), a *new* one; the new binding replaces the current only
once it is authorised, so a forged or premature answer never redirects traffic.

``nbma`` is where packets go (post-NAT when NAT was seen); ``claimed_nbma`` is what the
peer said in its packet (pre-NAT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Final, Generic, TypeVar

from ..kept import kept_host
from ..wire import Address, intern_address
from .actions import MappingType

Network = IPv4Network | IPv6Network
V = TypeVar("V")

_MASKS: Final = {
    4: [((1 << 32) - 1) ^ ((1 << (32 - n)) - 1) for n in range(33)],
    6: [((1 << 128) - 1) ^ ((1 << (128 - n)) - 1) for n in range(129)],
}

# Read per resolution an NHS serves: a module constant reads cheaper than an enum member.
_REGISTERED: Final = MappingType.REGISTERED

#: Types the data plane is told about and that count as "using" an NBMA.
INSTALLED_TYPES: Final = frozenset(
    {MappingType.STATIC, MappingType.NHS, MappingType.REGISTERED, MappingType.CACHED}
)
#: Types an IPsec-down notice, a purge or a newer answer may remove.
DYNAMIC_TYPES: Final = frozenset({MappingType.REGISTERED, MappingType.CACHED, MappingType.NEGATIVE})


def network(addr: Address, length: int) -> Network:
    """``addr``/``length`` with the host bits cleared: several times faster than
    ``ip_network((addr, length), strict=False)``, which matters on the hub's hot path."""
    if length == addr.max_prefixlen:
        return host(addr)
    if addr.version == 4:
        return IPv4Network((int(addr) & _MASKS[4][length], length))
    return IPv6Network((int(addr) & _MASKS[6][length], length))


def contains(prefix: Network, addr: Address) -> bool:
    """``addr in prefix`` without the cost of ipaddress's broadcast-address computation."""
    return addr.version == prefix.version and (
        int(addr) & _MASKS[addr.version][prefix.prefixlen]
    ) == int(prefix.network_address)


_HOSTS: dict[int, dict[int, Network]] = {4: {}, 6: {}}  # by version, then int (no hashing
_HOSTS_MAX = 65536  # of an address object, which formats it as hex)


def host(addr: Address) -> Network:
    """``addr`` as a host prefix. Kept, as the same peers come back: a host network costs
    1.5 us and four objects for the collector (ipaddress gives each one a ``hosts``
    closure), a lookup a fifth of that."""
    version, value = addr.version, int(addr)
    hosts = _HOSTS[version]
    net = hosts.get(value)
    if net is None:
        if len(hosts) >= _HOSTS_MAX:
            hosts.clear()
        net = hosts[value] = kept_host(intern_address(addr), value)
    return net


@dataclass(slots=True)
class Binding:
    nbma: Address
    claimed_nbma: Address | None
    expires: float
    source: Address | None

    def __init__(
        self, nbma: Address, claimed_nbma: Address | None, expires: float, source: Address | None
    ) -> None:
        self.nbma = nbma
        self.claimed_nbma = claimed_nbma
        self.expires = expires
        self.source = source


@dataclass(slots=True, eq=False)
class CacheEntry:
    proto: Address
    type: MappingType
    nbma: Address | None
    claimed_nbma: Address | None = None
    expires: float = math.inf
    prefix_length: int = 0
    unique: bool = False
    request_id: int = 0  # registered: the request that made it (Cisco purge rule)
    source: Address | None = None  # NBMA on whose behalf it exists (per-source cap)
    prefixes: tuple[Network, ...] = ()  # registered: protected prefixes of the client
    installed: bool = False  # AddMapping was emitted
    used: bool = False
    # registered: who resolved this client through us, overlay -> NBMA (to purge them)
    resolved_by: dict[Address, Address] | None = None
    new: Binding | None = None
    learned: bool = False  # cached from a request we answered (not from a reply)
    created: float = 0.0

    def __init__(
        self,
        proto: Address,
        type: MappingType,
        nbma: Address | None,
        claimed_nbma: Address | None = None,
        expires: float = math.inf,
        prefix_length: int = 0,
        unique: bool = False,
        request_id: int = 0,
        source: Address | None = None,
        prefixes: tuple[Network, ...] = (),
        installed: bool = False,
        used: bool = False,
        resolved_by: dict[Address, Address] | None = None,
        new: Binding | None = None,
        learned: bool = False,
        created: float = 0.0,
    ) -> None:
        self.proto = proto
        self.type = type
        self.nbma = nbma
        self.claimed_nbma = claimed_nbma
        self.expires = expires
        self.prefix_length = prefix_length
        self.unique = unique
        self.request_id = request_id
        self.source = source
        self.prefixes = prefixes
        self.installed = installed
        self.used = used
        self.resolved_by = resolved_by
        self.new = new
        self.learned = learned
        self.created = created


class PrefixTable(Generic[V]):
    """Longest-prefix match: one dict per prefix length, keyed by the network as an int."""

    __slots__ = ("_lens", "_tables")

    def __init__(self) -> None:
        # Created on first insert: most tables on a spoke stay empty or small.
        self._tables: dict[int, dict[int, dict[int, tuple[Network, V]]]] = {}
        self._lens: dict[int, list[int]] = {}

    def insert(self, net: Network, value: V) -> None:
        # Each read once: on ipaddress's own networks they are Python properties.
        version, length = net.version, net.prefixlen
        tables = self._tables.get(version)
        if tables is None:
            tables = self._tables[version] = {}
        table = tables.get(length)
        if table is None:
            table = tables[length] = {}
            self._lens[version] = sorted(tables, reverse=True)
        table[int(net.network_address)] = (net, value)

    def _table(self, net: Network) -> dict[int, tuple[Network, V]] | None:
        """The table of ``net``'s family and length, if there is one."""
        tables = self._tables.get(net.version)
        return tables.get(net.prefixlen) if tables is not None else None

    def remove(self, net: Network) -> V | None:
        table = self._table(net)
        if table is None:
            return None
        item = table.pop(int(net.network_address), None)
        if not table:
            tables = self._tables[net.version]
            del tables[net.prefixlen]
            self._lens[net.version] = sorted(tables, reverse=True)
        return item[1] if item else None

    def get(self, net: Network) -> V | None:
        table = self._table(net)
        item = table.get(int(net.network_address)) if table is not None else None
        return item[1] if item else None

    def lookup(self, addr: Address) -> tuple[Network, V] | None:
        """The longest prefix holding ``addr``."""
        if not self._tables:
            return None  # most tables are empty (a hub's routes, a spoke's shortcuts)
        version = addr.version
        tables = self._tables.get(version)
        if tables is None:
            return None
        masks = _MASKS[version]
        value = int(addr)
        for length in self._lens[version]:
            item = tables[length].get(value & masks[length])
            if item is not None:
                return item
        return None

    def overlapping(self, net: Network) -> list[tuple[Network, V]]:
        """Entries inside ``net`` or holding it."""
        out: list[tuple[Network, V]] = []
        for length, table in self._tables.get(net.version, {}).items():
            if length >= net.prefixlen:
                # Tables are per version: typeshed's subnet_of wants both typed alike.
                out.extend(item for item in table.values() if item[0].subnet_of(net))  # type: ignore[arg-type]
            else:
                item = table.get(int(net.network_address) & _MASKS[net.version][length])
                if item is not None:
                    out.append(item)
        return out

    def items(self) -> Iterator[tuple[Network, V]]:
        for tables in self._tables.values():
            for table in tables.values():
                yield from table.values()

    def __len__(self) -> int:
        return sum(len(t) for tables in self._tables.values() for t in tables.values())


class Cache:
    __slots__ = ("by_source", "entries", "get", "prefixes")

    def __init__(self) -> None:
        self.entries: dict[Address, CacheEntry] = {}
        self.prefixes: PrefixTable[CacheEntry] = PrefixTable()  # registered
        self.by_source: dict[Address, int] = {}  # NBMA -> entries and prefixes it brought
        # The entry of an overlay address: the dict's own method, bound once (a
        # resolution looks up three or four entries; a forwarding method costs a call).
        self.get: Callable[[Address], CacheEntry | None] = self.entries.get

    def add(self, entry: CacheEntry) -> None:
        self.entries[entry.proto] = entry
        self._count(entry, 1 + len(entry.prefixes))

    def pop(self, proto: Address) -> CacheEntry | None:
        entry = self.entries.pop(proto, None)
        if entry is not None:
            self._count(entry, -1 - len(entry.prefixes))
            for prefix in entry.prefixes:
                if self.prefixes.get(prefix) is entry:
                    self.prefixes.remove(prefix)
        return entry

    def set_prefixes(self, entry: CacheEntry, prefixes: tuple[Network, ...]) -> None:
        for prefix in entry.prefixes:
            if self.prefixes.get(prefix) is entry:
                self.prefixes.remove(prefix)
        self._count(entry, len(prefixes) - len(entry.prefixes))
        entry.prefixes = prefixes
        for prefix in prefixes:
            self.prefixes.insert(prefix, entry)

    def set_source(self, entry: CacheEntry, source: Address | None) -> None:
        weight = 1 + len(entry.prefixes)
        self._count(entry, -weight)
        entry.source = source
        self._count(entry, weight)

    def from_source(self, source: Address) -> int:
        return self.by_source.get(source, 0)

    def _count(self, entry: CacheEntry, delta: int) -> None:
        source = entry.source
        if source is None or not delta:
            return
        n = self.by_source.get(source, 0) + delta
        if n > 0:
            self.by_source[source] = n
        else:
            self.by_source.pop(source, None)

    def covering(self, addr: Address) -> CacheEntry | None:
        """The registered client whose overlay address or prefix holds ``addr``."""
        hit = self.covering_length(addr)
        return hit[1] if hit else None

    def covering_length(self, addr: Address) -> tuple[int, CacheEntry] | None:
        """That client and the length of its prefix that holds ``addr``."""
        entry = self.entries.get(addr)
        if entry is not None and entry.type is _REGISTERED:
            return addr.max_prefixlen, entry
        hit = self.prefixes.lookup(addr)
        return (hit[0].prefixlen, hit[1]) if hit else None

    def __len__(self) -> int:
        return len(self.entries)
