"""`vigil run --units DIR -- CMD`: the container entrypoint with side services.

What tini and dumb-init do (reap every zombie, forward signals, exit with
CMD's status) plus side services from a units directory, started with
readiness before CMD and stopped in reverse order after it. When CMD has
exited, every remaining descendant gets SIGTERM and a grace period before
SIGKILL, and vigil exits only when none is left, so nothing is cut off
mid-write.

The options are read by vigil/entry.py; without side services vigil/tini.py
runs CMD and the daemon is never loaded. Here the daemon runs the side
services on a control socket of this invocation's own.
"""

from __future__ import annotations

import enum
import os
import shutil
import signal
import sys
import tempfile

from vigil import tini
from vigil.base import execreport
from vigil.base.rundir import private_dir
from vigil.daemon import Daemon
from vigil.daemon import parse_args as daemon_args
from vigil.entry import RunOptions
from vigil.runtime.loop import Timer
from vigil.base.printable import printable
from vigil.engine.states import ExitInfo, Instance, State
from vigil.engine.supervisor import Proc

# Not forwarded: what the kernel sends about vigil's own faults, SIGCHLD
# (vigil's business), and the terminal stop signals vigil ignores itself.
NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGFPE, signal.SIGILL,
                 signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS,
                 signal.SIGTTIN, signal.SIGTTOU}
FORWARDED = [s for s in signal.valid_signals() if isinstance(s, signal.Signals)
             and s not in NOT_FORWARDED and s < signal.SIGRTMIN]
# ...and the real-time ones, as tini forwards them
REAL_TIME = list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))


class Phase(enum.Enum):
    SIDE_STARTING = "side services starting"
    RUNNING = "running the command"
    SIDE_STOPPING = "stopping side services"
    DRAINING = "waiting for the remaining processes"
    DONE = "done"


# The only moves the container makes, in order; anything else is a bug.
TRANSITIONS = {
    Phase.SIDE_STARTING: {Phase.RUNNING, Phase.SIDE_STOPPING},
    Phase.RUNNING: {Phase.SIDE_STOPPING},
    Phase.SIDE_STOPPING: {Phase.DRAINING},
    Phase.DRAINING: {Phase.DONE},
    Phase.DONE: set(),
}


def private_socket() -> str | None:
    """A control socket of this invocation's own: a new directory under the
    first runtime directory that can be made (a read-only root still leaves
    a tmpfs), so two entrypoints, or one beside a per-user daemon, never
    share a socket or a lock. None: nowhere writable."""
    uid = os.getuid()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    bases = [os.path.join(runtime, "vigil")] if runtime else []
    for base in [*bases, f"/tmp/vigil-{uid}", f"/dev/shm/vigil-{uid}"]:
        try:
            private_dir(base)
            return os.path.join(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=base),
                                "control.sock")
        except OSError:
            continue
    return None


