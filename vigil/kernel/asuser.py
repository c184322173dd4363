"""Paths a unit names, opened with the unit's own credentials.

The daemon runs as root, but an env-file, a stdout file, a pid-file or a
terminal that a unit names may sit in directories the unit's user controls:
a symlink or a renamed directory there would make root read a secret, or
create a file where that user may not. So every such path is opened with
the unit's filesystem identity (its fsuid, fsgid and groups, for this thread
and this one open): the kernel then allows exactly what the service could do
itself. What the child opens (its cwd, its program) it already opens after
setuid. A unit that runs as the daemon's own user gets the daemon's ids.

No open blocks PID 1: O_NONBLOCK for the open (a FIFO with no other end),
cleared afterwards; O_NOCTTY, so no terminal becomes the daemon's.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from vigil.base.records import dataclass

from vigil.kernel import syscalls


@dataclass(frozen=True)
class Creds:
    """Whose permissions a unit's paths are opened with."""

    uid: int
    gid: int
    groups: tuple[int, ...] | None  # None: the daemon's own

    @classmethod
    def of(cls, spec: syscalls.SpawnSpec) -> Creds:
        """The identity the spawn spec gives the service."""
        return cls(spec.uid if spec.uid >= 0 else os.geteuid(),
                   spec.gid if spec.gid >= 0 else os.getegid(),
                   None if spec.groups is None else tuple(spec.groups))

    def is_daemons(self) -> bool:
        return self.uid == os.geteuid() and self.gid == os.getegid() and (
            self.groups is None or set(self.groups) == set(os.getgroups()))


@contextmanager
def as_user(creds: Creds | None) -> Iterator[None]:
    """Paths are checked against `creds` inside; the daemon's ids come back after."""
    if creds is None or creds.is_daemons():
        yield
        return
    groups = os.getgroups()
    try:
        syscalls.set_fs_ids(creds.uid, creds.gid,
                            None if creds.groups is None else list(creds.groups))
        yield
    finally:
        syscalls.set_fs_ids(os.geteuid(), os.getegid(), groups)


def open_as(creds: Creds | None, path: str, flags: int, mode: int = 0o640) -> int:
    """An fd on `path`, opened as the unit's user, close-on-exec and blocking."""
    with as_user(creds):
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, mode)
    if not flags & os.O_NONBLOCK:
        os.set_blocking(fd, True)
    return fd


def read_regular(creds: Creds | None, path: str, limit: int, follow: bool = True) -> bytes:
    """The first `limit` bytes of a regular file (not a FIFO, device or
    directory: a reader would block or get endless data)."""
    fd = open_as(creds, path, os.O_RDONLY | (0 if follow else os.O_NOFOLLOW))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return os.read(fd, limit)
    finally:
        os.close(fd)
