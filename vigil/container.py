"""`vigil run -- CMD`: vigil as a container's entrypoint.

What tini and dumb-init do (reap every zombie, forward signals, exit with
CMD's status) plus side services from a units directory, started with
readiness before CMD and stopped in reverse order after it. When CMD has
exited, every remaining descendant gets SIGTERM and a grace period before
SIGKILL, and vigil exits only when none is left, so nothing is cut off
mid-write.

tini's and dumb-init's flags are accepted with their meaning, so switching
is a change of the entrypoint line; invoked under the name `dumb-init`,
signals go to CMD's process group by default, as dumb-init does.
"""

from __future__ import annotations

import argparse
import enum
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil import signames, syscalls
from vigil.daemon import Daemon, become_subreaper
from vigil.daemon import parse_args as daemon_args
from vigil.launch import DEFAULT_PATH
from vigil.loader import Loader
from vigil.loop import Timer
from vigil.printable import printable
from vigil.protocol import socket_candidates
from vigil.states import ExitInfo, Instance, State
from vigil.supervisor import Proc

# Not forwarded: what the kernel sends about vigil's own faults, SIGCHLD
# (vigil's business), and the terminal stop signals vigil ignores itself.
NOT_FORWARDED = {signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGFPE, signal.SIGILL,
                 signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS,
                 signal.SIGTTIN, signal.SIGTTOU}
FORWARDED = [s for s in signal.valid_signals() if isinstance(s, signal.Signals)
             and s not in NOT_FORWARDED and s < signal.SIGRTMIN]


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


@dataclass
class RunOptions:
    command: list[str]
    units: list[str] = field(default_factory=list)
    group: bool = False
    all_descendants: bool = False
    kill_timeout: float = 10.0
    exit_map: dict[int, int] = field(default_factory=dict)
    rewrite: dict[int, int] = field(default_factory=dict)
    verbosity: int = 0
    warn_zombies: bool = False
    parent_death_signal: int | None = None
    quiet_subreaper: bool = False
    socket: str | None = None


