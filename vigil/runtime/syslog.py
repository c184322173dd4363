"""Forwarding the units' lines to syslog (RFC 5424): the local /dev/log
datagram socket, or UDP or TCP to a collector (`--syslog`).

The daemon never waits for a receiver: the socket is non-blocking, what
cannot be sent at once waits in a bounded queue that is written when the
socket is writable, and when the queue is full, or the receiver is gone,
lines are dropped and counted, and an event says so (once per episode).
A TCP receiver that went away is dialled again, at most every 5 seconds.
"""

from __future__ import annotations

import errno
import socket
import time
from collections import deque
from collections.abc import Callable

from vigil.runtime.events import Events
from vigil.runtime.logstore import wall_stamp
from vigil.runtime.loop import Loop
from vigil.runtime.output import Line

QUEUE = 1000  # messages waiting for a slow receiver
REDIAL = 5.0
FACILITY = 3  # daemon
SEVERITY = {"stdout": 6, "pty": 6, "stderr": 4}  # info, warning
MAX_MESSAGE = 8192


def parse_target(text: str) -> tuple[str, str | tuple[str, int]]:
    """--syslog: local (/dev/log), unix:PATH, udp:HOST:PORT or tcp:HOST:PORT."""
    if text == "local":
        return "unix", "/dev/log"
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest.startswith("/"):
        return "unix", rest
    host, _, port = rest.rpartition(":")
    if kind in ("udp", "tcp") and host and port.isdigit() and 0 < int(port) < 65536:
        return kind, (host.strip("[]"), int(port))
    raise ValueError(f"--syslog {text!r}: local, unix:PATH, udp:HOST:PORT or tcp:HOST:PORT")


def message(line: Line, hostname: str) -> bytes:
    """<PRI>1 TIMESTAMP HOST APP PROCID MSGID - TEXT: the app is the
    instance, the msgid the stream."""
    pri = FACILITY * 8 + SEVERITY.get(line.stream, 6)
    app = (line.instance or "-")[:48]
    head = f"<{pri}>1 {wall_stamp(line.time)} {hostname or '-'} {app} {line.pid or '-'} " \
           f"{line.stream} - "
    return (head + line.text).encode("utf-8", "replace")[:MAX_MESSAGE]


class Forwarder:
    """One receiver; `send` is a sink for Capture (vigil/runtime/output.py)."""

    def __init__(self, loop: Loop, events: Events, target: str, hostname: str,
                 units: list[str] | None = None) -> None:
        self.loop, self.events, self.hostname = loop, events, hostname
        self.kind, self.address = parse_target(target)
        self.target = target
        self.units = units or []
        self.queue: deque[bytes] = deque()
        self.sock: socket.socket | None = None
        self.connected = False
        self.dialled = -REDIAL
        self.dropped = 0
        self.dropping = False
        self.writing = False

    def wants(self, unit: str, instance: str) -> bool:
        if not self.units:
            return True
        from fnmatch import fnmatchcase  # only with --syslog-unit: PID 1 keeps re out
        return any(fnmatchcase(unit, p) or fnmatchcase(instance, p) for p in self.units)

    def sink(self, unit: str, instance: str) -> Callable[[Line], None] | None:
        return self.send if self.wants(unit, instance) else None

    def send(self, line: Line) -> None:
        data = message(line, self.hostname)
        if self.kind == "tcp":
            data = f"{len(data)} ".encode() + data  # octet counting, RFC 6587
        if len(self.queue) >= QUEUE:
            self.dropped += 1
            self._say("the receiver is slow: its queue is full")
            return
        self.queue.append(data)
        self._flush()

    def _open(self) -> bool:
        if self.sock is not None:
            return True
        now = time.monotonic()
        if now - self.dialled < REDIAL:
            return False
        self.dialled = now
        family = socket.AF_UNIX if self.kind == "unix" else (
            socket.AF_INET6 if ":" in str(self.address[0]) else socket.AF_INET)
        kind = socket.SOCK_STREAM if self.kind == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.address)
            self.connected = True
        except BlockingIOError:  # a TCP connect under way: writable when done
            self.connected = False
        except OSError as err:
            sock.close()
            self._say(f"{self.target}: {err.strerror or err}")
            return False
        self.sock = sock
        return True

    def _flush(self) -> None:
        """Sends what waits, as far as the socket takes it now."""
        if not self._open():
            self._drop_queue()
            return
        assert self.sock is not None
        while self.queue:
            data = self.queue[0]
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                self._want_writable()
                return
            except OSError as err:
                self._broken(err)
                return
            if sent < len(data):  # TCP took part of it: the rest goes first next time
                self.queue[0] = data[sent:]
                self._want_writable()
                return
            self.queue.popleft()
        if self.dropping:
            self.dropping = False
            self.events.emit("log.forwarding", f"syslog {self.target} takes lines again; "
                             f"{self.dropped} dropped so far", "info")
        self._writable_done()

    def _want_writable(self) -> None:
        if not self.writing and self.sock is not None:
            self.writing = True
            self.loop.add_writer(self.sock.fileno(), self._flush)

    def _writable_done(self) -> None:
        if self.writing and self.sock is not None:
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())

    def _broken(self, err: OSError) -> None:
        """The receiver is gone (refused, reset): drop what waits, dial later."""
        self._writable_done()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if err.errno == errno.ECONNREFUSED and self.kind == "udp":
            self.dialled = -REDIAL  # a datagram receiver may be back at any time
        self._say(f"{self.target}: {err.strerror or err}")
        self._drop_queue()

    def _drop_queue(self) -> None:
        self.dropped += len(self.queue)
        self.queue.clear()

    def _say(self, why: str) -> None:
        """Once per episode of drops: an event (the count is in the next one)."""
        if not self.dropping:
            self.dropping = True
            self.events.emit("log.forwarding", f"syslog forwarding drops lines: {why} "
                             "(the services run on)", "warning")

    def close(self) -> None:
        self._writable_done()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
