"""Hub scale: N emulated spokes register with one real dmvpnd hub.

``python -m dmvpn_runtime.bench hub [--spokes N] [--timeout S] [--rate R] [--profile FILE]
[--check] [--json]`` (root; it builds two network namespaces and removes them).

Two namespaces, ``hbb-<pid>-hub`` and ``hbb-<pid>-gen``, joined by a veth created inside
the hub namespace with its peer moved straight into the generator's (nothing appears in
the root namespace). The hub namespace runs a real ``dmvpnd`` (role hub, userspace data
plane, key 42, NBMA 198.51.100.1, overlay 10.255.0.1/16, config in a temporary
directory). The generator namespace owns 198.51.100.2 and, through an AnyIP route
(``local 100.64.0.0/16 dev lo``), every spoke NBMA address 100.64.x.y; the hub routes
100.64.0.0/16 via 198.51.100.2.

One Python process in the generator namespace emulates all spokes over real raw sockets:
it sends each spoke's Registration Request (built with the codec as the engine's NHC
builds it: hop count 1, unique + NAT-capable flags, one CIE with prefix length 255 and
the hold time, Responder Address, Forward/Reverse Transit NHS, the NAT extension with the
hub's NBMA and overlay address, End) in GRE (key 42, protocol 0x2001) from the spoke's
own NBMA address through one ``IPPROTO_RAW`` socket with a hand-built IPv4 header, and
reads the Registration Replies from one raw GRE socket, matching them by request id.
Requests go out as fast as the socket takes them (``--rate`` paces them); an unanswered
request is resent with the same octets after 1 s, then 2, 4, 8, 8 ... s (at most
``--tries`` sends per spoke), as a spoke retransmits (FRR starts at 2 s, doubling to 64).

Measured: seconds from the first request to the last spoke's first successful reply
(CIE code 0), cross-checked by the count of ``registered`` entries in the hub's
``show_nhrp``; the hub's CPU seconds over that time (utime + stime of the dmvpnd
process) and its peak RSS (VmHWM). ``--profile FILE`` runs dmvpnd under cProfile (slower)
and prints the top functions on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ..lab.system import pid_alive
from ._guard import guarded_run

TARGET_S = 5.0
KEY = 42
HUB_NBMA = IPv4Address("198.51.100.1")
GEN_NBMA = IPv4Address("198.51.100.2")
NBMA_PREFIX_LEN = 24
SPOKE_NBMA_NET = IPv4Network("100.64.0.0/16")
OVERLAY_NET = IPv4Network("10.255.0.0/16")
HUB_OVERLAY = OVERLAY_NET.network_address + 1
FIRST_SPOKE = 2  # host number of the first spoke in both /16s (1 is the hub's overlay)
MAX_SPOKES = 60000
HOLDTIME = 600
TUNNEL = "hbb0"
VETH = "nbma0"
NS_PREFIX = "hbb-"
NS_RE = re.compile(r"^hbb-(\d+)-(hub|gen)$")
METRICS = "127.0.0.1:9477"
GRE_NHRP = 0x2001
GRE_FLAG_K = 0x2000
IPPROTO_GRE = 47
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SOCKET_BUFFER = 16 << 20
QUERY_TIMEOUT = 120.0
RETRY_MAX = 8.0  # retransmission interval: 1 s doubling up to this
BURST = 64  # requests sent between two looks at the receive socket
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
METHOD = (
    "one generator process in its own network namespace emulates N spokes: Registration"
    " Requests (codec-built, as the engine's NHC sends them) in GRE key 42 from N distinct"
    " NBMA source addresses (AnyIP 100.64.0.0/16 in the generator namespace) through one"
    " IPPROTO_RAW socket with hand-built IPv4 headers, sent back to back; replies read from"
    " one raw GRE socket and matched by request id; unanswered requests resent after"
    " 1, 2, 4, 8, 8 ... s. Hub: a real dmvpnd (userspace data plane) in a second namespace behind"
    " a veth. Time: first request to last first-successful reply; cross-checked with the"
    " hub's show_nhrp. Hub CPU: utime+stime of dmvpnd over that time; RSS: VmHWM."
)


# -- the generator: runs inside the gen namespace as `... bench.hub --worker SPEC` ---------
def spoke_host(i: int) -> int:
    return FIRST_SPOKE + i


def spoke_nbma(i: int) -> IPv4Address:
    return SPOKE_NBMA_NET.network_address + spoke_host(i)


def spoke_overlay(i: int) -> IPv4Address:
    return OVERLAY_NET.network_address + spoke_host(i)


def registration_request(i: int, request_id: int, holdtime: int = HOLDTIME) -> bytes:
    """Spoke ``i``'s Registration Request (NHRP octets), as the engine's NHC builds it."""
    from ..nhrp.wire import (
        Afn,
        Cie,
        ForwardTransitNhs,
        NatAddress,
        Packet,
        PacketType,
        ProtocolType,
        ResponderAddress,
        ReverseTransitNhs,
        encode,
        with_end,
    )
    from ..nhrp.wire.constants import FLAG_NAT_CAPABLE, REG_FLAG_UNIQUE, UNIQUE_PREFIX_LENGTH

    nbma, own = spoke_nbma(i), spoke_overlay(i)
    cie = Cie(
        prefix_length=UNIQUE_PREFIX_LENGTH,
        holding_time=holdtime,
        client_nbma=nbma,
        client_proto=own,
    )
    nat = NatAddress(
        (
            Cie(
                prefix_length=HUB_OVERLAY.max_prefixlen,
                client_nbma=HUB_NBMA,
                client_proto=HUB_OVERLAY,
            ),
        )
    )
    packet = Packet(
        PacketType.REGISTRATION_REQUEST,
        Afn.IPV4,
        ProtocolType.IPV4,
        1,  # hop count of a registration (Cisco refuses 0)
        nbma,
        own,
        HUB_OVERLAY,
        REG_FLAG_UNIQUE | FLAG_NAT_CAPABLE,
        request_id,
        (cie,),
        extensions=with_end([ResponderAddress(), ForwardTransitNhs(), ReverseTransitNhs(), nat]),
    )
    return encode(packet)


_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_GRE = struct.Struct("!HHI")


def ip_gre_packet(src: IPv4Address, dst: IPv4Address, nhrp: bytes, key: int = KEY) -> bytes:
    """IPv4 + GRE (key) + NHRP. The kernel fills the IP id and checksum (IP_HDRINCL)."""
    total = _IPV4.size + _GRE.size + len(nhrp)
    header = _IPV4.pack(0x45, 0, total, 0, 0, 64, IPPROTO_GRE, 0, src.packed, dst.packed)
    return header + _GRE.pack(GRE_FLAG_K, GRE_NHRP, key) + nhrp


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Generator:
    """N emulated spokes on two raw sockets; see the module docstring."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from ..nhrp.wire import DecodeError, PacketType, decode

        self._decode, self._decode_error = decode, DecodeError
        self._reply_type = PacketType.REGISTRATION_REPLY
        self.n = int(spec["spokes"])
        self.base = int(spec["request_id_base"])
        self.retry = float(spec["retry"])
        self.tries = int(spec["tries"])
        self.timeout = float(spec["timeout"])
        self.rate = float(spec["rate"])
        self.hub = (str(HUB_NBMA), 0)
        self.packets = [
            ip_gre_packet(spoke_nbma(i), HUB_NBMA, registration_request(i, self.base + i))
            for i in range(self.n)
        ]
        self.nbma_packed = [spoke_nbma(i).packed for i in range(self.n)]
        self.overlay = [spoke_overlay(i) for i in range(self.n)]
        self.gre_expected = _GRE.pack(GRE_FLAG_K, GRE_NHRP, KEY)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
        for sock, option in ((self.tx, SO_SNDBUFFORCE), (self.rx, SO_RCVBUFFORCE)):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.rx.setblocking(False)
        self.buf = bytearray(65536)
        self.first_sent = [0.0] * self.n
        self.sends = [0] * self.n
        self.done_at: list[float | None] = [None] * self.n
        self.registered = 0
        self.counts = {
            "requests_sent": 0,
            "retransmits": 0,
            "send_errors": 0,
            "replies": 0,
            "replies_ok": 0,
            "duplicate_ok": 0,
            "unmatched": 0,
            "wrong_address": 0,
            "not_reply": 0,
            "bad_gre": 0,
            "undecodable": 0,
        }
        self.refused: dict[str, int] = {}
        self.retries: list[tuple[float, int]] = []  # (deadline, spoke)

    def _send(self, i: int, now: float) -> None:
        try:
            self.tx.sendto(self.packets[i], self.hub)
        except OSError:
            self.counts["send_errors"] += 1
        self.counts["requests_sent"] += 1
        if self.sends[i]:
            self.counts["retransmits"] += 1
        else:
            self.first_sent[i] = now
        self.sends[i] += 1
        if self.sends[i] < self.tries:
            backoff = min(self.retry * 2 ** (self.sends[i] - 1), RETRY_MAX)
            heapq.heappush(self.retries, (now + backoff, i))

    def _drain(self) -> None:
        rx, buf, counts = self.rx, self.buf, self.counts
        while True:
            try:
                n = rx.recv_into(buf)
            except BlockingIOError:
                return
            now = time.monotonic()
            ihl = (buf[0] & 15) << 2
            if buf[ihl : ihl + 8] != self.gre_expected:
                counts["bad_gre"] += 1
                continue
            try:
                pkt = self._decode(bytes(buf[ihl + 8 : n]))
            except self._decode_error:
                counts["undecodable"] += 1
                continue
            if pkt.type != self._reply_type:
                counts["not_reply"] += 1
                continue
            counts["replies"] += 1
            i = pkt.request_id - self.base
            if not 0 <= i < self.n or not self.sends[i]:
                counts["unmatched"] += 1
                continue
            if bytes(buf[16:20]) != self.nbma_packed[i] or pkt.src_proto != self.overlay[i]:
                counts["wrong_address"] += 1
                continue
            code = pkt.cies[0].code if pkt.cies else -1
            if code != 0:
                self.refused[str(code)] = self.refused.get(str(code), 0) + 1
                continue  # stays unregistered: the retransmission timer asks again
            counts["replies_ok"] += 1
            if self.done_at[i] is not None:
                counts["duplicate_ok"] += 1
                continue
            self.done_at[i] = now
            self.registered += 1

    def run(self) -> dict[str, Any]:
        n = self.n
        cpu0 = time.process_time()
        t0 = time.monotonic()
        end = t0 + self.timeout
        next_first = 0
        last_first = t0
        while self.registered < n:
            now = time.monotonic()
            if now >= end:
                break
            if next_first < n:
                allowed = n if self.rate <= 0 else min(n, int((now - t0) * self.rate) + 1)
                stop = min(allowed, next_first + BURST)
                while next_first < stop:
                    self._send(next_first, time.monotonic())
                    next_first += 1
                last_first = time.monotonic()
            while self.retries and self.retries[0][0] <= now:
                _deadline, i = heapq.heappop(self.retries)
                if self.done_at[i] is None:
                    self._send(i, now)
            self._drain()
            if self.registered >= n:
                break
            if next_first >= n or self.rate > 0:
                wake = end
                if self.retries:
                    wake = min(wake, self.retries[0][0])
                if next_first < n:
                    wake = min(wake, t0 + next_first / self.rate)
                select.select([self.rx], [], [], max(0.0, wake - time.monotonic()))
        done = [t for t in self.done_at if t is not None]
        latencies = [
            (t - self.first_sent[i]) * 1000 for i, t in enumerate(self.done_at) if t is not None
        ]
        result: dict[str, Any] = {
            "spokes": n,
            "registered": self.registered,
            "seconds_to_all_registered": (
                round(max(done) - t0, 4) if self.registered == n and done else None
            ),
            "seconds_to_first_reply": round(min(done) - t0, 4) if done else None,
            "send_s": round(last_first - t0, 4),
            **self.counts,
            "refused_by_code": self.refused,
            "latency_ms": {
                "p50": _round(_percentile(latencies, 0.5)),
                "p95": _round(_percentile(latencies, 0.95)),
                "max": _round(max(latencies) if latencies else None),
            },
            "gen_cpu_s": round(time.process_time() - cpu0, 3),
        }
        return result

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _worker(argv: list[str]) -> int:
    """Build the packets, say ready, wait for "go" on stdin, run, print the result."""
    spec = json.loads(argv[0])
    try:
        gen = Generator(spec)
        print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
        if sys.stdin.readline().strip() != "go":
            return 0
        result = gen.run()
        gen.close()
    except KeyboardInterrupt:
        return 130
    print(json.dumps(result), flush=True)
    return 0


