"""Prometheus metrics, served from the daemon's own loop (no extra thread).

prometheus_client formats the exposition; the values are read at scrape time from a
snapshot function, so the engine and data plane keep plain counters and never know
about Prometheus. The HTTP side is a minimal non-blocking responder: GET /metrics.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass
class Snapshot:
    """What one scrape reports; every mapping is label values -> number."""

    packets_in: dict[str, int] = field(default_factory=dict)  # by NHRP packet type
    packets_out: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # by reason
    cache_entries: dict[str, int] = field(default_factory=dict)  # by entry type
    nhs_up: dict[tuple[str, str], int] = field(default_factory=dict)  # (proto, nbma) -> 0/1
    shortcuts: int = 0
    routes: int = 0  # through the tunnel, as the hub forwards resolutions along them
    counters: dict[str, int] = field(default_factory=dict)  # the engine's, by name
    peer_packets: dict[tuple[str, str], int] = field(default_factory=dict)  # (peer, dir)
    peer_octets: dict[tuple[str, str], int] = field(default_factory=dict)
    dataplane_drops: dict[str, int] = field(default_factory=dict)  # by reason


class _SnapshotCollector(Collector):
    def __init__(self, tunnel: str, snapshot: Callable[[], Snapshot]) -> None:
        self.tunnel = tunnel
        self.snapshot = snapshot

    def collect(self) -> Iterator:
        snap = self.snapshot()
        t = self.tunnel
        packets = [((t, "in", k), v) for k, v in snap.packets_in.items()]
        packets += [((t, "out", k), v) for k, v in snap.packets_out.items()]
        yield _family(
            CounterMetricFamily,
            "dmvpn_nhrp_packets",
            "NHRP packets by direction and type",
            ["tunnel", "direction", "type"],
            packets,
        )
        yield _family(
            CounterMetricFamily,
            "dmvpn_nhrp_errors",
            "NHRP packets dropped or refused, by reason",
            ["tunnel", "reason"],
            (((t, k), v) for k, v in snap.errors.items()),
        )
        yield _family(
            GaugeMetricFamily,
            "dmvpn_cache_entries",
            "NHRP cache entries by type",
            ["tunnel", "type"],
            (((t, k), v) for k, v in snap.cache_entries.items()),
        )
        yield _family(
            GaugeMetricFamily,
            "dmvpn_nhs_up",
            "1 when the NHS answers registrations",
            ["tunnel", "nhs", "nbma"],
            (((t, *k), v) for k, v in snap.nhs_up.items()),
        )
        yield _family(
            GaugeMetricFamily,
            "dmvpn_shortcuts",
            "Installed shortcut routes",
            ["tunnel"],
            [((t,), snap.shortcuts)],
        )
        yield _family(
            GaugeMetricFamily,
            "dmvpn_routes",
            "Routes through the tunnel that the hub forwards resolutions along",
            ["tunnel"],
            [((t,), snap.routes)],
        )
        yield _family(
            CounterMetricFamily,
            "dmvpn_nhrp_events",
            "NHRP engine outcomes by name (resolutions forwarded and answered, by route, "
            "redirects, policy denials, rate limits, refused CIEs ...)",
            ["tunnel", "event"],
            (((t, k), v) for k, v in snap.counters.items()),
        )
        yield _family(
            CounterMetricFamily,
            "dmvpn_peer_packets",
            "Data packets per peer NBMA and direction",
            ["tunnel", "peer", "direction"],
            (((t, *k), v) for k, v in snap.peer_packets.items()),
        )
        yield _family(
            CounterMetricFamily,
            "dmvpn_peer_bytes",
            "Data bytes per peer NBMA and direction",
            ["tunnel", "peer", "direction"],
            (((t, *k), v) for k, v in snap.peer_octets.items()),
        )
        yield _family(
            CounterMetricFamily,
            "dmvpn_dataplane_drops",
            "Data-plane drops by reason",
            ["tunnel", "reason"],
            (((t, k), v) for k, v in snap.dataplane_drops.items()),
        )


def _family(cls: type, name: str, doc: str, labels: list[str], items) -> object:
    family = cls(name, doc, labels=labels)
    for label_values, value in items:
        family.add_metric(list(label_values), value)
    return family


class MetricsServer:
    """Answers ``GET /metrics`` on a non-blocking TCP socket driven by the daemon loop."""

    def __init__(self, host: str, port: int, tunnel: str, snapshot: Callable[[], Snapshot]):
        self.address = (host, port)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_SnapshotCollector(tunnel, snapshot))
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self.address)
        sock.listen(8)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve_one(self) -> None:
        """Accept one scraper and answer it; a slow client gets a short timeout."""
        assert self.sock is not None
        try:
            conn, _addr = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                request = conn.recv(4096)
                line = request.split(b"\r\n", 1)[0].split()
                if (
                    len(line) >= 2
                    and line[0] == b"GET"
                    and line[1].split(b"?")[0]
                    in (
                        b"/metrics",
                        b"/",
                    )
                ):
                    body = self.render()
                    head = f"HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                else:
                    body = b"not found: GET /metrics\n"
                    head = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
                head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                conn.sendall(head.encode() + body)
            except OSError:
                pass
