"""Runs instances: carries out the state machine's actions and feeds exits,
timers, probe results and the actions' own failures back in as events.

Events are queued by `send` and handled in `pump`, which only the manager's
`drain` calls (after every loop callback that queued one, and at the end of
each request), so an action that causes another event (a spawn that fails
at once) is handled after the current one, in order. An action that raises
is an event too (ACTION_FAILED; a failed spawn is EXEC_FAILED), and the
table decides.
Processes are started by vigil/engine/spawner.py and reaped by vigil/engine/reaper.py;
every process call goes through the seam in vigil/kernel/proc.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable

from vigil.runtime.events import Events
from vigil.engine.forking import Forking
from vigil.engine.launch import LaunchError, unit_creds
from vigil.engine.lifecycle import Lifecycle
from vigil.runtime.loop import Loop, Timer
from vigil.engine.notices import Notices
from vigil.engine.notify import NotifySockets
from vigil.runtime.output import Console, Tail
from vigil.kernel.proc import REAL, ProcessCalls, random_jitter
from vigil.engine.reaper import Proc as Proc  # container.py's command is a Proc too
from vigil.engine.reaper import Reaper, Run
from vigil.engine.readiness import Readiness
from vigil.engine.spawner import Launched, Settings, Spawner, notifies
from vigil.base.exitstatus import ExitInfo
from vigil.engine.states import Act, Action, Event, Input, Instance, InvalidTransition, State, step
from vigil.engine.streams import Streams
from vigil.model.unit import ServiceType, Unit

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from resource import struct_rusage
    from typing import Any


class Supervisor:
    def __init__(self, loop: Loop, events: Events, settings: Settings, console: Console,
                 tail: Tail, calls: ProcessCalls = REAL,
                 jitter: Callable[[], float] = random_jitter) -> None:
        self.loop, self.events, self.settings, self.calls = loop, events, settings, calls
        self.jitter = jitter  # 0..1, spreads each backoff by +-10%
        self.streams = Streams(loop, events, console, tail, settings.log_dir)
        self.instances: dict[str, Instance] = {}
        self.reaper = Reaper(loop, events, calls, self._ended)
        self.procs = self.reaper.procs
        self.timers: dict[str, list[Timer]] = {}
        self.notify = NotifySockets(loop, settings.notify_dir, self._notified)
        self.spawner = Spawner(calls, settings, self.streams, self.notify)
        self.forking = Forking(calls, events, settings.cgroups, self.reaper, self.send)
        self.readiness = Readiness(loop, events, calls, self.spawner, self.reaper, self.send)
        self.streams.line_hook = self.readiness.watches.sink
        self.runs: dict[str, deque[Run]] = {}
        self.lifecycle = Lifecycle(loop, events, calls, settings, self.streams, self.reaper,
                                   self.send, self.signal_all)
        self.notices = Notices(loop, events, calls, self.reaper, settings.cgroups, self.send)
        self.status_text = self.notices.status_text
        self.hook_env: dict[str, dict[str, str]] = {}  # unit -> the event that started it
        self.hook_queue: dict[str, list[dict[str, str]]] = {}  # unit -> events still to run
        self.queue: deque[tuple[Instance, Input]] = deque()
        # told of each instance that settled (up, down or failed), in order
        self.settled_listeners: list[Callable[[Instance], None]] = []

    # -- instances ------------------------------------------------------------
    def ensure_instances(self, unit: Unit) -> list[Instance]:
        """Creates (or re-points at a new config) the instances of a unit."""
        assert unit.service is not None
        count = unit.service.instances
        names = [unit.name] if count == 1 else [f"{unit.name}:{i}" for i in range(count)]
        out = []
        for name in names:
            inst = self.instances.get(name)
            if inst is None:
                inst = self.instances[name] = Instance(name, unit.name, unit.service)
            else:
                inst.service = unit.service
            out.append(inst)
        return out

    def of_unit(self, unit: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.unit == unit]

    def send(self, inst: Instance, event: Event, exit: ExitInfo | None = None,
             detail: str = "") -> None:
        self.queue.append((inst, Input(event, exit, detail)))

    def pump(self) -> None:
        """Handles queued events until none is left (called by Manager.drain)."""
        while self.queue:
            inst, ev = self.queue.popleft()
            before = inst.state
            try:
                actions = step(inst, ev)
            except InvalidTransition as err:
                self.events.emit("daemon.bug", f"invalid transition: {err}", "error",
                                 unit=inst.unit)
                continue
            for action in actions:
                try:
                    self._do(inst, action)
                except Exception as err:  # the table decides what it means
                    self.events.error(f"{action.kind.value} for {inst.name}", err)
                    self.send(inst, Event.ACTION_FAILED,
                              detail=f"{action.kind.value} failed: {err}")
            if inst.state is not before:
                self.events.emit("unit.state", f"{inst.name}: {before.value} -> "
                                 f"{inst.state.value}", "debug", unit=inst.unit, pid=inst.pid)

    # -- actions --------------------------------------------------------------
    def _do(self, inst: Instance, action: Action) -> None:
        kind = action.kind
        if kind is Act.SPAWN:
            self._spawn(inst)
        elif kind in (Act.SIGNAL_STOP, Act.KILL) and inst.pid is None:
            # nothing runs (a spawn that failed half-way): the stop is done at once,
            # rather than waiting for an exit that will never come
            self.send(inst, Event.EXIT, exit=ExitInfo(None, None, False, 0.0))
        elif kind is Act.SIGNAL_STOP:
            self.signal_all(inst, inst.service.stop_signal)
            if inst.service.stop_signal not in (signal.SIGKILL, signal.SIGCONT):
                self.signal_all(inst, signal.SIGCONT)  # a stopped process must wake to exit
            if inst.pid is not None:
                self._report_slow(inst, inst.pid, self.loop.clock(), State.STOPPING)
        elif kind is Act.KILL:
            self.events.emit("unit.kill", f"{inst.name} did not stop within "
                             f"{inst.service.stop_timeout:g}s; sending SIGKILL", "warning",
                             unit=inst.unit, pid=inst.pid)
            self.signal_all(inst, signal.SIGKILL)
        elif kind in (Act.ARM_READY, Act.ARM_STOP):  # EXTEND_TIMEOUT_USEC may move them
            self.notices.deadline(inst, action.delay, ready=kind is Act.ARM_READY)
        elif kind is Act.ARM_RETRY:
            delay = action.delay * (0.9 + 0.2 * self.jitter()) if action.jitter else action.delay
            self._arm(inst, delay, Event.RETRY, "")
        elif kind is Act.CANCEL_TIMERS:
            for timer in self.timers.pop(inst.name, []):
                timer.cancel()
            self.readiness.cancel(inst.name)
            self.lifecycle.state_changed(inst)
            self.notices.cancel(inst.name)
        elif kind is Act.START_PROBE:
            self.readiness.start_probe(inst)
        elif kind is Act.START_HEALTH:
            self.readiness.start_health(inst)
            self.notices.watchdog(inst)
        elif kind is Act.ANNOUNCE:
            self._announce(inst)
        else:  # lifecycle commands, reload, the watchdog's abort
            self.lifecycle.act(inst, action)

    def _arm(self, inst: Instance, delay: float, event: Event, detail: str) -> None:
        if delay <= 0:  # restart-delay = 0: now, not a turn of the loop later
            self.send(inst, event, detail=detail)
            return

        def fire() -> None:
            self.send(inst, event, detail=detail)
        self.timers.setdefault(inst.name, []).append(self.loop.call_later(delay, fire))

    def signal_all(self, inst: Instance, signum: int) -> None:
        """Every process of the instance, each once (a stop, a kill, `vigilctl
        kill --all`): the cgroup when it has one; else the process group, and
        the main process by its pidfd if it has left that group. (A shell's
        TERM trap ran twice when the main process got the signal both ways.)"""
        cgroups = self.settings.cgroups
        if cgroups is not None:
            if signum == signal.SIGKILL:
                cgroups.kill(inst.name)
            else:
                cgroups.signal(inst.name, signum)
            return
        proc = self.procs.get(inst.pid) if inst.pid else None
        if proc is None:
            return
        try:
            leads = self.calls.getpgid(proc.pid) == proc.pid
        except ProcessLookupError:
            leads = False
        if not leads:
            try:
                self.calls.pidfd_send_signal(proc.pidfd, signum)
            except ProcessLookupError:
                pass
        try:
            self.calls.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _announce(self, inst: Instance) -> None:
        said = _ANNOUNCED.get(inst.state)
        if said is not None:
            code, severity, text = said
            last = f" ({inst.last_exit})" if inst.last_exit else ""
            self.events.emit(code, text.format(name=inst.name, last=last, reason=inst.reason),
                             severity, unit=inst.unit,
                             pid=inst.pid if inst.state is State.RUNNING else None)
        for listener in self.settled_listeners:
            listener(inst)

    # -- spawning -------------------------------------------------------------
    def _spawn(self, inst: Instance) -> None:
        try:
            launched = self.spawner.spawn(inst, self.hook_env.get(inst.unit, {}))
        except (LaunchError, OSError) as err:
            what = str(err) if isinstance(err, LaunchError) else f"cannot start: {err}"
            self.send(inst, Event.EXEC_FAILED, detail=what)
            return
        pid, now = launched.pid, self.loop.clock()
        try:
            pidfd = self.calls.pidfd_open(pid)
        except OSError as err:  # EMFILE: we could not signal it safely; it goes
            self._abandon(launched)
            self.send(inst, Event.EXEC_FAILED, detail=f"cannot watch process {pid}: "
                      f"{err.strerror or err}")
            return
        proc = Proc(pid, pidfd, now, time.time(), inst, report_fd=launched.report_fd,
                    launcher=inst.service.type is ServiceType.FORKING)
        self.procs[pid] = proc
        inst.pid, inst.started_at = pid, now
        self.loop.add_reader(launched.report_fd, lambda: self._exec_report(proc))
        for stream, read_fd in launched.reads:
            self.streams.capture(inst, stream, read_fd)
        if launched.ready_fd >= 0:
            self.readiness.watch_ready_fd(inst, pid, launched.ready_fd)
        self._report_slow(inst, pid, now, State.STARTING)

    def _abandon(self, launched: Launched) -> None:
        """Kills a process we cannot watch. It is our child and not yet reaped,
        so its pid (its group's, as it leads a new session) is still its own;
        the reaper collects it as a process of no instance."""
        try:
            self.calls.killpg(launched.pid, signal.SIGKILL)
        except OSError:
            pass
        for fd in [launched.report_fd, launched.ready_fd] + [fd for _, fd in launched.reads]:
            if fd >= 0:
                os.close(fd)
        self.procs[launched.pid] = Proc(launched.pid, -1, self.loop.clock(), time.time(),
                                        on_exit=lambda _info: None)  # no one's now

    def _report_slow(self, inst: Instance, pid: int, since: float, state: State) -> None:
        """Says so, every slow_report seconds, while an instance is still
        starting or stopping (systemd's "A stop job is running...")."""
        if self.settings.slow_report <= 0:
            return

        def tick() -> None:
            if inst.state is state and inst.pid == pid:
                waited = self.loop.clock() - since
                what = inst.name if state is State.STARTING else f"{inst.name} to stop"
                self.events.emit("unit.slow", f"still waiting for {what} ({waited:.0f} s)",
                                 "warning", unit=inst.unit, pid=pid)
                self._report_slow(inst, pid, since, state)
        timer = self.loop.call_later(self.settings.slow_report, tick)
        self.timers.setdefault(inst.name, []).append(timer)

    # -- daemon-reexec ------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What a re-exec keeps: each instance, with its process's start and
        its output fds (reexec.save keeps those open across exec)."""
        instances = []
        for inst in self.instances.values():
            proc = self.procs.get(inst.pid) if inst.pid else None
            instances.append({**inst.record(), "started_wall": proc.started_wall if proc else 0.0,
                              "fds": self.streams.fds_of(inst.name),
                              "notify_fd": self.notify.fd_of(inst.name)})
        return {"instances": instances, "status_text": self.status_text,
                "hook_env": self.hook_env, "hook_queue": self.hook_queue,
                "commands": self.lifecycle.saved(),
                "runs": {name: [r.__dict__ | {"exit": r.exit.__dict__} for r in runs]
                         for name, runs in self.runs.items()}}

    def restore(self, saved: dict[str, Any], units: dict[str, Unit]) -> int:
        """Takes the saved instances back, with their processes; how many run."""
        self.status_text = self.notices.status_text = saved["status_text"]
        self.hook_env = saved["hook_env"]
        self.lifecycle.kill_saved(saved.get("commands", []))
        self.hook_queue = saved.get("hook_queue", {})
        for name, runs in saved["runs"].items():
            self.runs[name] = deque((Run(**{**r, "exit": ExitInfo(**r["exit"])}) for r in runs),
                                    maxlen=20)
        adopted = 0
        for record in saved["instances"]:
            unit = units.get(record["unit"])
            if unit is None or unit.service is None:
                for fd in [fd for _, fd in record["fds"]] + [record.get("notify_fd", -1)]:
                    if fd >= 0:
                        os.close(fd)
                continue
            inst = self.instances[record["name"]] = Instance.from_record(record, unit.service)
            if inst.pid:
                self.adopt(inst, inst.pid, record["started_wall"], record["fds"])
                adopted += 1
            self.resume(inst, record.get("notify_fd", -1))
        return adopted

    def adopt(self, inst: Instance, pid: int, started_wall: float,
              fds: list[tuple[str, int]]) -> None:
        """Takes back a running process and its output fds after a re-exec."""
        try:
            pidfd = self.calls.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = -1
        if pidfd >= 0:
            self.reaper.watch(Proc(pid, pidfd, inst.started_at or self.loop.clock(),
                                   started_wall, inst))
        for stream, fd in fds:
            os.set_inheritable(fd, False)
            self.streams.capture(inst, stream, fd)

    def resume(self, inst: Instance, notify_fd: int = -1) -> None:
        """After a re-exec: the timers and probes the instance's state needs
        (the table's RESUME), and its NOTIFY_SOCKET, handed over open."""
        svc = inst.service
        if (inst.state in (State.STARTING, State.RUNNING) and notifies(svc)
                and self.settings.notify_dir):
            fd, notify_fd = notify_fd, -1  # the socket owns it from here
            try:  # bound again only when the old daemon had none to hand over
                self.notify.open(inst.name, unit_creds(svc), fd)
            except (LaunchError, OSError) as err:
                self.events.error(f"NOTIFY_SOCKET of {inst.name}", err)
        if notify_fd >= 0:
            os.close(notify_fd)
        self.send(inst, Event.RESUME)

    def _exec_report(self, proc: Proc) -> None:
        """The exec report pipe is readable: EOF (exec done) or a failure."""
        if proc.report_fd < 0:
            return
        fd, proc.report_fd = proc.report_fd, -1
        self.loop.remove_reader(fd)
        failure = self.calls.read_report(fd)
        if proc.instance is not None:
            if failure is None:
                self.send(proc.instance, Event.EXEC_OK)
            else:
                argv0 = proc.instance.service.exec[0]
                self.send(proc.instance, Event.EXEC_FAILED, detail=f"{argv0}: {failure}")

    def _notified(self, name: str, pid: int, fields: dict[str, str]) -> None:
        """An sd_notify datagram on an instance's socket (vigil/engine/notices.py)."""
        inst = self.instances.get(name)
        if inst is not None:
            self.notices.message(inst, pid, fields)

    # -- reaping --------------------------------------------------------------
    def reap(self) -> None:
        """SIGCHLD: the reaper collects every exited child (vigil/engine/reaper.py)."""
        self.reaper.reap()

    def _ended(self, proc: Proc, info: ExitInfo, usage: struct_rusage | None = None) -> None:
        """A process of ours has ended; `usage` is None when it was not our child."""
        pid = proc.pid
        if proc.on_exit is not None:
            proc.on_exit(info)
            return
        inst = proc.instance
        assert inst is not None
        if self.notices.former_main(inst, pid, info):  # it named another (MAINPID=)
            return
        self._exec_report(proc)  # exec status first: it may have failed
        if proc.launcher and info.success(frozenset({0})) and inst.pid == pid:
            self.forking.adopt(inst, proc)
            return
        self.runs.setdefault(inst.name, deque(maxlen=20)).append(Run.of(proc, info, usage))
        level = "info" if info.success(inst.service.success_exit_codes) else "warning"
        self.events.emit("unit.exit", f"{inst.name} ({pid}) {info} after "
                         f"{info.runtime:.3f}s", level, unit=inst.unit, pid=pid,
                         exit_code=info.code, signal=info.signal, core=info.core,
                         runtime=round(info.runtime, 6))
        self._kill_leftovers(inst, pid)
        if inst.pid == pid:
            self.notify.close_one(inst.name)
            self.streams.drain(inst.name)  # its last lines, before its exit is judged
            self.send(inst, Event.EXIT, exit=info)

    def _kill_leftovers(self, inst: Instance, pid: int) -> None:
        """The main process is gone: what it left in its group or cgroup goes too."""
        try:
            self.calls.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.settings.cgroups is not None:
            self.settings.cgroups.kill(inst.name)


# what a settled instance says in the event log
_ANNOUNCED = {State.RUNNING: ("unit.ready", "info", "Started {name}"),
              State.EXITED: ("unit.exited", "info", "Finished {name}{last}"),
              State.INACTIVE: ("unit.stopped", "info", "Stopped {name}"),
              State.FAILED: ("unit.failed", "error", "{name} failed: {reason}"),
              State.FATAL: ("unit.fatal", "error", "{name} failed: {reason}")}
