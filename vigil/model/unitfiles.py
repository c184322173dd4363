"""Reading unit directories and files: only trusted ones, never blocking.

Whoever can write a unit file runs anything as the daemon's user, so a
directory or file is used only when root or the daemon's own uid owns it and
neither its group nor others may write it (sshd's StrictModes rule: a
group-writable file is refused too, since "the group" is rarely meant to be
"root"). The check is made on the descriptor that is then read: a directory is
opened and checked, a file is opened relative to that directory's descriptor
and checked after the open, so nothing can be swapped in between. A symlinked
file is followed and its target checked. Anything not a regular file (a FIFO, a
device, a dangling symlink) is reported, never opened in a way that blocks.
"""

from __future__ import annotations

import os
import stat

from vigil.base.errors import UnitError

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any

MAX_FILE_SIZE = 1 << 20  # a unit file is a few hundred bytes; refuse megabytes
MAX_DEPTH = 16  # tables and arrays nested deeper are no unit file (tomllib recurses)
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def untrusted(info: os.stat_result) -> str | None:
    """Why a file or directory with this status may not be used, or None."""
    me = os.geteuid()
    if info.st_uid not in (0, me):
        return f"owned by uid {info.st_uid}, not by root" + (f" or uid {me}" if me else "")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if info.st_mode & stat.S_IWOTH else f"its group (gid {info.st_gid})"
        return f"writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def open_dir(path: str) -> int | None:
    """A descriptor on a trusted directory; None if there is no directory at `path`.

    Raises UnitError if it cannot be opened or is not trusted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):  # as before a loader ever looked
        return None
    except OSError as err:
        raise UnitError.single(path, f"cannot open the directory: {err.strerror}") from None
    try:
        why = untrusted(os.fstat(fd))
    except OSError as err:
        why = f"cannot stat: {err.strerror}"
    if why:
        os.close(fd)
        raise UnitError.single(path, f"refused: {why}")
    return fd


def list_dir(path: str, suffix: str) -> list[str] | None:
    """Names in a trusted directory ending in `suffix` that are not directories
    (a FIFO or dangling symlink is listed, to be reported when read); None if
    the directory does not exist. Raises UnitError on any other failure."""
    fd = open_dir(path)
    if fd is None:
        return None
    try:
        names = []
        for name in os.listdir(fd):
            if name.endswith(suffix) and kind_at(fd, name, path) != "dir":
                names.append(name)
        return sorted(names)
    except OSError as err:
        raise UnitError.single(path, f"cannot list: {err.strerror}") from None
    finally:
        os.close(fd)


def kind_at(dir_fd: int, name: str, directory: str) -> str | None:
    """"dir", "other" (anything else, a dangling symlink too) or None if absent."""
    try:
        return "dir" if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd).st_mode) else "other"
    except FileNotFoundError:
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return "other"  # a symlink to nothing: reported when it is read
        except FileNotFoundError:
            return None
    except OSError as err:
        raise UnitError.single(os.path.join(directory, name),
                               f"cannot look up: {err.strerror}") from None


def find_in(directory: str, name: str) -> bool:
    """Whether a trusted `directory` has a non-directory entry `name`."""
    fd = open_dir(directory)
    if fd is None:
        return False
    try:
        return kind_at(fd, name, directory) == "other"
    finally:
        os.close(fd)


def read_unit_file(path: str) -> bytes:
    """The bytes of a trusted regular file in a trusted directory, or UnitError."""
    directory, name = os.path.split(path)
    dir_fd = open_dir(directory or ".")
    if dir_fd is None:
        raise UnitError.single(path, "cannot open: its directory is gone")
    try:
        return _read_at(dir_fd, name, path)
    finally:
        os.close(dir_fd)


def _read_at(dir_fd: int, name: str, path: str) -> bytes:
    try:  # refuse a FIFO or a device before opening it: an open can block or act
        mode = os.stat(name, dir_fd=dir_fd).st_mode
    except FileNotFoundError:
        is_link = kind_at(dir_fd, name, path) == "other"
        raise UnitError.single(path, "a symlink to nothing" if is_link else
                               "cannot open: no such file") from None
    except OSError as err:
        raise UnitError.single(path, f"cannot open: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UnitError.single(path, f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), '?')})")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY,
                     dir_fd=dir_fd)
    except OSError as err:
        raise UnitError.single(path, f"cannot open: {err.strerror}") from None
    try:
        info = os.fstat(fd)  # what was opened decides, not what was looked at
        if not stat.S_ISREG(info.st_mode):
            raise UnitError.single(path, "not a regular file")
        why = untrusted(info)
        if why:
            raise UnitError.single(path, f"refused: {why}")
        if info.st_size > MAX_FILE_SIZE:
            raise UnitError.single(
                path, f"too large ({info.st_size} bytes, at most {MAX_FILE_SIZE})")
        return os.read(fd, MAX_FILE_SIZE + 1)
    except OSError as err:
        raise UnitError.single(path, f"cannot read: {err.strerror}") from None
    finally:
        os.close(fd)


def too_deep(doc: Any) -> bool:
    """Whether tables and arrays nest deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value \
            if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return False
