"""The peer table: one entry per remote NBMA address, found the way each path needs it.

Encapsulation finds a peer by the index in a frame's destination MAC, decapsulation by
the packet's NBMA source, the control calls by overlay address (the mappings); the
multicast targets are peers too. A peer exists while a mapping or the multicast list
uses it; indexes (and so MACs) are never reused.

Separate from the plane because it is bookkeeping only: no sockets, no netlink. The
per-packet paths hold the dicts and the target list themselves, so these are only ever
changed in place.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ..base import Address
from .tap import DEVICE_MAC, peer_mac


class Peer:
    """One remote NBMA address: its MAC, socket, prebuilt headers and counters."""

    __slots__ = (
        "eth4",
        "eth6",
        "index",
        "key",
        "mac",
        "multicast",
        "nbma",
        "overlays",
        "reported_bytes",
        "reported_packets",
        "rx_bytes",
        "rx_packets",
        "sendto",
        "sockaddr",
        "tx_bytes",
        "tx_packets",
    )

    def __init__(self, nbma: Address, index: int, sendto: Callable[..., int] | None) -> None:
        self.nbma = nbma
        self.key = peer_key(nbma)
        self.index = index
        self.mac = peer_mac(index)
        self.sockaddr = (str(nbma), 0)
        self.sendto = sendto
        self.eth4 = DEVICE_MAC + self.mac + b"\x08\x00"
        self.eth6 = DEVICE_MAC + self.mac + b"\x86\xdd"
        self.overlays: set[Address] = set()
        self.multicast = False
        self.tx_packets = self.tx_bytes = self.rx_packets = self.rx_bytes = 0
        self.reported_packets = self.reported_bytes = 0


def peer_key(nbma: Address) -> int | str:
    """How received packets name their source: the IPv4 source as an integer (read from
    the IP header), the IPv6 source as the text recvfrom() returns."""
    if nbma.version == 4:
        return int(nbma)
    return socket.inet_ntop(socket.AF_INET6, nbma.packed)


class PeerTable:
    """The peers, by receive key, by MAC index and by mapped overlay address."""

    def __init__(self) -> None:
        self.by_key: dict[int | str, Peer] = {}  # by peer_key(): decapsulation
        self.by_index: dict[int, Peer] = {}  # by MAC index: encapsulation
        self.by_overlay: dict[Address, Peer] = {}  # the mappings
        self.targets: list[Peer] = []  # multicast replication, in the order given
        self._next_index = 1

    def peer_for(self, nbma: Address, sendto: Callable[..., int] | None) -> Peer:
        """The peer of ``nbma``; a new one sends with ``sendto``."""
        peer = self.by_key.get(peer_key(nbma))
        if peer is None:
            peer = Peer(nbma, self._next_index, sendto)
            self._next_index += 1
            self.by_key[peer.key] = peer
            self.by_index[peer.index] = peer
        return peer

    def release(self, peer: Peer) -> None:
        """Forget ``peer`` if no mapping and no multicast list uses it any more."""
        if not peer.overlays and not peer.multicast:
            del self.by_key[peer.key]
            del self.by_index[peer.index]

    def map(self, overlay: Address, peer: Peer) -> None:
        """Record ``overlay -> peer``, releasing the peer it mapped to before."""
        old = self.by_overlay.get(overlay)
        if old is not None and old is not peer:
            self.unmap(overlay, old)
        peer.overlays.add(overlay)
        self.by_overlay[overlay] = peer

    def unmap(self, overlay: Address, peer: Peer) -> None:
        """``peer`` no longer carries ``overlay``; ``by_overlay`` is the caller's to update."""
        peer.overlays.discard(overlay)
        self.release(peer)

    def set_targets(self, peers: list[Peer]) -> None:
        """Replicate to exactly ``peers`` from now on; peers left out may be released."""
        for peer in peers:
            peer.multicast = True
        keep = {id(peer) for peer in peers}  # a set: hubs have thousands of targets
        for peer in self.targets:
            if id(peer) not in keep:
                peer.multicast = False
                self.release(peer)
        self.targets[:] = peers
