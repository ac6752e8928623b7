"""Per-peer traffic: the kernel's GRE counters made into data counters and reports.

nftables counts GRE per peer NBMA address (sets ``tx4``/``rx4``, read every
``traffic_interval``): outer packets and bytes, our own NHRP included. Data traffic is
that minus the outer headers and the NHRP the plane sent and received itself, which it
counts here as it goes. What has not been reported yet becomes ``sink.traffic``.

Separate from the plane because it is bookkeeping only: no sockets, no netlink.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from ..base import PeerCounters


@dataclass(slots=True)
class PeerTotals:
    """Kernel counter readings and our own NHRP share for one NBMA peer."""

    tx_pkts: int = 0  # GRE packets/bytes (outer) as nftables counted them
    tx_bytes: int = 0
    rx_pkts: int = 0
    rx_bytes: int = 0
    nhrp_tx_pkts: int = 0  # our NHRP share of the above (payload bytes)
    nhrp_tx_bytes: int = 0
    nhrp_rx_pkts: int = 0
    nhrp_rx_bytes: int = 0
    reported_pkts: int = 0
    reported_bytes: int = 0


class PeerTraffic:
    """The totals of every peer seen, and the data counters derived from them."""

    def __init__(self, overhead: int) -> None:
        self.overhead = overhead  # outer IPv4 + GRE header octets per packet
        self.peers: dict[IPv4Address, PeerTotals] = {}

    def peer(self, nbma: IPv4Address) -> PeerTotals:
        peer = self.peers.get(nbma)
        if peer is None:
            peer = self.peers[nbma] = PeerTotals()
        return peer

    def update(self, tx: dict[bytes, tuple[int, int]], rx: dict[bytes, tuple[int, int]]) -> None:
        """Take the readings of the ``tx4`` and ``rx4`` sets (keys: packed NBMA)."""
        for key, (packets, octets) in tx.items():
            if len(key) == 4:
                peer = self.peer(IPv4Address(key))
                peer.tx_pkts, peer.tx_bytes = packets, octets
        for key, (packets, octets) in rx.items():
            if len(key) == 4:
                peer = self.peer(IPv4Address(key))
                peer.rx_pkts, peer.rx_bytes = packets, octets

    def data_tx(self, peer: PeerTotals) -> tuple[int, int]:
        packets = max(peer.tx_pkts - peer.nhrp_tx_pkts, 0)
        octets = peer.tx_bytes - peer.tx_pkts * self.overhead - peer.nhrp_tx_bytes
        return packets, max(octets, 0)

    def data_rx(self, peer: PeerTotals) -> tuple[int, int]:
        packets = max(peer.rx_pkts - peer.nhrp_rx_pkts, 0)
        octets = peer.rx_bytes - peer.rx_pkts * self.overhead - peer.nhrp_rx_bytes
        return packets, max(octets, 0)

    def unreported(self) -> Iterator[tuple[IPv4Address, int, int]]:
        """(peer, packets, bytes) of data sent since the last report, marked reported."""
        for nbma, peer in self.peers.items():
            packets, octets = self.data_tx(peer)
            dp, db = packets - peer.reported_pkts, octets - peer.reported_bytes
            if dp > 0:
                peer.reported_pkts, peer.reported_bytes = packets, octets
                yield nbma, dp, max(db, 0)

    def counters(self) -> dict[IPv4Address, PeerCounters]:
        """The data counters of every peer, for ``stats()``."""
        out = {}
        for nbma, peer in self.peers.items():
            tx_p, tx_b = self.data_tx(peer)
            rx_p, rx_b = self.data_rx(peer)
            out[nbma] = PeerCounters(tx_p, tx_b, rx_p, rx_b)
        return out
