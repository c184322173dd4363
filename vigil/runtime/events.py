"""Events: structured JSON lines for machines, a human line for the console.

Each event has a stable code (`unit.ready`, `unit.failed`, ...) so scripts
can match on it, a severity, the unit and pid when there is one, and a
message a person can read. `CODES` lists every code the daemon emits
(tests/test_layers.py checks that no other is emitted); a code is
added, never renamed.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

from vigil.runtime.logstore import record
from vigil.runtime.output import Console, LogFile
from vigil.base.printable import printable
from vigil.base import jsonc

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

CODES = {
    # a unit or one of its instances
    "unit.ready": "an instance is up (or a target reached)",
    "unit.exited": "a oneshot, or a service that may not restart, finished well",
    "unit.stopped": "an instance (or a target) was stopped",
    "unit.failed": "an instance failed, or a unit could not be started",
    "unit.fatal": "an instance gave up after start-retries",
    "unit.exit": "a main process exited (with its status and run time)",
    "unit.state": "an instance moved from one state to another (debug)",
    "unit.slow": "an instance is still starting or stopping",
    "unit.kill": "an instance did not stop within stop-timeout: SIGKILL",
    "unit.unhealthy": "a health check failed: the instance restarts",
    "unit.forked": "a forking unit's daemon was adopted from its pid-file",
    "unit.pid-file-refused": "a pid-file names a process that is not the unit's",
    "unit.refused": "a unit the graph refuses (a cycle, a missing requirement)",
    "unit.skipped": "a unit's conditions say it does not run here",
    "unit.stopping": "dependents stop because a unit they require failed",
    "unit.invalid": "a unit file does not load",
    "unit.loaded": "an instance of a template was loaded at run time",
    "unit.command-failed": "a lifecycle command (exec-pre, -post, -stop, -reload) failed",
    "unit.lifecycle": "a reload's result, or exec-stop failing before the stop signal",
    "unit.watchdog": "a service missed its sd_notify watchdog: SIGABRT",
    "unit.main-pid": "a service named another main process (MAINPID=)",
    "unit.notify-refused": "an sd_notify MAINPID= that is not a process of the unit",
    "hook.dropped": "too many events wait for a hook unit: one is dropped",
    "log.dropping": "a unit's log cannot be written: its lines are dropped",
    "log.recovered": "a unit's log is writable again",
    "log.forwarding": "syslog forwarding drops lines (a slow or gone receiver), or works again",
    "orphan.reaped": "an orphan that came to us was reaped",
    # the daemon
    "daemon.started": "the daemon is up on its socket",
    "daemon.stopping": "shutdown: every unit stops",
    "daemon.timeout": "shutdown took too long: what is left is killed",
    "daemon.exit": "the daemon exits",
    "daemon.reloaded": "unit files were read again and the changes applied",
    "daemon.reload-refused": "a reload that could not read every file changed nothing",
    "daemon.reexec": "the daemon executes itself afresh (daemon-reexec)",
    "daemon.restored": "after daemon-reexec: the processes taken back",
    "daemon.adopt": "after a killed daemon: what it left running, taken back or killed",
    "daemon.cgroup": "the units get no cgroups (and why)",
    "daemon.remote": "remote control listens",
    "daemon.dump": "SIGUSR1: one line per unit",
    "daemon.error": "an exception the daemon caught and survived",
    "daemon.bug": "an event the state table does not expect",
    # system mode
    "boot.step": "a step of early boot",
    "boot.unit": "vigil.unit= names no unit",
    "boot.critical": "a critical unit failed: rescue",
    # scopes (--scope, start --scope)
    "scope.bound": "the daemon is bound to a process",
    "scope.gone": "a scope process was already gone",
    "scope.empty": "no scope process is alive: the daemon ends",
    "scope.ended": "a scope process exited: its units stop",
    # `vigil run` (container.py)
    "container.phase": "the container moved to its next phase",
    "container.exit": "the command exited: vigil exits with its status",
    "container.drain": "processes left at the end: SIGTERM, then SIGKILL",
    # timers (vigil/engine/timers.py)
    "timer.elapsed": "a timer elapsed and started (or queued, or restarted) its unit",
    "timer.skipped": "a timer elapsed while its unit still ran (overlap = skip)",
    "timer.missed": "a persistent timer's run was missed while vigil was down: run now",
    "timer.clock": "the wall clock stepped, or no timerfd: calendars re-computed",
    "timer.state": "the timers' last-run file could not be read or saved",
}

# code -> console tag; codes not listed print as INFO.
TAGS = {"unit.ready": "  OK  ", "unit.exited": "  OK  ", "unit.stopped": "  OK  ",
        "unit.failed": "FAILED", "unit.fatal": "FAILED", "unit.refused": "FAILED",
        "unit.slow": " WAIT ", "daemon.error": "ERROR "}
SEVERITIES = ["debug", "info", "warning", "error"]
FAILURES = ("unit.failed", "unit.fatal")  # these carry the unit's last lines
CONTEXT_LINES = 10
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
        self.store: LogFile | None = None  # the log store's @events.log (vigil/runtime/logstore.py)
        # a failed unit's last lines of output (the daemon reads them from the tail)
        self.context: Callable[[str, int], list[str]] | None = None

    def emit(self, code: str, message: str, severity: str = "info",
             unit: str | None = None, pid: int | None = None, **extra: Any) -> None:
        wall = time.time()
        if code in FAILURES and unit and self.context is not None and "lines" not in extra:
            extra["lines"] = self.context(unit, CONTEXT_LINES)
        event: dict[str, Any] = {"time": wall, "severity": severity, "code": code,
                                 "unit": unit, "pid": pid, "message": message, **extra}
        self.recent.append(event)
        if self.file:
            self.file.write((jsonc.dumps(event) + "\n").encode())
        if self.store is not None:
            self.store.write(record(wall, time.monotonic(), unit or "-", unit or "-", "event",
                                    pid, f"{code} {severity} {printable(message)}"))
        for follower in list(self.followers):
            try:
                follower(event)
            except Exception:  # emit runs on error paths: it must not raise
                self.followers.remove(follower)
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
        """An exception the loop survived: logged with enough to find it.

        Nothing is imported or opened here (traceback would read source
        files): this runs when fds have run out, and must not fail then."""
        name = type(err).__name__
        detail = f"{name}: {err}" if str(err) else name
        frame = err.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        at = (f" at {os.path.basename(frame.tb_frame.f_code.co_filename)}:{frame.tb_lineno}"
              if frame is not None else "")
        self.emit("daemon.error", f"error in {where}: {detail}{at}", "error")


class Notice:
    """An event any client can cause at will (a refused connection, a wrong
    token): the first is emitted; the rest within `interval` seconds are only
    counted and summed up in one event, so no client can push other events
    out of the history or rotate the event log away."""

    def __init__(self, events: Events, call_later: Callable[[float, Callable[[], None]], Any],
                 code: str, severity: str, interval: float) -> None:
        self.events, self.call_later = events, call_later
        self.code, self.severity, self.interval = code, severity, interval
        self.open = False  # a window is running: further notices are counted
        self.count = 0
        self.last = ""

    def add(self, message: str) -> None:
        if self.open:
            self.count += 1
            self.last = message
            return
        self.events.emit(self.code, message, self.severity)
        self._window()

    def _window(self) -> None:
        self.open, self.count = True, 0
        self.call_later(self.interval, self._close)

    def _close(self) -> None:
        if not self.count:
            self.open = False
            return
        self.events.emit(self.code, f"{self.count} more in {self.interval:g} s, the last: "
                         f"{self.last}", self.severity, repeated=self.count)
        self._window()
