"""What a start, stop or restart shows while it waits: the daemon's reports
(its events for the units that are changing) as they come.

On a terminal, a live line per unit (spinner, elapsed time, its latest
report), erased once the answer is in; off a terminal, one line per warning
(still waiting, SIGKILL, a failed exit, a give-up).
Everything goes to stderr: stdout keeps the answer ("web: running").
"""

from __future__ import annotations

import sys
import time

from vigil.base.printable import printable

TYPE_CHECKING = False  # typing costs the client ~10 ms to import; annotations are strings
if TYPE_CHECKING:
    from typing import Any, TextIO

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
QUIET = frozenset({"unit.state"})  # every transition: the reports say it better
SHOW_AFTER = 0.25  # a quick answer draws no live lines at all
# Off a terminal, the reports worth a line: still waiting, SIGKILL, an exit
# that is a failure, a give-up. A start that goes well prints only its answer.
WORTH_A_LINE = frozenset({"warning", "error"})


class Progress:
    def __init__(self, names: list[str], doing: str, out: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.out = out or sys.stderr
        self.live = bool(self.out.isatty()) if live is None else live
        self.began = time.monotonic()
        self.doing = doing
        self.lines: dict[str, str] = {name: doing for name in names}
        self.drawn = 0  # live lines on the screen now
        self.frame = 0

    def report(self, event: dict[str, Any]) -> None:
        """One streamed event from the daemon."""
        if event.get("code") in QUIET:
            return
        unit = str(event.get("unit") or "vigil")
        message = printable(str(event.get("message", "")))
        if not self.live:  # a log or a script: what went wrong or is slow, not every step
            if event.get("severity") in WORTH_A_LINE:
                print(f"vigilctl: {message}", file=self.out, flush=True)
            return
        self.lines[unit] = message
        self.draw()

    def draw(self) -> None:
        """Redraws the live lines in place (on a terminal, after SHOW_AFTER)."""
        elapsed = time.monotonic() - self.began
        if not self.live or elapsed < SHOW_AFTER:
            return
        self.frame += 1
        spin = SPINNER[self.frame % len(SPINNER)]
        width = max(map(len, self.lines))
        text = "".join(f"\x1b[K{spin} {printable(unit):<{width}}  {elapsed:5.1f}s  {what}\n"
                       for unit, what in self.lines.items())
        self.out.write(self._up() + text)
        self.out.flush()
        self.drawn = len(self.lines)

    def _up(self) -> str:
        return f"\x1b[{self.drawn}F" if self.drawn else ""

    def done(self) -> None:
        """Erases the live lines: the answer follows."""
        if self.live and self.drawn:
            self.out.write(self._up() + "\x1b[J")
            self.out.flush()
            self.drawn = 0


def interrupted(cmd: str, names: list[str]) -> str:
    """What Ctrl-C while waiting leaves behind: the daemon carries on."""
    units = " ".join(names)
    if cmd == "stop":
        return (f"stopped waiting; vigil goes on stopping {units} (`vigilctl status {units}` "
                "shows how far it got)")
    return (f"stopped waiting; vigil goes on with the {cmd} of {units} (`vigilctl status "
            f"{units}` shows it; `vigilctl stop {units}` cancels it)")
