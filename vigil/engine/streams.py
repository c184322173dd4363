"""An instance's standard streams: the fds its process gets (a pty, a
terminal, /dev/null, a file, or pipes), and reading its output back into its
log, the tail, the console or a terminal that `vigilctl attach` can reach.

The read ends outlive a daemon-reexec: `capture` takes them back. A
terminal or file a unit names is opened with the unit's credentials
(vigil/kernel/asuser.py), as the service itself could.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable

from vigil.kernel.asuser import Creds, open_as
from vigil.runtime.events import Events
from vigil.engine.launch import LaunchError
from vigil.runtime.logstore import Store, record
from vigil.runtime.loop import Loop
from vigil.runtime.output import Capture, Console, Line, LogFile, Tail, Terminal
from vigil.engine.states import Instance
from vigil.kernel.syscalls import SpawnSpec
from vigil.model.unit import OutputKind


class Streams:
    def __init__(self, loop: Loop, events: Events, console: Console, tail: Tail,
                 log_dir: str) -> None:
        self.loop, self.events, self.console, self.tail = loop, events, console, tail
        self.log_dir = log_dir
        self.store = Store(log_dir)  # the daemon hands over its own (with limits, boots)
        self.logs: dict[str, LogFile] = {}
        self.terminals: dict[str, Terminal] = {}  # instances with console = "pty"
        self.captures: dict[int, tuple[str, str]] = {}  # open output fd -> (instance, stream)
        self.readers: dict[int, Callable[[], None]] = {}  # and what reads it
        # rules on the output (vigil/engine/logwatch.py): a sink for an instance, or None
        self.line_hook: Callable[[Instance], Callable[[Line], None] | None] = lambda i: None
        # syslog forwarding (vigil/runtime/syslog.py): a sink for a unit and instance, or None
        self.forward: Callable[[str, str], Callable[[Line], None] | None] | None = None

    def fds_of(self, name: str) -> list[tuple[str, int]]:
        """The instance's open output fds, as (stream, fd)."""
        return [(stream, fd) for fd, (owner, stream) in self.captures.items() if owner == name]

    def stdio(self, inst: Instance, spec: SpawnSpec, child_fds: list[int],
              reads: list[tuple[str, int]]) -> None:
        """Sets the child's fds 0-2 in `spec`; the ends the child gets go to
        `child_fds` (closed here after the fork), ours to read to `reads`."""
        svc = inst.service
        creds = Creds.of(spec)
        if svc.pty:
            master, slave = os.openpty()
            os.set_blocking(master, False)
            reads.append(("pty", master))
            child_fds.append(slave)
            spec.fd_in = spec.fd_out = spec.fd_err = slave
            spec.controlling_tty = True
        elif svc.tty:
            tty = open_as(creds, svc.tty, os.O_RDWR)
            child_fds.append(tty)
            spec.fd_in = spec.fd_out = spec.fd_err = tty
            spec.controlling_tty = True
        else:
            spec.fd_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            child_fds.append(spec.fd_in)
            spec.fd_out = self._output_fd(inst, "stdout", creds, child_fds, reads)
            spec.fd_err = self._output_fd(inst, "stderr", creds, child_fds, reads)

    def _output_fd(self, inst: Instance, stream: str, creds: Creds, child_fds: list[int],
                   reads: list[tuple[str, int]]) -> int:
        out = inst.service.stdout if stream == "stdout" else inst.service.stderr
        if out.kind is OutputKind.INHERIT:
            return 1 if stream == "stdout" else 2
        if out.kind is OutputKind.NULL:
            fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        elif out.kind is OutputKind.FILE:
            assert out.path is not None
            try:
                fd = open_as(creds, out.path,
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW)
            except OSError as err:
                raise LaunchError(f"{stream} {out.path}: {err.strerror}") from None
        else:
            read_fd, fd = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(read_fd, False)
            reads.append((stream, read_fd))
        child_fds.append(fd)
        return fd

    def capture(self, inst: Instance, stream: str, fd: int) -> None:
        """Reads one output fd of an instance into its log, tail and console
        (also used to take the fds back after a re-exec)."""
        self.captures[fd] = (inst.name, stream)
        svc = inst.service
        out = svc.stderr if stream == "stderr" else svc.stdout  # a pty is stdout
        sinks: list[Callable[[Line], None]] = [self.tail.add]
        if out.kind is OutputKind.LOG:
            log = self.logs[inst.name] = self.store.file(inst.name, svc.log_max_size,
                                                         svc.log_keep)
            sinks.append(_writer(log, self.events, inst, self.store))
        else:  # shown on the console, and kept in the store beside the log ("+": no unit's)
            sinks.append(self.console.service_line)
            kept = self.store.file(inst.name + "+console", svc.log_max_size, svc.log_keep)
            sinks.append(_writer(kept, self.events, inst, self.store))
        rules = self.line_hook(inst)
        if rules is not None:
            sinks.append(rules)
        forward = self.forward(inst.unit, inst.name) if self.forward is not None else None
        if forward is not None:
            sinks.append(forward)
        on_raw = None
        if stream == "pty":
            terminal = self.terminals[inst.name] = Terminal(fd)
            on_raw = terminal.feed
        capture = Capture(fd, inst.unit, inst.name, stream, sinks, on_raw, lambda: inst.pid)

        def readable() -> None:
            if not capture.read():
                self.loop.remove_reader(fd)
                self.captures.pop(fd, None)
                self.readers.pop(fd, None)
                os.close(fd)
        self.readers[fd] = readable
        self.loop.add_reader(fd, readable)

    def drain(self, name: str) -> None:
        """Reads what an instance's pipes hold now that its process has ended,
        so its last lines reach the log and the tail (and the failure event
        that quotes them) before its exit is judged. Bounded: a leftover
        that keeps writing is read by the loop as before."""
        for fd in [fd for fd, (owner, _) in self.captures.items() if owner == name]:
            for _ in range(64):  # 64 reads of up to 64 KiB
                if fd not in self.readers or not select.select([fd], [], [], 0)[0]:
                    break
                self.readers[fd]()


def _writer(log: LogFile, events: Events, inst: Instance,
            store: Store) -> Callable[[Line], None]:
    """Writes a line to the log; says so once when lines start being dropped,
    and once when writing works again."""
    def write(line: Line) -> None:
        store.tick()
        was = log.failing
        if log.write(record(line.time, line.mono, line.unit, line.instance, line.stream,
                            line.pid, line.text)):
            if was:
                log.failing = ""
                events.emit("log.recovered", f"log of {inst.name} writable again; "
                            f"{log.dropped} line(s) dropped so far", "info", unit=inst.unit)
        elif not was:
            events.emit("log.dropping", f"log of {inst.name}: {log.failing}; dropping lines "
                        "(the service runs on)", "warning", unit=inst.unit)
    return write
