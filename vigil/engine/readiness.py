"""Whether an instance is ready, and whether it stays healthy: its ready fd,
its readiness probe and its health checks (vigil/engine/probes.py), and the check
commands those run as the unit. Each result comes back to the state table
as an event (READY, READY_TIMEOUT's absence, HEALTH_FAILED), and only if it
is about the process that is still the instance's (its pid is unchanged).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable

from vigil.runtime.events import Events
from vigil.engine.launch import LaunchError
from vigil.runtime.loop import Loop
from vigil.engine.probes import Prober
from vigil.kernel.proc import ProcessCalls
from vigil.engine.reaper import Proc, Reaper
from vigil.engine.spawner import Spawner, for_instance
from vigil.base.exitstatus import ExitInfo
from vigil.engine.states import Event, Instance
from vigil.engine.logwatch import Watches
from vigil.model.unit import ProbeKind

Send = Callable[..., None]


class Readiness:
    def __init__(self, loop: Loop, events: Events, calls: ProcessCalls, spawner: Spawner,
                 reaper: Reaper, send: Send) -> None:
        self.loop, self.events, self.calls = loop, events, calls
        self.spawner, self.reaper, self.send = spawner, reaper, send
        self.probers: dict[str, Prober] = {}
        self.watches = Watches(loop, self._rule_event)  # rules on the output

    def cancel(self, name: str) -> None:
        """The instance changed state: its probes and checks stop."""
        prober = self.probers.pop(name, None)
        if prober:
            prober.cancel()
        self.watches.cancel(name)

    def watch_ready_fd(self, inst: Instance, pid: int, fd: int) -> None:
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                data = os.read(fd, 512)
            except BlockingIOError:
                return
            if b"\n" in data and inst.pid == pid:
                self.send(inst, Event.READY)
            if b"\n" in data or not data:
                self.loop.remove_reader(fd)
                os.close(fd)
        self.loop.add_reader(fd, readable)

    def _prober(self, inst: Instance) -> Prober:
        prober = self.probers.get(inst.name)
        if prober is None or prober.cancelled:
            check = functools.partial(self.exec_check, inst)
            prober = self.probers[inst.name] = Prober(self.loop, check)
        return prober

    def start_probe(self, inst: Instance) -> None:
        ready = inst.service.ready
        assert ready is not None
        if ready.probe.kind in (ProbeKind.NOTIFY, ProbeKind.FD, ProbeKind.LOG):
            return  # the service tells us itself (a line: vigil/engine/logwatch.py)
        probe = for_instance(ready.probe, inst)
        pid = inst.pid

        def on_ready() -> None:
            if inst.pid == pid:
                self.send(inst, Event.READY)
        self._prober(inst).until_ready(probe, ready.interval, on_ready)

    def _rule_event(self, inst: Instance, event: Event, detail: str) -> None:
        """A rule on the output fired (vigil/engine/logwatch.py)."""
        if event is Event.HEALTH_FAILED:
            self.events.emit("unit.unhealthy", f"{inst.name}: {detail}; restarting",
                             "warning", unit=inst.unit, pid=inst.pid)
        self.send(inst, event, detail=detail)

    def start_health(self, inst: Instance) -> None:
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
        self._prober(inst).health(for_instance(health.probe, inst), health.interval,
                                  health.timeout, health.retries, unhealthy)

    def exec_check(self, inst: Instance, argv: tuple[str, ...], timeout: float,
                   done: Callable[[bool, str], None]) -> None:
        """Runs a check command as the unit runs (user, cwd, environment and
        limits; not as root when the unit is not), output discarded, killed at
        the timeout."""
        try:
            pid = self.spawner.check(inst, argv)
            pidfd = self.calls.pidfd_open(pid)
        except (LaunchError, OSError) as err:
            done(False, str(err))
            return
        proc = Proc(pid, pidfd, self.loop.clock(), time.time())

        def kill() -> None:
            try:
                self.calls.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = self.loop.call_later(timeout, kill)

        def exited(info: ExitInfo) -> None:
            timer.cancel()
            done(info.code == 0, f"check {info!s}")
        proc.on_exit = exited
        self.reaper.procs[pid] = proc
