"""Service output: pipes read by the loop, split into lines, written to a
rotated log file per instance, kept in an in-memory tail, and optionally
echoed to the console with the time and the unit name.

A full disk or a broken log file never stops a service: lines that cannot
be written are counted as dropped and reported.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from vigil.base.records import dataclass

from vigil.base.printable import printable

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

MAX_LINE = 64 * 1024  # a longer line is cut into pieces of this size
TAIL_LINES = 2000


@dataclass(frozen=True)
class Line:
    time: float  # wall clock, for display only
    unit: str
    instance: str
    stream: str
    text: str
    mono: float = 0.0  # CLOCK_MONOTONIC when read: the order within a boot
    pid: int | None = None  # the instance's main pid when read


class LogFile:
    """Appends to NAME.log; at max_size renames it to NAME.log.1, shifting
    older ones up to NAME.log.KEEP, and starts afresh."""

    def __init__(self, path: str, max_size: int, keep: int) -> None:
        self.path, self.max_size, self.keep = path, max_size, keep
        self.fd = -1
        self.size = 0
        self.dropped = 0
        self.failing = ""  # why the last write failed; "" while writes succeed
        self.rotated: Callable[[], None] | None = None  # the store applies its limits

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self.fd = os.open(self.path, flags, 0o640)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self) -> None:
        self.close()
        if self.keep == 0:
            os.unlink(self.path)
            return
        for n in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{n}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{n + 1}")
        os.replace(self.path, f"{self.path}.1")

    def write(self, data: bytes) -> bool:
        try:
            if self.fd < 0:
                self._open()
            if self.size and self.size + len(data) > self.max_size:
                self._rotate()
                self._open()
                if self.rotated is not None:
                    self.rotated()
            written = os.write(self.fd, data)
            self.size += written
            if written != len(data):
                raise OSError(28, "No space left on device (a short write)")
            return True
        except OSError as err:
            self.dropped += 1
            self.failing = err.strerror or str(err)
            self.close()  # reopen next time: the disk may have room again
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Tail:
    """The last lines of every unit, and who is following them."""

    def __init__(self, size: int = TAIL_LINES) -> None:
        self.size = size
        self.lines: dict[str, deque[Line]] = {}
        self.followers: list[Callable[[Line], None]] = []

    def add(self, line: Line) -> None:
        self.lines.setdefault(line.unit, deque(maxlen=self.size)).append(line)
        for follower in list(self.followers):
            follower(line)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {unit: [line.__dict__ for line in lines] for unit, lines in self.lines.items()}

    def restore(self, saved: dict[str, list[dict[str, Any]]]) -> None:
        for unit, lines in saved.items():
            for line in lines:
                self.lines.setdefault(unit, deque(maxlen=self.size)).append(Line(**line))

    def last(self, unit: str, count: int) -> list[str]:
        """The unit's last lines of output, for a failure's context."""
        lines = self.lines.get(unit, ())
        return [line.text for line in list(lines)[-count:]]

    def get(self, units: list[str] | None = None) -> list[Line]:
        chosen = self.lines if not units else {u: self.lines.get(u, deque()) for u in units}
        merged = [line for lines in chosen.values() for line in lines]
        merged.sort(key=lambda line: line.time)
        return merged


class Console:
    """The daemon's own terminal; writes never block the loop for long."""

    def __init__(self, fd: int = 1, color: bool | None = None) -> None:
        self.fd = fd
        self.color = os.isatty(fd) if color is None else color

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            pass  # a console that is gone or full loses the line, nothing more

    def service_line(self, line: Line) -> None:
        """A service's line always starts with the time and its instance, and
        cannot start another (no newline, no carriage return, no escape
        sequence), so vigil's own `[  OK  ]` lines cannot be forged."""
        stamp = time.strftime("%H:%M:%S", time.localtime(line.time))
        self.write(f"{stamp} {line.instance} | {printable(line.text)}\n")


class Capture:
    """Reads one pipe of one instance and hands out complete lines."""

    def __init__(self, fd: int, unit: str, instance: str, stream: str,
                 sinks: list[Callable[[Line], None]],
                 on_raw: Callable[[bytes], None] | None = None,
                 pid: Callable[[], int | None] = lambda: None) -> None:
        self.fd, self.unit, self.instance, self.stream = fd, unit, instance, stream
        self.sinks, self.on_raw, self.pid = sinks, on_raw, pid
        self.partial = b""

    def read(self) -> bool:
        """Reads what is there; returns False at end of file."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if self.on_raw is not None:
            self.on_raw(data)
        if not data:
            if self.partial:
                self._emit(self.partial)
                self.partial = b""
            return False
        buffer = self.partial + data.replace(b"\r\n", b"\n")
        *complete, self.partial = buffer.split(b"\n")
        for raw in complete:
            self._emit(raw)
        while len(self.partial) > MAX_LINE:
            self._emit(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        return True

    def _emit(self, raw: bytes) -> None:
        line = Line(time.time(), self.unit, self.instance, self.stream,
                    raw.decode("utf-8", "replace"), time.monotonic(), self.pid())
        for sink in self.sinks:
            sink(line)


class Terminal:
    """The master side of a console = "pty" unit: what `attach` reads and
    writes. Keeps the last bytes so a fresh attach sees the screen's end."""

    KEEP = 8192

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.recent = bytearray()
        self.followers: list[Callable[[bytes], None]] = []

    def feed(self, data: bytes) -> None:
        """Output from the service; b"" when it hung up."""
        if not data:
            self.fd = -1
        self.recent += data
        del self.recent[:-self.KEEP]
        for follower in list(self.followers):
            follower(data)

    def write(self, data: bytes) -> int:
        """Input for the service; what does not fit now is dropped, never waited for."""
        if self.fd < 0:
            return 0
        try:
            return os.write(self.fd, data)
        except OSError:
            return 0

    def resize(self, rows: int, cols: int) -> None:
        import fcntl
        import struct
        import termios
        if self.fd >= 0:
            fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
