"""Runs a unit's lifecycle commands (exec-pre, exec-post, exec-stop,
exec-reload): one phase's commands in order, each a real child forked as
the unit runs (user, environment with `$MAINPID`, limits, cgroup), its
output in the unit's log, reaped by the one reaper, and killed at
exec-timeout. The phase's result goes back to the state table as one event:
CMDS_DONE, or CMDS_FAILED naming the command that failed. A command written
"-cmd" may fail without failing the phase, as in systemd.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from vigil.runtime.events import Events
from vigil.base.exitstatus import ExitInfo
from vigil.engine.launch import LaunchError, make_spec
from vigil.runtime.loop import Loop, Timer
from vigil.kernel.proc import ProcessCalls
from vigil.engine.reaper import Proc, Reaper
from vigil.engine.spawner import Settings, instance_env
from vigil.engine.states import Act, Action, Event, Instance, State
from vigil.engine.streams import Streams


class _Phase:
    """The commands of one phase of one instance, the one running now."""

    __slots__ = ("inst", "left", "name", "pid", "timed_out", "timer")

    def __init__(self, inst: Instance, name: str, commands: list[tuple[str, ...]]) -> None:
        self.inst, self.name, self.left = inst, name, commands
        self.pid = 0
        self.timer: Timer | None = None
        self.timed_out = False


def commands_of(inst: Instance, phase: str) -> tuple[tuple[str, ...], ...]:
    svc = inst.service
    return {"pre": svc.exec_pre, "post": svc.exec_post, "stop": svc.exec_stop,
            "reload": svc.exec_reload}[phase]


class Lifecycle:
    def __init__(self, loop: Loop, events: Events, calls: ProcessCalls, settings: Settings,
                 streams: Streams, reaper: Reaper, send: Callable[..., None],
                 signal_all: Callable[[Instance, int], None]) -> None:
        self.loop, self.events, self.calls, self.settings = loop, events, calls, settings
        self.streams, self.reaper, self.send = streams, reaper, send
        self.signal_all = signal_all  # the supervisor's: cgroup, group and main process
        self.running: dict[str, _Phase] = {}
        # reload-unit requests waiting for a reload's end: instance -> replies
        self.reload_waits: dict[str, list[Callable[[bool, str], None]]] = {}

    def act(self, inst: Instance, action: Action) -> None:
        """The table's RUN_COMMANDS, SIGNAL_RELOAD, RELOADED, RELOAD_FAILED, REPORT,
        and ABORT (the watchdog's)."""
        kind = action.kind
        if kind is Act.ABORT:
            self.events.emit("unit.watchdog", f"{inst.name}: {inst.reason}; sending SIGABRT",
                             "warning", unit=inst.unit, pid=inst.pid)
            self.signal_all(inst, signal.SIGABRT)
            self.signal_all(inst, signal.SIGCONT)  # a stopped one must wake to die
        elif kind is Act.RUN_COMMANDS:
            self.run(inst, action.what)
        elif kind is Act.SIGNAL_RELOAD and inst.pid is not None:
            assert inst.service.reload_signal is not None
            sent = self.reaper.signal(inst.pid, inst.service.reload_signal)
            self._reload_done(inst, sent, f"{inst.name}: reload signal "
                              + ("sent" if sent else "not sent: the process is gone"))
        elif kind in (Act.RELOADED, Act.RELOAD_FAILED):
            self._reload_done(inst, kind is Act.RELOADED, action.what)
        elif kind is Act.REPORT:
            self.events.emit("unit.lifecycle", action.what, "warning", unit=inst.unit,
                             pid=inst.pid)

    def reload(self, inst: Instance, reply: Callable[[bool, str], None]) -> None:
        """reload-unit: the table's RELOAD; `reply` is told how it ended."""
        if inst.state is not State.RUNNING or inst.phase:
            busy = f"busy ({inst.phase})" if inst.phase else inst.state.value
            reply(False, f"{inst.name} is {busy}: nothing reloaded")
            return
        self.reload_waits.setdefault(inst.name, []).append(reply)
        self.send(inst, Event.RELOAD)

    def state_changed(self, inst: Instance) -> None:
        """Its commands are killed, and a reload it was in has ended with it."""
        self.cancel(inst.name)
        if inst.name in self.reload_waits:
            self._reload_done(inst, False, f"{inst.name} left running during the reload")

    def _reload_done(self, inst: Instance, ok: bool, text: str) -> None:
        self.events.emit("unit.lifecycle", text, "info" if ok else "warning",
                         unit=inst.unit, pid=inst.pid)
        for reply in self.reload_waits.pop(inst.name, []):
            reply(ok, text)

    def run(self, inst: Instance, phase: str) -> None:
        """Starts the phase's commands (any of the instance's still running
        are killed first: the state moved on)."""
        self.cancel(inst.name)
        run = self.running[inst.name] = _Phase(inst, phase, list(commands_of(inst, phase)))
        self._next(run)

    def cancel(self, name: str) -> None:
        """The instance changed state: its running command is killed, and its
        result no longer counts."""
        run = self.running.pop(name, None)
        if run is None:
            return
        if run.timer is not None:
            run.timer.cancel()
        if run.pid:
            self._kill(run.pid)

    def saved(self) -> list[list[int]]:
        """The lifecycle commands running now, as [pid, start time] (what a
        re-exec keeps: the new daemon kills them, and RESUME runs the phase
        again)."""
        return [[run.pid, _started(run.pid)] for run in self.running.values() if run.pid]

    def kill_saved(self, saved: list[list[int]]) -> None:
        """After a re-exec: the old daemon's commands go, each only if it is
        still the same unreaped child of ours (same start time, our child:
        its pid cannot be reused until we reap it)."""
        for pid, started in saved:
            if _started(pid) == started and _parent(pid) == os.getpid():
                self._kill(pid)

    def _kill(self, pid: int) -> None:
        """The command and what it started (it leads its own session); it is
        our child and not yet reaped, so the pid is still its own."""
        try:
            self.calls.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _next(self, run: _Phase) -> None:
        inst = run.inst
        if not run.left:
            del self.running[inst.name]
            self.send(inst, Event.CMDS_DONE, detail=run.name)
            return
        argv = run.left.pop(0)
        ignore = argv[0].startswith("-")
        if ignore:
            argv = (argv[0][1:], *argv[1:])
        env = {"MAINPID": str(inst.pid)} if inst.pid else {}
        if isinstance(inst.service.port, int):  # known before the main process starts
            env["PORT"] = str(inst.service.port)
        try:
            pid, report = self._spawn(inst, argv, env)
        except (LaunchError, OSError) as err:
            self._finished(run, argv, ignore, f"cannot start: {err}")
            return
        try:
            pidfd = self.calls.pidfd_open(pid)
        except OSError as err:  # EMFILE: it goes, reaped as a process of no one's
            self._kill(pid)
            os.close(report)
            self.reaper.procs[pid] = Proc(pid, -1, self.loop.clock(), time.time(),
                                          on_exit=lambda _info: None)
            self._finished(run, argv, ignore, f"cannot watch it: {err}")
            return
        run.pid, run.timed_out = pid, False
        timeout = inst.service.exec_timeout

        def too_long() -> None:
            run.timed_out = True
            self._kill(pid)
        run.timer = self.loop.call_later(timeout, too_long)

        def exited(info: ExitInfo) -> None:
            if run.timer is not None:
                run.timer.cancel()
            failure = self.calls.read_report(report)
            if self.running.get(inst.name) is not run:
                return  # cancelled: the state moved on
            run.pid = 0
            if failure is not None:
                why = f"{argv[0]}: {failure}"
            elif run.timed_out:
                why = f"timed out after {timeout:g}s (exec-timeout)"
            else:
                why = "" if info.code == 0 else str(info)
            self._finished(run, argv, ignore, why)
        self.reaper.procs[pid] = Proc(pid, pidfd, self.loop.clock(), time.time(),
                                      on_exit=exited)

    def _finished(self, run: _Phase, argv: tuple[str, ...], ignore: bool, why: str) -> None:
        inst = run.inst
        if why:
            what = f"exec-{run.name} command {' '.join(argv)[:200]!r} failed: {why}"
            self.events.emit("unit.command-failed", what + ("; ignored (-)" if ignore else ""),
                             "info" if ignore else "warning", unit=inst.unit, pid=inst.pid)
            if not ignore:
                del self.running[inst.name]
                self.send(inst, Event.CMDS_FAILED, detail=what)
                return
        self._next(run)

    def _spawn(self, inst: Instance, argv: tuple[str, ...],
               env: dict[str, str]) -> tuple[int, int]:
        """Forks one command as the unit runs, in its cgroup; its output goes
        to the unit's log (to nothing on a terminal: that is the main
        process's). Its pid and exec report fd."""
        svc = inst.service
        spec = make_spec(svc, self.settings.daemon_env, {**env, **instance_env(inst)},
                         self.settings.unit_env, argv)
        child_fds: list[int] = []
        reads: list[tuple[str, int]] = []
        try:
            if svc.pty or svc.tty:
                spec.fd_in = spec.fd_out = spec.fd_err = os.open(
                    os.devnull, os.O_RDWR | os.O_CLOEXEC)
                child_fds.append(spec.fd_in)
            else:
                self.streams.stdio(inst, spec, child_fds, reads)
            if self.settings.cgroups is not None:
                spec.cgroup_fd = self.settings.cgroups.join_fd(inst.name)
                child_fds.append(spec.cgroup_fd)
            pid, report = self.calls.spawn(spec)
        except BaseException:
            for _, fd in reads:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                if fd > 2:
                    os.close(fd)
        for stream, fd in reads:
            self.streams.capture(inst, stream, fd)
        return pid, report


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].decode().split()
    except OSError:
        return []


def _started(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else -1  # field 22: starttime


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if len(fields) > 1 else -1  # field 4: ppid
