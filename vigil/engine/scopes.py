"""Scopes: units bound to a process that is not ours (a shell, a test runner).

Each scope process is watched through a pidfd, which becomes readable when
it exits; no polling. When it does, the units bound to it stop one at a
time, the last bound (the last started) first. A daemon started with
`--scope PID` is itself bound: it lives while one of its holders does and,
like a per-user daemon whose scopes are all gone with nothing else running,
then stops everything and exits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from vigil.base.records import dataclass, field

from vigil.runtime.events import Events
from vigil.engine.manager import Manager
from vigil.model.unit import Unit

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


@dataclass
class Scope:
    pid: int
    pidfd: int
    units: list[str] = field(default_factory=list)  # in the order they were bound
    holds_daemon: bool = False


class Scopes:
    def __init__(self, manager: Manager, events: Events,
                 on_empty: Callable[[], None] | None, bound: bool) -> None:
        """`on_empty` ends the daemon; None (system mode) keeps it running.
        `bound`: started with --scope, the daemon lives while a holder does."""
        self.manager, self.events, self.on_empty = manager, events, on_empty
        self.loop = manager.sup.loop
        self.live: dict[int, Scope] = {}
        self.bound = bound
        self.ending = 0  # scopes whose units are being stopped

    def _scope(self, pid: int) -> Scope:
        """The scope of `pid`, watched from now on; ValueError if it is gone."""
        scope = self.live.get(pid)
        if scope is not None:
            return scope
        if pid < 1 or pid == os.getpid():
            raise ValueError(f"pid {pid} cannot be a scope")
        try:
            pidfd = self.manager.sup.calls.pidfd_open(pid)
        except ProcessLookupError:
            raise ValueError(f"scope pid {pid}: no such process") from None
        except OSError as err:
            raise ValueError(f"scope pid {pid}: {err.strerror}") from None
        scope = self.live[pid] = Scope(pid, pidfd)
        self.loop.add_reader(pidfd, lambda: self._gone(scope))
        return scope

    def hold(self, pid: int) -> bool:
        """Makes `pid` a holder of a bound daemon; False if it is not bound."""
        if not self.bound:
            return False
        scope = self._scope(pid)
        if not scope.holds_daemon:
            scope.holds_daemon = True
            self.events.emit("scope.bound", f"the daemon is bound to pid {pid}", "debug")
        return True

    def bind(self, pid: int, names: list[str]) -> None:
        """Binds units to `pid`; a unit belongs to one scope, the latest."""
        scope = self._scope(pid)
        for name in names:
            for other in self.live.values():
                if name in other.units:
                    other.units.remove(name)
            scope.units.append(name)
        if names:
            self.events.emit("scope.bound", f"{', '.join(names)} bound to pid {pid}", "debug")

    def check(self, unit: Unit) -> str | None:
        """Before a unit with `scope = "pid:N"` starts: binds it, or says why not."""
        if unit.scope is None:
            return None
        try:
            self.bind(unit.scope, [unit.name])
        except ValueError as err:
            return str(err)
        return None

    def of(self, name: str) -> int | None:
        return next((s.pid for s in self.live.values() if name in s.units), None)

    def _gone(self, scope: Scope) -> None:
        self.loop.remove_reader(scope.pidfd)
        os.close(scope.pidfd)
        del self.live[scope.pid]
        self._ended(scope.pid, scope.units)

    def _ended(self, pid: int, units: list[str]) -> None:
        left = [n for n in reversed(units) if self.manager.active(n)
                or n in self.manager.waiting]
        self.events.emit("scope.ended", f"scope pid {pid} exited"
                         + (f": stopping {', '.join(left)}" if left else ""))
        self.ending += 1
        self._stop_next(left, f"its scope (pid {pid}) exited")

    def _stop_next(self, left: list[str], why: str) -> None:
        """Stops `left[0]`; when it is down, the next; then maybe the daemon."""
        m = self.manager
        while left and not (m.active(left[0]) or left[0] in m.waiting):
            left.pop(0)
        if not left:
            self.ending -= 1
            self._maybe_exit()
            return
        name = left[0]

        def down() -> bool:
            if m.active(name) or name in m.stop_waits:
                return False
            self.loop.call_later(0, lambda: self._stop_next(left[1:], why))
            return True
        m.watchers.append(down)
        m.stop([name], why)

    def _maybe_exit(self) -> None:
        if self.on_empty is None or self.live or self.ending:
            return
        m = self.manager
        busy = [n for n in m.units if m.active(n) or n in m.waiting]
        if self.bound or not busy:
            self.events.emit("scope.empty", "every scope is gone"
                             + (": stopping everything" if busy else "") + "; exiting")
            self.on_empty()

    def snapshot(self) -> list[dict[str, Any]]:
        """What daemon-reexec keeps."""
        return [{"pid": s.pid, "units": list(s.units), "holds_daemon": s.holds_daemon}
                for s in self.live.values()]

    def restore(self, saved: list[dict[str, Any]]) -> None:
        """After daemon-reexec: the scopes again; one that ended meanwhile ends now."""
        for record in saved:
            units = [n for n in record["units"] if n in self.manager.units]
            try:
                scope = self._scope(record["pid"])
            except ValueError:  # it exited while the daemon was executing
                self.loop.call_later(0, functools.partial(self._ended, record["pid"], units))
                continue
            scope.units, scope.holds_daemon = units, record["holds_daemon"]

    def close(self) -> None:
        for scope in self.live.values():
            self.loop.remove_reader(scope.pidfd)
            os.close(scope.pidfd)
        self.live.clear()
