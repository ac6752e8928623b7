"""Token buckets keyed by NBMA source (per-source limits on what a peer may make us do)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class RateLimiter:
    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.max_keys = max_keys
        self._buckets: dict[Hashable, list[float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _prune(self, now: float) -> None:
        # Full buckets carry no information: forget them; if none are full, forget all.
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class Interval(Generic[K]):
    """At most one event per key per ``interval`` seconds (redirects per src/dst pair)."""

    __slots__ = ("_last", "interval", "max_keys")

    def __init__(self, interval: float, max_keys: int = 65536) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[K, float] = {}

    def forget(self, match: Callable[[K], bool]) -> None:
        for key in [k for k in self._last if match(k)]:
            del self._last[key]

    def allow(self, key: K, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if last is None and len(self._last) >= self.max_keys:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= self.max_keys:
                return False  # flooded with distinct pairs: refuse rather than grow
        self._last[key] = now
        return True
