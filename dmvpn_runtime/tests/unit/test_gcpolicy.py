"""dmvpnd's collector policy: long-lived state frozen, rare full collections, cycles
still collected by the periodic housekeeping."""

from __future__ import annotations

import gc

from dmvpn_runtime import gcpolicy


def test_apply_freezes_what_exists_and_restore_gives_it_back():
    before = gc.get_threshold()
    survivor = [object()]  # tracked, alive across the freeze
    thresholds = gcpolicy.apply()
    try:
        assert thresholds == before
        assert gc.get_threshold() == (
            gcpolicy.YOUNG_THRESHOLD,
            gcpolicy.MIDDLE_COLLECTIONS,
            gcpolicy.OLD_COLLECTIONS,
        )
        assert gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # frozen: never scanned
    finally:
        gcpolicy.restore(thresholds)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_housekeeping_collects_cycles_only_when_due():
    class Node:
        pass

    house = gcpolicy.Housekeeping(now=100.0)
    gc.collect()
    a, b = Node(), Node()
    a.peer, b.peer = b, a  # a cycle: reference counting alone never frees it
    del a, b
    assert house.tick(100.0 + gcpolicy.FULL_INTERVAL - 1) is None
    assert house.tick(100.0 + gcpolicy.FULL_INTERVAL) >= 2
    assert house.tick(100.0 + gcpolicy.FULL_INTERVAL + 1) is None  # next one 600 s later


def test_young_collections_run_often_and_leave_the_state_to_housekeeping():
    """State built up after start-up is scanned by frequent young collections (short
    pauses, on objects still in the CPU's caches) and never by an automatic middle or
    full collection: those would rescan all of it."""
    thresholds = gcpolicy.apply()
    try:
        before = [generation["collections"] for generation in gc.get_stats()]
        state = [[index] for index in range(200_000)]  # tracked, and alive: like cache entries
        after = [generation["collections"] for generation in gc.get_stats()]
    finally:
        gcpolicy.restore(thresholds)
    assert len(state) == 200_000
    assert after[0] - before[0] >= 200_000 // gcpolicy.YOUNG_THRESHOLD // 2
    assert after[1:] == before[1:]
