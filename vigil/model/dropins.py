"""Writing a drop-in (`NAME.d/FILE.toml`) into a unit directory, for the
daemon's enable/disable and vigilctl's edit: whole or not at all, and never
through a symlink someone planted there."""

from __future__ import annotations

import os


def write_dropin(folder: str, filename: str, text: str) -> str:
    """Writes folder/filename whole (a temporary file renamed over it),
    never through a symlink: a reader sees the old text or the new."""
    try:
        os.mkdir(folder, 0o755)
    except FileExistsError:
        pass
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        temp = f".{filename}.{os.getpid()}.tmp"  # not *.toml: the loader never reads it
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dfd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.rename(temp, filename, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.unlink(temp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)
    return os.path.join(folder, filename)
