"""ipaddress objects made once and kept for reuse: the codec's interned addresses and
the engine's host prefixes.

They subclass ipaddress's classes, so a compiled build of the core (``make native``)
leaves this module interpreted: mypyc compiles no subclass of a Python class.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, ClassVar

Address = IPv4Address | IPv6Address


class KeptIpObject:
    """Base of the ipaddress objects that are made once and kept for reuse (the codec's
    interned addresses, the engine's host prefixes, ``cache.host``): each computes its
    hash once, where ipaddress computes it in Python on every hash (0.3 us for an
    address, which it formats as hex). Equal to, hashing, printing and pickling like
    the plain class (``_plain``). A subclass lists ``__hash__`` in its slots."""

    __slots__ = ()
    # The ipaddress class this one stands in for, whose methods are applied to ``self``
    # (an instance of a subclass of both): a mixin's view mypy cannot express.
    _plain: ClassVar[type[Any]]

    def _keep_hash(self) -> None:
        # The slot holds the hash value's bound ``conjugate``, a C method of no argument
        # that gives the int itself back: hash() finds the slot and calls it with no
        # Python frame (a method ``__hash__`` returning a kept value costs one) and
        # through the vectorcall protocol (``__int__``'s method-wrapper has none):
        # 62 ns a dict lookup, against 72 with ``__int__`` and 83 with a method. The
        # engine hashes these objects some 40 times per resolution. (mypy reads
        # ``type[Any].__hash__`` as the metaclass's, which takes no argument.)
        self.__hash__ = self._plain.__hash__(self).conjugate  # type: ignore[method-assign,call-arg]

    def __repr__(self) -> str:
        return f"{self._plain.__name__}('{self}')"

    def __reduce__(self) -> tuple:
        return self._plain, (str(self),)


class Interned(KeptIpObject):
    """An address the codec made from its octets and keeps (``ADDRESS_CACHE``): it
    keeps its hash and its octets. ipaddress packs it on every ``.packed`` (0.4 us); the
    engine looks up addresses about 25 times per resolution and the encoder packs each
    one it sends."""

    __slots__ = ()
    packed: bytes  # a slot in the subclasses: read in C, where ipaddress's is a property
    __int__: Callable[[], int]  # a slot in the subclasses too (see __init__)

    def __init__(self, address: object) -> None:
        """``address``: the octets, as the codec gives them, or anything the plain class
        takes (ipaddress makes ``addr + 1`` and the like through ``self.__class__``)."""
        super().__init__(address)  # type: ignore[call-arg]
        self._keep_hash()
        # int() as hash() above: a C call where ipaddress's ``__int__`` is a Python one
        # (the engine masks and keys prefixes by an address's integer).
        self.__int__ = self._ip.conjugate  # type: ignore[attr-defined]
        # A slot of the subclasses: beside ipaddress's slots, a base cannot have it.
        self.packed = (  # type: ignore[misc]
            address if address.__class__ is bytes else self._plain.packed.fget(self)
        )


# ``version`` and ``max_prefixlen`` as class attributes, shadowing ipaddress's properties
# with the same values: read in C, where a property is a Python call (the engine reads
# them about 15 times per resolution).


class _InternedIPv4Address(Interned, IPv4Address):
    __slots__ = ("__hash__", "__int__", "packed")
    _plain = IPv4Address
    version = 4
    max_prefixlen = 32


class _InternedIPv6Address(Interned, IPv6Address):
    __slots__ = ("__hash__", "__int__", "packed")
    _plain = IPv6Address
    version = 6
    max_prefixlen = 128


_ADDRESS_CACHE_MAX = 65536  # a hub sees each peer's few addresses again and again


class _AddressCache(dict[bytes, Address | None]):
    """The interned addresses by their octets; ``[raw]`` makes and keeps a missing one,
    so the decoder reads an address with one subscript (a hit costs what a plain dict's
    does). The length names the family (4 or 16 octets, for NBMA and protocol addresses
    alike: the decoder checks it first), and no octets at all read as no address."""

    def __missing__(self, raw: bytes) -> Address | None:
        if not raw:
            return None
        if len(self) >= _ADDRESS_CACHE_MAX:
            self.clear()
        addr = self[raw] = (_InternedIPv4Address if len(raw) == 4 else _InternedIPv6Address)(raw)
        return addr


ADDRESS_CACHE: dict[bytes, Address | None] = _AddressCache()


class _KeptHost(KeptIpObject):
    """A host prefix that ``cache.host`` made (:func:`kept_host`) and keeps: it keeps its
    hash (ipaddress's makes three more Python calls) and reads ``version`` and
    ``max_prefixlen`` as class attributes with the same values, not property calls.
    Shortcuts and prefix tables hash and read host prefixes several times per resolution.
    The prefix length stays ipaddress's: a network made from this one through
    ``self.__class__`` (``supernet()``), which comes through ``__init__``, is of this
    class too, with its own length."""

    __slots__ = ()
    _host_netmask: ClassVar[Any]  # the netmask of a host prefix, ipaddress's own object
    _all_ones: ClassVar[int]  # that netmask as an int

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        plain = cls._plain
        cls._host_netmask = plain._make_netmask(plain._max_prefixlen)[0]
        cls._all_ones = int(cls._host_netmask)

    def __init__(self, network: object) -> None:
        super().__init__(network)  # type: ignore[call-arg]
        self._keep_hash()

    def hosts(self) -> Any:
        """ipaddress's ``hosts()``: for a host prefix, the address (no closure here)."""
        net: Any = self
        if net._prefixlen == net.max_prefixlen:
            return [self._plain._address_class(int(net.network_address))]
        return self._plain.hosts(self)


class _KeptIPv4Host(_KeptHost, IPv4Network):
    __slots__ = ("__hash__",)
    _plain = IPv4Network
    version = 4
    max_prefixlen = 32


class _KeptIPv6Host(_KeptHost, IPv6Network):
    __slots__ = ("__hash__",)
    _plain = IPv6Network
    version = 6
    max_prefixlen = 128


#: The kept host prefix class by IP version.
KEPT_HOST_CLASS: dict[int, type[_KeptIPv4Host] | type[_KeptIPv6Host]] = {
    4: _KeptIPv4Host,
    6: _KeptIPv6Host,
}


def kept_host(address: Address, value: int) -> Any:
    """The host prefix of ``address``, an interned address whose integer is ``value``
    (``cache.host``, once per peer). Made without ipaddress's ``__init__``: only what
    that leaves for a host prefix, without its parsing, a fresh copy of the address and
    the ``hosts`` closure it gives each one (three more objects for the collector), and
    the hash as ipaddress's ``__hash__`` computes it (``int(network_address) ^
    int(netmask)``) with no Python call. One Python call in all, where ``__init__`` made
    six; a test holds the result to ipaddress's own network."""
    cls: Any = KEPT_HOST_CLASS[address.version]
    net = cls.__new__(cls)
    # Set as attributes, never through ``__dict__``: CPython keeps them inside the
    # object until its dict is asked for (one object fewer for the collector).
    # object.__setattr__ because pylint takes them for missing slots: ipaddress's
    # networks have a dict.
    set_attribute = object.__setattr__
    set_attribute(net, "network_address", address)
    set_attribute(net, "netmask", cls._host_netmask)
    set_attribute(net, "_prefixlen", cls.max_prefixlen)
    net.__hash__ = hash(value ^ cls._all_ones).conjugate  # as KeptIpObject._keep_hash
    return net
