"""The log store: one directory of plain text files, every line stamped.

A line is `WALL MONO UNIT INSTANCE STREAM PID TEXT` (docs/logs.md), e.g.
`2026-12-02T21:30:01.123456Z 12345.678901 web web@1 stdout 4242 hello`:
`less` reads it, `cut -d' ' -f7-` takes the text back. Each instance
writes NAME.log, rotated by size to NAME.log.1 .. NAME.log.KEEP (older
files have higher numbers, lines are in time order inside each), and
vigil's events go to `@events.log` with the same stamp, so one query
interleaves them. The store of the running boot is the directory itself;
when the boot id changes, what is there moves to `boots/START-ID/`.

Nothing here blocks for long: one write(2) per line, no fsync. Limits in
total and by age are applied when a file rotates and every few minutes,
the oldest rotated file going first. No `re`, `json` or `datetime`: PID 1
imports this.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from vigil.runtime.output import LogFile

EVENTS = "@events"  # no unit name begins with "@": no unit writes over it
BOOT_FILE = "boot_id"  # "ID START" of the boot whose lines are at the top level
BOOTS = "boots"
MOVED = "moved"  # in a store that moved (system mode): where to
PRUNE_EVERY = 300.0  # seconds between age checks when nothing rotates

_last_second = -1
_last_prefix = ""


def wall_stamp(wall: float) -> str:
    """2026-12-02T21:30:01.123456Z, built by hand (no datetime in PID 1);
    the date part is cached for the second, as most lines share one."""
    global _last_second, _last_prefix
    second = int(wall)
    if second != _last_second:
        t = time.gmtime(second)
        _last_prefix = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
                        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.")
        _last_second = second
    micros = min(int((wall - second) * 1e6), 999999)
    return f"{_last_prefix}{micros:06d}Z"


def record(wall: float, mono: float, unit: str, instance: str, stream: str,
           pid: int | None, text: str) -> bytes:
    """One stored line (text must hold no newline)."""
    return (f"{wall_stamp(wall)} {mono:.6f} {unit or '-'} {instance or '-'} {stream} "
            f"{pid if pid else '-'} {text}\n").encode("utf-8", "replace")


def boot_id() -> str:
    """The kernel's id of this boot, or one made up when /proc has none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            found = f.read().strip().replace("-", "")
        if found:
            return found
    except OSError:
        pass
    return os.urandom(16).hex()


KEPT = "/var/log/vigil"  # system mode: where the store lives once /var/log is writable


def default_dir(system: bool, runtime_dir: str, placed: bool) -> str:
    """Where the store goes without --log-dir: beside the runtime directory
    (system mode: /run/vigil/logs, moved to KEPT later; a daemon given its
    own --socket or --runtime-dir; root's), else, for a user's daemon, in
    $XDG_STATE_HOME, which outlives a reboot."""
    if system or placed or os.getuid() == 0:
        return os.path.join(runtime_dir, "logs")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "vigil", "logs")


def keep(store: Store, also: list[LogFile | None], later: Callable[[float, Callable[[], None]],
         object], say: Callable[[str, str], None], tries: int = 30) -> None:
    """System mode: moves the store to KEPT as soon as it can be written
    (tried now, then every 10 s for 5 minutes); its lines go on meanwhile."""
    try:
        store.relocate(KEPT, [log for log in also if log is not None])
    except OSError as err:
        if tries:
            later(10.0, lambda: keep(store, also, later, say, tries - 1))
        else:
            say("warning", f"logs stay in {store.directory} (tmpfs): {KEPT}: {err}")
        return
    say("info", f"logs kept in {KEPT} (boot {store.boot})")


