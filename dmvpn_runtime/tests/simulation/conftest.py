"""Simulation scenarios: N engines on a simulated NBMA network (see nhrpsim.py)."""

from __future__ import annotations

import pytest
from nhrpsim import Net


@pytest.fixture
def net() -> Net:
    return Net(seed=7)
