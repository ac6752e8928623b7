"""``python -m dmvpn_runtime.bench.shortcut``, the same as ``python -m dmvpn_runtime.bench
shortcut``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
