"""The daemon's runtime directory: ours, not a symlink, and written by no
one else, checked and changed through one fd so that nothing can be
swapped between the check and the change."""

from __future__ import annotations

import errno
import fcntl
import os
import stat


def open_private_dir(directory: str, mode: int | None = None, gid: int | None = None) -> int:
    """Makes (or checks) a directory of ours and returns an fd on it.

    Opened with O_NOFOLLOW|O_DIRECTORY, then checked and changed through
    the fd (fstat, fchown, fchmod): what is checked is what is changed,
    never what a symlink swapped in since points to. Group and others may
    never write in it, so nothing inside can be replaced by them.

    A directory that was there before is changed only if it is one vigil
    could have made (0700, or 0750 for a read group): one open to others
    (/tmp, /run, a home) is refused, never chmod'ed, or `--socket
    /tmp/x.sock` would close /tmp to every user of the machine."""
    parent = os.path.dirname(directory.rstrip("/"))
    if parent:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    created = False
    try:
        os.mkdir(directory, 0o700)
        created = True
    except FileExistsError:
        pass
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(f"{directory} is not a directory (a symlink is refused)") from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise OSError(f"{directory} belongs to uid {info.st_uid}, not to us")
        current = stat.S_IMODE(info.st_mode)
        if not created and current & (stat.S_ISVTX | 0o022 | 0o007):
            raise OSError(f"{directory} is open to others (mode {current:04o}): the control "
                          "socket and its files need a directory of their own")
        if gid is not None:
            os.fchown(fd, -1, gid)
        wanted = current if mode is None else mode
        if wanted != current:
            os.fchmod(fd, wanted)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_dir(directory: str) -> None:
    """open_private_dir, for a caller that keeps no fd."""
    os.close(open_private_dir(directory))


def lock(runtime_dir: str, socket_path: str) -> int:
    """One daemon per socket: a lock held for life, so a second one is refused
    at once and a socket left by a dead daemon is known to be stale."""
    path = os.path.join(runtime_dir, "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise OSError(f"another vigil (pid {holder}) is running on {socket_path}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
