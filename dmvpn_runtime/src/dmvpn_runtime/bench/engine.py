"""Engine benchmark: N spokes register with one hub, then N resolutions, in one process.

Every packet goes through the codec (encode at the sender, decode at the receiver), and
all N+1 engines run in this one process, so the figures include the spokes' work as
well as the hub's. To tell the parts apart the JSON also gives:

- ``hub_*``: time spent inside the hub's engine (its decode, logic and encode), the
  share a real hub pays when the spokes are other machines (``perf_counter`` around
  each call: the process is one CPU-bound thread, and ``process_time`` is a system
  call that would cost more than it measures);
- ``*_codec_cpu_s``: the same packets decoded and encoded again after the phase, the
  floor that the wire format alone costs;
- ``*_gc_s`` and ``*_gc_collections``: time in CPython's cyclic collector during the
  phase (``gc.callbacks``, included in the phase's CPU time), run as dmvpnd runs it
  (:mod:`..gcpolicy`): the state each phase keeps is scanned once in a young collection.

Resolutions run twice: ``resolutions_per_s`` with the hub forwarding each request to
the egress spoke, which answers (Phase 3, the default), and
``resolutions_answered_per_s`` with the hub answering from its registrations
(``resolution_mode=answer``). Time is CPU time of this process (``time.process_time``),
memory the peak RSS (``resource.getrusage``).

    python -m dmvpn_runtime.bench engine --spokes 10000 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import deque
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from .. import gcpolicy, native
from ..nhrp.engine import (
    Engine,
    EngineConfig,
    MappingType,
    NhsConfig,
    ResolutionMode,
    Role,
    SendPacket,
)
from ..nhrp.wire import decode, encode, intern_address
from ..nhrp.wire.codec import clear_memos as codec_memos_clear

_cpu = time.process_time
TARGETS = {"registration_cpu_s": 2.0, "resolutions_per_s": 10_000.0, "peak_rss_mb": 300.0}

HUB_NBMA = IPv4Address("198.18.0.1")
HUB_PROTO = IPv4Address("100.64.0.1")


def _spoke_addresses(i: int) -> tuple[IPv4Address, IPv4Interface, IPv4Network]:
    """NBMA in 198.18.0.0/15 (RFC 2544 benchmarking), overlay in 100.64.0.0/10, LAN in 10/8."""
    n = i + 2
    # Interned, as dmvpnd's data planes hand the engine the source of each packet.
    nbma = intern_address(IPv4Address(int(HUB_NBMA) - 1 + n))
    overlay = IPv4Interface((int(HUB_PROTO) - 1 + n, 10))
    lan = IPv4Network((int(IPv4Address("10.0.0.0")) + (i << 8), 24))
    return nbma, overlay, lan


class _Wire:
    """Delivers SendPacket actions in FIFO order to the engine at that NBMA address; keeps
    the time spent in each engine by its part in the exchange (the hub; the spoke that
    asked, ``requester``, once set; any other spoke) and every packet delivered (to price
    the codec afterwards)."""

    def __init__(self, hub: IPv4Address) -> None:
        self.engines: dict[IPv4Address, Engine] = {}
        self.queue: deque = deque()
        self.now = 0.0
        self.hub = hub
        self.requester: IPv4Address | None = None
        self.hub_cpu = self.requester_cpu = self.other_cpu = 0.0
        self.delivered: list[bytes] = []

    def post(self, src: IPv4Address, actions: list) -> None:
        for action in actions:
            if action.__class__ is SendPacket:
                self.queue.append((src, action.nbma, action.data))

    def drain(self) -> None:
        queue, engines, now, hub = self.queue, self.engines, self.now, self.hub
        clock = time.perf_counter  # 0.06 us a call; process_time is a 0.7 us system call
        delivered = self.delivered
        while queue:
            src, dst, data = queue.popleft()
            engine = engines.get(dst)
            if engine is None:
                continue
            delivered.append(data)
            start = clock()
            actions = engine.packet_received(now, src, data)
            spent = clock() - start
            # Identity: every address here is the codec's interned object (cheaper than
            # ipaddress's __eq__, which also raises and catches for None).
            if dst is hub:
                self.hub_cpu += spent
            elif dst is self.requester:
                self.requester_cpu += spent
            else:
                self.other_cpu += spent
            self.post(dst, actions)

    def reset(self, now: float) -> None:
        self.now = now
        self.requester = None
        self.hub_cpu = self.requester_cpu = self.other_cpu = 0.0
        self.delivered = []

    def codec_cpu(self) -> float:
        """Decode and encode again every packet of the phase, with the codec's memos
        emptied first: what the wire format costs at least."""
        codec_memos_clear()
        start = _cpu()
        for data in self.delivered:
            encode(decode(data))
        return _cpu() - start


class _CollectorClock:
    """Wall time spent in the cyclic collector while the ``with`` block runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._began = 0.0

    def _callback(self, phase: str, _info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections += 1

    def __enter__(self) -> _CollectorClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _resolve_all(wire: _Wire, nodes: list, offset: int, now: float) -> dict:
    """Spoke i resolves spoke i+offset's overlay address (its data plane had no mapping)."""
    wire.reset(now)
    count = len(nodes)
    clock = time.perf_counter
    asking = 0.0
    # Plain address objects, as a data plane hands them in, made before the clock starts.
    targets = [nodes[(i + offset) % count][1].ip for i in range(count)]
    with _CollectorClock() as collector:
        start, wall = _cpu(), clock()
        for i in range(count):
            nbma, _overlay, engine = nodes[i]
            wire.requester = nbma
            step = clock()
            actions = engine.no_mapping(now, targets[i])
            asking += clock() - step
            wire.post(nbma, actions)
            wire.drain()
        cpu, wall = _cpu() - start, clock() - wall
    steps = {
        "requester_asks": asking,
        "hub": wire.hub_cpu,
        "egress_answers": wire.other_cpu,
        "requester_installs": wire.requester_cpu,
    }
    steps["harness"] = wall - sum(steps.values())
    resolved = 0
    for i in range(count):
        resolved += any(
            e.type == MappingType.CACHED and e.proto == targets[i]
            for e in nodes[i][2].cache_entries()
        )
    return {
        "cpu": cpu,
        "wall": wall,
        "hub_cpu": wire.hub_cpu,
        "codec_cpu": wire.codec_cpu(),
        "gc": collector,
        "resolved": resolved,
        "step_us": {k: round(v / count * 1e6, 1) for k, v in steps.items()},
    }


def run(spokes: int, secret: bytes | None = None) -> dict:
    wire = _Wire(intern_address(HUB_NBMA))
    hub_config = EngineConfig(
        HUB_NBMA, (IPv4Interface((HUB_PROTO, 10)),), role=Role.NHS, auth_secret=secret
    )
    hub = Engine(hub_config)
    wire.engines[wire.hub] = hub
    nhs = (NhsConfig(HUB_PROTO, HUB_NBMA),)
    setup_start = _cpu()
    nodes: list[tuple[IPv4Address, IPv4Interface, Engine]] = []
    for i in range(spokes):
        nbma, overlay, lan = _spoke_addresses(i)
        engine = Engine(
            EngineConfig(nbma, (overlay,), protected=(lan,), nhs=nhs, auth_secret=secret),
            request_id=i * 1000 + 1,
        )
        wire.engines[nbma] = engine
        nodes.append((nbma, overlay, engine))
    setup_cpu = _cpu() - setup_start
    # The collector as dmvpnd runs it once started (see gcpolicy).
    thresholds = gcpolicy.apply()

    # Phase 1: every spoke registers (request, reply) through encode/decode.
    wire.post(HUB_NBMA, hub.start(0.0))
    wire.reset(0.0)
    with _CollectorClock() as registration_gc:
        start = _cpu()
        for nbma, _overlay, engine in nodes:
            wire.post(nbma, engine.start(0.0))
            wire.drain()
        registration_cpu = _cpu() - start
    hub_registration_cpu = wire.hub_cpu
    registration_codec = wire.codec_cpu()
    registered = sum(1 for e in hub.cache_entries() if e.type == MappingType.REGISTERED)
    spokes_up = sum(1 for _n, _o, e in nodes if e.nhs_states()[0].state == "registered")

    # Phase 2: resolutions forwarded by the hub to the egress spoke (Phase 3 default).
    forwarded = _resolve_all(wire, nodes, 1, 1.0)
    # Phase 3: the hub answers from its registrations.
    wire.post(
        HUB_NBMA,
        hub.reconfigure(
            2.0, dataclasses.replace(hub_config, resolution_mode=ResolutionMode.ANSWER)
        ),
    )
    answered = _resolve_all(wire, nodes, 2, 2.0)

    def rate(n: int, seconds: float) -> int | None:
        return round(n / seconds) if seconds else None

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gcpolicy.restore(thresholds)  # a caller in the same process (tests) gets it back
    return {
        "spokes": spokes,
        "authentication": secret is not None,
        "setup_cpu_s": round(setup_cpu, 3),
        "registration_cpu_s": round(registration_cpu, 3),
        "registrations_per_s": rate(spokes, registration_cpu),
        "registration_codec_cpu_s": round(registration_codec, 3),
        "hub_registration_cpu_s": round(hub_registration_cpu, 3),
        "registration_gc_s": round(registration_gc.seconds, 3),
        "registration_gc_collections": registration_gc.collections,
        "registered_at_hub": registered,
        "registered_spokes": spokes_up,
        "resolutions": spokes,
        "resolved": forwarded["resolved"],
        "resolution_cpu_s": round(forwarded["cpu"], 3),
        "resolutions_per_s": rate(spokes, forwarded["cpu"]),
        "resolutions_per_s_wall": rate(spokes, forwarded["wall"]),
        "resolution_codec_cpu_s": round(forwarded["codec_cpu"], 3),
        "hub_resolutions_per_s": rate(spokes, forwarded["hub_cpu"]),
        "resolution_step_us": forwarded["step_us"],
        "resolution_gc_s": round(forwarded["gc"].seconds, 3),
        "resolution_gc_collections": forwarded["gc"].collections,
        "resolved_answered": answered["resolved"],
        "resolutions_answered_per_s": rate(spokes, answered["cpu"]),
        "resolution_answered_codec_cpu_s": round(answered["codec_cpu"], 3),
        "hub_resolutions_answered_per_s": rate(spokes, answered["hub_cpu"]),
        "resolution_answered_step_us": answered["step_us"],
        "resolution_answered_gc_s": round(answered["gc"].seconds, 3),
        "resolution_answered_gc_collections": answered["gc"].collections,
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "python": sys.version.split()[0],
        # how many of the protocol core's modules ran compiled (make native)
        "compiled_core_modules": len(native.compiled_core()),
    }


# Reported per run with --repeat, besides the targets: the other end-to-end figures.
_SPREAD = ("resolutions_answered_per_s", "hub_resolutions_per_s")


def repeated(spokes: int, auth: bool, repeat: int) -> dict:
    """``run`` in ``repeat`` fresh processes, one after the other (each its own heap, as
    a single run): every figure as the median run, with ``runs`` holding them all. The
    machines this runs on vary by +-20 % from one minute to the next, so one run proves
    little either way."""
    command = [sys.executable, "-m", "dmvpn_runtime.bench", "engine", "--spokes", str(spokes)]
    runs = []
    for _run in range(repeat):
        out = subprocess.run(
            [*command, *(["--auth"] if auth else []), "--json"],
            check=False,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"a run failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        runs.append(json.loads(out.stdout))
    result = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in runs if r[key] is not None]
            result[key] = statistics.median(values) if values else None
    for key in ("registered_at_hub", "registered_spokes", "resolved", "resolved_answered"):
        result[key] = min(r[key] for r in runs)  # complete only if every run was
    result["repeat"] = repeat
    result["runs"] = [{k: r[k] for k in (*TARGETS, *_SPREAD)} for r in runs]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmvpn_runtime.bench engine")
    parser.add_argument("--spokes", type=int, default=10_000)
    parser.add_argument("--auth", action="store_true", help="with the authentication extension")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="N fresh processes, median of each figure (targets judged on the medians)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target (10,000 spokes) is missed"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeat <= 99 or args.spokes < 1:
        print("error: engine bench: --repeat 1..99 and --spokes >= 1", file=sys.stderr)
        return 2
    if args.repeat == 1:
        result = run(args.spokes, b"bench" if args.auth else None)
    else:
        try:
            result = repeated(args.spokes, args.auth, args.repeat)
        except RuntimeError as exc:
            print(f"error: engine bench: {exc}", file=sys.stderr)
            return 1
    result["targets"] = TARGETS
    met = {
        "registration_cpu_s": result["registration_cpu_s"] <= TARGETS["registration_cpu_s"],
        "resolutions_per_s": (result["resolutions_per_s"] or 0) >= TARGETS["resolutions_per_s"],
        "peak_rss_mb": result["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
    }
    complete = (
        result["registered_at_hub"] == args.spokes
        and result["resolved"] == args.spokes
        and result["resolved_answered"] == args.spokes
    )
    result["targets_met"] = met
    result["complete"] = complete
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:34} {value}")
    return 1 if not complete or (args.check and not all(met.values())) else 0


if __name__ == "__main__":
    raise SystemExit(main())
