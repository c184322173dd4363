"""Timers: units with a [timer] run on a schedule, started through the
manager as `vigilctl start` would start them (run records, logs and hooks
apply).

Two clocks, for two kinds of schedule:
- `every` and `after-boot` are on the monotonic clock (the loop's): the
  n-th elapse is anchor + n * every, exactly, however late a wake-up was,
  and a wall-clock step moves none of them.
- calendars follow the wall clock: the next elapse is computed from the
  wall clock at each wake, and a step of the wall clock (NTP, `date -s`)
  is noticed when wall minus monotonic changes: a step forward past an
  elapse runs the unit once, a step back re-computes the next elapse.
  The wall deadline is watched by a timerfd on CLOCK_REALTIME with
  TFD_TIMER_CANCEL_ON_SET (through the C seam): it wakes at the deadline
  and at once at any step of the clock, so an idle daemon makes no other
  wake-up. Without one (or with the tests' stepped clock), a monotonic
  timer capped at `recheck` seconds, and a step is seen at the next
  re-check.

Last-run times are kept in a small JSON file (written to a temporary and
renamed), so `persistent = true` can run once at start what was missed
while vigil was down, and `after-boot` runs once per boot; daemon-reexec
carries the schedules on through snapshot()/restore().

This module (and vigil.model.calendar, datetime, zoneinfo) is imported only when
a unit has a [timer].
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from vigil.base.records import dataclass, field
from datetime import UTC, datetime

from vigil.model.calendar import Calendar, next_elapse, parse
from vigil.runtime.events import Events
from vigil.runtime.loop import Loop
from vigil.runtime.loop import Timer as Handle
from vigil.engine.manager import Manager
from vigil.model.unit import Overlap, Timer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1
JUMP = 1.0  # seconds of change in wall - monotonic that count as a step of the clock
# Test only (docs/units.md): a file holding seconds added to the wall clock,
# so a test can step the daemon's calendar clock without touching the host's.
TEST_CLOCK = "VIGIL_TEST_WALL_OFFSET_FILE"


def boottime() -> float:
    """Seconds since boot, suspend included (what after-boot counts)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class Schedule:
    unit: str
    timer: Timer
    calendars: list[Calendar]
    next_mono: float | None = None  # interval or after-boot: the next elapse, loop clock
    next_wall: float | None = None  # calendar: the next elapse, wall seconds
    jitter: float = 0.0  # added to the next elapse
    handle: Handle | None = None
    queued: bool = False  # overlap = queue: a run waits for the current one
    last: float | None = None  # wall time of the last elapse

    def due_wall(self) -> float | None:
        return None if self.next_wall is None else self.next_wall + self.jitter


