"""The figures of a run: per-sample rows in, the benchmark's JSON object out.

Pure (no lab, no sockets): the medians, nearest-rank p95 and ranges the report gives,
the target they are held against, and the method text that goes with them.
"""

from __future__ import annotations

import statistics
from typing import Any

TARGET_MS = 50.0
METHOD = (
    "one lab: 1 hub and k spokes (fewest giving N distinct unordered pairs), dmvpnd with the"
    " userspace data plane, IPv4, no IPsec; each sample a pair that never exchanged traffic."
    " The source LAN host sends one UDP probe per interval to the destination LAN host; t0 ="
    " clock read before the first sendto. AF_PACKET sockets (kernel time stamps) on every"
    " wan0 see the GRE packets; rtnetlink sockets in the spokes see the shortcut routes"
    " (time read on receipt). shortcut = t0 to the route 'destination LAN via destination"
    " spoke' on the source spoke; direct = t0 to the first probe at the destination spoke's"
    " NBMA from the source spoke's NBMA. One process, one clock (CLOCK_REALTIME)."
    " Median and nearest-rank p95."
)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank on (n - 1): the p95 of 20 values is the 19th smallest."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "median": round(statistics.median(values), 3) if values else None,
        "p95": percentile(values, 0.95),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }


def report(
    results: list[dict[str, Any]],
    *,
    pairs: int,
    spokes: int,
    interval_ms: float,
    max_packets: int,
    nice: int,
    run_info: dict[str, Any],
    teardown_problems: list[str],
) -> dict[str, Any]:
    """The benchmark's result from the samples' ``result()`` rows and how the run went.

    ``run_info`` (timings, load, host) is reported as given, after the figures.
    """
    direct = [r["direct_ms"] for r in results if r["direct_ms"] is not None]
    shortcut = [r["shortcut_ms"] for r in results if r["shortcut_ms"] is not None]
    steps = {
        key: summary([v for r in results if (v := r["steps_ms"][key]) is not None])["median"]
        for key in results[0]["steps_ms"]
    }
    median = round(statistics.median(direct), 3) if direct else None
    return {
        "benchmark": "shortcut",
        "pairs": pairs,
        "measured": sum(
            1 for r in results if r["direct_ms"] is not None and r["shortcut_ms"] is not None
        ),
        "median_ms": median,
        "p95_ms": percentile(direct, 0.95),
        "shortcut_median_ms": summary(shortcut)["median"],
        "shortcut_p95_ms": percentile(shortcut, 0.95),
        "direct_ms": direct,
        "shortcut_ms": shortcut,
        "direct_range_ms": [min(direct), max(direct)] if direct else None,
        "shortcut_range_ms": [min(shortcut), max(shortcut)] if shortcut else None,
        "steps_median_ms": steps,
        "target_ms": TARGET_MS,
        "meets_target": median is not None and median <= TARGET_MS,
        "lost_total": sum(r["lost"] for r in results),
        "samples": results,
        "hubs": 1,
        "spokes": spokes,
        "interval_ms": interval_ms,
        "max_packets": max_packets,
        "measuring_nice": nice,
        "max_send_gap_ms": max((r["max_send_gap_ms"] or 0.0) for r in results),
        "ipsec": "none",
        "dataplane": "userspace",
        **run_info,
        "teardown_problems": teardown_problems,
        "method": METHOD,
    }
