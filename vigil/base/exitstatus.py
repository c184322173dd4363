"""How a process ended, from its wait status: the code, or the signal (and
whether it dumped core), and how long it ran; said as a person or a shell
would say it (128 + signal)."""

from __future__ import annotations

import os
import signal
from vigil.base.records import dataclass


@dataclass(frozen=True)
class ExitInfo:
    code: int | None
    signal: int | None
    core: bool
    runtime: float

    @classmethod
    def from_status(cls, status: int, runtime: float) -> ExitInfo:
        if os.WIFSIGNALED(status):
            return cls(None, os.WTERMSIG(status), os.WCOREDUMP(status), runtime)
        return cls(os.WEXITSTATUS(status), None, False, runtime)

    def success(self, codes: frozenset[int]) -> bool:
        return self.signal is None and self.code in codes

    def shell_status(self) -> int:
        """The status a shell would report: the code, or 128 + signal."""
        return 128 + self.signal if self.signal is not None else (self.code or 0)

    def __str__(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}" + (" (core dumped)" if self.core else "")
        if self.code is None:  # an adopted process that was not our child
            return "exit status unknown"
        return f"exit {self.code}"
