"""Structured events (seed requirements 9 and 13): a JSON-lines file plus human log lines.

Every engine Event becomes one JSON object per line with a wall-clock timestamp, the
tunnel name and the event's fields, and one readable line on stderr through logging.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, TextIO

log = logging.getLogger("dmvpnd.events")


class EventLog:
    def __init__(self, path: str | None, tunnel: str) -> None:
        self.path = path
        self.tunnel = tunnel
        self._file: TextIO | None = None

    def open(self) -> None:
        if self.path:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def reopen(self) -> None:
        """After log rotation (SIGHUP)."""
        self.close()
        self.open()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def emit(self, kind: str, fields: dict[str, Any]) -> None:
        record = {"ts": round(time.time(), 6), "tunnel": self.tunnel, "event": kind, **fields}
        if self._file is not None:
            self._file.write(json.dumps(record, default=str, sort_keys=False) + "\n")
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        log.info("%s %s", kind, detail)
