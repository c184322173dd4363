"""The one error type the unit loader raises, whatever bytes it is given."""

from __future__ import annotations

from vigil.base.records import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one unit file: where it is and what it is."""

    path: str
    message: str
    key: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class UnitError(Exception):
    """A unit could not be loaded; carries every problem found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    @classmethod
    def single(cls, path: str, message: str, key: str | None = None,
               line: int | None = None) -> UnitError:
        return cls([Problem(path, message, key, line)])
