"""Userspace data-plane throughput, spoke to spoke, next to the raw-socket ceiling.

``python -m dmvpn_runtime.bench dataplane [--seconds S] [--rounds R] [--sizes 1400,64]
[--check] [--json]`` (root; it builds two network namespaces and removes them).

Two namespaces (``dpt-b<pid>-1``, ``-2``) joined by a veth carry NBMA addresses
192.0.2.1/2; each runs a userspace data plane (one runner process each, key 42,
overlay 10.99.0.1/2). For every packet size (the IP packet, inner for the tunnel):

- ceiling: a Python loop in namespace 1 sends raw IP protocol-47 packets of that size
  (``sendto`` per packet) to a Python loop in namespace 2 that reads them from a raw
  socket (``recv_into`` per packet); the figure is what the receiver counted;
- data plane: UDP packets of that size to 10.99.0.2 are sent from namespace 1 into its
  tunnel device; data plane 1 encapsulates, data plane 2 decapsulates and writes them to
  its device; an nftables counter in namespace 2's input hook counts (and drops) them.
  The sender uses UDP segmentation offload (one ``sendto`` per 64 packets) so that the
  load generator does not take the CPU away from the two data-plane processes on a
  two-core machine; the kernel still hands the device one packet at a time.

Both run for ``seconds`` after a warm-up of 0.5 s; each case runs ``rounds`` times,
alternating, and the best round counts (other load only ever lowers a figure).
``ratio`` = data-plane packets/s over ceiling packets/s; the target is 0.5.
``cpu_ratio`` = CPU time per packet of the ceiling's busier process over that of the
busier data-plane process: the ratio if each process had a core to itself, which
holds up better than wall-clock rates when other jobs share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

TARGET_RATIO = 0.5
KEY = 42
NBMA = ("192.0.2.1", "192.0.2.2")
OVERLAY = ("10.99.0.1", "10.99.0.2")
TUNNEL = "dpbench0"
PORT = 9
WARMUP = 0.5
GSO_SEGMENTS = 64
GSO_SNDBUF = 128 << 10  # the kernel's UDP_MAX_SEGMENTS on older kernels
UDP_SEGMENT = 103
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
GRE_HEADER = bytes.fromhex("20000800") + KEY.to_bytes(4, "big")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- workers: run inside a namespace as `python -m dmvpn_runtime.bench.dataplane --worker` --
def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class _Window:
    """Counts and CPU seconds between t1 and t2, sampled at most every 64 packets."""

    def __init__(self, t1: float, t2: float) -> None:
        self.t1, self.t2 = t1, t2
        self.marks: list[tuple[int, float, float]] = []  # (count, cpu, time)

    def sample(self, count: int, now: float) -> None:
        due = self.t1 if not self.marks else self.t2
        if len(self.marks) < 2 and now >= due:
            self.marks.append((count, time.process_time(), now))

    def result(self, per_count: int = 1) -> dict[str, Any]:
        if len(self.marks) < 2:
            return {"packets": 0, "seconds": 0.0, "cpu_s": 0.0}
        (c1, cpu1, m1), (c2, cpu2, m2) = self.marks
        return {"packets": (c2 - c1) * per_count, "seconds": m2 - m1, "cpu_s": cpu2 - cpu1}


def _worker_send_raw(dst: str, size: int, times: list[float]) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
    payload = GRE_HEADER + bytes(size - 20 - len(GRE_HEADER))
    return _send_loop(sock, payload, (dst, 0), 1, times)


def _worker_send_gso(dst: str, size: int, times: list[float]) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # A send buffer smaller than the device queue: packets waiting in the device are
    # charged to this socket, so sendto blocks instead of spinning and dropping, and
    # the sender leaves the CPU to the data planes.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, GSO_SNDBUF)
    segment = size - 28
    sock.setsockopt(socket.SOL_UDP, UDP_SEGMENT, segment)
    count = min(GSO_SEGMENTS, 65000 // segment)
    return _send_loop(sock, bytes(segment * count), (dst, PORT), count, times)


def _send_loop(
    sock: socket.socket,
    payload: bytes,
    addr: tuple[str, int],
    per_call: int,
    times: list[float],
) -> dict[str, Any]:
    start, t1, t2, stop = times
    window = _Window(t1, t2)
    sendto, mono = sock.sendto, time.monotonic
    calls = 0
    _sleep_until(start)
    now = mono()
    while now < stop:
        for _round in range(64):  # look at the clock once per 64 sends
            try:
                sendto(payload, addr)
                calls += 1
            except OSError:  # ENOBUFS when the queue is full: offered load > capacity
                pass
        now = mono()
        window.sample(calls, now)
    return window.result(per_call)


def _worker_recv_raw(bind: str, times: list[float]) -> dict[str, Any]:
    t1, t2 = times
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_GRE)
    sock.bind((bind, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    sock.setblocking(False)  # a timeout would add a poll() per packet
    buf = bytearray(65536)
    recv_into, mono = sock.recv_into, time.monotonic
    window = _Window(t1, t2)
    n = 0
    now = mono()
    while now < t2 + 0.01:
        try:
            for _round in range(64):
                recv_into(buf)
                n += 1
        except BlockingIOError:
            select.select([sock], [], [], 0.01)
        now = mono()
        window.sample(n, now)
    return window.result()


def _worker(argv: list[str]) -> int:
    kind, rest = argv[0], argv[1:]
    times = [float(t) for t in rest[2:]] if kind.startswith("send") else []
    if kind == "send-raw":
        result = _worker_send_raw(rest[0], int(rest[1]), times)
    elif kind == "send-gso":
        result = _worker_send_gso(rest[0], int(rest[1]), times)
    elif kind == "recv-raw":
        result = _worker_recv_raw(rest[0], [float(t) for t in rest[1:]])
    else:
        return 2
    print(json.dumps(result), flush=True)
    return 0


# -- the bench ----------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True
    )


def _spawn(ns: str, *args: str) -> subprocess.Popen[str]:
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", __name__, "--worker", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker failed: {err.strip()[-500:]}")
    return json.loads(out)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _remove_dead_runs() -> None:
    """Namespaces a killed earlier bench left (dpt-b<pid>-N, that pid gone)."""
    for line in _ip("netns", "list").stdout.splitlines():
        m = re.match(r"^(dpt-b(\d+)-[12])\b", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            _ip("netns", "del", m.group(1), check=False)


class Lab:
    """Two namespaces, a veth, and one data-plane runner in each."""

    def __init__(self) -> None:
        tag = f"dpt-b{os.getpid()}"
        self.ns = (f"{tag}-1", f"{tag}-2")
        self.runners: list[Any] = []

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        from ..dataplane.runner import RunnerProcess  # pyroute2 only in the parent

        _remove_dead_runs()
        for ns in self.ns:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # Created straight inside the namespaces: nothing appears in the root namespace.
        _ip("link", "add", "nbma0", "netns", self.ns[0], "type", "veth",
            "peer", "name", "nbma0", "netns", self.ns[1])  # fmt: skip
        for ns, addr in zip(self.ns, NBMA, strict=True):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "nbma0")
            _ip("-n", ns, "link", "set", "nbma0", "up")
        for i, ns in enumerate(self.ns):
            spec = {
                "config": {
                    "tunnel": TUNNEL,
                    "key": KEY,
                    "local_nbma": [NBMA[i]],
                    "overlay": [f"{OVERLAY[i]}/24"],
                },
                "mappings": {OVERLAY[1 - i]: NBMA[1 - i]},
            }
            self.runners.append(RunnerProcess(ns, spec))
        for runner in self.runners:
            runner.wait_ready()
        rules = (
            "table inet dptbench {\n chain input {\n  type filter hook input priority 0;\n"
            f'  iifname "{TUNNEL}" udp dport {PORT} counter drop\n }}\n}}\n'
        )
        subprocess.run(
            ["ip", "netns", "exec", self.ns[1], "nft", "-f", "-"],
            input=rules,
            check=True,
            capture_output=True,
            text=True,
        )

    def close(self) -> None:
        for runner in self.runners:
            runner.stop()
        self.runners.clear()
        for ns in self.ns:
            _ip("netns", "del", ns, check=False)

    def counter(self) -> int:
        out = _in_ns(self.ns[1], "nft", "-j", "list", "chain", "inet", "dptbench", "input").stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise RuntimeError("nftables counter not found")

    def ceiling(self, size: int, seconds: float) -> dict[str, float]:
        t0 = time.monotonic() + 1.0  # both workers have started by then
        t1, t2 = t0 + WARMUP, t0 + WARMUP + seconds
        window = [str(t) for t in (t1, t2)]
        receiver = _spawn(self.ns[1], "recv-raw", NBMA[1], *window)
        sender = _spawn(
            self.ns[0], "send-raw", NBMA[1], str(size), str(t0), *window, str(t2 + 0.05)
        )
        got = _collect(receiver, t2 - time.monotonic() + 10)
        sent = _collect(sender, 10)
        return {
            "pps": got["packets"] / got["seconds"] if got["seconds"] else 0.0,
            "send_cpu_us": _per_packet(sent["cpu_s"], sent["packets"]),
            "recv_cpu_us": _per_packet(got["cpu_s"], got["packets"]),
        }

    def dataplane(self, size: int, seconds: float) -> dict[str, float]:
        t0 = time.monotonic() + 1.0
        t1, t2 = t0 + WARMUP, t0 + WARMUP + seconds
        times = [str(t) for t in (t0, t1, t2, t2 + 0.05)]
        sender = _spawn(self.ns[0], "send-gso", OVERLAY[1], str(size), *times)
        pids = [r.pid for r in self.runners]
        _sleep_until(t1)
        c1, cpu1, m1 = self.counter(), [_cpu_seconds(p) for p in pids], time.monotonic()
        _sleep_until(t2)
        c2, cpu2, m2 = self.counter(), [_cpu_seconds(p) for p in pids], time.monotonic()
        _collect(sender, 10)
        packets = c2 - c1
        return {
            "pps": packets / (m2 - m1),
            "encap_cpu_us": _per_packet(cpu2[0] - cpu1[0], packets),
            "decap_cpu_us": _per_packet(cpu2[1] - cpu1[1], packets),
        }


def _per_packet(cpu_s: float, packets: int) -> float:
    return cpu_s / packets * 1e6 if packets else 0.0


def _mbit(pps: float, size: int) -> float:
    return pps * size * 8 / 1e6


def run(sizes: list[int], seconds: float, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    load_before = list(os.getloadavg())  # other load on the host skews both figures
    with Lab() as lab:
        samples: dict[int, dict[str, list[Any]]] = {s: {"ceiling": [], "dp": []} for s in sizes}
        for _round in range(rounds):
            for size in sizes:
                samples[size]["ceiling"].append(lab.ceiling(size, seconds))
                samples[size]["dp"].append(lab.dataplane(size, seconds))
    for size in sizes:
        ceiling = max(samples[size]["ceiling"], key=lambda c: c["pps"])
        best = max(samples[size]["dp"], key=lambda d: d["pps"])
        ratio = best["pps"] / ceiling["pps"] if ceiling["pps"] else 0.0
        # CPU time per packet of the slowest stage on each side: what the rates would
        # be if every process had a core of its own, whatever else runs on the host.
        ceiling_cpu = max(ceiling["send_cpu_us"], ceiling["recv_cpu_us"])
        dp_cpu = max(best["encap_cpu_us"], best["decap_cpu_us"])
        results[str(size)] = {
            "size": size,
            "pps": round(best["pps"]),
            "mbit_s": round(_mbit(best["pps"], size), 1),
            "ceiling_pps": round(ceiling["pps"]),
            "ceiling_mbit_s": round(_mbit(ceiling["pps"], size), 1),
            "ratio": round(ratio, 3),
            "cpu_ratio": round(ceiling_cpu / dp_cpu, 3) if dp_cpu else 0.0,
            "encap_cpu_us_per_packet": round(best["encap_cpu_us"], 2),
            "decap_cpu_us_per_packet": round(best["decap_cpu_us"], 2),
            "ceiling_send_cpu_us_per_packet": round(ceiling["send_cpu_us"], 2),
            "ceiling_recv_cpu_us_per_packet": round(ceiling["recv_cpu_us"], 2),
            "rounds_pps": [round(d["pps"]) for d in samples[size]["dp"]],
            "rounds_ceiling_pps": [round(c["pps"]) for c in samples[size]["ceiling"]],
        }
    return {
        "benchmark": "dataplane",
        "kind": "userspace",
        "target_ratio": TARGET_RATIO,
        "seconds": seconds,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": list(os.getloadavg()),
        "sizes": results,
        "ok": all(r["ratio"] >= TARGET_RATIO for r in results.values()),
    }


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["--worker"]:
        return _worker(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m dmvpn_runtime.bench dataplane")
    parser.add_argument("--seconds", type=float, default=1.5, help="measured time per case")
    parser.add_argument("--rounds", type=int, default=3, help="runs per case; the best counts")
    parser.add_argument("--sizes", default="1400,64", help="IP packet sizes, comma-separated")
    parser.add_argument("--check", action="store_true", help=f"exit 1 below ratio {TARGET_RATIO}")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(args_in)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (network namespaces, raw sockets)")
    if not os.path.exists("/dev/net/tun"):
        problems.append("needs /dev/net/tun")
    problems += [f"needs `{tool}`" for tool in ("ip", "nft") if shutil.which(tool) is None]
    if any(not 48 <= s <= 1472 for s in sizes):
        problems.append("sizes must be within 48..1472")
    if problems:
        print("error: dataplane bench " + "; ".join(problems), file=sys.stderr)
        return 2
    result = run(sizes, max(args.seconds, 0.2), max(args.rounds, 1))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'size':>5} {'pps':>9} {'Mbit/s':>8} {'ceiling pps':>12} {'ratio':>6}")
        for r in result["sizes"].values():
            print(
                f"{r['size']:>5} {r['pps']:>9} {r['mbit_s']:>8} {r['ceiling_pps']:>12}"
                f" {r['ratio']:>6.2f}"
            )
    return 1 if args.check and not result["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
