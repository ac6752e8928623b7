"""Run one data plane on its own, driven by JSON lines on stdin (tests, benchmarks, labs).

    python -m dmvpn_runtime.dataplane.runner '{"config": {...}, "mappings": {...}}'

The argument (or ``@FILE``) holds ``config`` (a :class:`DataPlaneConfig` as plain data),
and optionally ``kind`` (default ``userspace``), ``cleanup_stale`` (bool),
``mappings`` ({overlay: nbma}), ``routes`` ({prefix: via}) and ``multicast`` ([nbma]).

stdout carries one JSON object per line: ``{"ready": ...}`` once open, a
``{"notice": NAME, ...}`` per sink call, and ``{"id": N, "ok": true, "result": ...}``
(or ``"ok": false, "error": ...``) per request. A request is
``{"id": N, "op": NAME, "args": [...]}`` with NAME one of the data plane's actions
(``add_mapping``, ``remove_mapping``, ``add_route``, ``remove_route``,
``set_multicast_targets``, ``send_nhrp`` with hex data), ``stats``, ``mappings``,
``reset`` (drop all mappings, routes and targets) or ``quit``. End of stdin, SIGTERM
and SIGINT close the data plane and exit 0. This is a stand-in for dmvpnd, not a
replacement: there is no NHRP here.
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from . import create
from .base import Address, DataPlane, DataPlaneConfig, DataPlaneError


class JsonSink:
    """Writes every notice as a JSON line."""

    def __init__(self, out: Any) -> None:
        self._out = out

    def emit(self, obj: dict[str, Any]) -> None:
        self._out.write(json.dumps(obj) + "\n")
        self._out.flush()

    def nhrp_received(self, nbma_src: Address, data: bytes, protected: bool) -> None:
        self.emit(
            {
                "notice": "nhrp_received",
                "nbma_src": str(nbma_src),
                "data": data.hex(),
                "protected": protected,
            }
        )

    def hairpin(
        self,
        in_nbma: Address,
        out_nbma: Address,
        inner_src: Address,
        inner_dst: Address,
        head: bytes,
    ) -> None:
        self.emit(
            {
                "notice": "hairpin",
                "in_nbma": str(in_nbma),
                "out_nbma": str(out_nbma),
                "inner_src": str(inner_src),
                "inner_dst": str(inner_dst),
                "head": head.hex(),
            }
        )

    def no_mapping(self, next_hop: Address) -> None:
        self.emit({"notice": "no_mapping", "next_hop": str(next_hop)})

    def traffic(self, peer: Address, packets: int, octets: int, /) -> None:
        self.emit({"notice": "traffic", "peer": str(peer), "packets": packets, "bytes": octets})


class Runner:
    def __init__(self, spec: dict[str, Any], out: Any) -> None:
        self.sink = JsonSink(out)
        self.config = DataPlaneConfig.from_dict(spec["config"])
        self.plane: DataPlane = create(spec.get("kind", "userspace"), self.config, self.sink)
        self.spec = spec
        self.running = True
        self._stdin = b""

    def start(self) -> None:
        removed = self.plane.cleanup_stale() if self.spec.get("cleanup_stale") else []
        self.plane.open()
        for overlay, nbma in self.spec.get("mappings", {}).items():
            self.plane.add_mapping(overlay, nbma)
        for prefix, via in self.spec.get("routes", {}).items():
            self.plane.add_route(prefix, via)
        if "multicast" in self.spec:
            self.plane.set_multicast_targets(self.spec["multicast"])
        self.sink.emit(
            {
                "ready": self.config.tunnel,
                "kind": self.plane.kind,
                "pid": os.getpid(),
                "mtu": self.config.effective_mtu,
                "removed": removed,
            }
        )

    def request(self, line: bytes) -> None:
        try:
            req = json.loads(line)
        except ValueError:
            self.sink.emit({"ok": False, "error": f"not JSON: {line[:80]!r}"})
            return
        reply: dict[str, Any] = {"id": req.get("id")}
        try:
            reply["result"] = self._dispatch(req.get("op", ""), req.get("args", []))
            reply["ok"] = True
        except (DataPlaneError, ValueError, TypeError, KeyError) as exc:
            reply.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        self.sink.emit(reply)

    def _dispatch(self, op: str, args: list[Any]) -> Any:
        plane = self.plane
        if op == "stats":
            return plane.stats().as_dict()
        if op == "mappings":
            return {str(k): str(v) for k, v in plane.mappings().items()}
        if op == "send_nhrp":
            return plane.send_nhrp(args[0], bytes.fromhex(args[1]))
        if op == "reset":
            for overlay in list(plane.mappings()):
                plane.remove_mapping(overlay)
            for prefix in list(self.spec.get("routes", {})):
                plane.remove_route(prefix)
            return plane.set_multicast_targets([])
        if op == "quit":
            self.running = False
            return None
        if op in {
            "add_mapping",
            "remove_mapping",
            "add_route",
            "remove_route",
            "set_multicast_targets",
        }:
            result = getattr(plane, op)(*args)
            if op == "add_route":
                self.spec.setdefault("routes", {})[args[0]] = args[1]
            return result
        raise ValueError(f"unknown op {op!r}")

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for fd in self.plane.readers():
            sel.register(fd, selectors.EVENT_READ, self.plane.on_readable)
        stdin = sys.stdin.buffer.fileno()
        os.set_blocking(stdin, False)
        sel.register(stdin, selectors.EVENT_READ, self._on_stdin)
        try:
            while self.running:
                for key, _events in sel.select(timeout=0.5):
                    key.data(key.fd)
                self.plane.tick()
        finally:
            sel.close()

    def _on_stdin(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False
            return
        self._stdin += chunk
        *lines, self._stdin = self._stdin.split(b"\n")
        for line in lines:
            if line.strip():
                self.request(line)


class RunnerProcess:
    """Client side: a runner started inside network namespace ``netns``.

    Replies and notices are read by a thread; ``call`` waits for the reply to its own
    request. ``stop`` ends the runner gently (stdin closed), then by force.
    """

    def __init__(self, netns: str, spec: dict[str, Any], python: str = sys.executable) -> None:
        self.netns = netns
        self.spec = spec
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, python, "-m", __name__, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.notices: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ready: dict[str, Any] | None = None
        self.stderr = b""
        self._replies: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._next_id = 1
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if "notice" in obj:
                    self.notices.put(obj)
                elif "ready" in obj or ("error" in obj and "id" not in obj):
                    self.ready = obj
                elif "id" in obj:
                    self._replies[obj["id"]] = obj
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr = (self.stderr + line)[-8192:]

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.ready is None and self.proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        if self.ready is None or "error" in self.ready:
            detail = self.ready or self.stderr.decode(errors="replace")[-2000:]
            raise DataPlaneError(f"runner in {self.netns} did not start: {detail}")
        return self.ready

    def call(self, op: str, *args: Any, timeout: float = 10.0) -> Any:
        assert self.proc.stdin is not None
        with self._cond:
            rid = self._next_id
            self._next_id += 1
        line = json.dumps({"id": rid, "op": op, "args": list(args)}) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while rid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise DataPlaneError(f"runner in {self.netns}: no reply to {op}")
                self._cond.wait(min(left, 0.1))
            reply = self._replies.pop(rid)
        if not reply.get("ok"):
            raise DataPlaneError(reply.get("error", "failed"))
        return reply.get("result")

    def wait_notice(
        self, kind: str, match: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The next notice of ``kind`` whose fields include ``match``; others are kept."""
        deadline = time.monotonic() + timeout
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind} notice {match or ''} from {self.netns}")
                try:
                    notice = self.notices.get(timeout=left)
                except queue.Empty:
                    continue
                if notice["notice"] == kind and all(
                    notice.get(k) == v for k, v in (match or {}).items()
                ):
                    return notice
                skipped.append(notice)
        finally:
            for notice in skipped:
                self.notices.put(notice)

    def drain(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All notices received so far (of ``kind``), removing them."""
        out, keep = [], []
        while True:
            try:
                notice = self.notices.get_nowait()
            except queue.Empty:
                break
            (out if kind is None or notice["notice"] == kind else keep).append(notice)
        for notice in keep:
            self.notices.put(notice)
        return out

    @property
    def pid(self) -> int:
        return self.proc.pid  # `ip netns exec` execs the runner: same process

    def stop(self, timeout: float = 5.0) -> int:
        """Close stdin (the runner closes its data plane and exits); kill if it hangs."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        for t in self._threads:
            t.join(1.0)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    text = args[0]
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    runner = Runner(json.loads(text), sys.stdout)

    def stop(_sig: int, _frame: object) -> None:
        runner.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.start()
        runner.run()
    except DataPlaneError as exc:
        runner.sink.emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    finally:
        runner.plane.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
