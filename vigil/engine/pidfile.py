"""A forking unit's pid-file: read safely, and believed only for a process
that is the unit's own.

The file sits where the service writes, so its user controls it: it could
name any process, and vigil, as root, would then track it and kill it at
stop. So the file is read as the unit's user (no symlink, a regular file, a
few bytes of ASCII digits), and its pid is taken only for a process of the
unit: with cgroups, one in the instance's cgroup (systemd's rule); without,
one that descends from the daemon through no process of another unit (an
orphaned daemon is reparented to us, the subreaper or PID 1) and, for a
unit not run as the daemon's user, that this user could signal itself
(its real or saved uid, as kill(2) checks). A daemon that is not a
subreaper cannot see that descent; there a unit run as the daemon's own
user may name a process of that user, which it could signal anyway.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from vigil.kernel.asuser import Creds, read_regular

MAX_BYTES = 64
MAX_DEPTH = 256  # parent links followed; a real tree is far shallower
NOT_DESCENDANT = "is not a descendant of the unit's processes"


class Refused(Exception):
    """The pid-file names no process vigil may adopt; the message says why."""


def read(path: str, creds: Creds) -> int:
    """The pid in the file: ASCII digits, an optional newline, nothing else."""
    try:
        data = read_regular(creds, path, MAX_BYTES + 1, follow=False)
    except OSError as err:
        raise Refused(f"no live process ({err.strerror})") from None
    digits = data.rstrip(b"\n")
    if not digits.isdigit() or len(digits) > 10 or len(data) > MAX_BYTES:
        raise Refused("not a pid")  # bytes.isdigit: ASCII only
    pid = int(digits)
    if pid <= 1 or pid == os.getpid():
        raise Refused(f"names process {pid}, which is never a unit's")
    return pid


class NotOurs(Refused):
    """The pid-file names a live process that is not the unit's own."""

    def __init__(self, pid: int, why: str) -> None:
        super().__init__(f"process {pid} {why}; refused")
        self.pid, self.why = pid, why


def take(path: str, creds: Creds, cgroup_pids: Callable[[], list[int] | None],
         tracked: Callable[[int], str | None], pidfd_open: Callable[[int], int]
         ) -> tuple[int, int]:
    """The pid the file names and a pidfd on it, if that process is the
    unit's own; Refused (NotOurs for a live process of someone else's) if not."""
    pid = read(path, creds)
    try:
        pidfd = pidfd_open(pid)
    except OSError as err:
        raise Refused(f"no live process ({err.strerror})") from None
    why = why_not_ours(pid, pidfd, creds, cgroup_pids(), tracked)
    if why is not None:
        os.close(pidfd)
        raise NotOurs(pid, why)
    return pid, pidfd


def why_not_ours(pid: int, pidfd: int, creds: Creds, cgroup_pids: list[int] | None,
                 tracked: Callable[[int], str | None]) -> str | None:
    """None if `pid` is the unit's to adopt, else why not. `tracked` names
    the other unit a process of ours belongs to (None for none). `pidfd`,
    opened before, must still be alive after: then what /proc said was
    about that process, not one that reused its pid."""
    if cgroup_pids is not None:
        why = None if pid in cgroup_pids else "is not in the unit's cgroup"
    else:
        try:
            why = _ancestry(pid, tracked)
            real, _effective, saved = _uids(pid)
            if why == NOT_DESCENDANT and creds.uid == os.geteuid() == real:
                # A daemon that is neither PID 1 nor a subreaper loses its
                # units' orphans to another reaper. A unit run as the daemon's
                # own user could signal a process of that user itself, so
                # adopting one gives it nothing it did not have.
                why = None
            elif why is None and creds.uid != os.geteuid() and creds.uid not in (real, saved):
                why = f"belongs to uid {real}, not to the unit's user ({creds.uid})"
        except (OSError, ValueError, IndexError):
            why = "is gone"
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        why = "is gone"
    return why


def _ancestry(pid: int, tracked: Callable[[int], str | None]) -> str | None:
    me = os.getpid()
    current = pid
    for _ in range(MAX_DEPTH):
        owner = tracked(current)
        if owner is not None:
            return f"belongs to {owner}"
        parent = _parent(current)
        if parent == me:
            return None
        if parent <= 1:
            break
        current = parent
    return NOT_DESCENDANT


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def _uids(pid: int) -> tuple[int, int, int]:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"Uid:"):
                real, effective, saved = (int(x) for x in line.split()[1:4])
                return real, effective, saved
    raise ValueError("no Uid line")
