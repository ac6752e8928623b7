"""Timers and limits, named, with where each value comes from; and the engine's timer queue.

Values marked FRR are FRRouting nhrpd's (a reference point, not a spec; see
docs nhrp-reference.md "Timers and constants in FRR nhrpd").
"""

from __future__ import annotations

from collections.abc import Hashable
from heapq import heappop, heappush
from typing import Final

# -- registration (RFC 2332 §5.2.3) ------------------------------------------------------
DEFAULT_HOLDTIME: Final = 7200  # FRR NHRPD_DEFAULT_HOLDTIME, Cisco default
REFRESH_DIVISOR: Final = 3  # re-register at holdtime/3 after a good reply (FRR nhrp_reg_reply)
# per-try timeout starts at 2 s, doubles (FRR nhrp_reg_timeout)
REGISTRATION_RETRY_FIRST: Final = 2.0
REGISTRATION_RETRY_MAX: Final = 64.0  # past 64 s: restart the SA and start again at 2 s (FRR)
NHS_DOWN_AFTER_MISSES: Final = 3  # FRR NHRP_UNREACHABLE_COUNT: then the next NHS by priority

# -- resolution (RFC 2332 §5.2.1, §5.2.0.1: a retransmission keeps its request id) -------
RESOLUTION_RETRY_FIRST: Final = 1.0  # FRR PR #16788
RESOLUTION_RETRY_MAX: Final = 7.0  # FRR: capped at purge_time/4
RESOLUTION_GIVE_UP: Final = 30.0  # FRR: a pending shortcut is dropped after 30 s
NEGATIVE_CACHE: Final = 30.0  # ours: "no binding" suppresses new requests this long (§5.2.2 NAK)
NEGATIVE_CACHE_MAX: Final = 120.0  # ours: upper bound for a NAK's holding time

# -- shortcuts (seed "Dynamic Mappings"; FRR nhrp_shortcut.c) ----------------------------
SHORTCUT_REFRESH_AT: Final = 2 / 3  # of the holding time: refresh if used (FRR)
PENDING_BINDING_TIMEOUT: Final = 30.0  # a new binding waiting for IPsec is dropped (FRR pending)

# -- purge (RFC 2332 §5.2.5: retransmit until a Purge Reply arrives) ---------------------
PURGE_RETRY_FIRST: Final = 1.0  # ours
PURGE_ATTEMPTS: Final = 4  # ours: 1 + 2 + 4 s, then give up (the binding expires anyway)

# -- redirect (draft-detienne-dmvpn §4; FRR doc: hashlimit 4/minute, burst 1) ------------
REDIRECT_INTERVAL: Final = 15.0
TRAFFIC_INDICATION_MAX_PAYLOAD: Final = 128  # FRR's NFLOG copy range

# -- packets ------------------------------------------------------------------------------
DEFAULT_HOP_COUNT: Final = 64  # FRR nhrp_packet_push
REGISTRATION_HOP_COUNT: Final = 1  # Cisco rejects 0 ("Packet Recved with 0 Hop counts", FRR #951)
TRAFFIC_INDICATION_HOP_COUNT: Final = 1  # as registrations (FRR)
ERROR_PAYLOAD_MAX: Final = 512  # ours: how much of an offending packet an Error Indication quotes

# -- DNS (seed Req. 6: hubs may move; spokes resolve their NBMA by name) -----------------
DNS_RETRY: Final = 10.0  # ours: a name that did not resolve is asked again


# Marks a heap entry that was cancelled or re-armed (its key slot is blanked with it).
_GONE: Final = object()


class TimerQueue:
    """Deadlines by key; re-arming a key replaces its deadline.

    A heap of ``[deadline, seq, key]`` entries with lazy deletion: cancelling or
    re-arming a key puts ``_GONE`` in its old entry's key slot, and the heap drops that
    entry when it reaches the top. The hot path (peeking at the next deadline after every
    input) thus tests the top entry by identity, with no key hashing (slow for
    address-bearing keys). ``seq`` orders equal deadlines by arming and is unique, so
    entries never compare their keys.
    """

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[list] = []
        self._live: dict[Hashable, list] = {}  # key -> its entry in the heap
        self._seq = 0

    def arm(self, key: Hashable, deadline: float) -> None:
        self._seq = seq = self._seq + 1
        entry = [deadline, seq, key]
        # setdefault: one hashing of the key when it is not armed yet, the usual case.
        old = self._live.setdefault(key, entry)
        if old is not entry:
            old[2] = _GONE
            self._live[key] = entry
        heappush(self._heap, entry)

    def cancel(self, key: Hashable) -> None:
        old = self._live.pop(key, None)
        if old is not None:
            old[2] = _GONE

    def deadline(self, key: Hashable) -> float | None:
        live = self._live.get(key)
        return live[0] if live else None

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            top = heap[0]
            if top[2] is not _GONE:
                return top[0]
            heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """Keys whose deadline is at or before ``now``, earliest first, now disarmed."""
        heap, live = self._heap, self._live
        due = []
        while heap and heap[0][0] <= now:
            key = heappop(heap)[2]
            if key is not _GONE:
                del live[key]
                due.append(key)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def __len__(self) -> int:
        return len(self._live)