def _signal(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return signames.number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a signal") from None


def _pair(text: str) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FROM:TO")
    return _signal(a) if not a.isdigit() else int(a), _signal(b) if not b.isdigit() else int(b)


def _code_pair(text: str) -> tuple[int, int]:
    a, sep, b = text.partition(":")
    if not (sep and a.isdigit() and b.isdigit() and int(a) < 256 and int(b) < 256):
        raise argparse.ArgumentTypeError(f"{text!r}: expected CODE:NEW, both 0..255")
    return int(a), int(b)


def parse(argv: Sequence[str], prog: str = "vigil run") -> RunOptions:
    dumb_init = os.path.basename(prog) == "dumb-init"
    p = argparse.ArgumentParser(prog=prog, description="Run CMD as a container's main "
                                "process: reap zombies, forward signals, pass its status on.")
    p.add_argument("--units", action="append", default=[], metavar="DIR",
                   help="side services to start (with readiness) before CMD")
    p.add_argument("-g", "--group", action="store_true",
                   help="forward signals to CMD's process group (tini -g)")
    p.add_argument("--all", dest="all_descendants", action="store_true",
                   help="forward signals to every descendant")
    p.add_argument("-c", "--single-child", action="store_true",
                   help="forward to CMD alone (dumb-init -c; the default unless run as dumb-init)")
    p.add_argument("--kill-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="after CMD exits: grace between SIGTERM and SIGKILL of what is left")
    p.add_argument("-e", dest="expect", action="append", type=int, default=[], metavar="CODE",
                   help="treat this exit code of CMD as 0 (tini -e; repeatable)")
    p.add_argument("--exit-map", action="append", type=_code_pair, default=[],
                   metavar="CODE:NEW", help="exit with NEW when CMD exits with CODE")
    p.add_argument("-r", "--rewrite", action="append", type=_pair, default=[], metavar="S:R",
                   help="forward signal S as R; R=0 drops it (dumb-init --rewrite)")
    p.add_argument("-p", dest="pdeathsig", type=_signal, metavar="SIGNAL",
                   help="signal vigil gets when its parent dies (tini -p)")
    p.add_argument("-s", dest="subreaper", action="store_true",
                   help="register as child subreaper (always done; silences the notice)")
    p.add_argument("-w", dest="warn", action="store_true", help="warn on every reaped zombie")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output (repeat)")
    p.add_argument("--socket", help="control socket (default: the first writable of "
                   "$XDG_RUNTIME_DIR/vigil, /tmp/vigil-UID, /dev/shm/vigil-UID)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    opts = p.parse_args(argv)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        p.error("name the command to run: vigil run [OPTIONS] -- CMD [ARGS...]")
    env = os.environ
    group = opts.group or env.get("TINI_KILL_PROCESS_GROUP", "") not in ("", "0")
    if dumb_init:
        group = not opts.single_child and env.get("DUMB_INIT_SETSID", "1") != "0"
    verbosity = opts.verbose + (int(env["TINI_VERBOSITY"]) - 1
                                if env.get("TINI_VERBOSITY", "").isdigit() else 0)
    exit_map = {code: 0 for code in opts.expect} | dict(opts.exit_map)
    return RunOptions(command=command, units=opts.units, group=group and not opts.single_child,
                      all_descendants=opts.all_descendants, kill_timeout=opts.kill_timeout,
                      exit_map=exit_map, rewrite=dict(opts.rewrite), verbosity=verbosity,
                      warn_zombies=opts.warn, parent_death_signal=opts.pdeathsig,
                      quiet_subreaper=opts.subreaper or "TINI_SUBREAPER" in env,
                      socket=opts.socket)


def choose_socket() -> str | None:
    """The first candidate whose directory can be made: a read-only root
    still leaves a tmpfs. None: no control socket, and vigil goes on."""
    for path in socket_candidates(False):
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            if os.access(directory, os.W_OK):
                return path
        except OSError:
            continue
    return None


def _controlling_terminal(fd: int) -> bool:
    """Whether fd is our controlling terminal, so CMD can be its foreground."""
    try:
        os.tcgetpgrp(fd)
        return True
    except OSError:
        return False


def descendants() -> list[int]:
    """Every process below vigil, from /proc's children lists."""
    found: list[int] = []
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


class Container:
    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        socket_path = opts.socket or choose_socket()
        if socket_path is None:
            tried = ", ".join(os.path.dirname(p) for p in socket_candidates(False))
            raise OSError(f"no writable runtime directory (tried {tried}); "
                          "mount a tmpfs there or give --socket")
        level = ["warning", "info", "debug"][min(opts.verbosity, 2)]
        self.daemon = Daemon(daemon_args(["--socket", socket_path, "--shutdown-timeout",
                                          str(opts.kill_timeout), "--console-level", level]))
        d = self.daemon
        d.loader = Loader(opts.units)  # side services only from --units, never the system path
        d.can_reexec = False
        if opts.warn_zombies:
            d.events.quiet_codes.discard("orphan.reaped")
            d.sup.reaper.orphan_severity = "warning"
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
        tty = 0 if _controlling_terminal(0) else -1
        spec = syscalls.SpawnSpec(argv=self.opts.command, env=env,
                                  search_path=env.get("PATH", DEFAULT_PATH), fd_in=0, fd_out=1,
                                  fd_err=2, new_session=False, new_pgroup=True, fg_tty=tty)
        loop = self.daemon.loop
        try:
            pid, report = syscalls.spawn(spec)
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
        failure = syscalls.read_report(fd)
        if failure is not None:
            import errno
            self.status = {errno.ENOENT: 127, errno.EACCES: 126}.get(failure.errno, 1)
            print(f"vigil: cannot run {self.opts.command[0]}: {failure}", file=sys.stderr)

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
        left = descendants()
        if not left:
            self.move(Phase.DONE)
            return
        self.daemon.events.emit("container.drain", f"{len(left)} process(es) left: SIGTERM, "
                                f"then SIGKILL after {self.opts.kill_timeout:g}s", "info")
        for sig in (signal.SIGTERM, signal.SIGCONT):
            self._kill(left, sig)
        self.daemon.loop.call_later(self.opts.kill_timeout,
                                    lambda: self._kill(descendants(), signal.SIGKILL))

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
        if self.phase is Phase.DRAINING and not descendants():
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
            self._kill(descendants(), sig)
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

    def settled(self, inst: Instance, chained: object) -> None:
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
        d.manager.set_units(d.load()["units"])
        d.loop.on_signal(signal.SIGCHLD, lambda _s: self.reaped())
        for sig in FORWARDED:
            d.loop.on_signal(sig, self.forward)
        for sig in (signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)  # giving CMD the terminal must not stop us
        d.sup.settled_listeners.append(lambda inst: self.settled(inst, None))
        d.sup.reap()
        d.manager.start(n for n, u in d.manager.units.items() if u.enabled)
        d.manager.watchers.append(self._side_settled)
        d.manager.drain()
        d.loop.run()
        d.control.close()
        d.notify.close()
        return self.status


def main(argv: Sequence[str], prog: str = "vigil run") -> int:
    opts = parse(argv, prog)
    if opts.parent_death_signal is not None:
        import prctl
        prctl.set_pdeathsig(opts.parent_death_signal)
    if os.getpid() != 1:
        if not become_subreaper():
            print("vigil: could not become a child subreaper; orphans go to PID 1",
                  file=sys.stderr)
        elif not opts.quiet_subreaper and opts.verbosity >= 0:
            print("vigil: not PID 1; registered as child subreaper, so orphans of "
                  f"{opts.command[0]} come back to vigil", file=sys.stderr)
    try:
        container = Container(opts)
    except (OSError, ValueError) as err:
        print(f"vigil: cannot start: {err}", file=sys.stderr)
        return 1
    return container.run()
