"""The entrypoint without side services: tini's loop, in as little Python as
will do.

vigil blocks every signal it forwards (and SIGCHLD), waits for one with
sigwaitinfo, forwards it or reaps, and when CMD has exited gives what is
left SIGTERM, then SIGKILL after --kill-timeout, and exits when nothing is
left. No control socket, no files: two of these on one host never meet.
CMD starts with the signal mask and the ignored signals vigil was started
with, as tini's child does (`inherited_signals`, `spawn_inherit`).

Only built-in modules and vigil's compiled spawn are imported (see
vigil/entry.py for why).
"""

from __future__ import annotations

import os
import time

from vigil.base import execreport

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Iterable

    from vigil.entry import RunOptions
else:
    import _signal  # not `signal`: it imports enum, ~5 ms at every start; same functions

S = _signal
# Kept by vigil: what the kernel sends about its own faults, and the terminal
# stop signals it ignores while CMD holds the terminal (tini's list). KILL and
# STOP cannot be caught. Everything else, real-time signals included, is
# waited for: SIGCHLD to reap, the rest to forward.
OWN = frozenset({S.SIGFPE, S.SIGILL, S.SIGSEGV, S.SIGBUS, S.SIGABRT, S.SIGTRAP, S.SIGSYS,
                 S.SIGTTIN, S.SIGTTOU, S.SIGKILL, S.SIGSTOP})
WAITED = frozenset(s for s in S.valid_signals() if s not in OWN)
# CPython ignores these two before any of vigil's code runs, so how vigil was
# started with them is lost: CMD gets them at their default, as Python's own
# subprocess gives them.
PYTHON_IGNORES = frozenset({S.SIGPIPE, S.SIGXFSZ})
STEPS = {1: "setting the signal state", 13: "executing", 15: "taking the process group"}


def bits(signals: Iterable[int]) -> int:
    """A set of signal numbers as the C spawn takes it: bit N-1 for signal N."""
    return sum(1 << (s - 1) for s in signals if 0 < s <= 64)


def inherited_signals() -> tuple[int, int]:
    """(blocked, ignored): the signal state vigil was started with, for CMD.
    Call before vigil changes either."""
    blocked = S.pthread_sigmask(S.SIG_BLOCK, [])
    ignored = [s for s in S.valid_signals() if s not in PYTHON_IGNORES
               and s not in (S.SIGKILL, S.SIGSTOP) and S.getsignal(s) == S.SIG_IGN]
    return bits(blocked), bits(ignored)


def spawn_inherit(argv: list[str], env: dict[str, str] | None, fg_tty: int,
                  signals: tuple[int, int]) -> tuple[int, int]:
    """Starts CMD in its own process group with `signals` (blocked, ignored);
    env None: vigil's own. Returns (pid, report fd): the read end of a
    close-on-exec pipe, EOF once CMD runs, eight bytes if a step failed
    (`execreport.read`). Every fd vigil inherited without close-on-exec passes
    on, as with tini."""
    try:
        from vigil._spawn import spawn  # plain C (vigil/_spawn.c): cffi would cost ~0.9 ms
    except ImportError:
        raise OSError("vigil._spawn is not built: reinstall vigil (pip install .)") from None
    if env is None:
        pairs = [k + b"=" + v for k, v in os.environb.items()]
    else:
        pairs = [os.fsencode(f"{k}={v}") for k, v in env.items()]
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = spawn([os.fsencode(a) for a in argv], pairs, fg_tty, signals[0], signals[1],
                    write_end)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return pid, read_end


def controlling_terminal(fd: int) -> bool:
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
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            todo += kids
    return found


def kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _prctl(option: str, value: int) -> bool:
    try:
        from vigil import _spawn
        _spawn.set_process(getattr(_spawn, option), value)
        return True
    except (ImportError, OSError):
        return False


def say(opts: RunOptions, level: int, text: str) -> None:
    """To stderr only, never into CMD's stdout, if the verbosity asks for it."""
    if opts.verbosity >= level:
        try:
            os.write(2, f"vigil: {text}\n".encode(errors="replace"))
        except OSError:
            pass


