"""``python -m dmvpn_runtime.bench``: the dispatcher and the codec benchmark's output.

Run as subprocesses: the benchmark pins its process to one CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dmvpn_runtime.bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_codec_benchmark_json():
    r = bench("codec", "--runs", "2", "--seconds", "0.02", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    for key in ("decode_per_s", "encode_per_s", "packet_size", "runs", "python", "cpu_pinned"):
        assert key in result
    assert result["runs"] == 2 and len(result["decode_runs_per_s"]) == 2
    assert result["decode_per_s"] > 0 and result["encode_per_s"] > 0
    assert result["packet_size"] == 108  # 92 of the shared vector + 16 of cleartext auth


def test_dispatcher():
    r = bench()
    assert r.returncode == 2 and "codec" in r.stdout
    r = bench("no_such_benchmark")
    assert r.returncode == 2 and "no benchmark 'no_such_benchmark'" in r.stderr
    r = bench("codec", "--runs", "0")
    assert r.returncode == 2
