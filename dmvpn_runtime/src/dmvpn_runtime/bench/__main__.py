"""``python -m dmvpn_runtime.bench NAME [args] [--json]``: run one benchmark.

Each benchmark is a module ``dmvpn_runtime.bench.<NAME>`` with ``main(argv) -> int``;
everything after NAME is passed to it unchanged (``--json`` included).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from . import __path__ as _bench_path

USAGE = "usage: python -m dmvpn_runtime.bench NAME [args] [--json]"


def available() -> list[str]:
    """The benchmark modules present in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(_bench_path) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        print("benchmarks: " + ", ".join(available()))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in available():
        print(f"error: no benchmark {name!r}; have: {', '.join(available())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