class Container:
    def __init__(self, opts: RunOptions, signals: tuple[int, int]) -> None:
        self.opts = opts
        self.signals = signals  # (blocked, ignored) as vigil was started: CMD's
        self.own_dir: str | None = None
        socket_path = opts.socket
        if socket_path is None:
            socket_path = private_socket()
            if socket_path is None:
                raise OSError("no writable runtime directory (tried $XDG_RUNTIME_DIR/vigil, "
                              "/tmp/vigil-UID, /dev/shm/vigil-UID); mount a tmpfs there or "
                              "give --socket")
            self.own_dir = os.path.dirname(socket_path)
        level = ["error", "warning", "info", "debug"][min(opts.verbosity, 3)]
        # vigil's lines and the side services' console output go to stderr:
        # CMD's stdout stays CMD's
        # side services only from --units, never the system path; no re-exec
        # (the entrypoint's own arguments are not the daemon's)
        units = [arg for path in opts.units for arg in ("--units", path)]
        try:
            self.daemon = Daemon(daemon_args(["--socket", socket_path, "--shutdown-timeout",
                                              str(opts.kill_timeout), "--console-level", level,
                                              "--console-fd", "2", *units]),
                                 can_reexec=False, warn_orphans=opts.warn_zombies)
        except BaseException:
            self.remove_own_dir()
            raise
        self.phase = Phase.SIDE_STARTING
        self.cmd: Proc | None = None
        self.status = 0
        self.critical_failure = False
        self.kill_timer: Timer | None = None

    # -- phases -----------------------------------------------------------
    def move(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise RuntimeError(f"container: {self.phase.value} -> {phase.value} is not a move")
        self.daemon.events.emit("container.phase", f"container: {phase.value}", "debug")
        self.phase = phase
        if phase is Phase.RUNNING:
            self._spawn_cmd()
        elif phase is Phase.SIDE_STOPPING:
            self._stop_side()
        elif phase is Phase.DRAINING:
            self._drain()
        elif phase is Phase.DONE:
            self.daemon.loop.stopped = True

    def _side_settled(self) -> bool:
        if self.phase is not Phase.SIDE_STARTING:
            return True
        m = self.daemon.manager
        if all(m.settled(n) is not None for n in m.goal | m.waiting):
            self.move(Phase.RUNNING)
            return True
        return False

    def _spawn_cmd(self) -> None:
        env = dict(os.environ)
        env["VIGIL_SOCKET"] = self.daemon.socket_path
        tty = 0 if tini.controlling_terminal(0) else -1
        loop = self.daemon.loop
        try:
            pid, report = tini.spawn_inherit(self.opts.command, env, tty, self.signals)
        except OSError as err:
            self._cannot_run(f"cannot start: {err}", 1)
            return
        self.cmd = Proc(pid, os.pidfd_open(pid), loop.clock(), 0.0, on_exit=self._cmd_exited,
                        report_fd=report)
        self.daemon.sup.procs[pid] = self.cmd
        loop.add_reader(report, self._exec_report)

    def _exec_report(self) -> None:
        """EOF: CMD is running. A failure: say why, and exit 127/126 as a shell would."""
        if self.cmd is None or self.cmd.report_fd < 0:
            return
        fd, self.cmd.report_fd = self.cmd.report_fd, -1
        self.daemon.loop.remove_reader(fd)
        failure = execreport.read(fd, tini.STEPS)
        if failure is not None:
            step, err = failure
            self.status = {2: 127, 13: 126}.get(err, 1)  # ENOENT, EACCES: as a shell says
            print(f"vigil: cannot run {self.opts.command[0]}: {step} failed: "
                  f"{os.strerror(err)}", file=sys.stderr)

    def _cannot_run(self, why: str, code: int) -> None:
        print(f"vigil: {self.opts.command[0]}: {why}", file=sys.stderr)
        self.status = code
        self.move(Phase.SIDE_STOPPING)

    def _cmd_exited(self, info: ExitInfo) -> None:
        self._exec_report()  # a failed exec is reported before its exit
        if self.kill_timer is not None:
            self.kill_timer.cancel()
        if not self.critical_failure and self.status == 0:  # else: already decided
            code = info.shell_status()
            self.status = self.opts.exit_map.get(code, code)
        self.daemon.events.emit("container.exit", f"{self.opts.command[0]} {info}; vigil will "
                                f"exit with {self.status}", "info", exit_code=info.code,
                                signal=info.signal)
        self.move(Phase.SIDE_STOPPING)

    def _stop_side(self) -> None:
        self.daemon.stop_all(lambda: self.move(Phase.DRAINING))

    def _drain(self) -> None:
        left = tini.descendants()
        if not left:
            self.move(Phase.DONE)
            return
        self.daemon.events.emit("container.drain", f"{len(left)} process(es) left: SIGTERM, "
                                f"then SIGKILL after {self.opts.kill_timeout:g}s", "info")
        for sig in (signal.SIGTERM, signal.SIGCONT):
            self._kill(left, sig)
        self.daemon.loop.call_later(self.opts.kill_timeout,
                                    lambda: self._kill(tini.descendants(), signal.SIGKILL))

    @staticmethod
    def _kill(pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    # -- events -----------------------------------------------------------
    def reaped(self) -> None:
        self.daemon.reap()
        if self.phase is Phase.DRAINING and not tini.descendants():
            self.move(Phase.DONE)

    def forward(self, sig: int) -> None:
        sig = self.opts.rewrite.get(sig, sig)
        if sig == 0:
            return
        if self.phase is Phase.SIDE_STARTING and sig in (signal.SIGTERM, signal.SIGINT,
                                                         signal.SIGQUIT, signal.SIGHUP):
            self.status = 128 + sig
            self.move(Phase.SIDE_STOPPING)
            return
        if self.phase is Phase.DRAINING or self.opts.all_descendants:
            self._kill(tini.descendants(), sig)
            return
        if self.cmd is None or self.phase is not Phase.RUNNING:
            return
        try:
            if self.opts.group:
                os.killpg(self.cmd.pid, sig)
            else:
                signal.pidfd_send_signal(self.cmd.pidfd, sig)
        except OSError:
            pass

    def settled(self, inst: Instance) -> None:
        """A side service settled: a critical one that failed ends the container."""
        unit = self.daemon.manager.units.get(inst.unit)
        if (unit is None or not unit.critical or inst.state not in (State.FAILED, State.FATAL)
                or self.phase in (Phase.SIDE_STOPPING, Phase.DRAINING, Phase.DONE)):
            return
        print(f"vigil: critical side service {inst.name} failed ({printable(inst.reason)}); "
              "ending the container", file=sys.stderr)
        self.critical_failure = True
        self.status = 1
        if self.phase is Phase.SIDE_STARTING:
            self.move(Phase.SIDE_STOPPING)
        elif self.cmd is not None:
            self.forward(signal.SIGTERM)
            self.kill_timer = self.daemon.loop.call_later(
                self.opts.kill_timeout, lambda: self._kill([self.cmd.pid] if self.cmd else [],
                                                           signal.SIGKILL))

    # -- running ----------------------------------------------------------
    def run(self) -> int:
        d = self.daemon
        # signals first: loading may fork the unit compiler, and a TERM that
        # comes meanwhile must end the container as it would CMD (128 + N)
        d.loop.on_signal(signal.SIGCHLD, lambda _s: self.reaped())
        for sig in [*FORWARDED, *REAL_TIME]:
            d.loop.on_signal(sig, self.forward)
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)  # giving CMD the terminal must not stop us
        d.manager.set_units(d.load()["units"])
        d.sup.settled_listeners.append(self.settled)
        d.sup.reap()
        d.manager.start(n for n, u in d.manager.units.items() if u.enabled)
        d.manager.watchers.append(self._side_settled)
        d.manager.drain()
        try:
            d.loop.run()
        finally:
            d.control.close()
            d.notify.close()
            self.remove_own_dir()
        return self.status

    def remove_own_dir(self) -> None:
        """This invocation's socket, lock and logs: nobody else's to keep."""
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)


def main(opts: RunOptions) -> int:
    """`vigil run --units DIR ... -- CMD`: the daemon for the side services."""
    signals = tini.inherited_signals()  # before the loop sets any handler
    tini.prepare(opts)
    try:
        container = Container(opts, signals)
    except (OSError, ValueError) as err:
        print(f"vigil: cannot start: {err}", file=sys.stderr)
        return 1
    return container.run()
