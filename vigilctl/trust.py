"""Which files and directories vigilctl acts on: its caller's or root's,
reached through directories no one else may change.

A daemon started for a project runs its unit files as the caller, root
included, so a project is used only when every file of it is the caller's
(or root's) and no one else may write to it, and the way to it cannot be
changed by anyone else either. Paths are walked from / by fd, each
component opened with O_NOFOLLOW and checked by fstat: a symlink or a
component swapped on the way is seen, and what vigilctl writes (daemon.log,
up's unit files) is opened under the fd it checked. The daemon's loader
checks the unit files again when it reads them. See docs/security.md (14.1,
22.5).
"""

from __future__ import annotations

import errno
import os
import stat

from vigilctl.client import ClientError, owners

TYPE_CHECKING = False  # typing costs the client ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable

# Write permission for the group or others.
SHARED = stat.S_IWGRP | stat.S_IWOTH


class Untrusted(ClientError):
    """A path vigilctl will not act on; the message says which and why."""


def _whose(info: os.stat_result) -> str | None:
    if info.st_uid not in owners():
        return f"it belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}) or root"
    return None


def on_the_way(info: os.stat_result) -> str | None:
    """Why a directory above a project cannot be passed through: others could
    rename what is in it. A sticky one (/tmp) is fine: there only the owner of
    an entry may rename or remove it."""
    if info.st_mode & SHARED and not info.st_mode & stat.S_ISVTX:
        return "others may write in it"
    return _whose(info)


def owned(info: os.stat_result) -> str | None:
    """Why a project's directory or file is not the caller's to use."""
    if info.st_mode & SHARED:
        return "others may write to it"
    return _whose(info)


def private(info: os.stat_result) -> str | None:
    """Why a directory is not the caller's alone (a daemon's, with its socket
    and log)."""
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})"
    if info.st_mode & 0o077:
        return f"others have access to it (mode {info.st_mode & 0o777:o})"
    return None


def walk(path: str, rule: Callable[[os.stat_result], str | None] = owned,
         make: bool = False) -> int:
    """An O_PATH fd of `path` after checking every directory from / down (by
    on_the_way; the last component by `rule`); with `make`, missing
    directories are made 0700. Raises Untrusted, naming the path."""
    parts = [p for p in os.path.realpath(path).split("/") if p]
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    done = ""
    try:
        for n, part in enumerate(parts):
            done += "/" + part
            final = n == len(parts) - 1
            parent, fd = fd, -1  # _step closes it, whatever happens
            fd = _step(parent, part, done, make, directory=make or not final)
            info = os.fstat(fd)
            why = "a symlink here is refused" if stat.S_ISLNK(info.st_mode) else (
                rule if final else on_the_way)(info)
            if why:
                raise Untrusted(f"{done}: {why}")
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _step(parent: int, name: str, shown: str, make: bool, directory: bool) -> int:
    """Opens `name` under `parent` without following a symlink (O_PATH with
    O_NOFOLLOW opens the link itself, which the caller refuses), and closes
    `parent`."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    try:
        try:
            return os.open(name, flags, dir_fd=parent)
        except FileNotFoundError:
            if not make:
                raise
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            return os.open(name, flags, dir_fd=parent)
    except OSError as err:
        why = "a symlink here is refused" if err.errno in (errno.ELOOP, errno.ENOTDIR) \
            and os.path.islink(shown) else err.strerror or str(err)
        raise Untrusted(f"{shown}: {why}") from None
    finally:
        os.close(parent)


def check(path: str | os.PathLike[str]) -> None:
    """Raises Untrusted unless `path` and the way to it are the caller's to use."""
    os.close(walk(os.fspath(path)))


def check_units(units: str) -> None:
    """A project's units directory and every unit file and drop-in in it
    (what the daemon's loader reads: *.toml and NAME.d/*.toml): the
    caller's or root's, and written by no one else."""
    check(units)
    for entry in _entries(units):
        path = os.path.join(units, entry)
        if entry.endswith(".toml"):
            check(path)
        elif entry.endswith(".d") and os.path.isdir(path):
            check(path)
            for inner in _entries(path):
                if inner.endswith(".toml"):
                    check(os.path.join(path, inner))


def _entries(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as err:
        raise Untrusted(f"{directory}: {err.strerror}") from None


def private_dir(directory: str) -> int:
    """An O_PATH fd of a daemon's directory, made 0700 where missing, checked
    to be the caller's alone and reached through directories no one else may
    change: what is written there (daemon.log, up's unit files) is opened
    under this fd with O_NOFOLLOW."""
    try:
        return walk(directory, private, make=True)
    except Untrusted as err:
        raise refuse(directory, err) from None


def write(folder: int, name: str, text: str) -> None:
    """Writes a file of ours under a checked directory, never through a symlink."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def entries(folder: int) -> list[str]:
    """The names in a directory held by an O_PATH fd (which cannot be read)."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def refuse(what: str, err: Untrusted) -> Untrusted:
    """The one-line refusal: which project, which path, and why."""
    return Untrusted(f"not using {what}: {err}")
