"""/etc/fstab: entries, and mount(8)'s options turned into flags plus data."""

from __future__ import annotations

import os
from vigil.base.records import dataclass

from vigil.base.numbers import parse_number
from vigil.kernel.mountinfo import unescape as unescape  # fstab escapes as mountinfo does

# option -> (flags to set, flags to clear)
MS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "remount": 32,
      "mand": 64, "dirsync": 128, "noatime": 1024, "nodiratime": 2048, "bind": 4096,
      "move": 8192, "rec": 16384, "silent": 32768, "relatime": 1 << 21,
      "strictatime": 1 << 24, "lazytime": 1 << 25}
FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "ro": (MS["ro"], 0), "rw": (0, MS["ro"]), "nosuid": (MS["nosuid"], 0),
    "suid": (0, MS["nosuid"]), "nodev": (MS["nodev"], 0), "dev": (0, MS["nodev"]),
    "noexec": (MS["noexec"], 0), "exec": (0, MS["noexec"]), "sync": (MS["sync"], 0),
    "async": (0, MS["sync"]), "dirsync": (MS["dirsync"], 0), "noatime": (MS["noatime"], 0),
    "atime": (0, MS["noatime"]), "nodiratime": (MS["nodiratime"], 0),
    "diratime": (0, MS["nodiratime"]), "relatime": (MS["relatime"], 0),
    "norelatime": (0, MS["relatime"]), "strictatime": (MS["strictatime"], 0),
    "lazytime": (MS["lazytime"], 0), "silent": (MS["silent"], 0),
    "bind": (MS["bind"], 0), "rbind": (MS["bind"] | MS["rec"], 0),
}
# Understood by mount(8) or vigil, never passed to the filesystem.
USERSPACE = {"defaults", "auto", "noauto", "nofail", "user", "nouser", "users", "owner",
             "group", "_netdev", "comment"}


@dataclass(frozen=True)
class Entry:
    spec: str
    file: str
    vfstype: str
    options: tuple[str, ...]
    passno: int
    line: int

    @property
    def noauto(self) -> bool:
        return "noauto" in self.options

    @property
    def nofail(self) -> bool:
        return "nofail" in self.options

    @property
    def swap(self) -> bool:
        return self.vfstype == "swap"

    @property
    def bind(self) -> bool:
        return "bind" in self.options or "rbind" in self.options

    def flags_and_data(self) -> tuple[int, str]:
        flags = 0
        data = []
        for opt in self.options:
            if opt in FLAG_OPTIONS:
                add, clear = FLAG_OPTIONS[opt]
                flags = (flags | add) & ~clear
            elif opt not in USERSPACE and not opt.startswith(("x-", "comment=")):
                data.append(opt)
        return flags, ",".join(data)


class FstabError(ValueError):
    pass


def parse(text: str, path: str = "/etc/fstab") -> tuple[list[Entry], list[str]]:
    """Entries, and the problems of lines that could not be read (skipped).

    PID 1 reads this at boot: whatever a line raises is that line's problem,
    never the boot's."""
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            entry = _entry(raw, number)
        except Exception as err:  # one bad line must not stop the boot
            problems.append(f"{path}:{number}: {err}")
            continue
        if entry is not None:
            entries.append(entry)
    return entries, problems


def _entry(raw: str, number: int) -> Entry | None:
    line = raw.split("#", 1)[0].strip()
    if not line:
        return None
    fields = line.split()
    if len(fields) < 3:
        raise FstabError(f"expected at least 3 fields: {raw.strip()!r}")
    options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
    passno = parse_number(fields[5], 0, 2**31 - 1) if len(fields) > 5 else 0
    if passno is None:
        raise FstabError(f"pass number {fields[5]!r} is not a number")
    return Entry(unescape(fields[0]), unescape(fields[1]), fields[2], options, passno, number)


def resolve(spec: str) -> str:
    """UUID=, LABEL=, PARTUUID=, PARTLABEL= to a /dev path via /dev/disk."""
    for key, folder in (("UUID=", "by-uuid"), ("LABEL=", "by-label"),
                        ("PARTUUID=", "by-partuuid"), ("PARTLABEL=", "by-partlabel")):
        if spec.startswith(key):
            return os.path.join("/dev/disk", folder, spec[len(key):].strip('"'))
    return spec
