"""Counters by packet type and by drop reason; the daemon exports them as metrics."""

from __future__ import annotations

import enum
from collections import Counter

from ..wire import PacketType


class Drop(enum.StrEnum):
    """Why a received packet was not acted on (also the metric label).

    Codec failures are counted as ``decode_<codec reason>``.
    """

    NOT_RUNNING = "not_running"
    WRONG_AFN = "wrong_afn"
    WRONG_PROTOCOL = "wrong_protocol"
    UNPROTECTED = "unprotected"
    AUTH_MISSING = "auth_missing"
    AUTH_MISMATCH = "auth_mismatch"
    UNKNOWN_PEER = "unknown_peer"
    UNMATCHED_REPLY = "unmatched_reply"
    UNEXPECTED_EXTENSION = "unexpected_extension"
    UNKNOWN_COMPULSORY_EXTENSION = "unknown_compulsory_extension"
    RATE_LIMITED = "rate_limited"
    NOT_NHS = "not_nhs"
    MALFORMED = "malformed"
    HOP_COUNT_EXCEEDED = "hop_count_exceeded"
    LOOP_DETECTED = "loop_detected"
    PURGE_MISMATCH = "purge_mismatch"
    SHORTCUTS_DISABLED = "shortcuts_disabled"
    POLICY = "policy"


class Stats:
    __slots__ = ("counters", "drops", "rx", "tx")

    def __init__(self) -> None:
        self.rx = [0] * 9  # by packet type number
        self.tx = [0] * 9
        self.drops: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()  # other things worth a metric

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            "rx": {PacketType(i).json_name: n for i, n in enumerate(self.rx) if i and n},
            "tx": {PacketType(i).json_name: n for i, n in enumerate(self.tx) if i and n},
            "drops": dict(self.drops),
            "counters": dict(self.counters),
        }
