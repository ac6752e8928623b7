"""The control socket: one unix stream socket per tunnel, one JSON request per line.

A request is ``{"command": "show_nhrp", "args": {...}}``; the answer is one JSON line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. dmvpnctl and the
collection's ``*_info``/``*_clear`` modules are the clients. The server is driven by
the daemon's selector loop and never blocks it: a client that sends nothing useful
within its buffer limit is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

MAX_REQUEST = 64 * 1024
log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """A request the daemon refuses (unknown command, bad argument)."""


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self.sock: socket.socket | None = None
        self._buffers: dict[socket.socket, bytearray] = {}

    def open(self) -> socket.socket:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:  # a socket file left by a crashed instance
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o660)
        sock.listen(16)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def close(self) -> None:
        for conn in list(self._buffers):
            conn.close()
        self._buffers.clear()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def accept(self) -> socket.socket | None:
        assert self.sock is not None
        try:
            conn, _addr = self.sock.accept()
        except BlockingIOError:
            return None
        conn.setblocking(False)
        self._buffers[conn] = bytearray()
        return conn

    def readable(self, conn: socket.socket) -> bool:
        """Read from a client; returns False when the connection is finished."""
        buf = self._buffers.get(conn)
        if buf is None:
            return False
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if chunk:
            buf += chunk
        if b"\n" not in buf and chunk and len(buf) < MAX_REQUEST:
            return True
        line = bytes(buf).split(b"\n", 1)[0]
        reply = self.dispatch(line) if line.strip() else {"ok": False, "error": "empty request"}
        try:
            conn.setblocking(True)
            conn.settimeout(2.0)
            conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except OSError:
            pass
        self._buffers.pop(conn, None)
        conn.close()
        return False

    def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                raise ControlError('a JSON object with a "command" string')
            handler = self.handlers.get(request["command"])
            if handler is None:
                raise ControlError(
                    f"unknown command {request['command']!r}; known: "
                    + ", ".join(sorted(self.handlers))
                )
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise ControlError('"args" must be an object')
            return {"ok": True, "result": handler(args)}
        except (ValueError, ControlError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler bug must not take the daemon down
            log.exception("control command failed")
            return {"ok": False, "error": f"internal error: {exc}"}


def request(
    path: str, command: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> Any:
    """Client side: send one request, return the result or raise ControlError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        data = bytearray()
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "request failed"))
    return reply["result"]
