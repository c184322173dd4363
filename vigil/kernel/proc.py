"""The process syscalls of the engine, in one object tests replace.

The supervisor, its spawner and the reaper make every process call through
a `ProcessCalls` they are given: fork and exec (the C child of
`_sys_build.py`), the exec report, pidfds, signals to groups and the one
`wait4`. `tests/test_engine_pure.py` hands them a fake that spawns nothing,
so the state machine, backoff and timeouts run with no process at all.
"""

from __future__ import annotations

import os
import signal

from vigil.kernel import syscalls
from vigil.kernel.syscalls import ExecFailure, SpawnSpec

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from resource import struct_rusage


class ProcessCalls:
    """The real calls; each raises OSError as the kernel says."""

    def spawn(self, spec: SpawnSpec) -> tuple[int, int]:
        """Forks and execs; returns the pid and the exec report's read end."""
        return syscalls.spawn(spec)

    def read_report(self, fd: int) -> ExecFailure | None:
        """The exec report (closes fd): None when exec succeeded."""
        return syscalls.read_report(fd)

    def pidfd_open(self, pid: int) -> int:
        return os.pidfd_open(pid)

    def pidfd_send_signal(self, pidfd: int, signum: int) -> None:
        signal.pidfd_send_signal(pidfd, signum)

    def killpg(self, pgid: int, signum: int) -> None:
        os.killpg(pgid, signum)

    def getpgid(self, pid: int) -> int:
        return os.getpgid(pid)

    def wait_any(self) -> tuple[int, int, struct_rusage | None]:
        """One exited child (pid 0 if none has exited yet), without blocking;
        ChildProcessError when there are no children."""
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        return pid, status, usage


REAL = ProcessCalls()


def random_jitter() -> float:
    """0..1 from the kernel, for the backoff's jitter: no Random object (and
    its import) in PID 1; the supervisor takes another source in tests."""
    return int.from_bytes(os.urandom(2), "little") / 0xFFFF
