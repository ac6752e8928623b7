"""Running a benchmark that builds namespaces and processes, so that it always cleans up.

SIGTERM (a CI timeout, ``kill``) is turned into KeyboardInterrupt for the duration, so
the benchmark's own ``finally`` blocks take its lab down as they do on Ctrl-C; the
expected failures become one line on stderr and an exit code instead of a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def guarded_run(
    name: str,
    work: Callable[[], dict[str, Any]],
    failures: tuple[type[BaseException], ...],
    interrupted: str,
) -> tuple[dict[str, Any] | None, int]:
    """``(work(), 0)``; or ``(None, exit code)`` after saying on stderr what stopped it."""
    previous = None
    with contextlib.suppress(ValueError):  # not the main thread: Ctrl-C still unwinds
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return work(), 0
    except failures as exc:
        print(f"error: {name}: {exc}", file=sys.stderr)
        return None, EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{name} interrupted; {interrupted}", file=sys.stderr)
        return None, EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
