"""Fixtures for the userspace data-plane tests: the topology and runner starter.

See dataplane_netns.py for the topology. Everything is removed after the session
(namespaces) or the test (runners), also when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from dataplane_netns import Starter, Topology, spec

from dmvpn_runtime.dataplane.runner import RunnerProcess

# Our namespaces are dpt-t<pytest pid>-<host>.
LEFTOVER = re.compile(r"^(dpt-t(\d+)-[a-z0-9]+)\b")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    for tool in ("ip", "ping", "nft"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _remove_dead_runs() -> None:
    """Namespaces of an earlier run whose pytest process is gone (killed, crashed)."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        m = LEFTOVER.match(line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def topo() -> Iterator[Topology]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    _remove_dead_runs()
    topology = Topology(run=f"t{os.getpid()}")
    try:
        topology.build()
        yield topology
    finally:
        topology.destroy()


@pytest.fixture
def start(topo: Topology) -> Iterator[Starter]:
    """``start(host, **spec_args)`` -> a ready runner; all are stopped after the test."""
    runners: list[RunnerProcess] = []

    def _start(host: str, wait: bool = True, raw_spec: dict[str, Any] | None = None,
               **kwargs: Any) -> RunnerProcess:  # fmt: skip
        runner = RunnerProcess(topo.ns(host), raw_spec or spec(host, **kwargs))
        runners.append(runner)
        if wait:
            runner.wait_ready()
        return runner

    try:
        yield _start
    finally:
        for runner in runners:
            runner.stop()
