"""The measuring rig: sockets opened inside the lab's namespaces, one select loop that
reads them, and what one sample records.

One process, one clock (``CLOCK_REALTIME``, shared by all namespaces): packet sockets
carry the kernel's time stamps, netlink messages are stamped when read (netlink sockets
first whenever the loop wakes). ``Rig.measure`` sends the probes of one sample and marks
each step of the shortcut's making in its ``Sample`` as the sockets see it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .lab_setup import HUB_NBMA, BenchError
from .wire import (
    MAGIC,
    NHRP_RESOLUTION_REPLY,
    NHRP_RESOLUTION_REQUEST,
    NHRP_TRAFFIC_INDICATION,
    PORT,
    PROBE,
    Gre,
    parse_gre,
    parse_rtnl,
    probe,
)

TAIL_PACKETS = 20  # probes sent after the first direct one
LINGER_S = 0.05

# Linux values the socket module does not name.
CLONE_NEWNET = 0x40000000
SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
RTMGRP_NEIGH = 0x04
RTMGRP_IPV4_ROUTE = 0x40
SOCKET_BUFFER = 4 << 20
SO_RCVBUFFORCE = 33

_TIMESPEC = struct.Struct("=qq")


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The kernel's time stamp (ns) from SO_TIMESTAMPNS, or now if it gave none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


# -- namespaces --------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the block in the network namespace ``path``; sockets made there stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


# -- what is watched and what is recorded ------------------------------------------------
@dataclass
class Site:
    """A spoke and its LAN host, with the sockets that watch them."""

    number: int
    name: str
    nbma: bytes
    overlay: str
    lan: str
    host: str
    wan: socket.socket
    routes: socket.socket
    tx: socket.socket
    rx: socket.socket


@dataclass
class Sample:
    index: int
    src: Site
    dst: Site
    t0: int | None = None
    events: dict[str, int] = field(default_factory=dict)
    sends: list[int] = field(default_factory=list)  # send times (ns)
    via_hub: int = 0
    direct: int = 0
    delivered: set[int] = field(default_factory=set)
    first_direct_seq: int | None = None
    last_via_hub_seq: int | None = None
    late_via_hub: int = 0  # probes arriving via the hub after the first direct one
    started_via_hub: bool = False
    ended_direct: bool = False

    def mark(self, name: str, ns: int) -> None:
        self.events.setdefault(name, ns)

    def ms(self, name: str) -> float | None:
        ns = self.events.get(name)
        if ns is None or self.t0 is None:
            return None
        return round((ns - self.t0) / 1e6, 3)

    def max_send_gap_ms(self) -> float | None:
        """Largest gap between two probes up to the first direct one (a stalled sender)."""
        last = len(self.sends) if self.first_direct_seq is None else self.first_direct_seq + 1
        sends = self.sends[:last]
        if len(sends) < 2:
            return None
        return round(max(b - a for a, b in itertools.pairwise(sends)) / 1e6, 3)

    def result(self) -> dict[str, Any]:
        steps = {
            "hub_rx_ms": "hub_rx",
            "indication_ms": "indication",
            "request_at_hub_ms": "request_at_hub",
            "request_forwarded_ms": "request_forwarded",
            "dst_mapping_ms": "dst_mapping",
            "reply_at_src_ms": "reply_at_src",
            "src_mapping_ms": "src_mapping",
            "shortcut_ms": "shortcut",
            "direct_sent_ms": "direct_sent",
            "direct_ms": "direct",
            "first_delivered_ms": "delivered",
        }
        return {
            "pair": [self.src.name, self.dst.name],
            "shortcut_ms": self.ms("shortcut"),
            "direct_ms": self.ms("direct"),
            "steps_ms": {k: self.ms(v) for k, v in steps.items()},
            "sent": len(self.sends),
            "max_send_gap_ms": self.max_send_gap_ms(),
            "delivered": len(self.delivered),
            "lost": len(self.sends) - len(self.delivered),
            "arrived_via_hub": self.via_hub,
            "arrived_direct": self.direct,
            "first_direct_seq": self.first_direct_seq,
            "last_via_hub_seq": self.last_via_hub_seq,
            "via_hub_after_first_direct": self.late_via_hub,
            "started_via_hub": self.started_via_hub,
            "ended_direct": self.ended_direct,
        }


def _packet_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    return sock


def _listen(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    sock.setblocking(False)
    return sock


# -- the rig ----------------------------------------------------------------------------
class Rig:
    """All sockets, opened once inside the lab's namespaces; one select loop reads them."""

    def __init__(self, lab: Any, spokes: int) -> None:
        self.sockets: list[socket.socket] = []
        try:
            self._open(lab, spokes)
        except BaseException:
            self.close()
            raise

    def _open(self, lab: Any, spokes: int) -> None:
        from ...lab import system

        self.hub_nbma = socket.inet_aton(HUB_NBMA)
        hub = lab.node("hub1")
        with in_netns(str(system.netns_path(hub.netns))):
            self.hub_wan = self._keep(_listen(_packet_socket("wan0")))
        self.sites: dict[int, Site] = {}
        for i in range(1, spokes + 1):
            node, host = lab.node(f"spoke{i}"), lab.node(f"spoke{i}-lan")
            with in_netns(str(system.netns_path(node.netns))):
                wan = self._keep(_listen(_packet_socket("wan0")))
                routes = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
                routes.bind((0, RTMGRP_IPV4_ROUTE | RTMGRP_NEIGH))
                self._keep(_listen(routes))
            host_address = host.addresses[0]
            with in_netns(str(system.netns_path(host.netns))):
                tx = self._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                rx.bind((host_address, PORT))
                self._keep(_listen(rx))
            self.sites[i] = Site(
                number=i,
                name=node.name,
                nbma=socket.inet_aton(node.nbma[0]),
                overlay=node.overlay[0],
                lan=str(ipaddress.ip_network(node.lan[0])),
                host=host_address,
                wan=wan,
                routes=routes,
                tx=tx,
                rx=rx,
            )
        # Netlink first: its time stamp is taken when read, the others carry the kernel's.
        self.handlers: dict[int, tuple[str, Any]] = {}
        for site in self.sites.values():
            self.handlers[site.routes.fileno()] = ("routes", site)
        self.handlers[self.hub_wan.fileno()] = ("hub", None)
        for site in self.sites.values():
            self.handlers[site.wan.fileno()] = ("wan", site)
            self.handlers[site.rx.fileno()] = ("rx", site)
        self.fds = list(self.handlers)
        self.buf = bytearray(65536)

    def _keep(self, sock: socket.socket) -> socket.socket:
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def drain(self) -> None:
        """Discard whatever the sockets hold (earlier samples, registrations)."""
        for sock in self.sockets:
            if sock.getblocking():
                continue  # the senders
            while True:
                try:
                    sock.recv(65536)
                except BlockingIOError:
                    break

    # -- one sample ------------------------------------------------------------------------
    def measure(self, sample: Sample, interval: float, max_packets: int) -> None:
        src, dst = sample.src, sample.dst
        sending, seq = True, 0
        next_send = time.monotonic()
        stop_at = 0.0
        tail_until: int | None = None
        while True:
            now = time.monotonic()
            if sending and now >= next_send:
                stamp = time.time_ns()
                try:
                    src.tx.sendto(probe(sample.index, seq), (dst.host, PORT))
                except OSError as exc:
                    raise BenchError(f"{src.name}-lan: send failed: {exc}") from exc
                if seq == 0:
                    sample.t0 = stamp
                sample.sends.append(stamp)
                seq += 1
                next_send = max(next_send + interval, now)
                if seq >= max_packets or (tail_until is not None and seq >= tail_until):
                    sending, stop_at = False, now + LINGER_S
            elif not sending and now >= stop_at:
                return
            wait = (next_send if sending else stop_at) - time.monotonic()
            # select(): microsecond timeouts (poll and epoll round up to milliseconds).
            ready = select.select(self.fds, [], [], max(0.0, wait))[0]
            for fd in sorted(ready, key=self.fds.index):
                self._read(fd, sample)
            if tail_until is None and "direct" in sample.events and "shortcut" in sample.events:
                tail_until = (sample.first_direct_seq or 0) + TAIL_PACKETS

    def _read(self, fd: int, sample: Sample) -> None:
        kind, site = self.handlers[fd]
        sock = self.hub_wan if kind == "hub" else getattr(site, kind)
        while True:
            try:
                n, ancillary, _flags, address = sock.recvmsg_into([self.buf], 256)
            except BlockingIOError:
                return
            data = memoryview(self.buf)[:n]
            if kind == "routes":
                stamp = time.time_ns()
                self._on_rtnl(site, sample, parse_rtnl(data), stamp)
                continue
            stamp = _stamp(ancillary)
            if kind == "rx":
                if n >= PROBE.size:
                    magic, index, seq = PROBE.unpack_from(data)
                    if magic == MAGIC and index == sample.index and site is sample.dst:
                        sample.mark("delivered", stamp)
                        sample.delivered.add(seq)
                continue
            if address[1] != ETH_P_IP:
                continue
            gre = parse_gre(data)
            if gre is not None:
                outgoing = address[2] == PACKET_OUTGOING
                self._on_gre(kind, site, sample, gre, outgoing, stamp)

    def _on_rtnl(
        self, site: Site, sample: Sample, changes: list[tuple[str, str, str | None]], stamp: int
    ) -> None:
        src, dst = sample.src, sample.dst
        for kind, what, gateway in changes:
            if site is src:
                if kind == "route" and what == dst.lan and gateway == dst.overlay:
                    sample.mark("shortcut", stamp)
                elif kind == "neigh" and what == dst.overlay:
                    sample.mark("src_mapping", stamp)
            elif site is dst and kind == "neigh" and what == src.overlay:
                sample.mark("dst_mapping", stamp)

    def _on_gre(
        self, kind: str, site: Site | None, sample: Sample, gre: Gre, out: bool, stamp: int
    ) -> None:
        src, dst, hub = sample.src.nbma, sample.dst.nbma, self.hub_nbma
        ours = gre.probe is not None and gre.probe[0] == sample.index
        if kind == "hub":
            if ours and not out and gre.src == src:
                sample.mark("hub_rx", stamp)
            elif gre.nhrp_type == NHRP_TRAFFIC_INDICATION and out and gre.dst == src:
                sample.mark("indication", stamp)
            elif gre.nhrp_type == NHRP_RESOLUTION_REQUEST:
                if not out and gre.src == src:
                    sample.mark("request_at_hub", stamp)
                elif out and gre.dst == dst:
                    sample.mark("request_forwarded", stamp)
            return
        if site is sample.src:
            if gre.nhrp_type == NHRP_RESOLUTION_REPLY and not out and gre.src == dst:
                sample.mark("reply_at_src", stamp)
            elif ours and out and gre.dst == dst:
                sample.mark("direct_sent", stamp)
        elif site is sample.dst and ours and not out and gre.probe is not None:
            seq = gre.probe[1]
            if gre.src == src:
                sample.mark("direct", stamp)
                sample.direct += 1
                if sample.first_direct_seq is None:
                    sample.first_direct_seq = seq
            elif gre.src == hub:
                sample.via_hub += 1
                sample.last_via_hub_seq = max(seq, sample.last_via_hub_seq or 0)
                if "direct" in sample.events:
                    sample.late_via_hub += 1