@dataclass
class Timers:
    loop: Loop
    manager: Manager
    events: Events
    state_path: str
    wall: Callable[[], float] = time.time
    boot: Callable[[], float] = boottime
    rng: Callable[[], float] = random.random
    recheck: float = 60.0
    use_timerfd: bool = False  # the real wall clock: wake through a CLOCK_REALTIME timerfd
    schedules: dict[str, Schedule] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    _alarm: Handle | None = None
    _offset: float = 0.0
    _timerfd: int = -1

    def __post_init__(self) -> None:
        self.last = self._read_state()
        self._offset = self.wall() - self.loop.clock()
        self.manager.watchers.append(self._drained)
        if self.use_timerfd:
            try:
                from vigil.kernel import syscalls
                self._timerfd = syscalls.timerfd_realtime()
                self.loop.add_reader(self._timerfd, self._timerfd_readable)
            except OSError as err:  # re-check instead, at most every `recheck` seconds
                self.events.emit("timer.clock", f"no timerfd ({err.strerror}): a step of "
                                 f"the wall clock is seen within {self.recheck:g}s", "warning")

    # -- which units have schedules --------------------------------------------
    def sync(self) -> None:
        """After loading or reloading units: a schedule per enabled timer unit;
        one whose [timer] did not change keeps its next elapse."""
        wanted = {n: u.timer for n, u in self.manager.units.items()
                  if u.timer is not None and u.enabled and u.service is not None}
        for name in list(self.schedules):
            if self.schedules[name].timer != wanted.get(name):
                self._drop(name)
        for name, timer in wanted.items():
            if name not in self.schedules:
                self._add(name, timer)
        self._arm_wall()

    def _drop(self, name: str) -> None:
        sched = self.schedules.pop(name)
        if sched.handle is not None:
            sched.handle.cancel()

    def _add(self, name: str, timer: Timer) -> None:
        sched = Schedule(name, timer, [parse(c) for c in timer.calendar],
                         last=self.last.get(name))
        self.schedules[name] = sched
        now_wall, now_mono = self.wall(), self.loop.clock()
        missed = False
        if sched.calendars:
            if timer.persistent and sched.last is not None:
                after_last = self._next_calendar(sched, sched.last)
                missed = after_last is not None and after_last <= now_wall
            sched.next_wall = self._next_calendar(sched, now_wall)
        if timer.after_boot is not None:
            boot_wall = now_wall - self.boot()
            done = sched.last is not None and sched.last >= boot_wall + timer.after_boot - JUMP
            first = now_mono + timer.after_boot - self.boot()
            if not done:
                sched.next_mono = first
            elif timer.every is not None:  # its first run was before this daemon
                sched.next_mono = self._following(first, timer.every, now_mono)
        elif timer.every is not None:
            since = (now_wall - sched.last) if timer.persistent and sched.last else 0.0
            sched.next_mono = now_mono + max(0.0, timer.every - since)
        sched.jitter = self.rng() * timer.randomize
        if missed:
            self.events.emit("timer.missed", f"{name}: a run was missed while vigil was down; "
                             "running it now", unit=name)
            self.loop.call_later(0, lambda: self._elapse(sched, ""))
        self._arm_mono(sched)

    # -- when to wake --------------------------------------------------------------
    def _next_calendar(self, sched: Schedule, after: float) -> float | None:
        moments = [next_elapse(c, datetime.fromtimestamp(after, UTC)) for c in sched.calendars]
        found = [m.timestamp() for m in moments if m is not None]
        return min(found) if found else None

    @staticmethod
    def _following(due: float, every: float, now: float) -> float:
        """The first elapse after now on the grid due + n * every."""
        if due > now:
            return due
        return due + every * (int((now - due) // every) + 1)

    def _arm_mono(self, sched: Schedule) -> None:
        if sched.handle is not None:
            sched.handle.cancel()
            sched.handle = None
        if sched.next_mono is not None:
            delay = sched.next_mono + sched.jitter - self.loop.clock()
            sched.handle = self.loop.call_later(delay, lambda: self._mono_due(sched))

    def _arm_wall(self) -> None:
        """One wake for all calendars: the timerfd at the earliest due (it
        also wakes at any step of the clock), else a timer capped at recheck."""
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        dues = [d for s in self.schedules.values() if (d := s.due_wall()) is not None]
        if self._timerfd >= 0:
            from vigil.kernel import syscalls
            syscalls.timerfd_at(self._timerfd, max(min(dues), 1e-9) if dues else 0.0)
        elif dues:
            delay = min(min(dues) - self.wall(), self.recheck)
            self._alarm = self.loop.call_later(max(0.0, delay), self.wall_check)

    def _mono_due(self, sched: Schedule) -> None:
        sched.handle = None
        if self.schedules.get(sched.unit) is not sched or sched.next_mono is None:
            return
        every = sched.timer.every
        now = self.loop.clock()
        sched.next_mono = None if every is None else self._following(sched.next_mono + every,
                                                                     every, now)
        sched.jitter = self.rng() * sched.timer.randomize
        self._elapse(sched, "interval")
        self._arm_mono(sched)

    def _timerfd_readable(self) -> None:
        try:
            os.read(self._timerfd, 8)
        except BlockingIOError:
            return
        except OSError:  # ECANCELED: the wall clock was set; wall_check sees the step
            pass
        self.wall_check()

    def wall_check(self) -> None:
        """The wall alarm: runs the calendars that are due; after a step of
        the wall clock, re-computes every calendar's next elapse."""
        self._alarm = None
        now = self.wall()
        offset = now - self.loop.clock()
        step, self._offset = offset - self._offset, offset
        stepped = abs(step) > JUMP
        for sched in list(self.schedules.values()):
            due = sched.due_wall()
            if due is None:
                continue
            if due <= now:
                self._elapse(sched, "calendar")
            if due <= now or stepped:
                sched.next_wall = self._next_calendar(sched, now)
                sched.jitter = self.rng() * sched.timer.randomize
        if stepped:
            self.events.emit("timer.clock", f"the wall clock stepped by {step:+.0f}s; "
                             "calendars re-computed", "debug")
        self._arm_wall()

    # -- running the unit ----------------------------------------------------------
    def _elapse(self, sched: Schedule, why: str) -> None:
        name, m = sched.unit, self.manager
        if name not in m.units or self.schedules.get(name) is not sched:
            return
        busy = m.active(name) or name in m.waiting
        policy = sched.timer.overlap
        if busy and policy is Overlap.SKIP:
            self.events.emit("timer.skipped", f"{name}: still running at the timer's elapse; "
                             "this run is skipped", unit=name)
            return
        if busy and policy is Overlap.QUEUE:
            sched.queued = True
            return
        self._run(sched, "restarting" if busy else "starting")

    def _run(self, sched: Schedule, how: str) -> None:
        sched.queued = False
        sched.last = self.last[sched.unit] = self.wall()
        self._write_state()
        self.events.emit("timer.elapsed", f"{sched.unit}: timer elapsed, {how} it",
                         unit=sched.unit)
        self.manager.restart([sched.unit])  # when not active: the start path, run again

    def _drained(self) -> bool:
        """A manager watcher: a queued run starts once the unit is down."""
        m = self.manager
        for sched in list(self.schedules.values()):
            if sched.queued and not m.active(sched.unit) and sched.unit not in m.waiting:
                self._run(sched, "starting (queued)")
        return False  # a watcher for good

    def close(self) -> None:
        """Shutting down: no timer starts anything any more."""
        for name in list(self.schedules):
            self._drop(name)
        self._arm_wall()  # nothing left: disarmed
        if self._timerfd >= 0:
            self.loop.remove_reader(self._timerfd)
            os.close(self._timerfd)
            self._timerfd = -1

    # -- what `vigilctl timers` and `status` show ---------------------------------
    def next_run(self, name: str) -> float | None:
        """The wall time of a unit's next elapse, or None."""
        sched = self.schedules.get(name)
        if sched is None:
            return None
        times = [d for d in (sched.due_wall(),) if d is not None]
        if sched.next_mono is not None:
            times.append(self.wall() + sched.next_mono + sched.jitter - self.loop.clock())
        return min(times) if times else None

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for name, sched in sorted(self.schedules.items()):
            t = sched.timer
            what = list(t.calendar) + ([f"every {t.every:g}s"] if t.every else []) + (
                [f"{t.after_boot:g}s after boot"] if t.after_boot is not None else [])
            out.append({"unit": name, "next": self.next_run(name), "last": sched.last,
                        "schedule": "; ".join(what), "persistent": t.persistent,
                        "overlap": t.overlap.value, "queued": sched.queued,
                        "state": self.manager.state(name), "now": self.wall()})
        return out

    # -- state across restarts and re-exec -----------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """For daemon-reexec: the monotonic clock goes on across exec, so the
        intervals' next elapses are kept as they are."""
        return {"next_mono": {n: s.next_mono for n, s in self.schedules.items()},
                "queued": [n for n, s in self.schedules.items() if s.queued]}

    def restore(self, saved: dict[str, Any] | None) -> None:
        if not isinstance(saved, dict):
            return
        for name, when in saved.get("next_mono", {}).items():
            sched = self.schedules.get(name)
            if sched is not None and isinstance(when, (int, float)):
                sched.next_mono = float(when)
                self._arm_mono(sched)
        for name in saved.get("queued", []):
            if name in self.schedules:
                self.schedules[name].queued = True

    def _read_state(self) -> dict[str, float]:
        try:
            with open(self.state_path) as f:
                state = json.load(f)
            last = state["last"] if state.get("format") == FORMAT else {}
            return {str(k): float(v) for k, v in last.items() if isinstance(v, (int, float))}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            self.events.emit("timer.state", f"{self.state_path}: unreadable ({err}); last "
                             "runs forgotten", "warning")
            return {}

    def _write_state(self) -> None:
        """A temporary renamed into place: a crash half-way leaves the old file."""
        temporary = self.state_path + ".new"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, "last": self.last}, f)
            os.replace(temporary, self.state_path)
        except OSError as err:
            self.events.emit("timer.state", f"{self.state_path}: cannot save last runs "
                             f"({err.strerror})", "warning")


def wall_clock() -> tuple[Callable[[], float], float, bool]:
    """The wall clock, the re-check period and whether the clock is the real
    one (then a timerfd wakes the daemon; the period is only for a kernel
    without one); or (tests only, VIGIL_TEST_WALL_OFFSET_FILE) a clock the
    test can step, re-checked often."""
    path = os.environ.get(TEST_CLOCK)
    if not path:
        return time.time, 60.0, True

    def stepped() -> float:
        try:
            with open(path) as f:
                return time.time() + float(f.read().strip() or 0)
        except (OSError, ValueError):
            return time.time()
    return stepped, 0.1, False
