"""Runs instances: carries out the state machine's actions, reaps every child,
and feeds exits, timers and probe results back in as events.

Events are queued and drained in `pump`, never handled re-entrantly, so an
action that causes another event (a spawn that fails at once) is handled
after the current one, in order. This is the only place that calls wait4.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from vigil import pidfile, syscalls
from vigil.asuser import Creds
from vigil.cgroups import Cgroups
from vigil.events import Events
from vigil.launch import LaunchError, make_spec, unit_creds
from vigil.loop import Loop, Timer
from vigil.notify import NotifySockets
from vigil.output import Console, Tail
from vigil.logwatch import Watches
from vigil.probes import Prober
from vigil.states import (Act, Action, Event, ExitInfo, Input, Instance, InvalidTransition, State,
                          backoff_delay, step)
from vigil.streams import Streams
from vigil.unit import Output, OutputKind, Probe, ProbeKind, Service, ServiceType, Unit

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from resource import struct_rusage


@dataclass
class Run:
    """One finished run of an instance, kept for `status` and scripts."""

    started: float  # wall clock
    ended: float
    exit: ExitInfo
    user_cpu: float
    system_cpu: float
    max_rss_kb: int


@dataclass
class Proc:
    """A child we spawned: a service's main process or an exec check."""

    pid: int
    pidfd: int
    started: float  # monotonic
    started_wall: float
    instance: Instance | None = None
    on_exit: Callable[[ExitInfo], None] | None = None
    report_fd: int = -1
    launcher: bool = False  # a forking unit's first process; its daemon comes after


@dataclass
class Settings:
    log_dir: str
    runtime_dir: str
    daemon_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    notify_dir: str = ""  # where the instances' NOTIFY_SOCKETs go (vigil/notify.py)
    cgroups: Cgroups | None = None
    slow_report: float = 5.0  # seconds between "still waiting for X" lines; 0: never
    unit_env: dict[str, str] = field(default_factory=dict)  # system mode: TZ, LANG, LC_*


