"""The daemon: wires loader, supervisor, manager and control socket together
and runs the loop until asked to shut down.

Invariant: once the loop runs, nothing but a shutdown request ends it. A
broken unit file, a failing service or a bad request is logged and the
daemon goes on.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Sequence

from vigil import adopt, reexec, unitdb
from vigil.engine import cgroups
from vigil.runtime import logstore
from vigil.engine.cgroups import Cgroups
from vigil.commands import Commands
from vigil.control.control import ControlServer
from vigil.runtime.events import Events
from vigil.wire.flags import group_id
from vigil.wire.flags import parse_args as parse_args  # container.py builds its options here
from vigil.model.graph import Graph
from vigil.base.limits import Limits
from vigil.runtime.loop import Loop
from vigil.engine.manager import Manager
from vigil.runtime.output import Console, Tail
from vigil.serve import system_mode
from vigil.wire.protocol import default_socket
from vigil.base.rundir import lock, private_dir
from vigil.engine.scopes import Scopes
from vigil.engine.states import Instance, State
from vigil.engine.spawner import Settings
from vigil.engine.supervisor import Supervisor

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from vigil.system.shutdown import Kind


class Daemon:
    def __init__(self, opts: argparse.Namespace, argv: Sequence[str] = (),
                 boot_log: Sequence[tuple[str, str]] = (), can_reexec: bool = True,
                 warn_orphans: bool = False, loader: unitdb.Units | None = None) -> None:
        """Wires the objects; touches nothing of the machine but the runtime
        directory and its lock (early boot is `vigil/system/boot.py`, run by `start`).
        A container's entrypoint cannot re-exec and may warn of each orphan;
        `loader` is the units' when serve.early_units began loading them."""
        self.opts, self.argv = opts, list(argv)
        self.system = system_mode(opts)
        self.socket_path = opts.socket or default_socket(self.system)
        self.runtime_dir = opts.runtime_dir or os.path.dirname(self.socket_path)
        private_dir(self.runtime_dir)
        self.lock_fd = lock(self.runtime_dir, self.socket_path)
        self.log_dir = opts.log_dir or logstore.default_dir(
            self.system, self.runtime_dir, bool(opts.socket or opts.runtime_dir or
                                                os.environ.get("VIGIL_SOCKET")))
        self.store = logstore.Store(self.log_dir, getattr(opts, "log_max_total", 0),
                                    getattr(opts, "log_max_age", 0.0))
        self.store.open()  # an earlier boot's files move to boots/ first
        self.log_dir = self.store.directory  # after a re-exec: where the store moved
        self.console = Console(opts.console_fd)
        self.events = Events(None if opts.quiet else self.console,
                             opts.event_log or os.path.join(self.log_dir, "events.jsonl"))
        self.events.store = self.store.file(logstore.EVENTS, 4 << 20, 3)
        self.events.quiet_codes |= {"unit.state", "unit.exit"} | (
            set() if warn_orphans else {"orphan.reaped"})
        self.events.console_level = opts.console_level
        for severity, message in boot_log:
            self.events.emit("boot.step", message, severity)
        self.swaps: list[str] = []  # system mode: what early boot enabled, off at the end
        self.boot_unit: str | None = None  # system mode: vigil.unit= on the kernel command line
        self.ending: Kind | None = None  # system mode: what follows the stop
        self.hw_watchdog: Any = None  # vigil.system.hwwatchdog, with vigil.watchdog= (system mode)
        self.loop = Loop(self.events.error)
        self.tail = Tail()
        self.events.context = self.tail.last  # a failure event carries the last lines
        self.loader = loader or unitdb.of(opts)
        self.settings = Settings(log_dir=self.log_dir,
                                 notify_dir=self.runtime_dir.rstrip("/") + "-notify",
                                 cgroups=self._cgroups(),
                                 slow_report=opts.slow_report)
        self.sup = Supervisor(self.loop, self.events, self.settings, self.console, self.tail)
        if warn_orphans:
            self.sup.reaper.orphan_severity = "warning"
        self.sup.streams.store = self.store
        if getattr(opts, "syslog", None):
            from vigil.runtime.syslog import Forwarder
            self.sup.streams.forward = Forwarder(self.loop, self.events, opts.syslog,
                                                 socket.gethostname(), opts.syslog_unit).sink
        self.manager = Manager(self.sup, self.events, socket.gethostname())
        self.manager.instances_from = lambda name: self.loader.load_instance(name)  # start tp@x
        # a per-user daemon ends when its last scope does; PID 1 never
        self.scopes = Scopes(self.manager, self.events, None if self.system else self.shutdown,
                             bound=bool(opts.scope))  # the same argv after a re-exec
        self.manager.admit = self.scopes.check
        self.notify = self.sup.notify  # the units' NOTIFY_SOCKETs, beside the runtime dir
        self.commands = Commands(self.manager, self.tail, self.events, self.reload, self.shutdown,
                                 self.end_system, self.request_reexec, self.scopes)
        self.reexec = False
        self.can_reexec = can_reexec
        self.control = ControlServer(self.loop, self.socket_path, self.commands.handle,
                                     self.events.error, idle_timeout=opts.idle_timeout,
                                     read_gid=group_id(opts.read_group),
                                     limits=Limits.parse(opts.limit), events=self.events,
                                     listen_fd=opts.control_fd)
        self.remote: Any = None  # control.remote.RemoteServer with --listen: TLS loads only then
        if opts.listen:
            from vigil.control.remote import listen
            self.remote = listen(opts, self.loop, self.commands.handle, self.events)
        self.shutting_down = False
        self.timers: Any = None  # vigil.engine.timers.Timers, once a unit has a [timer]

    def boot(self) -> None:
        """System mode: the rest of early boot, now that the event log exists."""
        from vigil.system import boot
        booted = boot.configure(self.opts.config_root, self._boot_log)
        if booted.options.debug:
            self.events.console_level = "debug"
        self.swaps, self.boot_unit = booted.swaps, booted.options.unit
        self.settings.unit_env = booted.unit_env
        self.manager.hostname = booted.hostname or self.manager.hostname
        if not self.opts.log_dir:  # the logs move to /var/log/vigil once it is writable
            logstore.keep(self.store, [self.events.file], self.loop.call_later, self._boot_log)
        from vigil.system import hwwatchdog, sysinit
        self.hw_watchdog = hwwatchdog.from_cmdline(sysinit.read_cmdline(), self.loop,
                                                   self._boot_log)

    def request_reexec(self) -> str:
        """daemon-reexec: ends the loop; run() then saves the state and execs."""
        if self.shutting_down or not self.can_reexec:
            raise ValueError("no re-exec now: " + ("shutting down" if self.shutting_down else
                                                   "a container's entrypoint keeps running"))
        self.reexec = True
        self.loop.stopped = True
        return "re-executing; the services keep running"

    def _reexec(self) -> bool:
        """Saves the state and executes vigil afresh; False (and the daemon
        goes on as it was) if the state cannot be saved."""
        try:
            path = reexec.save(self)
        except Exception as err:
            self.events.error("daemon-reexec (state not saved; going on without it)", err)
            return False
        for conn in list(self.control.connections):
            if conn.streaming:  # a follower's stream ends; waiting ones are handed over
                conn.close()
        if self.remote is not None:
            self.remote.close()
        self.notify.hand_over()
        self.events.emit("daemon.reexec", f"re-executing vigil {os.getpid()}")
        self.events.close_file()
        once = ["--reexecuted"] if "--reexecuted" in self.argv else []
        reexec.execute(self.argv, ["--restore", path, *reexec.hand_over_socket(self), *once])

    def _boot_log(self, severity: str, message: str) -> None:
        self.events.emit("boot.step", message, severity)

    def end_system(self, kind: str) -> str:
        """reboot, halt or poweroff: stop the units, then the final sequence."""
        if not self.system:
            raise ValueError(f"{kind} is for system mode; this vigil supervises services: "
                             "use shutdown")
        from vigil.system.shutdown import Kind
        self.ending = Kind(kind)
        self.shutdown()
        return f"stopping all units, then {kind}"

    def _cgroups(self) -> Cgroups | None:
        base = cgroups.choose(self.opts.cgroup, self.system)
        if base is not None:
            try:
                return Cgroups(base)
            except OSError as err:
                self.events.emit("daemon.cgroup", f"no cgroups for units ({err}); stop and kill "
                                 "reach process groups only", "warning")
        elif self.opts.cgroup == "auto":
            self.events.emit("daemon.cgroup", "no delegated cgroup v2: stop and kill reach "
                             "process groups only", "info")
        return None

    def load(self) -> dict[str, Any]:
        result = self.loader.load_all()
        graph = Graph.build(result.units)
        problems = [str(p) for p in result.problems + graph.problems]
        for problem in problems:
            self.events.emit("unit.invalid", problem, "error")
        self.manager.note_load(result, problems)  # broken units are shown, not missing
        return {"units": result.units, "broken": result.broken, "problems": problems}

    def _with_transient(self, units: dict[str, Any]) -> dict[str, Any]:
        """Units started by `vigilctl run` have no file: a reload keeps them."""
        m = self.manager
        return {**{n: m.units[n] for n in m.transient if n in m.units}, **units}

    def reload(self, dry_run: bool = False) -> dict[str, Any]:
        if dry_run:
            result = self.loader.load_all()
            changes = self.manager.plan_reload(self._with_transient(result.units),
                                               result.broken)
            problems = [str(p) for p in result.problems + Graph.build(result.units).problems]
        else:
            loaded = self.load()
            changes = self.manager.apply_reload(self._with_transient(loaded["units"]),
                                                loaded["broken"])
            self._sync_timers()
            problems = loaded["problems"]
            self.events.emit("daemon.reloaded", f"Reloaded: {len(changes)} change(s)")
        return {"changes": [c.__dict__ for c in changes], "problems": problems,
                "applied": not dry_run}

    def _sync_timers(self) -> None:
        """Schedules the units' [timer]s; vigil.engine.timers is imported only once
        a unit has one."""
        if self.timers is None and any(u.timer for u in self.manager.units.values()):
            from vigil.engine.timers import Timers, wall_clock
            wall, recheck, real = wall_clock()
            state_dir = self.opts.state_dir or ("/var/lib/vigil" if self.system
                                                else self.runtime_dir)
            self.timers = self.commands.timers = Timers(
                self.loop, self.manager, self.events, os.path.join(state_dir, "timers.json"),
                wall=wall, recheck=recheck, use_timerfd=real)
        if self.timers is not None:
            self.timers.sync()

    def shutdown(self) -> None:
        """Stops every unit in reverse dependency order, then ends the loop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        if self.timers is not None:  # no timer starts a unit while they stop
            self.timers.close()
        self.events.emit("daemon.stopping", "Stopping all units")
        self.stop_all(lambda: setattr(self.loop, "stopped", True))
        self.loop.call_later(self.opts.shutdown_timeout, self._kill_everything)

    def stop_all(self, then: Callable[[], None]) -> None:
        """Stops every unit in reverse dependency order; `then` once all are down."""
        m = self.manager
        m.goal.clear()
        m.waiting.clear()

        def all_down() -> bool:
            if any(m.active(n) for n in m.units):
                return False
            then()
            return True
        m.watchers.append(all_down)
        m.stop(list(m.units))

    def _kill_everything(self) -> None:
        self.events.emit("daemon.timeout", "shutdown timeout: killing what is left", "warning")
        for proc in list(self.sup.procs.values()):
            try:
                self.sup.calls.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.loop.stopped = True

    def _bind(self) -> None:
        """--scope: the daemon lives while one of these processes does."""
        for pid in self.opts.scope:
            try:
                self.scopes.hold(pid)
            except ValueError as err:
                self.events.emit("scope.gone", f"--scope: {err}", "warning")
        if self.scopes.bound and not self.scopes.live:
            self.events.emit("scope.empty", "no --scope process is alive; exiting", "error")
            self.shutdown()

    def _reload_signal(self, _signum: int) -> None:
        self.reload(False)

    def dump(self, _signum: int) -> None:
        for name in sorted(self.manager.units):
            self.events.emit("daemon.dump", f"{name}: {self.manager.state(name)} "
                             f"{self.commands.explain(name)}".rstrip())

    def reap(self) -> None:
        """SIGCHLD. If reaping fails, it is tried again shortly: the exited
        children will not send another SIGCHLD, and no zombie may stay."""
        try:
            self.sup.reap()
        except Exception:
            self.loop.call_later(0.05, self.reap)
            raise

    def _signals(self) -> None:
        loop = self.loop
        loop.on_signal(signal.SIGCHLD, lambda _s: self.reap())
        loop.on_signal(signal.SIGHUP, self._reload_signal)
        loop.on_signal(signal.SIGUSR1, self.dump)
        if not self.system:
            loop.on_signal(signal.SIGTERM, lambda _s: self.shutdown())
            loop.on_signal(signal.SIGINT, lambda _s: self.shutdown())
            return
        ends = {signal.SIGTERM: self.opts.sigterm, signal.SIGINT: "reboot",  # Ctrl-Alt-Del
                signal.SIGPWR: "poweroff"}

        def end(signum: int) -> None:
            self.end_system(ends[signal.Signals(signum)])
        for signum in ends:
            loop.on_signal(signum, end)
        loop.on_signal(signal.SIGUSR2, self._reload_signal)

    def _first_units(self) -> list[str]:
        """What to start: vigil.unit=, else the `default` target, else every enabled unit."""
        units = self.manager.units
        if self.system and self.boot_unit:
            if self.boot_unit in units:
                return [self.boot_unit]
            self.events.emit("boot.unit", f"vigil.unit={self.boot_unit}: no such unit; "
                             "booting the default", "error")
        if self.system and "default" in units:
            return ["default"]
        return [n for n, u in units.items() if u.enabled and u.timer is None]  # timers start those

    def _critical(self, inst: Instance) -> None:
        """System mode: a critical unit that fails sends the system to `rescue`."""
        unit = self.manager.units.get(inst.unit)
        if (self.system and unit is not None and unit.critical and not self.shutting_down
                and inst.state in (State.FAILED, State.FATAL)):
            has_rescue = "rescue" in self.manager.units
            self.events.emit("boot.critical", f"critical unit {inst.unit} failed: "
                             + ("starting rescue" if has_rescue else "no rescue unit"), "error")
            if has_rescue:
                self.manager.start(["rescue"])

    def _saved_state(self) -> dict[str, Any] | None:
        """What daemon-reexec saved; None (said so) if there is none or it is
        unusable, and then what runs is taken back as after a kill."""
        if not self.opts.restore:
            return None
        try:
            return reexec.load(self.opts.restore)
        except (OSError, ValueError) as err:
            self.events.error("restoring the state (taking back what runs instead)", err)
            return None

    def run(self) -> int:
        self._signals()  # first: a TERM while the units load (the compiler may run) counts
        loaded = self.load()
        self.manager.set_units(loaded["units"])
        self._sync_timers()
        self.sup.settled_listeners.append(self._critical)
        self.sup.reap()  # children that exited before the handler was in place
        self.events.emit("daemon.started", f"vigil {os.getpid()} ready on {self.socket_path}"
                         + (" (system mode)" if self.system else ""))
        state = self._saved_state()
        if state is not None:
            reexec.restore(self, state)
            self.sup.reap()  # what exited while we were executing
            self.manager.drain()
        else:
            self._bind()
            adopted = adopt.take_back(self)  # before anything starts: never a second copy
            if adopted:
                self.manager.start(adopted)
            if not self.opts.no_autostart:
                self.manager.start(self._first_units())
        self.loop.run()
        while self.reexec and not self._reexec():
            self.reexec = self.loop.stopped = False
            self.loop.run()
        self.sup.reap()
        self.manager.drain()  # the last exits are settled and announced
        self.scopes.close()
        self.control.close()
        if self.remote is not None:
            self.remote.close()
        self.notify.close()
        if self.settings.cgroups is not None:
            self.settings.cgroups.remove_all()
        if self.system and self.ending is not None:
            self.events.close_file()  # an open log would keep its filesystem busy
            self.events.store = None
            self.store.close()
            for log in self.sup.streams.logs.values():
                log.close()
            os.close(self.lock_fd)  # the lock is writable: it too would keep / busy
            if self.hw_watchdog is not None:  # poweroff: disarmed; reboot: armed through it
                self.hw_watchdog.at_end(self.ending.value,
                                        self.opts.shutdown_timeout + self.opts.kill_grace)
            from vigil.system import shutdown
            shutdown.final(self.ending, self._boot_log, self.swaps,
                           grace=self.opts.kill_grace, overall=self.opts.shutdown_timeout)
        self.events.emit("daemon.exit", "vigil exiting")
        return 0

