"""/proc/self/mountinfo, read in one place: by the cgroup code (where is
cgroup2 mounted?) and by mounts.py (what is mounted, to unmount it at
shutdown). See proc(5): fields 1-6, optional fields up to a "-", then the
filesystem type and the source.
"""

from __future__ import annotations

from vigil.base.records import dataclass


@dataclass(frozen=True)
class Mount:
    id: int
    parent: int
    root: str  # the directory of the filesystem that is mounted here
    target: str
    fstype: str
    source: str


def read() -> list[Mount]:
    """The mount table of our namespace, in mount order ([] without /proc)."""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        try:
            sep = fields.index("-")
            found.append(Mount(int(fields[0]), int(fields[1]), unescape(fields[3]),
                               unescape(fields[4]), fields[sep + 1], fields[sep + 2]))
        except (ValueError, IndexError):
            continue  # not a line the kernel writes
    return found


def unescape(field: str) -> str:
    """fstab and /proc/self/mountinfo write a space in a path as \\040: a
    backslash and three octal digits (a byte, so at most \\377) is that
    character; any other backslash is itself, as mount(8) reads it."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if (field[i] == "\\" and len(code) == 3 and code[0] in "0123"
                and all(c in "01234567" for c in code)):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
