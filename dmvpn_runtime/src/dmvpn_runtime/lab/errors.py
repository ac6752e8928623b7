"""The lab's error types: one base class, one subclass per way things go wrong."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a lab spec: where (file and key) and what was expected."""

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


class SpecError(LabError):
    """The lab spec is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LabExistsError(LabError):
    """A lab with this name (or namespaces carrying its prefix) already exists."""


class LabNotFoundError(LabError):
    """No lab with this name is up, or the name is ambiguous."""


class CommandError(LabError):
    """A system command the lab ran failed."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, stdin: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdin = stdin
        text = f"command failed (exit {returncode}): {' '.join(self.argv)}"
        if stderr.strip():
            text += f"\n  {stderr.strip()}"
        if stdin.strip():
            text += "\n  input was:\n    " + "\n    ".join(stdin.strip().splitlines())
        super().__init__(text)
