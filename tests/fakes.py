"""Fakes for the process-free engine tests (test_manager.py, test_engine_pure.py).

`FakeCalls` stands in for vigil/kernel/proc.py, the seam every process call of the
supervisor goes through. `FakeSupervisor` is the real Supervisor's queue
(`send`, `pump`, `ensure_instances`, `of_unit`: inherited, not copied) with
only the actions replaced: SPAWN records that a process would start,
SIGNAL_STOP that it was signalled, ANNOUNCE tells the settled listeners.
Its `FakeLoop` has a clock the test sets and runs the loop's `after_each`
hooks (the manager's drain) after each callback, as vigil/runtime/loop.py does.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from vigil.runtime.events import Events
from vigil.kernel.proc import ProcessCalls
from vigil.engine.states import Act, Action, Event, ExitInfo, Instance
from vigil.engine.supervisor import Supervisor
from vigil.kernel.syscalls import ExecFailure, SpawnSpec


class FakeCalls(ProcessCalls):
    """Spawns nothing: hands out pids, records signals, and reports the
    exits a test makes (each pid leads its own group, as a real one does)."""

    def __init__(self) -> None:
        self.next_pid = 1000
        self.spawned: list[tuple[int, list[str]]] = []
        self.signals: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []
        self.live: set[int] = set()
        self.dies_on: set[int] = {signal.SIGTERM, signal.SIGKILL}
        self.pidfd_error: OSError | None = None
        self.exec_failure: ExecFailure | None = None

    def spawn(self, spec: SpawnSpec) -> tuple[int, int]:
        self.next_pid += 1
        self.spawned.append((self.next_pid, list(spec.argv)))
        self.live.add(self.next_pid)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.close(write_end)  # EOF at once: the exec "succeeded"
        return self.next_pid, read_end

    def read_report(self, fd: int) -> ExecFailure | None:
        os.close(fd)
        return self.exec_failure

    def pidfd_open(self, pid: int) -> int:
        if self.pidfd_error is not None:
            raise self.pidfd_error
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # closed like a pidfd

    def pidfd_send_signal(self, pidfd: int, signum: int) -> None:
        raise AssertionError("every fake process leads its group: signalled by killpg")

    def killpg(self, pgid: int, signum: int) -> None:
        if pgid not in self.live:
            raise ProcessLookupError(pgid)
        self.signals.append((pgid, signum))
        if signum in self.dies_on:
            self.die(pgid, signum)

    def getpgid(self, pid: int) -> int:
        return pid

    def die(self, pid: int, status: int) -> None:
        """Ends a process: a wait status (exit code << 8, or a signal)."""
        self.live.discard(pid)
        self.exits.append((pid, status))

    def wait_any(self) -> tuple[int, int, Any]:
        if self.exits:
            pid, status = self.exits.pop(0)
            return pid, status, SimpleNamespace(ru_utime=0.0, ru_stime=0.0, ru_maxrss=0)
        if not self.live:
            raise ChildProcessError
        return 0, 0, None


class FakeLoop:
    """A clock the test sets, and the loop's after-each hooks."""

    def __init__(self) -> None:
        self.now = 100.0
        self.after_each: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def callback(self, fn: Callable[[], None]) -> None:
        """Runs `fn` as the loop runs a callback: then every after-each hook."""
        fn()
        for hook in self.after_each:
            hook()


class FakeSupervisor(Supervisor):
    """The real queue and pump; the actions only recorded (see the module doc)."""

    def __init__(self, events: Events | None = None) -> None:  # no super(): no process parts
        self.loop = FakeLoop()  # type: ignore[assignment]
        self.events = events if events is not None else Events(None)
        self.instances: dict[str, Instance] = {}
        self.queue: deque[tuple[Instance, Any]] = deque()
        self.hook_env: dict[str, dict[str, str]] = {}
        self.hook_queue: dict[str, list[dict[str, str]]] = {}
        self.settled_listeners: list[Callable[[Instance], None]] = []
        self.spawned: list[str] = []  # instance names, in spawn order
        self.signalled: list[str] = []

    def _do(self, inst: Instance, action: Action) -> None:
        if action.kind is Act.SPAWN:
            inst.pid = 1000 + len(self.spawned)
            self.spawned.append(inst.name)
        elif action.kind is Act.SIGNAL_STOP:
            self.signalled.append(inst.name)
        elif action.kind is Act.ANNOUNCE:
            for listener in self.settled_listeners:
                listener(inst)

    # -- the test plays the processes: each news is a loop callback ---------------
    def up(self, name: str) -> None:
        self.loop.callback(lambda: self.send(self.instances[name], Event.EXEC_OK))

    def exec_failed(self, name: str) -> None:
        self.loop.callback(lambda: self.send(self.instances[name], Event.EXEC_FAILED,
                                             detail=f"{name}: exec failed"))

    def exit(self, name: str, code: int | None = 0, sig: int | None = None) -> None:
        self.loop.callback(lambda: self.send(self.instances[name], Event.EXIT,
                                             exit=ExitInfo(code, sig, False, 100.0)))
