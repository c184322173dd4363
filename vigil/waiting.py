"""What a start, stop, restart or run request waits for, and what it then says.

A unit is up for a waiting client only once it is ready *and* stable: its
readiness check passed (a probe, sd_notify, a forking launcher's pid-file),
or, without one, its process has stayed up for `start-seconds`. One that
exits before that, gives up (fatal), or is stopped because something it
requires failed is a failure, answered with the reason. While the request
waits, the events of the units that are changing go to the client as
streamed replies (its progress display).
"""

from __future__ import annotations

from collections.abc import Callable

from vigil.control.control import Connection
from vigil.runtime.loop import Timer
from vigil.engine.manager import Manager
from vigil.engine.states import State
from vigil.model.unit import ServiceType

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Service types whose RUNNING state already means "ready" (no stability wait).
SIGNALS_READY = (ServiceType.NOTIFY, ServiceType.FORKING, ServiceType.ONESHOT)


def up_verdict(m: Manager, name: str, since: float, finished_ok: bool,
               explain: Callable[[str], str],
               seen: frozenset[str] = frozenset()) -> tuple[str | None, float, str]:
    """("ok" | "failed" | None (not yet), seconds until it is worth looking
    again (0: at the next change), the reason of a failure we find here)."""
    settled = m.settled(name)
    if settled == "failed":
        return "failed", 0.0, ""
    if settled == "down":
        return "failed", 0.0, ""  # stopped while we waited: explain() says why
    if settled is None:
        return None, 0.0, ""
    unit = m.units.get(name)
    if unit is None:
        return "failed", 0.0, ""
    due = 0.0
    for dep in unit.requires:  # up only with what it requires up (it is stopped if one fails)
        if dep in m.goal and dep not in seen:
            verdict, wait, why = up_verdict(m, dep, since, finished_ok, explain,
                                           seen | {name})
            if verdict == "failed":
                return "failed", 0.0, (f"its requirement {dep} failed: "
                                       f"{why or explain(dep) or m.state(dep)}")
            if verdict is None:
                return None, wait, ""
    svc = unit.service
    if svc is None:
        return "ok", 0.0, ""
    now = m.sup.loop.clock()
    for inst in m.sup.of_unit(name):
        began = inst.started_at if inst.started_at is not None else now
        if inst.state is State.RUNNING and svc.ready is None and svc.type not in SIGNALS_READY:
            due = max(due, svc.start_seconds - (now - began))
        elif (inst.state is State.EXITED and svc.type is not ServiceType.ONESHOT
              and not finished_ok and began >= since and inst.last_exit is not None
              and inst.last_exit.runtime < svc.start_seconds):
            return "failed", 0.0, (f"{inst.name} exited after {inst.last_exit.runtime:.2f} s "
                                   f"({inst.last_exit}), before its start-seconds "
                                   f"({svc.start_seconds:g} s)")
    return (None, due, "") if due > 0 else ("ok", 0.0, "")


def down_verdict(m: Manager, name: str) -> str | None:
    """A stop is done once the unit is down; a failed unit is down too."""
    settled = m.settled(name)
    if settled in ("down", "failed"):
        return "ok"
    return None


