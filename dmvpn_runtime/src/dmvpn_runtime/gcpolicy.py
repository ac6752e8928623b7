"""How dmvpnd runs CPython's cyclic garbage collector.

dmvpnd's state is a large set of long-lived objects without reference cycles (cache
entries, timers, shortcuts, one per peer or prefix); reference counting frees them when
they go. The cyclic collector only exists for cycles, yet with CPython's default
thresholds (700, 10, 10) it rescans all of that state on every full collection: with
10,000 registrations that was about 40 % of the CPU in ``bench engine``. So, as large
Python services do (Instagram's ``gc.freeze``):

- after start-up the objects that live as long as the process (modules, config, engine,
  data plane) are frozen: never scanned again;
- young objects are collected every :data:`YOUNG_THRESHOLD` net allocations, close to
  CPython's 700: short-lived cycles (an exception and its frames) go quickly, and each
  collection scans objects made so recently that they are still in the CPU's caches.
  Each object that lives on is scanned once by a young collection whatever the
  threshold; at 50,000 (this module's first choice) those scans missed the caches. In
  the forwarded phase of ``bench engine`` at 10,000 spokes, young collections took
  0.14 s at 50,000 and 0.035 s at 1,000, and each pause fell from about 25 ms to about
  0.1 ms;
- the middle and old generations, where the state lives, are left to
  :class:`Housekeeping`: a full collection every :data:`FULL_INTERVAL` seconds, so cyclic
  garbage that got old stays bounded in time (0.12 s of CPU per interval measured
  for a hub with 10,000 registrations). CPython's own triggers for them are set out
  of reach.

The benchmarks call :func:`apply` exactly as dmvpnd does, so they measure the engine
the way it runs.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 1000
# Young collections before a middle one: 50 million allocations, out of reach (the
# middle generation holds the state; housekeeping collects it).
MIDDLE_COLLECTIONS = 50_000
OLD_COLLECTIONS = 1000
FULL_INTERVAL = 600.0  # seconds


def apply() -> tuple[int, int, int]:
    """Call once start-up is done: freeze what exists, raise the thresholds. Returns
    the thresholds in force before, for :func:`restore`."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_COLLECTIONS, OLD_COLLECTIONS)
    return before


def restore(thresholds: tuple[int, int, int]) -> None:
    """Undo :func:`apply` (for a caller that shares the process, such as a test)."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Housekeeping:
    """A full collection at most every :data:`FULL_INTERVAL` seconds of ``now``."""

    __slots__ = ("due",)

    def __init__(self, now: float) -> None:
        self.due = now + FULL_INTERVAL

    def tick(self, now: float) -> int | None:
        """Collect when due; returns what was collected, or None when not due."""
        if now < self.due:
            return None
        self.due = now + FULL_INTERVAL
        return gc.collect()
