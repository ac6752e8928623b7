"""Codec benchmark: decode and encode rates of a typical Registration Request.

The packet is what a spoke sends to its hub every holdtime/3: one CIE (unique, prefix
255, holding time 7200) and the five usual extensions -- Forward Transit NHS Record,
Reverse Transit NHS Record, Responder Address, Cisco NAT address with one CIE, Cleartext
Authentication -- then End. The process is pinned to one CPU (the one that was idle the
longest over a quarter second, unless ``--cpu`` says); each run times a fixed number of
calls with ``time.perf_counter``, decode and encode runs interleaved; the figure reported
is the median run.

``python -m dmvpn_runtime.bench codec [--runs N] [--seconds S] [--cpu C] [--check] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address

from ..nhrp.wire import (
    Cie,
    CleartextAuthentication,
    End,
    ForwardTransitNhs,
    NatAddress,
    Packet,
    PacketType,
    ResponderAddress,
    ReverseTransitNhs,
    decode,
    encode,
)

TARGET_PER_S = 50_000


def registration_request() -> Packet:
    """A spoke's Registration Request as FRR/Cisco send it, with cleartext auth."""
    return Packet(
        type=PacketType.REGISTRATION_REQUEST,
        hop_count=1,
        src_nbma=ip_address("198.51.100.2"),
        src_proto=ip_address("10.255.255.2"),
        dst_proto=ip_address("10.255.255.1"),
        flags=0x8002,
        request_id=1,
        cies=(Cie(code=0, prefix_length=255, holding_time=7200),),
        extensions=(
            ForwardTransitNhs(),
            ReverseTransitNhs(),
            ResponderAddress(),
            NatAddress(
                (
                    Cie(
                        prefix_length=32,
                        client_nbma=ip_address("203.0.113.1"),
                        client_proto=ip_address("10.255.255.1"),
                    ),
                ),
                compulsory=False,
            ),
            CleartextAuthentication(b"dmvpn123"),
            End(),
        ),
    )


def _idle_times() -> dict[int, int]:
    """Idle jiffies per CPU from /proc/stat (empty where there is none)."""
    idle = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    idle[int(name[3:])] = int(fields[3]) + int(fields[4])  # idle + iowait
    except (OSError, IndexError, ValueError):
        return {}
    return idle


def quietest_cpu(allowed: list[int], window: float = 0.25) -> int:
    """The allowed CPU that was idle the longest over ``window`` seconds."""
    before = _idle_times()
    time.sleep(window)
    after = _idle_times()
    return max(allowed, key=lambda c: (after.get(c, 0) - before.get(c, 0), -c))


def pin_cpu(cpu: int | None) -> int | None:
    """Pin this process to one CPU (by default the quietest allowed one); None if impossible."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        chosen = quietest_cpu(allowed) if cpu is None else cpu
        os.sched_setaffinity(0, {chosen})
    except (AttributeError, OSError, ValueError):
        return None
    return chosen


def _rate(func: Callable, arg: object, iterations: int) -> float:
    loop = range(iterations)
    start = time.perf_counter()
    for _iteration in loop:
        func(arg)
    return iterations / (time.perf_counter() - start)


def _calibrate(func: Callable, arg: object, seconds: float) -> int:
    """Iterations that take about ``seconds``."""
    n = 1000
    while True:
        start = time.perf_counter()
        for _iteration in range(n):
            func(arg)
        elapsed = time.perf_counter() - start
        if elapsed >= 0.05:
            return max(1000, int(n * seconds / elapsed))
        n *= 4


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(runs: int = 7, seconds: float = 0.3, cpu: int | None = None) -> dict:
    pinned = pin_cpu(cpu)
    packet = registration_request()
    wire = encode(packet)
    if decode(wire) != packet:  # a benchmark of a wrong codec is worthless
        raise AssertionError("codec round trip failed on the benchmark packet")
    n_decode = _calibrate(decode, wire, seconds)
    n_encode = _calibrate(encode, packet, seconds)
    decode_runs, encode_runs = [], []
    for _run in range(runs):  # interleaved, so a noisy neighbour hits both alike
        decode_runs.append(_rate(decode, wire, n_decode))
        encode_runs.append(_rate(encode, packet, n_encode))
    decode_per_s = statistics.median(decode_runs)
    encode_per_s = statistics.median(encode_runs)
    return {
        "benchmark": "codec",
        "packet": "registration_request with 1 CIE + fwd/rev transit, responder, "
        "Cisco NAT (1 CIE), cleartext auth, End",
        "packet_size": len(wire),
        "decode_per_s": round(decode_per_s),
        "encode_per_s": round(encode_per_s),
        "decode_us": round(1e6 / decode_per_s, 2),
        "encode_us": round(1e6 / encode_per_s, 2),
        "target_per_s": TARGET_PER_S,
        "meets_target": decode_per_s >= TARGET_PER_S and encode_per_s >= TARGET_PER_S,
        "runs": runs,
        "statistic": "median",
        "decode_iterations_per_run": n_decode,
        "encode_iterations_per_run": n_encode,
        "decode_runs_per_s": [round(r) for r in decode_runs],
        "encode_runs_per_s": [round(r) for r in encode_runs],
        "cpu_pinned": pinned,
        "cpu_model": _cpu_model(),
        "cpus_online": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmvpn_runtime.bench codec")
    parser.add_argument("--runs", type=int, default=7, help="timed runs (median reported)")
    parser.add_argument("--seconds", type=float, default=0.3, help="target length of one run")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: quietest)")
    parser.add_argument("--check", action="store_true", help="exit 1 below the target rate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs must be >= 1 and --seconds > 0")
    result = run(args.runs, args.seconds, args.cpu)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"codec: {result['packet']} ({result['packet_size']} octets)")
        print(
            f"  decode {result['decode_per_s']:>9,}/s  ({result['decode_us']} us)"
            f"\n  encode {result['encode_per_s']:>9,}/s  ({result['encode_us']} us)"
        )
        print(
            f"  median of {result['runs']} runs, CPU {result['cpu_pinned']} "
            f"({result['cpu_model']}), Python {result['python']}; "
            f"target {TARGET_PER_S:,}/s: {'met' if result['meets_target'] else 'NOT met'}"
        )
    return 1 if args.check and not result["meets_target"] else 0


if __name__ == "__main__":
    sys.exit(main())