class Wait:
    """One waiting request: answers it once every unit has a verdict, or at
    its timeout; streams the changing units' events meanwhile if asked."""

    def __init__(self, m: Manager, conn: Connection, rid: Any, names: list[str],
                 want_up: bool, explain: Callable[[str], str], since: float,
                 finished_ok: bool = False) -> None:
        self.m, self.conn, self.rid, self.names = m, conn, rid, names
        self.want_up, self.explain, self.finished_ok = want_up, explain, finished_ok
        self.since = since  # when the request came: runs begun before it are not judged
        self.deadline = self.since
        self.timers: list[Timer] = []
        self.follow: Callable[[dict[str, Any]], None] | None = None
        self.done = False
        self.holding = False  # the connection counts this wait (no idle timeout)
        self.recheck: Timer | None = None
        self.on_end: Callable[[], None] | None = None  # told once the wait is over

    def begin(self, timeout: float, progress: bool) -> None:
        self.deadline = self.since + timeout
        if self.answer():
            return
        m = self.m
        self.conn.wait_begins()
        self.holding = True
        m.watchers.append(self.check)
        self.conn.on_close.append(self.end)
        # to the deadline, which a wait resumed after daemon-reexec set before
        self.timers.append(m.sup.loop.call_later(self.deadline - m.sup.loop.clock(), self.poll))
        if progress:
            self._stream_events()

    def _stream_events(self) -> None:
        """The events of the units asked for and of any unit now changing
        (a dependency being started or stopped on their behalf)."""
        m = self.m
        watched = set(self.names) | {n for n in m.units if m.settled(n) is None}

        def follow(event: dict[str, Any]) -> None:
            if event.get("unit") in watched and event.get("severity") != "debug":
                self.conn.send({"id": self.rid, "ok": True, "stream": True, "result": event})
        self.follow = follow
        m.events.followers.append(follow)

    def verdicts(self) -> tuple[dict[str, str | None], float, dict[str, str]]:
        results: dict[str, str | None] = {}
        reasons: dict[str, str] = {}
        due = 0.0
        for name in self.names:
            if self.want_up:
                verdict, wait, reason = up_verdict(self.m, name, self.since, self.finished_ok,
                                                   self.explain)
                due = max(due, wait)
                if reason:
                    reasons[name] = reason
            else:
                verdict = down_verdict(self.m, name)
            results[name] = verdict
        return results, due, reasons

    def answer(self) -> bool:
        """Answers if every unit has its verdict (or time is up); True once answered."""
        if self.done or self.conn.closed:
            return True
        m = self.m
        results, due, reasons = self.verdicts()
        late = m.sup.loop.clock() >= self.deadline - 1e-3
        if any(v is None for v in results.values()) and not late:
            self._look_again(due)
            return False
        failed = [n for n, v in results.items() if v != "ok"]
        if failed:
            self.conn.error(self.rid, "failed", "; ".join(
                f"{n}: {self._why(n, results[n] is None, reasons.get(n, ''))}" for n in failed))
        else:
            self.conn.reply(self.rid, {n: m.state(n) for n in self.names})
        self.done = True
        return True

    def _look_again(self, due: float) -> None:
        """One timer for the moment a unit will have stayed up long enough
        (the watcher runs on every change in the daemon: no timer each time)."""
        if due <= 0:
            return
        when = self.m.sup.loop.clock() + due + 0.01
        if self.recheck is not None and not self.recheck.cancelled and \
                self.recheck.when <= when:
            return
        if self.recheck is not None:
            self.recheck.cancel()
        self.recheck = self.m.sup.loop.call_later(due + 0.01, self._recheck)
        self.timers.append(self.recheck)

    def _recheck(self) -> None:
        self.recheck = None
        self.poll()

    def _why(self, name: str, pending: bool, reason: str) -> str:
        waited = self.m.sup.loop.clock() - self.since
        if pending:
            state = self.m.state(name)
            detail = self.explain(name)
            return f"still {state} after {waited:.0f} s" + (f" ({detail})" if detail else "")
        return reason or self.explain(name) or self.m.state(name)

    def check(self) -> bool:
        """A manager watcher: True (and it is removed) once answered."""
        if not self.answer():
            return False
        self.end()
        return True

    def poll(self) -> None:
        if self.check() and self.check in self.m.watchers:
            self.m.watchers.remove(self.check)

    def end(self) -> None:
        """Lets go of the timers, the event stream and the connection's wait."""
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        if self.follow is not None and self.follow in self.m.events.followers:
            self.m.events.followers.remove(self.follow)
        self.follow = None
        if self.holding:
            self.holding = False
            self.conn.wait_ends()
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            on_end()
