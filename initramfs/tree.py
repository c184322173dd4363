"""The image as a tree of entries, written out as a newc cpio archive (the
initramfs) or as files (the ext4 root disk): sorted, owned by root, mtime 0,
so the same entries give the same bytes."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path


class Tree:
    """The image as a map of paths to entries, written out in sorted order."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, int, bytes | str | tuple[int, int]]] = {}

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        while parent not in ("/", "") and parent not in self.entries:
            self.entries[parent] = ("dir", 0o755, b"")
            parent = os.path.dirname(parent)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        self.entries[path] = ("dir", mode, b"")

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path] = ("file", mode, data)

    def copy(self, src: str | Path, dest: str | None = None, mode: int | None = None) -> None:
        src = Path(src)
        real = src.resolve()
        self.file(dest or str(src), real.read_bytes(),
                  mode if mode is not None else stat.S_IMODE(real.stat().st_mode))

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path] = ("link", 0o777, target)

    def device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.entries[path] = ("chr", mode, (major, minor))

    def cpio(self) -> bytes:
        """newc format; inode numbers by position, everything owned by root, mtime 0."""
        out = io.BytesIO()
        for ino, path in enumerate(sorted(self.entries), 1):
            kind, mode, data = self.entries[path]
            rdev = (0, 0)
            if kind == "dir":
                body, ftype = b"", stat.S_IFDIR
            elif kind == "link":
                assert isinstance(data, str)
                body, ftype = data.encode(), stat.S_IFLNK
            elif kind == "chr":
                assert isinstance(data, tuple)
                body, ftype, rdev = b"", stat.S_IFCHR, data
            else:
                assert isinstance(data, bytes)
                body, ftype = data, stat.S_IFREG
            _cpio_entry(out, path.lstrip("/"), ino, ftype | mode, body, rdev)
        _cpio_entry(out, "TRAILER!!!", 0, 0, b"", (0, 0))
        return out.getvalue()

    def write_dir(self, target: Path) -> None:
        """The same tree as files, for mkfs.ext4 -d (device nodes are left to devtmpfs)."""
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in sorted(self.entries):
            kind, mode, data = self.entries[path]
            dest = target / path.lstrip("/")
            if kind == "dir":
                dest.mkdir(exist_ok=True)
                dest.chmod(mode)
            elif kind == "link":
                assert isinstance(data, str)
                dest.symlink_to(data)
            elif kind == "file":
                assert isinstance(data, bytes)
                dest.write_bytes(data)
                dest.chmod(mode)


def _cpio_entry(out: io.BytesIO, name: str, ino: int, mode: int, body: bytes,
                rdev: tuple[int, int]) -> None:
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 2 if mode & stat.S_IFDIR else 1, 0, len(body), 0, 0,
              rdev[0], rdev[1], len(encoded), 0]
    out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
    out.write(b"\0" * (-(110 + len(encoded)) % 4))
    out.write(body)
    out.write(b"\0" * (-len(body) % 4))
