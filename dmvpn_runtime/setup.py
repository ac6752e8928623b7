"""Build hook for a compiled protocol core (``make native``).

With ``DMVPN_NATIVE=1`` the modules of ``dmvpn_runtime.native.CORE_MODULES`` (the NHRP
codec and engine) are compiled with mypyc, from the same source and against the hints
``make lint`` checks. The source stays complete and is what runs where no compiled module
is present. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import os
import runpy

from setuptools import setup

ext_modules = []
if os.environ.get("DMVPN_NATIVE") == "1":
    from mypyc.build import mypycify

    core = runpy.run_path("src/dmvpn_runtime/native.py")["CORE_MODULES"]
    ext_modules = mypycify(
        ["src/" + name.replace(".", "/") + ".py" for name in core],
        opt_level="3",
        group_name="dmvpn_runtime_native",
    )

setup(ext_modules=ext_modules)
