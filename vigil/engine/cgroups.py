"""One cgroup v2 directory per instance, so a stop reaches every process a
unit started, including daemons that left its process group with setsid.

Only used where a cgroup can be had: system mode, a cgroup delegated to our
user, or a directory named with --cgroup. Otherwise the process group is
all we have, and the supervisor says so once.
"""

from __future__ import annotations

import os
import signal

from vigil.kernel import mountinfo


def own_cgroup() -> str | None:
    """Our cgroup v2 directory as mounted here, or None without cgroup2."""
    try:
        with open("/proc/self/cgroup") as f:
            rel = next((line[3:].strip() for line in f if line.startswith("0::")), None)
    except OSError:
        return None
    if rel is None:
        return None
    for mount in mountinfo.read():
        if mount.fstype == "cgroup2" and mount.root == "/":
            return os.path.normpath(mount.target + rel)
    return None


def choose(setting: str, system: bool) -> str | None:
    """The base directory for unit cgroups: `off`, `auto` or a path."""
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    base = own_cgroup()
    if base is None or not os.access(base, os.W_OK):
        return None
    if system:
        return os.path.join(base, "vigil.units")
    # A user daemon uses a cgroup only when it was delegated to this user;
    # a root supervisor under another init leaves that init's tree alone.
    uid = os.getuid()
    return os.path.join(base, "vigil.units") if uid and os.stat(base).st_uid == uid else None


class Cgroups:
    def __init__(self, base: str) -> None:
        self.base = base
        os.makedirs(base, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.base, name.replace("/", "_"))

    def join_fd(self, name: str) -> int:
        """An fd on the instance's cgroup.procs; the child writes "0" to it."""
        path = self.path(name)
        os.makedirs(path, exist_ok=True)
        return os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def pids(self, name: str) -> list[int]:
        try:
            with open(os.path.join(self.path(name), "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return []

    def signal(self, name: str, signum: int) -> None:
        for pid in self.pids(name):
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    def kill(self, name: str) -> None:
        """SIGKILL to everything in the cgroup, atomically where the kernel can."""
        if not self.pids(name):
            return
        try:
            fd = os.open(os.path.join(self.path(name), "cgroup.kill"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)
        except OSError:
            self.signal(name, signal.SIGKILL)  # kernels before 5.14

    def remove(self, name: str) -> None:
        try:
            os.rmdir(self.path(name))
        except OSError:
            pass

    def remove_all(self) -> None:
        """Removes the empty instance cgroups and the base, at daemon exit."""
        try:
            names = os.listdir(self.base)
        except OSError:
            return
        for entry in names:
            if os.path.isdir(os.path.join(self.base, entry)):
                self.remove(entry)
        try:
            os.rmdir(self.base)
        except OSError:
            pass
