"""Fixtures for tests that build labs (network + mount namespaces) on this machine.

``lab_factory(spec=None, **kwargs)`` builds a lab from a spec dict (None: the shipped
default spec) with ``Lab.up(spec, name=..., **kwargs)`` and returns it; every lab it
built is torn down when the test ends, pass or fail. ``lab_factory.reserve_name()`` gives
a name for a lab built another way (the CLI) that is torn down the same way.
``module_lab_factory`` does the same for a whole module.

Test labs are named ``t<pid>n<k>`` (pid of the pytest process), so their namespaces are
``dl-t<pid>n<k>-*``. Before the first test, labs with such names whose pytest process is
gone (a crashed or killed earlier run) are removed; labs of running pytest processes,
and labs not named like test labs, are never touched.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from dmvpn_runtime.lab import Lab, LabError, list_labs, teardown
from dmvpn_runtime.lab.system import pid_alive

TEST_LAB_RE = re.compile(r"^t(\d{1,7})n(\d{1,3})$")
_counter = itertools.count(1)


def new_test_lab_name() -> str:
    return f"t{os.getpid()}n{next(_counter)}"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    missing = [t for t in ("ip", "nsenter", "unshare", "nft", "mount") if not shutil.which(t)]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not os.path.exists("/proc/self/ns/net"):
        return "no network namespaces"
    return None


@pytest.fixture(scope="session", autouse=True)
def remove_leftover_test_labs() -> Iterator[None]:
    """Remove test labs left by pytest processes that no longer run."""
    if _skip_reason() is None:
        for name in list_labs():
            m = TEST_LAB_RE.match(name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                teardown(name)
    yield


class LabFactory:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.labs: list[Lab] = []

    def reserve_name(self) -> str:
        """A fresh test lab name, torn down with the others (for labs built another way)."""
        reason = _skip_reason()
        if reason:
            pytest.skip(reason)
        name = new_test_lab_name()
        self.names.append(name)
        return name

    def __call__(self, spec: dict[str, Any] | None = None, **kwargs: Any) -> Lab:
        lab = Lab.up(spec, name=self.reserve_name(), **kwargs)
        self.labs.append(lab)
        return lab

    def close(self) -> None:
        problems = []
        for lab in reversed(self.labs):
            problems += lab.down().problems
        for name in self.names:  # also labs whose `up` failed half-way
            problems += teardown(name).problems
        self.labs.clear()
        self.names.clear()
        if problems:
            raise LabError("lab teardown left things behind:\n" + "\n".join(problems))


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_lab_factory() -> Iterator[LabFactory]:
    factory = LabFactory()
    try:
        yield factory
    finally:
        factory.close()
