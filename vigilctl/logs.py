"""`vigilctl logs`: the log store read straight from its files, so it works
with the daemon down and on another machine's disk (`--directory`).

The store (vigil/runtime/logstore.py, docs/logs.md) holds one file chain per
instance and boot (NAME.log.KEEP .. NAME.log.1, NAME.log), each in time
order, every line beginning with its ISO wall stamp, which sorts as text.
A time range is found by binary search on those stamps, `-n N` reads
files backwards from their end: a query reads what it shows, not the
store. Only files of the caller or root that no one else may write are
read (vigilctl/trust.py): anyone else's line could lie about a unit.
"""

from __future__ import annotations

import calendar
import fnmatch
import heapq
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from vigil.base.printable import printable
from vigilctl import trust
from vigilctl.client import ClientError

EVENTS = "@events"
BOOT_FILE = "boot_id"
BLOCK = 1 << 16
Line = str  # a stored line, without its newline


def iso(moment: float) -> str:
    """The stored form of a moment, to compare stamps as text."""
    t = time.gmtime(int(moment))
    micros = min(int((moment - int(moment)) * 1e6), 999999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{micros:06d}Z"


def epoch(stamp: str) -> float:
    """A stored stamp back to seconds since 1970."""
    whole = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return whole + float("0" + stamp[19:-1])


def moment(text: str, now: float | None = None) -> float:
    """--since/--until: -1h or 1h (ago), +10m (ahead), -2w, now, today,
    yesterday, tomorrow, HH:MM[:SS], an ISO time or epoch seconds."""
    from vigilctl.show import UNITS, parse_since
    now = time.time() if now is None else now
    midnight = time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))
    days = {"today": 0, "yesterday": -1, "tomorrow": 1}
    if text == "now":
        return now
    if text in days:
        return midnight + days[text] * 86400
    m = re.fullmatch(r"([-+])(\d+(?:\.\d+)?)([smhdw])", text)
    if m:
        offset = float(m.group(2)) * {**UNITS, "w": 604800}[m.group(3)]
        return now + offset if m.group(1) == "+" else now - offset
    return parse_since(text, now)


class Store:
    """A store directory, checked from / down, and its boots."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        checked = trust.walk(directory, trust.owned)  # an O_PATH fd: it cannot be listed
        try:
            self.fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=checked)
        finally:
            os.close(checked)
        self.warned: set[str] = set()

    def boots(self) -> list[tuple[str, int]]:
        """(boot id, directory fd), the oldest first, this boot last."""
        found: list[tuple[str, str, int]] = []
        try:
            boots = self._open_dir(self.fd, "boots", "boots")
        except FileNotFoundError:
            boots = -1
        if boots >= 0:
            for name in sorted(os.listdir(boots)):
                try:
                    found.append((name, name.partition("-")[2] or name,
                                  self._open_dir(boots, name, f"boots/{name}")))
                except (OSError, ClientError) as err:
                    self.warn(f"boots/{name}", str(err))
            os.close(boots)
        current = self._read(self.fd, BOOT_FILE).split(" ")[0] or "current"
        return [(bid, fd) for _, bid, fd in found] + [(current, self.fd)]

    def _open_dir(self, parent: int, name: str, shown: str) -> int:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
        why = trust.owned(os.fstat(fd))
        if why:
            os.close(fd)
            raise trust.Untrusted(f"{self.directory}/{shown}: {why}")
        return fd

    def _read(self, parent: int, name: str) -> str:
        fd = self.open(parent, name)
        if fd < 0:
            return ""
        with os.fdopen(fd, errors="replace") as f:
            return f.read(4096).strip()

    def open(self, parent: int, name: str) -> int:
        """A regular file of ours, or -1 (an untrusted one is named on stderr)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=parent)
        except OSError as err:
            if not isinstance(err, FileNotFoundError):
                self.warn(name, err.strerror or str(err))
            return -1
        info = os.fstat(fd)
        why = "not a regular file" if not stat.S_ISREG(info.st_mode) else trust.owned(info)
        if why:
            os.close(fd)
            self.warn(name, why)
            return -1
        return fd

    def warn(self, name: str, why: str) -> None:
        if name not in self.warned:
            self.warned.add(name)
            print(f"vigilctl: skipping {printable(name)} in the log store: {why}",
                  file=sys.stderr)

    def chains(self, boot_fd: int, wanted: Callable[[str], bool]) -> dict[str, list[str]]:
        """Instance -> its files in this boot, the oldest first."""
        chains: dict[str, list[tuple[int, str]]] = {}
        for name in os.listdir(boot_fd):
            found = log_name(name)
            if found is not None and wanted(found[0]):
                chains.setdefault(found[0], []).append((-found[1], name))
        return {base: [n for _, n in sorted(files)] for base, files in chains.items()}


