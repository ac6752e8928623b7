"""The engine's timer queue and its single wake-up timer."""

from __future__ import annotations

from enginekit import hub_config, spoke_config, started

from dmvpn_runtime.nhrp.engine import WAKE, ArmTimer, CancelTimer, Engine
from dmvpn_runtime.nhrp.engine.timers import TimerQueue


def test_queue_orders_rearms_and_cancels() -> None:
    q = TimerQueue()
    q.arm("a", 5.0)
    q.arm("b", 3.0)
    q.arm("c", 4.0)
    q.arm("a", 1.0)  # re-arming replaces
    q.cancel("c")
    assert q.next_deadline() == 1.0
    assert q.pop_due(3.5) == ["a", "b"]
    assert q.next_deadline() is None
    assert len(q) == 0


def test_start_asks_for_one_wake_up_at_the_first_deadline() -> None:
    engine = Engine(spoke_config())
    actions = engine.start(10.0)
    arms = [a for a in actions if isinstance(a, ArmTimer)]
    assert arms == [ArmTimer(WAKE, 12.0)]  # the registration retry, 2 s later
    assert engine.next_deadline() == 12.0


def test_no_new_arm_when_the_deadline_did_not_change() -> None:
    engine = started(spoke_config())
    again = engine.no_mapping(1.0, engine.config.addresses[0].ip)  # ignored: our own
    assert not [a for a in again if isinstance(a, ArmTimer | CancelTimer)]


def test_timer_fired_late_still_runs_everything_due() -> None:
    engine = started(spoke_config())
    actions = engine.timer_fired(100.0)  # 2, 6, 14 ... all overdue: one retry per call
    assert [a for a in actions if isinstance(a, ArmTimer)]
    assert engine.nhs_states()[0].misses == 1


def test_stop_cancels_the_wake_up_and_ignores_late_timers() -> None:
    engine = started(spoke_config())
    actions = engine.stop(1.0)
    assert CancelTimer(WAKE) in actions
    assert engine.timer_fired(5.0) == []


def test_an_idle_hub_needs_no_timer() -> None:
    engine = Engine(hub_config())
    assert not [a for a in engine.start(0.0) if isinstance(a, ArmTimer)]
