"""Hypothesis profiles for the conformance tests.

The properties here run a modest number of examples by default (see
``strategies.scaled``) so ``make test`` stays fast, and never change the profile other
tests see. The ``long`` profile runs at least 100,000 examples per property, for
``make fuzz-long``::

    pytest dmvpn_runtime/tests/conformance/test_fuzz.py --hypothesis-profile=long

``HYPOTHESIS_PROFILE=long`` in the environment selects it as well.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