# -- the bench: namespaces, the hub daemon, the worker -------------------------------------
class BenchError(Exception):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def remove_stale_namespaces() -> list[str]:
    """Namespaces of earlier runs whose process is gone (a crash, a SIGKILL)."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    raise BenchError(f"no {key} in /proc/{pid}/status")


def raw_socket_drops(proc_net_raw: str, protocol: int) -> int:
    """Packets the kernel dropped at full raw sockets of ``protocol`` (/proc/net/raw)."""
    total = 0
    for line in proc_net_raw.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and int(fields[1].split(":")[1], 16) == protocol:
            total += int(fields[-1])
    return total


def hub_config(tmp: str) -> str:
    return (
        f"tunnel: {TUNNEL}\n"
        "role: hub\n"
        "dataplane: userspace\n"
        f"gre_key: {KEY}\n"
        f"nbma: {{address: {HUB_NBMA}}}\n"
        f"overlay: {{ipv4: {HUB_OVERLAY}/{OVERLAY_NET.prefixlen}}}\n"
        f"holdtime: {HOLDTIME}\n"
        "ipsec: {mode: none}\n"
        f"control: {{socket: {tmp}/{TUNNEL}.sock}}\n"
        f"metrics: {{listen: '{METRICS}'}}\n"
        f"log: {{events: {tmp}/{TUNNEL}.events.jsonl, level: warning}}\n"
    )


class Bench:
    """The two namespaces, the hub's dmvpnd and the generator; ``close`` removes them all."""

    def __init__(self, profile: str | None = None) -> None:
        tag = f"{NS_PREFIX}{os.getpid()}"
        self.hub_ns, self.gen_ns = f"{tag}-hub", f"{tag}-gen"
        self.profile = profile
        self.tmp = tempfile.mkdtemp(prefix="hbb-")
        self.socket = f"{self.tmp}/{TUNNEL}.sock"
        self.hub: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[str] | None = None
        self.namespaces: list[str] = []
        self._hub_log = None

    # lifecycle
    def __enter__(self) -> Bench:
        try:
            self._build()
            self._start_hub()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        hub, gen = self.hub_ns, self.gen_ns
        for ns in (hub, gen):
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        # Created inside the hub namespace, the peer moved straight into the generator's.
        _ip("-n", hub, "link", "add", VETH, "type", "veth", "peer", "name", VETH, "netns", gen)
        for ns, addr in ((hub, HUB_NBMA), (gen, GEN_NBMA)):
            _ip("-n", ns, "addr", "add", f"{addr}/{NBMA_PREFIX_LEN}", "dev", VETH)
            _ip("-n", ns, "link", "set", VETH, "up")
        # AnyIP: the generator namespace owns every spoke NBMA address.
        _ip("-n", gen, "route", "add", "local", str(SPOKE_NBMA_NET), "dev", "lo")
        _ip("-n", hub, "route", "add", str(SPOKE_NBMA_NET), "via", str(GEN_NBMA))
        ping = subprocess.run(
            ["ip", "netns", "exec", gen, "ping", "-c", "1", "-W", "2", str(HUB_NBMA)],
            capture_output=True,
            text=True,
            check=False,
        )
        if ping.returncode != 0 and shutil.which("ping"):
            raise BenchError(f"no NBMA connectivity between the namespaces: {ping.stdout}")

    def _start_hub(self) -> None:
        config = f"{self.tmp}/{TUNNEL}.yaml"
        with open(config, "w", encoding="utf-8") as f:
            f.write(hub_config(self.tmp))
        daemon = ["-m", "dmvpn_runtime.cli.dmvpnd", "--config", config]
        if self.profile:
            daemon = ["-m", "cProfile", "-o", self.profile, *daemon]
        self._hub_log = open(f"{self.tmp}/dmvpnd.stderr", "wb")  # noqa: SIM115
        # `ip netns exec` execs the command: the Popen pid is dmvpnd's.
        self.hub = subprocess.Popen(
            ["ip", "netns", "exec", self.hub_ns, sys.executable, *daemon],
            stdin=subprocess.DEVNULL,
            stdout=self._hub_log,
            stderr=subprocess.STDOUT,
        )
        from ..daemon.control import ControlError, request

        deadline = time.monotonic() + 20
        while True:
            if self.hub.poll() is not None:
                raise BenchError(f"dmvpnd exited ({self.hub.returncode}): {self.hub_log_tail()}")
            try:
                request(self.socket, "show_status", timeout=1.0)
                return
            except (OSError, ControlError, ValueError):
                if time.monotonic() > deadline:
                    raise BenchError(f"dmvpnd did not start: {self.hub_log_tail()}") from None
                time.sleep(0.05)

    def hub_log_tail(self) -> str:
        try:
            with open(f"{self.tmp}/dmvpnd.stderr", encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        for proc in (self.worker, self.hub):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120 if proc is self.hub and self.profile else 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.worker is not None:
            for stream in (self.worker.stdin, self.worker.stdout, self.worker.stderr):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
        self.worker = self.hub = None
        if self._hub_log is not None:
            self._hub_log.close()
            self._hub_log = None
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # the measurement
    def run(self, spokes: int, timeout: float, rate: float, retry: float, tries: int) -> dict:
        from ..daemon.control import request

        assert self.hub is not None
        spec = {
            "spokes": spokes,
            "request_id_base": 0x10000000 + (os.getpid() & 0xFFFF) * 0x1000,
            "retry": retry,
            "tries": tries,
            "timeout": timeout,
            "rate": rate,
        }
        worker_cmd = [sys.executable, "-m", __name__, "--worker", json.dumps(spec)]
        self.worker = subprocess.Popen(
            ["ip", "netns", "exec", self.gen_ns, *worker_cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        worker = self.worker
        assert worker.stdin is not None and worker.stdout is not None
        ready = worker.stdout.readline()
        if not ready.startswith('{"ready"'):
            _out, err = worker.communicate(timeout=10)
            raise BenchError(f"generator did not start: {ready}{err[-2000:]}")
        pid = self.hub.pid
        cpu0 = _cpu_seconds(pid)
        rss0 = _status_mb(pid, "VmRSS")
        worker.stdin.write("go\n")
        worker.stdin.flush()
        try:
            out, err = worker.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            raise BenchError("generator did not finish") from None
        cpu1 = _cpu_seconds(pid)
        if worker.returncode != 0 or not out.strip():
            raise BenchError(f"generator failed ({worker.returncode}): {err[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        if self.hub.poll() is not None:
            raise BenchError(f"dmvpnd died during the run: {self.hub_log_tail()}")
        # A hub still working through its backlog answers late: wait for it.
        entries = request(self.socket, "show_nhrp", timeout=QUERY_TIMEOUT)
        hub_registered = sum(1 for e in entries if e.get("type") == "registered")
        stats = request(self.socket, "show_stats", timeout=QUERY_TIMEOUT)
        rss_peak = _status_mb(pid, "VmHWM")
        raw = subprocess.run(
            ["ip", "netns", "exec", self.hub_ns, "cat", "/proc/net/raw"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        result.update(
            hub_registered=hub_registered,
            hub_cpu_s=round(cpu1 - cpu0, 3),
            hub_rss_mb=rss_peak,
            hub_rss_start_mb=rss0,
            hub_socket_drops=raw_socket_drops(raw, IPPROTO_GRE),
            hub_drops={
                "engine": {k: v for k, v in stats["engine"].get("drops", {}).items() if v},
                "dataplane": {k: v for k, v in stats["dataplane"].get("drops", {}).items() if v},
            },
        )
        return result


def run(
    spokes: int,
    timeout: float,
    rate: float = 0.0,
    retry: float = 1.0,
    tries: int = 10,
    profile: str | None = None,
) -> dict[str, Any]:
    remove_stale_namespaces()
    load_before = round(os.getloadavg()[0], 2)
    with Bench(profile) as bench:
        result = bench.run(spokes, timeout, rate, retry, tries)
    seconds = result["seconds_to_all_registered"]
    ordered: dict[str, Any] = {
        "benchmark": "hub",
        "spokes": spokes,
        "registered": result.pop("registered"),
        "hub_registered": result.pop("hub_registered"),
        "seconds_to_all_registered": seconds,
        "hub_cpu_s": result.pop("hub_cpu_s"),
        "hub_rss_mb": result.pop("hub_rss_mb"),
        "target_s": TARGET_S,
        "ok": seconds is not None and seconds <= TARGET_S,
        **{k: v for k, v in result.items() if k not in ("spokes", "seconds_to_all_registered")},
        "rate_per_s": rate,  # 0: back to back
        "retry_s": retry,
        "tries": tries,
        "cpus": os.cpu_count(),
        "loadavg_1m_before": load_before,
        "profiled": bool(profile),
        "method": METHOD,
    }
    return ordered


def print_profile(path: str, limit: int = 30) -> None:
    import pstats

    stats = pstats.Stats(path, stream=sys.stderr)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["--worker"]:
        return _worker(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m dmvpn_runtime.bench hub")
    parser.add_argument("--spokes", type=int, default=2000, help="emulated spokes (2000)")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after S s (30)")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0: back to back")
    parser.add_argument("--retry", type=float, default=1.0, help="first retransmission (1 s)")
    parser.add_argument("--tries", type=int, default=10, help="sends per spoke at most (10)")
    parser.add_argument("--profile", metavar="FILE", help="run dmvpnd under cProfile into FILE")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_S} s")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(args_in)
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (network namespaces, raw sockets)")
    if not os.path.exists("/dev/net/tun"):
        problems.append("needs /dev/net/tun")
    if shutil.which("ip") is None:
        problems.append("needs `ip`")
    if not 1 <= args.spokes <= MAX_SPOKES:
        problems.append(f"--spokes must be within 1..{MAX_SPOKES}")
    if not 0.1 <= args.timeout <= 600:
        problems.append("--timeout must be within 0.1..600")
    if args.tries < 1 or args.retry <= 0:
        problems.append("--tries must be at least 1 and --retry positive")
    if problems:
        print("error: hub bench " + "; ".join(problems), file=sys.stderr)
        return 2
    profile = os.path.abspath(args.profile) if args.profile else None
    result, failed = guarded_run(
        "hub bench",
        lambda: run(args.spokes, args.timeout, args.rate, args.retry, args.tries, profile),
        (BenchError,),
        "namespaces and processes removed",
    )
    if result is None:
        return failed
    if profile:
        print_profile(profile)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        secs = result["seconds_to_all_registered"]
        print(
            f"{result['registered']}/{result['spokes']} registered"
            f" (hub: {result['hub_registered']})"
            f" in {'-' if secs is None else f'{secs:.3f}'} s (target {TARGET_S} s);"
            f" hub CPU {result['hub_cpu_s']} s, peak RSS {result['hub_rss_mb']} MB;"
            f" retransmits {result['retransmits']}, latency p50/p95/max"
            f" {result['latency_ms']['p50']}/{result['latency_ms']['p95']}"
            f"/{result['latency_ms']['max']} ms"
        )
    complete = result["registered"] == result["hub_registered"] == result["spokes"]
    if not complete:
        return 1
    return 1 if args.check and not result["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
