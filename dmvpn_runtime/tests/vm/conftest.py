"""The VM tests' access to the userspace data-plane tests' address plan.

test_kernel_dataplane.py takes its hosts, addresses and plane specs from
``integration/dataplane/dataplane_netns.py``, which pytest puts on ``sys.path`` only for
the tests in that directory. The VM sees this machine's root file system, repository
included (tests/vm/run.sh), so the module is there at the same path.
"""

from __future__ import annotations

import sys
from pathlib import Path

_DATAPLANE_TESTS = str(Path(__file__).resolve().parents[1] / "integration" / "dataplane")
if _DATAPLANE_TESTS not in sys.path:
    sys.path.insert(0, _DATAPLANE_TESTS)