class Supervisor:
    def __init__(self, loop: Loop, events: Events, settings: Settings, console: Console,
                 tail: Tail) -> None:
        self.loop, self.events, self.settings = loop, events, settings
        self.streams = Streams(loop, events, console, tail, settings.log_dir)
        self.instances: dict[str, Instance] = {}
        self.procs: dict[int, Proc] = {}
        self.timers: dict[str, list[Timer]] = {}
        self.probers: dict[str, Prober] = {}
        self.notify = NotifySockets(loop, settings.notify_dir, self._notified)
        self.watches = Watches(loop, self._rule_event)  # rules on the output
        self.streams.line_hook = self.watches.sink
        self.runs: dict[str, deque[Run]] = {}
        self.status_text: dict[str, str] = {}
        self.hook_env: dict[str, dict[str, str]] = {}  # unit -> the event that started it
        self.hook_queue: dict[str, list[dict[str, str]]] = {}  # unit -> events still to run
        self.queue: deque[tuple[Instance, Input]] = deque()
        self.on_settled: Callable[[Instance], None] = lambda inst: None
        self.orphan_severity = "debug"  # `vigil run -w` makes reaped orphans a warning
        self._pumping = False

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
        """Handles queued events until none is left."""
        if self._pumping:
            return
        self._pumping = True
        try:
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
                    except Exception as err:
                        self.events.error(f"{action.kind.value} for {inst.name}", err)
                if inst.state is not before:
                    self.events.emit("unit.state", f"{inst.name}: {before.value} -> "
                                     f"{inst.state.value}", "debug", unit=inst.unit, pid=inst.pid)
        finally:
            self._pumping = False

    # -- actions --------------------------------------------------------------
    def _do(self, inst: Instance, action: Action) -> None:
        kind = action.kind
        if kind is Act.SPAWN:
            self._spawn(inst)
        elif kind is Act.SIGNAL_STOP:
            self._signal(inst, inst.service.stop_signal)
            if inst.service.stop_signal not in (signal.SIGKILL, signal.SIGCONT):
                self._signal(inst, signal.SIGCONT)  # a stopped process must wake to exit
            if inst.pid is not None:
                self._report_slow(inst, inst.pid, self.loop.clock(), State.STOPPING)
        elif kind is Act.KILL:
            self.events.emit("unit.kill", f"{inst.name} did not stop within "
                             f"{inst.service.stop_timeout:g}s; sending SIGKILL", "warning",
                             unit=inst.unit, pid=inst.pid)
            self._signal(inst, signal.SIGKILL)
        elif kind in (Act.ARM_READY, Act.ARM_STOP, Act.ARM_RETRY):
            event = {Act.ARM_READY: Event.READY_TIMEOUT, Act.ARM_STOP: Event.STOP_TIMEOUT,
                     Act.ARM_RETRY: Event.RETRY}[kind]
            detail = f"not ready within {action.delay:g}s" if kind is Act.ARM_READY else ""
            self._arm(inst, action.delay, event, detail)
        elif kind is Act.CANCEL_TIMERS:
            for timer in self.timers.pop(inst.name, []):
                timer.cancel()
            prober = self.probers.pop(inst.name, None)
            if prober:
                prober.cancel()
            self.watches.cancel(inst.name)
        elif kind is Act.START_PROBE:
            self._start_probe(inst)
        elif kind is Act.START_HEALTH:
            self._start_health(inst)
        elif kind is Act.ANNOUNCE:
            self._announce(inst)

    def _arm(self, inst: Instance, delay: float, event: Event, detail: str) -> None:
        if delay <= 0:  # restart-delay = 0: now, not a turn of the loop later
            self.send(inst, event, detail=detail)
            return

        def fire() -> None:
            self.send(inst, event, detail=detail)
            self.pump()
        self.timers.setdefault(inst.name, []).append(self.loop.call_later(delay, fire))

    def signal_all(self, inst: Instance, signum: int) -> None:
        """`vigilctl kill --all`: every process of the instance."""
        self._signal(inst, signum)

    def _signal(self, inst: Instance, signum: int) -> None:
        """Every process of the instance, each once: the cgroup when it has
        one; else the process group, and the main process by its pidfd if it
        has left that group. (A shell's TERM trap ran twice when the main
        process got the signal both ways.)"""
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
            leads = os.getpgid(proc.pid) == proc.pid
        except ProcessLookupError:
            leads = False
        if not leads:
            try:
                signal.pidfd_send_signal(proc.pidfd, signum)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _announce(self, inst: Instance) -> None:
        state, name = inst.state, inst.name
        last = f" ({inst.last_exit})" if inst.last_exit else ""
        if state is State.RUNNING:
            self.events.emit("unit.ready", f"Started {name}", unit=inst.unit, pid=inst.pid)
        elif state is State.EXITED:
            self.events.emit("unit.exited", f"Finished {name}{last}", unit=inst.unit)
        elif state is State.INACTIVE:
            self.events.emit("unit.stopped", f"Stopped {name}", unit=inst.unit)
        elif state is State.FAILED:
            self.events.emit("unit.failed", f"{name} failed: {inst.reason}", "error",
                             unit=inst.unit)
        elif state is State.FATAL:
            self.events.emit("unit.fatal", f"{name} failed: {inst.reason}", "error",
                             unit=inst.unit)
        self.on_settled(inst)

    # -- spawning -------------------------------------------------------------
    def _spawn(self, inst: Instance) -> None:
        svc = inst.service
        kept, inst.port = inst.port, None  # "auto" keeps its port across its restarts
        if svc.port is not None:
            inst.port = _free_port(kept) if svc.port == "auto" else int(svc.port)
        extra = {**self.hook_env.get(inst.unit, {}), **_instance_env(inst)}
        ready_fd_pair: tuple[int, int] | None = None
        child_fds: list[int] = []  # ends the child gets; closed here after the fork
        reads: list[tuple[str, int]] = []  # our read ends of its output
        try:
            spec = make_spec(svc, self.settings.daemon_env, extra, self.settings.unit_env)
            if _notifies(svc) and self.settings.notify_dir:
                spec.env["NOTIFY_SOCKET"] = self.notify.open(inst.name, Creds.of(spec))
            self.streams.stdio(inst, spec, child_fds, reads)
            if self.settings.cgroups is not None:
                spec.cgroup_fd = self.settings.cgroups.join_fd(inst.name)
                child_fds.append(spec.cgroup_fd)
            if svc.ready and svc.ready.probe.kind is ProbeKind.FD:
                ready_fd_pair = os.pipe2(os.O_CLOEXEC)
                child_fds.append(ready_fd_pair[1])
                spec.extra_fd, spec.extra_target = ready_fd_pair[1], svc.ready.probe.fd
            pid, report = syscalls.spawn(spec)
        except (LaunchError, OSError) as err:
            ours = [fd for _, fd in reads] + ([ready_fd_pair[0]] if ready_fd_pair else [])
            for fd in child_fds + ours:
                os.close(fd)
            what = str(err) if isinstance(err, LaunchError) else f"cannot start: {err}"
            self.send(inst, Event.EXEC_FAILED, detail=what)
            return
        finally:
            for fd in child_fds:
                if fd > 2:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        now = self.loop.clock()
        proc = Proc(pid, os.pidfd_open(pid), now, time.time(), inst, report_fd=report,
                    launcher=svc.type is ServiceType.FORKING)
        self.procs[pid] = proc
        inst.pid, inst.started_at = pid, now
        self.loop.add_reader(report, lambda: self._exec_report(proc))
        for stream, read_fd in reads:
            self.streams.capture(inst, stream, read_fd)
        if ready_fd_pair:
            self._watch_ready_fd(inst, pid, ready_fd_pair[0])
        self._report_slow(inst, pid, now, State.STARTING)

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

    def adopt(self, inst: Instance, pid: int, started_wall: float,
              fds: list[tuple[str, int]]) -> None:
        """Takes back a running process and its output fds after a re-exec."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pidfd = -1
        if pidfd >= 0:
            proc = self.procs[pid] = Proc(pid, pidfd, inst.started_at or self.loop.clock(),
                                          started_wall, inst)
            self.loop.add_reader(pidfd, functools.partial(self._adopted_exit, proc))
        for stream, fd in fds:
            os.set_inheritable(fd, False)
            self.streams.capture(inst, stream, fd)

    def _adopted_exit(self, proc: Proc) -> None:
        """An adopted process's pidfd is readable: it has ended. Our child is
        reaped by wait4 with its status; one that is not our child (taken over
        from a daemon that was killed) cannot be waited for, and its status
        is lost."""
        self.loop.remove_reader(proc.pidfd)
        self.reap()
        if self.procs.get(proc.pid) is proc:
            del self.procs[proc.pid]
            os.close(proc.pidfd)
            self._ended(proc, ExitInfo(None, None, False, self.loop.clock() - proc.started))
            self.pump()

    def resume(self, inst: Instance) -> None:
        """After a re-exec: the timers and probes the instance's state needs."""
        svc, state = inst.service, inst.state
        actions: list[Action] = []
        if state is State.RUNNING:
            actions = [Action(Act.START_HEALTH)]
        elif state is State.STARTING and svc.ready is not None:
            actions = [Action(Act.ARM_READY, svc.ready.timeout), Action(Act.START_PROBE)]
        elif state is State.STARTING:
            self.send(inst, Event.EXEC_OK)  # the exec report was lost with the old process
        elif state is State.STOPPING:
            actions = [Action(Act.SIGNAL_STOP), Action(Act.ARM_STOP, svc.stop_timeout)]
        elif state is State.BACKOFF or (state is State.FATAL and svc.retry_after_fatal > 0):
            delay = backoff_delay(inst) if state is State.BACKOFF else svc.retry_after_fatal
            actions = [Action(Act.ARM_RETRY, delay)]
        if state in (State.STARTING, State.RUNNING) and _notifies(svc) and self.settings.notify_dir:
            try:  # the old daemon's socket closed with it; the path stays the same
                self.notify.open(inst.name, unit_creds(svc))
            except (LaunchError, OSError) as err:
                self.events.error(f"NOTIFY_SOCKET of {inst.name}", err)
        for action in actions:
            self._do(inst, action)
        self.pump()

    def _watch_ready_fd(self, inst: Instance, pid: int, fd: int) -> None:
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                data = os.read(fd, 512)
            except BlockingIOError:
                return
            if b"\n" in data and inst.pid == pid:
                self.send(inst, Event.READY)
                self.pump()
            if b"\n" in data or not data:
                self.loop.remove_reader(fd)
                os.close(fd)
        self.loop.add_reader(fd, readable)

    def _exec_report(self, proc: Proc) -> None:
        """The exec report pipe is readable: EOF (exec done) or a failure."""
        if proc.report_fd < 0:
            return
        fd, proc.report_fd = proc.report_fd, -1
        self.loop.remove_reader(fd)
        failure = syscalls.read_report(fd)
        if proc.instance is not None:
            if failure is None:
                self.send(proc.instance, Event.EXEC_OK)
            else:
                argv0 = proc.instance.service.exec[0]
                self.send(proc.instance, Event.EXEC_FAILED, detail=f"{argv0}: {failure}")
        self.pump()

    # -- probes -----------------------------------------------------------------
    def _prober(self, inst: Instance) -> Prober:
        prober = self.probers.get(inst.name)
        if prober is None or prober.cancelled:
            check = functools.partial(self.exec_check, inst)
            prober = self.probers[inst.name] = Prober(self.loop, check)
        return prober

    def _start_probe(self, inst: Instance) -> None:
        ready = inst.service.ready
        assert ready is not None
        if ready.probe.kind in (ProbeKind.NOTIFY, ProbeKind.FD, ProbeKind.LOG):
            return  # the service tells us itself (a line: vigil/logwatch.py)
        probe = _for_instance(ready.probe, inst)
        pid = inst.pid

        def on_ready() -> None:
            if inst.pid == pid:
                self.send(inst, Event.READY)
                self.pump()
        self._prober(inst).until_ready(probe, ready.interval, on_ready)

    def _rule_event(self, inst: Instance, event: Event, detail: str) -> None:
        """A rule on the output fired (vigil/logwatch.py)."""
        if event is Event.HEALTH_FAILED:
            self.events.emit("unit.unhealthy", f"{inst.name}: {detail}; restarting",
                             "warning", unit=inst.unit, pid=inst.pid)
        self.send(inst, event, detail=detail)
        self.pump()

    def _start_health(self, inst: Instance) -> None:
        self.watches.start_silence(inst)
        health = inst.service.health
        if health is None:
            return
        pid = inst.pid

        def unhealthy(detail: str) -> None:
            if inst.pid == pid:
                self.events.emit("unit.unhealthy", f"{inst.name}: {detail}; restarting",
                                 "warning", unit=inst.unit, pid=pid)
                self.send(inst, Event.HEALTH_FAILED, detail=detail)
                self.pump()
        self._prober(inst).health(_for_instance(health.probe, inst), health.interval,
                                  health.timeout, health.retries, unhealthy)

    def exec_check(self, inst: Instance, argv: tuple[str, ...], timeout: float,
                   done: Callable[[bool, str], None]) -> None:
        """Runs a check command as the unit runs (user, cwd, environment and
        limits; not as root when the unit is not), output discarded, killed at
        the timeout."""
        check = replace(inst.service, exec=argv, stdout=_NULL, stderr=_NULL)
        try:
            spec = make_spec(check, self.settings.daemon_env, _instance_env(inst),
                             self.settings.unit_env)
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            spec.fd_in = spec.fd_out = spec.fd_err = null
            try:
                pid, report = syscalls.spawn(spec)
            finally:
                os.close(null)
        except (LaunchError, OSError) as err:
            done(False, str(err))
            return
        os.close(report)
        proc = Proc(pid, os.pidfd_open(pid), self.loop.clock(), time.time())

        def kill() -> None:
            try:
                signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = self.loop.call_later(timeout, kill)

        def exited(info: ExitInfo) -> None:
            timer.cancel()
            done(info.code == 0, f"check {info!s}")
        proc.on_exit = exited
        self.procs[pid] = proc

    def _notified(self, name: str, pid: int, fields: dict[str, str]) -> None:
        """An sd_notify datagram on an instance's socket: believed only from
        its main process or that process's group (the kernel says who sent it)."""
        inst = self.instances.get(name)
        if inst is None or inst.pid is None:
            return
        if pid != inst.pid:
            try:
                if os.getpgid(pid) != inst.pid:
                    return
            except ProcessLookupError:
                return
        if "STATUS" in fields:
            self.status_text[inst.name] = fields["STATUS"][:200]
        if fields.get("READY") == "1":
            self.send(inst, Event.READY)
            self.pump()

    # -- reaping --------------------------------------------------------------
    def reap(self) -> None:
        """Collects every exited child, ours or an orphan's, until none is left."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            proc = self.procs.pop(pid, None)
            if proc is None:
                self.events.emit("orphan.reaped", f"reaped orphan {pid}", self.orphan_severity,
                                 pid=pid)
                continue
            self.loop.remove_reader(proc.pidfd)  # an adopted process's is watched
            os.close(proc.pidfd)
            self._ended(proc, ExitInfo.from_status(status, self.loop.clock() - proc.started),
                        usage)
        self.pump()

    def _ended(self, proc: Proc, info: ExitInfo, usage: struct_rusage | None = None) -> None:
        """A process of ours has ended; `usage` is None when it was not our child."""
        pid = proc.pid
        if proc.on_exit is not None:
            proc.on_exit(info)
            return
        inst = proc.instance
        assert inst is not None
        self._exec_report(proc)  # exec status first: it may have failed
        if proc.launcher and info.success(frozenset({0})) and inst.pid == pid:
            self._adopt(inst, proc)
            return
        self.runs.setdefault(inst.name, deque(maxlen=20)).append(
            Run(proc.started_wall, time.time(), info, usage.ru_utime if usage else 0.0,
                usage.ru_stime if usage else 0.0, usage.ru_maxrss if usage else 0))
        level = "info" if info.success(inst.service.success_exit_codes) else "warning"
        self.events.emit("unit.exit", f"{inst.name} ({pid}) {info} after "
                         f"{info.runtime:.3f}s", level, unit=inst.unit, pid=pid,
                         exit_code=info.code, signal=info.signal, core=info.core,
                         runtime=round(info.runtime, 6))
        self._kill_leftovers(inst, pid)
        if inst.pid == pid:
            self.notify.close_one(inst.name)
            self.send(inst, Event.EXIT, exit=info)

    def _kill_leftovers(self, inst: Instance, pid: int) -> None:
        """The main process is gone: what it left in its group or cgroup goes too."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.settings.cgroups is not None:
            self.settings.cgroups.kill(inst.name)

    def _adopt(self, inst: Instance, launcher: Proc) -> None:
        """A forking unit's launcher exited 0: track the daemon its pid-file
        names, if that process is the unit's own (vigil/pidfile.py)."""
        path = inst.service.pid_file
        assert path is not None
        cgroups = self.settings.cgroups
        try:
            creds = unit_creds(inst.service)
            pid = pidfile.read(path, creds)
            pidfd = os.pidfd_open(pid)
        except (pidfile.Refused, LaunchError, OSError) as err:
            detail = f"no live process ({err.strerror})" if isinstance(err, OSError) else str(err)
            inst.pid = None
            self.send(inst, Event.EXEC_FAILED, detail=f"pid-file {path}: {detail}")
            return
        why = pidfile.why_not_ours(pid, pidfd, creds,
                                   cgroups.pids(inst.name) if cgroups else None, self._tracked_by)
        if why is not None:
            os.close(pidfd)
            inst.pid = None
            self.events.emit("unit.pid-file-refused", f"{inst.name}: pid-file {path} names "
                             f"process {pid}, which {why}; not adopting it", "warning",
                             unit=inst.unit, pid=pid)
            self.send(inst, Event.EXEC_FAILED,
                      detail=f"pid-file {path}: process {pid} {why}; refused")
            return
        if inst.state is not State.STARTING:  # stopped meanwhile: do not keep it
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            self.send(inst, Event.EXIT, exit=ExitInfo(None, signal.SIGKILL, False, 0.0))
            return
        proc = self.procs[pid] = Proc(pid, pidfd, launcher.started, launcher.started_wall, inst)
        # ours to reap as a subreaper; else only its pidfd tells when it ends
        self.loop.add_reader(pidfd, functools.partial(self._adopted_exit, proc))
        inst.pid = pid
        self.events.emit("unit.forked", f"{inst.name}: daemon {pid} from {path}", "debug",
                         unit=inst.unit, pid=pid)
        self.send(inst, Event.FORKED)

    def _tracked_by(self, pid: int) -> str | None:
        """The instance (or "a check") a process we started belongs to."""
        proc = self.procs.get(pid)
        if proc is None:
            return None
        return proc.instance.name if proc.instance is not None else "a check"


_NULL = Output(OutputKind.NULL)


def _notifies(svc: Service) -> bool:
    return svc.ready is not None and svc.ready.probe.kind is ProbeKind.NOTIFY


def _for_instance(probe: Probe, inst: Instance) -> Probe:
    """The instance's own port in `tcp = "port"` and in `$PORT` of an http URL."""
    if probe.kind is ProbeKind.TCP and probe.port == 0:
        return replace(probe, port=inst.port or 0)
    if probe.kind is ProbeKind.HTTP and "$PORT" in probe.url:
        return replace(probe, url=probe.url.replace("$PORT", str(inst.port or 0)))
    return probe


def _instance_env(inst: Instance) -> dict[str, str]:
    """What a unit's processes (and its checks) are told about themselves."""
    env = {"VIGIL_UNIT": inst.unit, "VIGIL_INSTANCE": inst.name.partition(":")[2] or "0"}
    if inst.port is not None:
        env["PORT"] = str(inst.port)
    return env


def _free_port(kept: int | None = None) -> int:
    """A TCP port nobody listens on now, for port = "auto": the one the
    instance had, while it is free (a browser tab survives a restart), else
    the kernel's choice."""
    import socket
    for port in ((kept,) if kept else ()) + (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")
