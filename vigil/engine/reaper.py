"""The one reaper: the only place that waits for the daemon's children.

SIGCHLD wakes the loop and `Reaper.reap` collects every exited child with
`wait4(-1, WNOHANG)` until none is left (one SIGCHLD may stand for many
exits, and a child that exits later sends its own). Each pid is looked up in
`procs`, the children we started; the rest are orphans that came to us as a
subreaper or PID 1, logged and forgotten. A process taken over after a
re-exec, or a forking unit's daemon, is also watched by its pidfd: one that
is not our child ends without a status. Other waits, and why they are safe:
docs/DESIGN.md.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from vigil.base.records import dataclass

from vigil.runtime.events import Events
from vigil.runtime.loop import Loop
from vigil.kernel.proc import ProcessCalls
from vigil.base.exitstatus import ExitInfo
from vigil.engine.states import Instance

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from resource import struct_rusage


@dataclass
class Proc:
    """A child we spawned: a service's main process or an exec check."""

    pid: int
    pidfd: int  # -1: none could be opened (the process is being killed)
    started: float  # monotonic
    started_wall: float
    instance: Instance | None = None
    on_exit: Callable[[ExitInfo], None] | None = None
    report_fd: int = -1
    launcher: bool = False  # a forking unit's first process; its daemon comes after


@dataclass
class Run:
    """One finished run of an instance, with what wait4 says it used; the
    supervisor keeps the last few for `status` and scripts."""

    started: float  # wall clock
    ended: float
    exit: ExitInfo
    user_cpu: float
    system_cpu: float
    max_rss_kb: int

    @classmethod
    def of(cls, proc: Proc, info: ExitInfo, usage: struct_rusage | None) -> Run:
        return cls(proc.started_wall, time.time(), info, usage.ru_utime if usage else 0.0,
                   usage.ru_stime if usage else 0.0, usage.ru_maxrss if usage else 0)


Ended = Callable[[Proc, ExitInfo, "struct_rusage | None"], None]


class Reaper:
    def __init__(self, loop: Loop, events: Events, calls: ProcessCalls, ended: Ended) -> None:
        self.loop, self.events, self.calls, self.ended = loop, events, calls, ended
        self.procs: dict[int, Proc] = {}
        self.orphan_severity = "debug"  # `vigil run -w` makes reaped orphans a warning

    def reap(self) -> None:
        """Collects every exited child, ours or an orphan's, until none is left."""
        while True:
            try:
                pid, status, usage = self.calls.wait_any()
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = self.procs.pop(pid, None)
            if proc is None:
                self.events.emit("orphan.reaped", f"reaped orphan {pid}", self.orphan_severity,
                                 pid=pid)
                continue
            self._forget_pidfd(proc)
            self.ended(proc, ExitInfo.from_status(status, self.loop.clock() - proc.started),
                       usage)

    def signal(self, pid: int, signum: int) -> bool:
        """Signals a process of ours through its pidfd (never by a pid that may
        have been reaped and reused); False if it is not ours or is gone."""
        proc = self.procs.get(pid)
        if proc is None or proc.pidfd < 0:
            return False
        try:
            self.calls.pidfd_send_signal(proc.pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def owner_of(self, pid: int) -> str | None:
        """The instance (or "a check") a process we started belongs to."""
        proc = self.procs.get(pid)
        if proc is None:
            return None
        return proc.instance.name if proc.instance is not None else "a check"

    def watch(self, proc: Proc) -> None:
        """A process we may not be the parent of: its pidfd says when it ends."""
        self.procs[proc.pid] = proc
        self.loop.add_reader(proc.pidfd, functools.partial(self._pidfd_readable, proc))

    def _pidfd_readable(self, proc: Proc) -> None:
        """It has ended. Our child is reaped by wait4 with its status; one that
        is not our child (taken over from a daemon that was killed) cannot be
        waited for, and its status is lost."""
        self.loop.remove_reader(proc.pidfd)
        self.reap()
        if self.procs.get(proc.pid) is proc:
            del self.procs[proc.pid]
            self._forget_pidfd(proc)
            self.ended(proc, ExitInfo(None, None, False, self.loop.clock() - proc.started), None)

    def _forget_pidfd(self, proc: Proc) -> None:
        if proc.pidfd >= 0:
            self.loop.remove_reader(proc.pidfd)  # an adopted process's is watched
            os.close(proc.pidfd)