def prepare(opts: RunOptions) -> None:
    """tini's order: parent-death signal, subreaper, then a word if vigil
    will not see its orphans."""
    if opts.parent_death_signal is not None:
        _prctl("PR_SET_PDEATHSIG", opts.parent_death_signal)
    if os.getpid() == 1:
        return
    if not _prctl("PR_SET_CHILD_SUBREAPER", 1):
        say(opts, 1, "could not become a child subreaper; orphans go to PID 1")
    elif not opts.quiet_subreaper:
        say(opts, 1, f"not PID 1; registered as child subreaper, so orphans of "
            f"{opts.command[0]} come back to vigil")


class Entrypoint:
    """CMD, its status once reaped, and the loop that waits for both."""

    def __init__(self, opts: RunOptions, pid: int, report_fd: int) -> None:
        self.opts, self.pid, self.report_fd = opts, pid, report_fd
        self.status: int | None = None

    def run(self) -> int:
        while self.status is None:
            self.handle(S.sigwait(WAITED))  # a number, not sigwaitinfo's record: reaping
            # thousands of orphans a second, every microsecond shows
        return self.drain()

    def handle(self, sig: int) -> None:
        if sig == S.SIGCHLD:
            self.reap()
            return
        sig = self.opts.rewrite.get(sig, sig)
        if sig == 0:
            return
        say(self.opts, 3, f"passing signal {S.strsignal(sig)}")
        if self.status is not None or self.opts.all_descendants:
            kill_all(descendants(), sig)
            return
        try:  # CMD is not reaped yet, so its pid is still its own
            if self.opts.group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            say(self.opts, 1, "the command was gone when forwarding a signal")
        except OSError:
            pass

    def reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.exited(wait_status)
            elif self.opts.warn_zombies:
                say(self.opts, 1, f"reaped zombie process with pid={pid}")
            elif self.opts.verbosity >= 3:  # not even formatted otherwise: thousands a second
                say(self.opts, 3, f"reaped pid {pid}")

    def exited(self, wait_status: int) -> None:
        code = os.waitstatus_to_exitcode(wait_status)
        status = 128 - code if code < 0 else code % 256
        failure = execreport.read(self.report_fd, STEPS)
        if failure is not None:
            self.cannot_run(*failure)
        else:
            say(self.opts, 2, f"{self.opts.command[0]} exited with status {status}")
            self.status = self.opts.exit_map.get(status, status)

    def cannot_run(self, step: str, err: int) -> None:
        status = {2: 127, 13: 126}.get(err, 1)  # ENOENT, EACCES: as a shell says
        say(self.opts, 0, f"cannot run {self.opts.command[0]}: {step} failed: "
            f"{os.strerror(err)}")
        self.status = self.opts.exit_map.get(status, status)

    def drain(self) -> int:
        """Nothing cut off: what is left gets SIGTERM, SIGKILL after the
        grace; vigil exits when none is left."""
        assert self.status is not None
        left = descendants()
        if left:
            say(self.opts, 2, f"{len(left)} process(es) left: SIGTERM, then SIGKILL after "
                f"{self.opts.kill_timeout:g}s")
            kill_all(left, S.SIGTERM)
            kill_all(left, S.SIGCONT)
        deadline = time.monotonic() + self.opts.kill_timeout
        killed = False
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and not killed:
                kill_all(left, S.SIGKILL)
                killed = True
            info = S.sigwaitinfo(WAITED) if killed else S.sigtimedwait(WAITED, remaining)
            if info is not None:
                self.handle(info.si_signo)
            left = descendants()
        return self.status


def run(opts: RunOptions) -> int:
    signals = inherited_signals()
    S.pthread_sigmask(S.SIG_BLOCK, WAITED)
    for sig in (S.SIGTTIN, S.SIGTTOU):
        S.signal(sig, S.SIG_IGN)  # giving CMD the terminal must not stop vigil
    prepare(opts)
    try:
        pid, report = spawn_inherit(opts.command, None, 0 if controlling_terminal(0) else -1,
                                    signals)
    except OSError as err:
        say(opts, 0, f"cannot start {opts.command[0]}: {err}")
        return 1
    say(opts, 2, f"spawned {opts.command[0]} with pid {pid}")
    return Entrypoint(opts, pid, report).run()
