"""Longest-prefix matching and the fast network helpers the hot paths use."""

from __future__ import annotations

import pickle
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from hypothesis import given
from hypothesis import strategies as st

from dmvpn_runtime.nhrp.engine.actions import MappingType
from dmvpn_runtime.nhrp.engine.cache import (
    Cache,
    CacheEntry,
    PrefixTable,
    contains,
    host,
    network,
)
from dmvpn_runtime.nhrp.wire import intern_address

v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(IPv6Address)


@given(st.one_of(v4, v6), st.data())
def test_network_and_contains_agree_with_ipaddress(addr, data) -> None:
    length = data.draw(st.integers(0, addr.max_prefixlen))
    net = network(addr, length)
    assert net == ip_network((addr, length), strict=False)
    assert host(addr) == ip_network(addr)
    other = data.draw(v4 if addr.version == 4 else v6)
    assert contains(net, other) == (other in net)


def test_longest_prefix_wins_v4_and_v6() -> None:
    table: PrefixTable[str] = PrefixTable()
    for prefix, name in (
        ("10.0.0.0/8", "a"),
        ("10.1.0.0/16", "b"),
        ("10.1.2.0/24", "c"),
        ("fd00::/8", "d"),
        ("fd00:1::/32", "e"),
    ):
        table.insert(ip_network(prefix), name)
    assert table.lookup(ip_address("10.1.2.3"))[1] == "c"
    assert table.lookup(ip_address("10.1.3.3"))[1] == "b"
    assert table.lookup(ip_address("10.9.9.9"))[1] == "a"
    assert table.lookup(ip_address("11.0.0.1")) is None
    assert table.lookup(ip_address("fd00:1::5"))[1] == "e"
    assert table.remove(ip_network("10.1.2.0/24")) == "c"
    assert table.lookup(ip_address("10.1.2.3"))[1] == "b"
    inside = {str(n) for n, _value in table.overlapping(ip_network("10.1.0.0/16"))}
    assert inside == {"10.0.0.0/8", "10.1.0.0/16"}
    assert len(table) == 4


@given(st.lists(st.tuples(v4, st.integers(0, 32)), max_size=30), v4)
def test_lookup_matches_a_linear_scan(prefixes, addr) -> None:
    table: PrefixTable[int] = PrefixTable()
    nets = {}
    for a, length in prefixes:
        net = network(a, length)
        nets[net] = net.prefixlen
        table.insert(net, net.prefixlen)
    expected = max((n.prefixlen for n in nets if addr in n), default=None)
    hit = table.lookup(addr)
    assert (hit[1] if hit else None) == expected


def test_cache_counts_entries_per_source_including_prefixes() -> None:
    cache = Cache()
    src = ip_address("203.0.113.1")
    entry = CacheEntry(ip_address("172.16.0.11"), MappingType.REGISTERED, src, source=src)
    cache.add(entry)
    cache.set_prefixes(entry, (ip_network("10.1.0.0/24"), ip_network("10.1.1.0/24")))
    assert cache.from_source(src) == 3
    assert cache.covering(ip_address("10.1.1.9")) is entry
    assert cache.covering_length(ip_address("172.16.0.11")) == (32, entry)
    cache.pop(entry.proto)
    assert cache.from_source(src) == 0
    assert cache.covering(ip_address("10.1.1.9")) is None


def test_host_prefixes_are_shared_and_stay_bounded(monkeypatch):
    from dmvpn_runtime.nhrp.engine import cache as cache_module

    monkeypatch.setattr(cache_module, "_HOSTS", {4: {}, 6: {}})
    monkeypatch.setattr(cache_module, "_HOSTS_MAX", 8)
    addr = ip_address("10.0.0.1")
    assert cache_module.host(addr) is cache_module.network(addr, 32)
    assert cache_module.host(addr) == ip_network("10.0.0.1/32")
    v4_as_int_in_v6 = ip_address(f"::{addr}")  # same integer, other family
    assert cache_module.host(v4_as_int_in_v6) == ip_network(f"::{addr}/128")
    for i in range(20):
        assert cache_module.host(ip_address(f"10.0.1.{i}")) == ip_network(f"10.0.1.{i}/32")
    assert len(cache_module._HOSTS[4]) <= 8


@given(st.one_of(v4, v6))
def test_kept_host_prefixes_behave_as_plain_networks(addr) -> None:
    """host() keeps its networks in a subclass that keeps its hash and reads version and
    lengths as class attributes: it must equal, hash, print and pickle as the plain one."""
    kept, plain = host(addr), ip_network(addr)
    assert kept == plain and plain == kept and hash(kept) == hash(plain)
    assert {plain: "found"}[kept] == "found" and {kept: 1}.get(plain) == 1
    assert repr(kept) == repr(plain) and str(kept) == str(plain)
    assert pickle.loads(pickle.dumps(kept)).__class__ is plain.__class__
    assert (kept.version, kept.prefixlen, kept.max_prefixlen) == (
        plain.version,
        plain.prefixlen,
        plain.max_prefixlen,
    )
    assert addr in kept and list(kept.hosts()) == list(plain.hosts())
    assert kept.hosts()[0].__class__ is plain.hosts()[0].__class__  # a plain address
    assert (kept.netmask, kept.hostmask, kept.broadcast_address, kept.num_addresses) == (
        plain.netmask,
        plain.hostmask,
        plain.broadcast_address,
        plain.num_addresses,
    )
    assert kept.network_address is intern_address(addr)  # the codec's, not another copy
    assert kept.subnet_of(plain) and not kept < plain and sorted([kept, plain]) == [plain, plain]
    # ipaddress makes related networks through self.__class__: they must be right too.
    wider = kept.supernet(prefixlen_diff=8)
    assert wider == plain.supernet(prefixlen_diff=8) and hash(wider) == hash(plain.supernet(8))
    assert wider.prefixlen == plain.prefixlen - 8 and addr in wider
    assert list(wider.hosts()) == list(plain.supernet(8).hosts())
    pair = kept.supernet()  # a /31 or /127: ipaddress's hosts() gives both addresses
    assert list(pair.hosts()) == list(plain.supernet().hosts()) and len(list(pair.hosts())) == 2
    table: PrefixTable[str] = PrefixTable()
    table.insert(kept, "host")
    assert table.get(plain) == "host" and table.lookup(addr) == (kept, "host")
