"""What a service says over sd_notify, and its watchdog.

A message is believed only from the instance's main process or its process
group (the kernel says who sent it: vigil/engine/notify.py). READY=1, RELOADING=1
and STOPPING=1 become state-table events; STATUS= is kept for `vigilctl
status`; EXTEND_TIMEOUT_USEC= moves the start or stop deadline; MAINPID= is
taken only for a process of the unit (its process group, or its cgroup),
which is then watched by its pidfd. With `watchdog`, a RUNNING instance must
send WATCHDOG=1 at least that often, or the table's WATCHDOG kills it with
SIGABRT; WATCHDOG=trigger does so at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vigil.runtime.events import Events
from vigil.base.exitstatus import ExitInfo
from vigil.runtime.loop import Loop, Timer
from vigil.kernel.proc import ProcessCalls
from vigil.engine.reaper import Proc, Reaper
from vigil.engine.states import Event, Instance, State

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from vigil.engine.cgroups import Cgroups

_USEC = 1_000_000


class Deadline:
    """The start or stop deadline of an instance, so that it can be extended."""

    __slots__ = ("ready", "timer")

    def __init__(self, timer: Timer, ready: bool) -> None:
        self.timer, self.ready = timer, ready


class Notices:
    def __init__(self, loop: Loop, events: Events, calls: ProcessCalls, reaper: Reaper,
                 cgroups: Cgroups | None, send: Callable[..., None]) -> None:
        self.loop, self.events, self.calls, self.reaper = loop, events, calls, reaper
        self.cgroups, self.send = cgroups, send
        self.status_text: dict[str, str] = {}
        self.deadlines: dict[str, Deadline] = {}
        self.watchdogs: dict[str, Timer] = {}
        self.handed_off: set[int] = set()  # former main processes, after MAINPID=

    def cancel(self, name: str) -> None:
        """The instance changed state: its deadline and watchdog go."""
        for timer in (self.deadlines.pop(name, None), self.watchdogs.pop(name, None)):
            if timer is not None:
                (timer.timer if isinstance(timer, Deadline) else timer).cancel()

    def deadline(self, inst: Instance, delay: float, ready: bool) -> None:
        """Arms the start (READY_TIMEOUT) or stop (STOP_TIMEOUT) deadline."""
        old = self.deadlines.pop(inst.name, None)
        if old is not None:
            old.timer.cancel()

        def fire() -> None:
            self.deadlines.pop(inst.name, None)
            if ready:
                self.send(inst, Event.READY_TIMEOUT, detail=f"not ready within {delay:g}s")
            else:
                self.send(inst, Event.STOP_TIMEOUT)
        self.deadlines[inst.name] = Deadline(self.loop.call_later(delay, fire), ready)

    def watchdog(self, inst: Instance) -> None:
        """(Re)arms the instance's watchdog, if it has one."""
        period = inst.service.watchdog
        if period is None or inst.state is not State.RUNNING:
            return
        old = self.watchdogs.pop(inst.name, None)
        if old is not None:
            old.cancel()
        pid = inst.pid

        def fire() -> None:
            self.watchdogs.pop(inst.name, None)
            if inst.pid == pid:
                self.send(inst, Event.WATCHDOG,
                          detail=f"watchdog: no WATCHDOG=1 within {period:g}s")
        self.watchdogs[inst.name] = self.loop.call_later(period, fire)

    def message(self, inst: Instance, pid: int, fields: dict[str, str]) -> None:
        """An sd_notify datagram on the instance's socket from `pid`."""
        if inst.pid is None or not self._believed(inst, pid):
            return
        if "STATUS" in fields:
            self.status_text[inst.name] = fields["STATUS"][:200]
        if "MAINPID" in fields:
            self._main_pid(inst, fields["MAINPID"])
        if "EXTEND_TIMEOUT_USEC" in fields:
            self._extend(inst, fields["EXTEND_TIMEOUT_USEC"])
        if fields.get("WATCHDOG") == "1" and inst.name in self.watchdogs:
            self.watchdog(inst)
        elif fields.get("WATCHDOG") == "trigger":
            self.send(inst, Event.WATCHDOG, detail="watchdog: the service sent WATCHDOG=trigger")
        if fields.get("RELOADING") == "1":
            self.send(inst, Event.RELOADING)
        if fields.get("READY") == "1":
            self.send(inst, Event.READY)
        if fields.get("STOPPING") == "1":
            self.send(inst, Event.STOPPING)

    def _believed(self, inst: Instance, pid: int) -> bool:
        if pid == inst.pid:
            return True
        try:
            return self.calls.getpgid(pid) == inst.pid
        except ProcessLookupError:
            return False

    def _of_unit(self, inst: Instance, pid: int) -> bool:
        """Whether a process belongs to the instance: in its cgroup, or in
        the process group its main process leads."""
        if self.cgroups is not None:
            return pid in (self.cgroups.pids(inst.name) or ())
        try:
            return self.calls.getpgid(pid) == inst.pid
        except ProcessLookupError:
            return False

    def _main_pid(self, inst: Instance, text: str) -> None:
        """MAINPID=N: N is the main process from now on, if it is the unit's."""
        new = int(text) if text.isdigit() else 0
        if new == inst.pid:
            return
        if new <= 1 or not self._of_unit(inst, new):
            self.events.emit("unit.notify-refused", f"{inst.name}: MAINPID={text[:20]} is not "
                             "a process of the unit; ignored", "warning", unit=inst.unit,
                             pid=inst.pid)
            return
        try:
            pidfd = self.calls.pidfd_open(new)
        except OSError:
            return
        old = self.reaper.procs.get(inst.pid) if inst.pid else None
        if old is not None:
            self.handed_off.add(old.pid)
        self.reaper.watch(Proc(new, pidfd, self.loop.clock(), time.time(), inst))
        self.events.emit("unit.main-pid", f"{inst.name}: main process {inst.pid} -> {new} "
                         "(MAINPID=)", "info", unit=inst.unit, pid=new)
        inst.pid = new

    def former_main(self, inst: Instance, pid: int, info: ExitInfo) -> bool:
        """Whether an exit is that of a main process that named another."""
        if pid not in self.handed_off:
            return False
        self.handed_off.discard(pid)
        self.events.emit("unit.exit", f"{inst.name}: former main process {pid} {info}",
                         "debug", unit=inst.unit, pid=pid)
        return True

    def _extend(self, inst: Instance, text: str) -> None:
        """EXTEND_TIMEOUT_USEC=N: the start or stop deadline is at least N
        from now (as systemd: it can only move later)."""
        deadline = self.deadlines.get(inst.name)
        if deadline is None or not text.isdigit():
            return
        delay = min(int(text), 86400 * _USEC) / _USEC
        if deadline.timer.when - self.loop.clock() < delay:
            self.deadline(inst, delay, deadline.ready)
