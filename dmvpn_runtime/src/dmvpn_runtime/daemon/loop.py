"""dmvpnd's event loop: the one place where the engine meets the world.

A ``selectors`` loop in one thread: data-plane descriptors, the control socket, the
metrics listener, and a self-pipe for signals and DNS answers. Inputs go to the
sans-I/O engine with ``time.monotonic()``; the actions it returns are carried out here,
in order, by the data plane, the event log, the timer and the resolver. Nothing in the
engine blocks, and nothing here decides protocol questions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from typing import Any

from .. import dataplane, gcpolicy, native
from ..dataplane import DataPlane, DataPlaneConfig, DataPlaneError
from ..dataplane.base import ROUTE_PROTO
from ..dataplane.routes import RouteWatcher
from ..nhrp.engine import Engine
from ..nhrp.engine.actions import (
    Action,
    AddMapping,
    AddRoute,
    ArmTimer,
    CancelTimer,
    Event,
    IpsecDown,
    IpsecUp,
    MappingType,
    RemoveMapping,
    RemoveRoute,
    ResolveName,
    SendPacket,
)
from ..nhrp.wire import Address
from .config import ConfigError, DaemonConfig, load
from .control import ControlError, ControlServer
from .engine_config import dataplane_config, engine_config
from .eventlog import EventLog
from .metrics import MetricsServer, Snapshot

log = logging.getLogger("dmvpnd")

TICK = 1.0  # data-plane housekeeping (traffic reports, hairpin memory) at least this often
ROUTE_SETTLE = 0.2  # seconds: a burst of route changes (routing converging) is read once
# Mapping types whose NBMA receives the tunnel's multicast (Cisco "map multicast dynamic"):
# a hub replicates to registered spokes, a spoke to its NHSs.
_MULTICAST_TYPES = frozenset({MappingType.REGISTERED, MappingType.NHS, MappingType.STATIC})


class Daemon:
    """One tunnel: engine + data plane + control socket + metrics + event log."""

    def __init__(self, config: DaemonConfig, plane: DataPlane | None = None) -> None:
        self.config = config
        self.engine = Engine(engine_config(config), request_id=_first_request_id())
        self.plane = plane or dataplane.create(config["dataplane"], dataplane_config(config), self)
        self.events = EventLog(config.event_log, config.tunnel)
        self.control = ControlServer(config.control_socket, self._control_handlers())
        listen = config["metrics"]["listen"]
        self.metrics = MetricsServer(*listen, config.tunnel, self.snapshot) if listen else None
        self.selector = selectors.DefaultSelector()
        self.deadlines: dict[str, float] = {}
        self.multicast: dict[Address, set[Address]] = {}  # NBMA -> overlay addresses using it
        self._multicast_dirty = False  # pushed to the data plane once per loop turn
        self._stopping = False
        self.counters: dict[str, int] = {}
        self._resolver = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dns")
        self._answers: list[tuple[str, list[Address]]] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._signals: list[int] = []
        self._running = False
        self._gc = gcpolicy.Housekeeping(time.monotonic())
        hub = config["role"] == "hub"
        self.routes = (
            RouteWatcher(config.tunnel, ROUTE_PROTO) if hub and config["forward_by_route"] else None
        )
        self._routes_due: float | None = None  # when to read the routing table again

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> int:
        self.events.open()
        removed = self.plane.cleanup_stale()
        for item in removed:
            log.warning("removed stale state of a previous instance: %s", item)
        self.plane.open()
        try:
            self._register()
            self._running = True
            self.apply(self.engine.start(time.monotonic()))
            gcpolicy.apply()  # what exists now lives as long as the process
            self._gc = gcpolicy.Housekeeping(time.monotonic())
            log.info(
                "dmvpnd %s up: role %s, data plane %s, protocol core %s",
                self.config.tunnel,
                self.config["role"],
                self.plane.kind,
                native.describe(),
            )
            while self._running:
                self._step()
            # The purges go out; per-entry removals are left to close(), which takes the
            # device and with it every neighbour entry and route (cheap for 10k spokes).
            self._stopping = True
            self.apply(self.engine.stop(time.monotonic()))
            return 0
        finally:
            self._shutdown()

    def _register(self) -> None:
        for fd in self.plane.readers():
            self.selector.register(fd, selectors.EVENT_READ, ("plane", fd))
        self.selector.register(self.control.open(), selectors.EVENT_READ, ("control", None))
        if self.metrics is not None:
            self.selector.register(self.metrics.open(), selectors.EVENT_READ, ("metrics", None))
        if self.routes is not None:
            self.selector.register(self.routes.open(), selectors.EVENT_READ, ("routes", None))
            self._routes_due = 0.0  # the whole table, at the first turn of the loop
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _shutdown(self) -> None:
        self._resolver.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        self.control.close()
        if self.metrics is not None:
            self.metrics.close()
        self.plane.close()
        if self.routes is not None:
            self.routes.close()
        self.selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self.events.close()
        log.info("dmvpnd %s stopped; its interfaces and routes are removed", self.config.tunnel)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    # -- the loop ----------------------------------------------------------------------
    def _step(self) -> None:
        now = time.monotonic()
        timeout = TICK
        if self.deadlines:
            timeout = max(0.0, min(timeout, min(self.deadlines.values()) - now))
        if self._routes_due is not None:
            timeout = max(0.0, min(timeout, self._routes_due - now))
        for key, _mask in self.selector.select(timeout):
            kind, fd = key.data
            try:
                if kind == "plane":
                    self.plane.on_readable(fd)
                elif kind == "control":
                    self._control_ready(key.fileobj)
                elif kind == "client":
                    if not self.control.readable(key.fileobj):
                        self.selector.unregister(key.fileobj)
                elif kind == "metrics":
                    self.metrics.serve_one()
                elif kind == "routes":
                    if self.routes.drain() and self._routes_due is None:
                        self._routes_due = time.monotonic() + ROUTE_SETTLE
                elif kind == "wake":
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
            except DataPlaneError as exc:
                self._count("dataplane_error")
                log.error("data plane: %s", exc)
        self._handle_signals()
        self._handle_answers()
        if self._multicast_dirty:
            self._multicast_dirty = False
            self.plane.set_multicast_targets(list(self.multicast))
        now = time.monotonic()
        if self._routes_due is not None and now >= self._routes_due:
            self._routes_due = None
            self._read_routes(now)
        self.plane.tick(now)
        if self._gc.tick(now):
            self._count("gc_cycles_collected")
        for key, deadline in list(self.deadlines.items()):
            if deadline <= now:
                del self.deadlines[key]
                self.apply(self.engine.timer_fired(now, key))

    def _control_ready(self, sock: Any) -> None:
        conn = self.control.accept()
        if conn is not None:
            self.selector.register(conn, selectors.EVENT_READ, ("client", None))

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                self.reload()
            else:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                self._running = False

    # -- configuration -----------------------------------------------------------------
    def reload(self) -> bool:
        """SIGHUP: apply a changed file, keeping what it still allows; refuse a bad one."""
        try:
            new = load(self.config.file)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            self._count("reload_refused")
            return False
        restart = new.restart_only_changes(self.config)
        if restart:
            log.error("reload refused: %s change only with a restart", ", ".join(restart))
            self._count("reload_refused")
            return False
        self.events.reopen()
        self.config = new
        self.apply(self.engine.reconfigure(time.monotonic(), engine_config(new)))
        log.info("configuration reloaded from %s", new.file)
        self._count("reload")
        return True

    # -- engine actions ----------------------------------------------------------------
    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            try:
                self._apply_one(action)
            except DataPlaneError as exc:
                self._count("dataplane_error")
                log.error("%s failed: %s", type(action).__name__, exc)

    def _apply_one(self, action: Action) -> None:
        kind = type(action)
        if kind is SendPacket:
            self.plane.send_nhrp(action.nbma, action.data)
        elif kind is AddMapping:
            if action.type is not MappingType.LOCAL:
                self.plane.add_mapping(action.proto, action.nbma)
                self._multicast_update(action, add=True)
        elif kind is RemoveMapping:
            if action.type is not MappingType.LOCAL and not self._stopping:
                self.plane.remove_mapping(action.proto)
                self._multicast_update(action, add=False)
        elif kind is AddRoute:
            self.plane.add_route(action.prefix, action.via)
        elif kind is RemoveRoute:
            if not self._stopping:
                self.plane.remove_route(action.prefix)
        elif kind is ArmTimer:
            self.deadlines[action.key] = action.deadline
        elif kind is CancelTimer:
            self.deadlines.pop(action.key, None)
        elif kind is ResolveName:
            self._resolve(action.name)
        elif kind is Event:
            self.events.emit(str(action.kind), action.fields)
        elif kind in (IpsecUp, IpsecDown):
            pass  # ipsec.mode none: GRE goes unprotected, nothing to set up
        else:
            log.error("unknown action %r", action)

    def _multicast_update(self, action: AddMapping | RemoveMapping, add: bool) -> None:
        if action.type not in _MULTICAST_TYPES:
            return
        before = len(self.multicast)
        users = self.multicast.setdefault(action.nbma, set())
        if add:
            users.add(action.proto)
        else:
            users.discard(action.proto)
            if not users:
                del self.multicast[action.nbma]
        if len(self.multicast) != before:  # only a new or a gone NBMA changes the targets
            self._multicast_dirty = True

    def _read_routes(self, now: float) -> None:
        """The routes through the tunnel changed: the engine gets the difference."""
        assert self.routes is not None
        try:
            added, removed = self.routes.read()
        except OSError as exc:
            self._count("route_read_error")
            log.error("cannot read the routes through %s: %s", self.config.tunnel, exc)
            self._routes_due = now + TICK  # try again
            return
        if added or removed:
            self.apply(self.engine.routes_changed(now, added, removed))

    # -- DNS (blocking getaddrinfo in a worker; the answer comes back through the pipe) --
    def _resolve(self, name: str) -> None:
        family = socket.AF_INET6 if self.config["nbma"]["address"].version == 6 else socket.AF_INET

        def lookup() -> None:
            try:
                infos = socket.getaddrinfo(name, None, family, socket.SOCK_DGRAM)
                addrs = list(dict.fromkeys(ip_address(i[4][0]) for i in infos))
            except (OSError, UnicodeError) as exc:
                log.warning("DNS %s: %s", name, exc)
                addrs = []
            self._answers.append((name, addrs))
            with contextlib.suppress(OSError):
                self._wake_w.send(b"d")

        self._resolver.submit(lookup)

    def _handle_answers(self) -> None:
        while self._answers:
            name, addrs = self._answers.pop(0)
            self.apply(self.engine.name_resolved(time.monotonic(), name, addrs))

    # -- DataPlaneSink: what the data plane saw ------------------------------------------
    def nhrp_received(self, nbma_src: Address, data: bytes, protected: bool) -> None:
        try:
            actions = self.engine.packet_received(time.monotonic(), nbma_src, data, protected)
        except Exception:  # a packet from the network must never take the daemon down
            self._count("internal_error")
            log.exception(
                "internal error handling a packet from %s (%d octets)", nbma_src, len(data)
            )
            return
        self.apply(actions)

    def hairpin(
        self,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
    ) -> None:
        self.apply(
            self.engine.hairpin(time.monotonic(), in_nbma, out_nbma, inner_src, inner_dst, head)
        )

    def no_mapping(self, next_hop: Address) -> None:
        self.apply(self.engine.no_mapping(time.monotonic(), next_hop))

    def traffic(self, peer: Address, packets: int, octets: int, /) -> None:
        if packets:
            self.apply(self.engine.traffic_used(time.monotonic(), peer))

    # -- control socket ----------------------------------------------------------------
    def _control_handlers(self) -> dict[str, Any]:
        return {
            "show_nhrp": lambda a: self._views(self.engine.cache_entries()),
            "show_nhs": lambda a: self._views(self.engine.nhs_states()),
            "show_shortcuts": lambda a: self._views(self.engine.shortcuts()),
            "show_peers": lambda a: self._views(self.engine.peers()),
            "show_routes": lambda a: self._views(self.engine.routes()),
            "show_stats": lambda a: self.stats(),
            "show_status": lambda a: self.status(),
            "clear_nhrp": self._clear_nhrp,
            "clear_shortcuts": self._clear_shortcuts,
            "reload": lambda a: {"reloaded": self.reload()},
        }

    def _views(self, views: Iterable[Any]) -> list[dict[str, Any]]:
        now = time.monotonic()
        out = []
        for view in views:
            item = view.as_dict()
            for key in ("expires", "registered_until"):
                if isinstance(item.get(key), int | float):
                    item[key] = round(item[key] - now, 1)  # seconds left, not a clock value
            out.append(item)
        return out

    def _clear_nhrp(self, args: dict[str, Any]) -> dict[str, Any]:
        address = args.get("address")
        try:
            target = ip_address(address) if address else None
        except ValueError:
            raise ControlError(f"address: expected an IP address, got {address!r}") from None
        before = len(self.engine.cache_entries())
        self.apply(self.engine.clear_cache(time.monotonic(), target))
        return {"cleared": before - len(self.engine.cache_entries())}

    def _clear_shortcuts(self, args: dict[str, Any]) -> dict[str, Any]:
        before = len(self.engine.shortcuts())
        self.apply(self.engine.clear_shortcuts(time.monotonic()))
        return {"cleared": before - len(self.engine.shortcuts())}

    def status(self) -> dict[str, Any]:
        return {
            "tunnel": self.config.tunnel,
            "role": self.config["role"],
            "dataplane": self.plane.kind,
            "pid": os.getpid(),
            "config": self.config.file,
            "multicast_targets": sorted(str(a) for a in self.multicast),
            "protocol_core": native.describe(),
        }

    def stats(self) -> dict[str, Any]:
        return {
            "engine": self.engine.stats(),
            "dataplane": self.plane.stats().as_dict(),
            "daemon": dict(self.counters),
        }

    def snapshot(self) -> Snapshot:
        engine = self.engine.stats()
        plane = self.plane.stats()
        errors = dict(engine.get("drops", {}))
        nhs_up = {
            (str(v.proto), str(v.nbma or v.name or "")): int(v.state == "registered")
            for v in self.engine.nhs_states()
        }
        peer_packets: dict[tuple[str, str], int] = {}
        peer_octets: dict[tuple[str, str], int] = {}
        for peer, c in plane.peers.items():
            peer_packets[(str(peer), "out")] = c.tx_packets
            peer_packets[(str(peer), "in")] = c.rx_packets
            peer_octets[(str(peer), "out")] = c.tx_bytes
            peer_octets[(str(peer), "in")] = c.rx_bytes
        return Snapshot(
            packets_in=engine.get("rx", {}),
            packets_out=engine.get("tx", {}),
            errors=errors,
            cache_entries=engine.get("cache_entries", {}),
            nhs_up=nhs_up,
            shortcuts=engine.get("gauges", {}).get("shortcuts", 0),
            routes=engine.get("gauges", {}).get("routes", 0),
            counters=dict(engine.get("counters", {})),
            peer_packets=peer_packets,
            peer_octets=peer_octets,
            dataplane_drops=dict(plane.drops),
        )

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1


def _first_request_id() -> int:
    """RFC 2332 §5.2.3: request ids should not repeat across restarts; the clock is a
    cheap source that moves forward between runs."""
    return (int(time.time() * 1000) & 0x7FFFFFFF) or 1


def run(config: DaemonConfig) -> int:
    level = getattr(logging, config["log"]["level"].upper())
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s dmvpnd[{config.tunnel}] %(levelname)s %(name)s: %(message)s",
    )
    try:
        daemon = Daemon(config)
    except (DataPlaneError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    try:
        return daemon.run()
    except DataPlaneError as exc:
        log.error("data plane failed: %s", exc)
        return 1


__all__ = ["Daemon", "DataPlaneConfig", "run"]