def log_name(name: str) -> tuple[str, int] | None:
    """(instance, rotation) of NAME.log (0) or NAME.log.N; None for another file.
    A name may hold ".log" itself (a unit `x.log` writes x.log.log)."""
    if name.endswith(".log"):
        return name[:-4], 0
    stem, dot, number = name.rpartition(".")
    if dot and number.isdigit() and stem.endswith(".log"):
        return stem[:-4], int(number)
    return None


class Segment:
    """One file, read by offsets: its stamps sort as text."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def _newline(self, pos: int) -> int:
        """Where the first newline at or after `pos` is (the end, if none)."""
        while pos < self.size:
            data = os.pread(self.fd, BLOCK, pos)
            if not data:
                break
            found = data.find(b"\n")
            if found >= 0:
                return pos + found
            pos += len(data)
        return self.size - 1

    def line_at(self, offset: int) -> tuple[int, int, str]:
        """The first line starting at or after `offset`: (its start, the
        next line's start, its stamp)."""
        if offset > 0:
            offset = self._newline(offset - 1) + 1
        if offset >= self.size:
            return self.size, self.size, ""
        head = os.pread(self.fd, 27, offset).decode("utf-8", "replace")
        return offset, self._newline(offset) + 1, head

    def seek(self, since: str) -> int:
        """The offset of the first line stamped at or after `since`: a
        binary search, a few reads of a few bytes per step."""
        low, high = 0, self.size
        while low < high:
            start, after, head = self.line_at((low + high) // 2)
            if start >= high:  # no line begins in the upper half: try the lowest one
                start, after, head = self.line_at(low)
            if head >= since:
                high = start
            else:
                low = after
        return low

    def forward(self, since: str, until: str) -> Iterator[Line]:
        offset = self.seek(since) if since else 0
        rest = b""
        while offset < self.size:
            data = os.pread(self.fd, min(BLOCK * 16, self.size - offset), offset)
            if not data:
                break
            offset += len(data)
            *complete, rest = (rest + data).split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace")
                if until and line[:27] > until:
                    return
                yield line

    def backward(self, end: int = -1) -> Iterator[Line]:
        """The lines before `end` (default: the end), the last first."""
        end, rest = self.size if end < 0 else end, b""
        while end > 0:
            start = max(0, end - BLOCK)
            data = os.pread(self.fd, end - start, start) + rest
            end = start
            first, *complete = data.split(b"\n")
            for raw in reversed(complete):
                if raw:
                    yield raw.decode("utf-8", "replace")
            rest = first
        if rest:
            yield rest.decode("utf-8", "replace")


def split(line: Line) -> list[str] | None:
    """wall, mono, unit, instance, stream, pid, text, or None if not a record."""
    parts = line.split(" ", 6)
    if len(parts) < 6 or len(parts[0]) != 27 or parts[0][10] != "T":
        return None
    return parts + [""] * (7 - len(parts))


class Query:
    """What `vigilctl logs` asked for, as tests on files and lines."""

    def __init__(self, opts: Any) -> None:
        self.patterns: list[str] = list(opts.units) + list(opts.more_units)
        self.since = iso(opts.since) if opts.since is not None else ""
        self.until = iso(opts.until) if opts.until is not None else ""
        try:
            self.grep = re.compile(opts.grep) if opts.grep else None
        except re.error as err:
            raise ValueError(f"-g/--grep {opts.grep!r}: {err}") from None
        chosen = {s for s, on in (("stdout", opts.stdout), ("stderr", opts.stderr)) if on}
        self.streams = chosen | ({"pty"} if "stdout" in chosen else set())
        self.events = bool(opts.events)

    def named(self, name: str) -> bool:
        return not self.patterns or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def file(self, base: str) -> bool:
        return self.events if base == EVENTS else True

    def keeps(self, parts: list[str]) -> bool:
        if parts[4] == "event":
            if not self.events or (self.patterns and not self.named(parts[2])):
                return False
        elif (self.streams and parts[4] not in self.streams) or not (
                self.named(parts[3]) or self.named(parts[2])):
            return False
        return self.grep is None or self.grep.search(parts[6]) is not None

    def in_range(self, stamp: str) -> bool:
        return (not self.since or stamp >= self.since) and (not self.until or stamp <= self.until)


def select(boots: list[tuple[str, int]], which: str | None) -> list[tuple[str, int]]:
    """-b: none (every boot), 0 or nothing (this one), -1 (the one before),
    1 (the first), or a boot id (or its beginning)."""
    if which is None:
        return boots
    if re.fullmatch(r"[-+]?\d+", which):
        n = int(which)
        at = len(boots) - 1 + n if n <= 0 else n - 1
        if 0 <= at < len(boots):
            return [boots[at]]
        raise ValueError(f"-b {which}: the store holds {len(boots)} boot(s) (--list-boots)")
    chosen = [b for b in boots if b[0].startswith(which.replace("-", ""))]
    if not chosen:
        raise ValueError(f"-b {which}: no such boot in the store (--list-boots)")
    return chosen[-1:]


def gather(store: Store, boots: list[tuple[str, int]], q: Query, count: int | None,
           ends: dict[str, list[int]]) -> Iterator[tuple[str, list[str]]]:
    """(boot, record) in time order: all of them, or the last `count`."""
    streams: list[Iterator[tuple[str, list[str]]]] = []
    for boot, fd in boots:
        for base, names in store.chains(fd, q.file).items():
            segments = []
            for name in names:
                file_fd = store.open(fd, name)
                if file_fd >= 0:
                    segments.append(Segment(file_fd))
                    if fd == store.fd and name == base + ".log":  # where -f goes on
                        ends[base] = [file_fd, os.fstat(file_fd).st_ino, segments[-1].size]
            if base != EVENTS and not (q.named(base) or q.named(_unit_of(segments))):
                for segment in segments:
                    os.close(segment.fd)
                ends.pop(base, None)
                continue
            if count is None:
                streams.append(_forward(boot, segments, q))
            else:
                streams.append(iter(_last(boot, segments, q, count)))
    merged = heapq.merge(*streams, key=lambda item: item[1][0])
    if count is None:
        return merged
    import collections
    return iter(collections.deque(merged, maxlen=count) if count else ())


def _unit_of(segments: list[Segment]) -> str:
    """The unit a chain of files belongs to, from its newest line's fields."""
    for segment in reversed(segments):
        parts = split(os.pread(segment.fd, 1024, 0).split(b"\n", 1)[0].decode(
            "utf-8", "replace"))
        if parts is not None:
            return parts[2]
    return ""


def _forward(boot: str, segments: list[Segment], q: Query) -> Iterator[tuple[str, list[str]]]:
    for segment in segments:
        for line in segment.forward(q.since, q.until):
            parts = split(line)
            if parts is not None and q.keeps(parts):
                yield boot, parts


def _last(boot: str, segments: list[Segment], q: Query,
          count: int) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for segment in reversed(segments):
        end = segment.seek(q.until + "~") if q.until else segment.size  # past the range
        for line in segment.backward(end):
            parts = split(line)
            if parts is None:
                continue
            if q.since and parts[0] < q.since:
                return found[::-1]
            if q.in_range(parts[0]) and q.keeps(parts):
                found.append((boot, parts))
                if len(found) >= count:
                    return found[::-1]
    return found[::-1]


def run(opts: Any, directory: str, color: bool) -> int:
    from vigilctl.logshow import follow, list_boots, render
    store = Store(directory)
    boots = store.boots()
    if opts.list_boots:
        list_boots(store, boots)
        return 0
    q = Query(opts)
    output = "json" if opts.json else opts.output
    count = opts.lines
    if count is None and not (q.since or q.until or q.grep):
        count = 50
    ends: dict[str, list[int]] = {}
    for boot, parts in gather(store, select(boots, opts.boot), q, count, ends):
        print(render(boot, parts, output, color))
    if opts.follow:
        sys.stdout.flush()
        follow(store, q, ends, output, color)
    return 0