class Store:
    """The files of one store directory, their limits, and their boots."""

    def __init__(self, directory: str, max_total: int = 0, max_age: float = 0.0) -> None:
        self.directory, self.max_total, self.max_age = directory, max_total, max_age
        self.files: dict[str, LogFile] = {}
        self.boot = boot_id()
        self.pruned = 0  # files removed by the limits, for status and tests
        self.last_prune = 0.0

    def open(self) -> None:
        """Makes the directory and claims it for this boot; the lines of an
        earlier boot are moved under boots/ first."""
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        self._claim(self.directory)
        try:  # a daemon-reexec after the store moved: it goes on where it is
            with open(os.path.join(self.directory, MOVED)) as f:
                self.relocate(f.read().strip())
        except OSError:
            pass
        self.prune()

    def _claim(self, directory: str) -> None:
        path = os.path.join(directory, BOOT_FILE)
        try:
            with open(path) as f:
                old, _, start = f.read().strip().partition(" ")
        except OSError:
            old, start = "", ""
        if old == self.boot:
            return
        if old or any(_is_log(name) for name in os.listdir(directory)):
            archive(directory, old or "unknown", start)
        with open(path + ".new", "w") as f:
            f.write(f"{self.boot} {wall_stamp(time.time())}\n")
        os.replace(path + ".new", path)

    def file(self, name: str, max_size: int, keep: int) -> LogFile:
        """The log of an instance (or of the events), made on first use."""
        log = self.files.get(name)
        if log is None or log.max_size != max_size or log.keep != keep:
            if log is not None:
                log.close()
            log = LogFile(os.path.join(self.directory, name + ".log"), max_size, keep)
            log.rotated = self.rotated
            self.files[name] = log
        return log

    def rotated(self) -> None:
        self.prune()

    def tick(self) -> None:
        """Called now and then: ages out old files even when nothing rotates."""
        if self.max_age and time.monotonic() - self.last_prune >= PRUNE_EVERY:
            self.prune()

    def prune(self) -> None:
        """The limits: rotated files (and earlier boots') past max_age go,
        then the oldest of them until the store fits in max_total. A file
        being written is never removed; its own rotation bounds it."""
        self.last_prune = time.monotonic()
        if not self.max_total and not self.max_age:
            return
        try:
            current, older = _inventory(self.directory)
        except OSError:
            return
        now = time.time()
        total = sum(size for _, size, _ in current) + sum(size for _, size, _ in older)
        older.sort(key=lambda entry: entry[2])
        for path, size, mtime in older:
            too_old = bool(self.max_age) and now - mtime > self.max_age
            if not too_old and (not self.max_total or total <= self.max_total):
                continue
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            self.pruned += 1
        _drop_empty_boots(self.directory)

    def close(self) -> None:
        """The end (system mode): no open file keeps a filesystem busy."""
        for log in self.files.values():
            log.close()

    def relocate(self, target: str, also: Sequence[LogFile] = ()) -> None:
        """Moves the store to `target` (system mode: /run/vigil/logs to
        /var/log/vigil once it is writable). What `target` holds of earlier
        boots is archived there, this boot's files are appended to it, and
        every open log goes on at its new path."""
        os.makedirs(target, mode=0o750, exist_ok=True)
        self._claim(target)
        moved = [*self.files.values(), *(log for log in also
                                           if os.path.dirname(log.path) == self.directory)]
        for log in moved:
            log.close()
        for name in sorted(os.listdir(self.directory)):
            source = os.path.join(self.directory, name)
            if name in (BOOT_FILE, MOVED) or not os.path.isfile(source):
                continue
            _append(source, os.path.join(target, name))
            os.unlink(source)
        for log in moved:
            log.path = os.path.join(target, os.path.basename(log.path))
        with open(os.path.join(self.directory, MOVED), "w") as f:
            f.write(target + "\n")
        self.directory = target
        self.prune()


def archive(directory: str, old: str, start: str) -> None:
    """Moves the top-level files of an earlier boot to boots/START-ID/."""
    compact = start.replace("-", "").replace(":", "").split(".")[0] or "00000000T000000"
    folder = os.path.join(directory, BOOTS, f"{compact}Z-{old}")
    os.makedirs(folder, mode=0o750, exist_ok=True)
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if _is_log(name) and os.path.isfile(path) and not os.path.islink(path):
            os.replace(path, os.path.join(folder, name))


def _is_log(name: str) -> bool:
    """A file of the store (an instance's log, rotated or not, or the events)."""
    return name.endswith((".log", ".jsonl")) or ".log." in name or ".jsonl." in name


def _append(source: str, target: str) -> None:
    """Copies source to the end of target (shutil would import re)."""
    with open(source, "rb") as src, open(target, "ab") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _inventory(directory: str) -> tuple[list[tuple[str, int, float]],
                                        list[tuple[str, int, float]]]:
    """(files being written, files that may go), each as (path, size, mtime)."""
    current: list[tuple[str, int, float]] = []
    older: list[tuple[str, int, float]] = []
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            is_rotated = ".log." in entry.name
            (older if is_rotated else current).append((entry.path, info.st_size, info.st_mtime))
    boots = os.path.join(directory, BOOTS)
    if os.path.isdir(boots):
        for folder in os.scandir(boots):
            if folder.is_dir(follow_symlinks=False):
                for entry in os.scandir(folder.path):
                    if entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        older.append((entry.path, info.st_size, info.st_mtime))
    return current, older


def _drop_empty_boots(directory: str) -> None:
    boots = os.path.join(directory, BOOTS)
    if not os.path.isdir(boots):
        return
    for name in os.listdir(boots):
        try:
            os.rmdir(os.path.join(boots, name))  # only an empty one goes
        except OSError:
            pass
