"""The compiled protocol core: which modules ``make native`` compiles with mypyc
(dmvpn_runtime/setup.py builds this list), and which of them run compiled now. Without
a compiled build everything runs from source, with the same behaviour.

    python -m dmvpn_runtime.native [--require]

lists the core's modules and how each runs; ``--require`` fails unless all are compiled
and none is older than its source.

The core's dataclasses have their ``__init__`` written out: mypyc compiles a written one
(about 70 ns to build a small value) but leaves the one ``dataclass`` generates to the
interpreter (about 580 ns); from source the two cost the same.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType

# Pure computation on the hot path of every packet. Not here: ``nhrp.kept`` (subclasses
# of ipaddress's classes, which mypyc cannot compile); the engine's configuration, which
# normalises what it is given (a mode or a secret as a string) where compiled code would
# insist on the declared type; the enums, errors and JSON form (cold); the packages'
# ``__init__`` re-exports. Only the standard library is imported here: setup.py reads
# this module before anything is installed.
CORE_MODULES = (
    "dmvpn_runtime.checksum",
    "dmvpn_runtime.nhrp.wire.model",
    "dmvpn_runtime.nhrp.wire.codec",
    *(
        f"dmvpn_runtime.nhrp.engine.{name}"
        for name in (
            "actions",
            "auth",
            "cache",
            "core",
            "engine",
            "error_indication",
            "nat",
            "nhc",
            "nhs",
            "policy",
            "purge",
            "ratelimit",
            "redirect",
            "resolution",
            "routes",
            "shortcut",
            "stats",
            "timers",
            "views",
        )
    ),
)

_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension, not from source."""
    return (getattr(module, "__file__", None) or "").endswith(_EXTENSION_SUFFIXES)


def compiled_core() -> list[str]:
    """The modules of :data:`CORE_MODULES` that run compiled (importing them)."""
    return [name for name in CORE_MODULES if is_compiled(importlib.import_module(name))]


def stale_core() -> list[str]:
    """Compiled core modules whose source beside them is newer than the compiled file: an
    in-place build (``make native``) that was not redone after an edit, so the edit does
    not run. Python loads a compiled module before its source."""
    stale = []
    for name in compiled_core():
        built = Path(sys.modules[name].__file__ or "")
        source = built.parent / (name.rsplit(".", 1)[1] + ".py")
        if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
            stale.append(name)
    return stale


def describe() -> str:
    """How the protocol core runs, for logs and status: "compiled", or "source" (with how
    many modules are compiled all the same, if any: a build that is out of date)."""
    compiled = len(compiled_core())
    stale = len(stale_core())
    if stale:
        return f"compiled, but {stale} module(s) older than the source: run make native again"
    if compiled == len(CORE_MODULES):
        return "compiled"
    return f"source, {compiled} of {len(CORE_MODULES)} modules compiled" if compiled else "source"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmvpn_runtime.native", description=__doc__)
    parser.add_argument("--require", action="store_true", help="fail unless all are compiled")
    args = parser.parse_args(argv)
    compiled, stale = set(compiled_core()), set(stale_core())
    for name in CORE_MODULES:
        how = "stale   " if name in stale else "compiled" if name in compiled else "source  "
        print(f"{how}  {name}  ({sys.modules[name].__file__})")
    print(f"{len(compiled)} of {len(CORE_MODULES)} core modules compiled", end="")
    print(f", {len(stale)} older than their source (make native again)" if stale else "")
    return 1 if args.require and (len(compiled) != len(CORE_MODULES) or stale) else 0


if __name__ == "__main__":
    sys.exit(main())
