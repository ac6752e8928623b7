"""The engine benchmark runs end to end on a small fleet and reports what it promises."""

from __future__ import annotations

import gc
import json

from dmvpn_runtime import native
from dmvpn_runtime.bench.engine import _CollectorClock, main


def test_small_fleet_registers_and_resolves_completely(capsys) -> None:
    assert main(["--spokes", "50", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["complete"] is True
    assert result["registered_at_hub"] == result["registered_spokes"] == 50
    assert result["resolved"] == result["resolved_answered"] == 50
    for key in ("registration_cpu_s", "resolutions_per_s", "peak_rss_mb"):
        assert result[key] > 0
    assert set(result["targets_met"]) == {"registration_cpu_s", "resolutions_per_s", "peak_rss_mb"}
    assert result["compiled_core_modules"] == len(native.compiled_core())
    for phase in ("registration", "resolution", "resolution_answered"):
        assert 0 <= result[f"{phase}_gc_s"] <= result.get(f"{phase}_cpu_s", 60)
        assert result[f"{phase}_gc_collections"] >= 0


def test_the_collector_clock_times_collections_and_leaves_no_callback() -> None:
    callbacks = list(gc.callbacks)
    with _CollectorClock() as clock:
        gc.collect()
        gc.collect(0)
    assert clock.collections == 2
    assert clock.seconds > 0
    assert gc.callbacks == callbacks
    gc.collect()
    assert clock.collections == 2  # not counting once the block is left


def test_with_authentication(capsys) -> None:
    assert main(["--spokes", "20", "--auth", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["authentication"] is True


def test_repeat_reports_the_median_of_fresh_processes(capsys) -> None:
    assert main(["--spokes", "30", "--repeat", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["repeat"] == 3 and len(result["runs"]) == 3 and result["complete"] is True
    per_run = sorted(r["resolutions_per_s"] for r in result["runs"])
    assert result["resolutions_per_s"] == per_run[1]  # the median run, not the first
    assert result["registered_at_hub"] == result["resolved"] == 30


def test_bad_repeat_is_a_usage_error(capsys) -> None:
    assert main(["--repeat", "0"]) == 2
    assert "--repeat" in capsys.readouterr().err
