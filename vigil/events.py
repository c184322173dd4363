"""Events: structured JSON lines for machines, a human line for the console.

Each event has a stable code (`unit.started`, `unit.failed`, ...) so scripts
can match on it, a severity, the unit and pid when there is one, and a
message a person can read.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable

from vigil.output import Console, LogFile
from vigil.printable import printable

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

# code -> console tag; codes not listed print as INFO.
TAGS = {"unit.ready": "  OK  ", "unit.exited": "  OK  ", "unit.stopped": "  OK  ",
        "unit.failed": "FAILED", "unit.fatal": "FAILED", "unit.exec-failed": "FAILED",
        "unit.refused": "FAILED", "unit.slow": " WAIT ", "daemon.error": "ERROR ",
        "unit.restarting": " INFO "}
SEVERITIES = ["debug", "info", "warning", "error"]
COLORS = {"  OK  ": "32", "FAILED": "31", "ERROR ": "31", " WAIT ": "33", " WARN ": "33"}


class Events:
    def __init__(self, console: Console | None, path: str | None = None,
                 keep: int = 2000, max_size: int = 4 << 20) -> None:
        self.console = console
        self.file = LogFile(path, max_size, 3) if path else None
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self.followers: list[Callable[[dict[str, Any]], None]] = []
        self.quiet_codes: set[str] = set()
        self.console_level = "debug"  # the least severe event the console shows

    def emit(self, code: str, message: str, severity: str = "info",
             unit: str | None = None, pid: int | None = None, **extra: Any) -> None:
        record: dict[str, Any] = {"time": time.time(), "severity": severity, "code": code,
                                  "unit": unit, "pid": pid, "message": message, **extra}
        self.recent.append(record)
        if self.file:
            self.file.write((json.dumps(record) + "\n").encode())
        for follower in list(self.followers):
            follower(record)
        if (self.console and code not in self.quiet_codes
                and SEVERITIES.index(severity) >= SEVERITIES.index(self.console_level)):
            tag = TAGS.get(code) or {"error": "ERROR ", "warning": " WARN "}.get(severity, " INFO ")
            if self.console.color and tag in COLORS:
                shown = f"\x1b[{COLORS[tag]}m{tag}\x1b[0m"
            else:
                shown = tag
            self.console.write(f"[{shown}] {printable(message)}\n")  # may quote a service

    def close_file(self) -> None:
        """From now on, events go to the console only (the disks are going away)."""
        if self.file:
            self.file.close()
            self.file = None

    def error(self, where: str, err: BaseException) -> None:
        """An exception the loop survived: logged with enough to find it."""
        import traceback
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        frames = traceback.extract_tb(err.__traceback__)
        at = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
        self.emit("daemon.error", f"error in {where}: {detail}{at}", "error")
