"""Mounting at boot and unmounting at shutdown.

Each step reports what it did or why it failed; none raises. A failed
non-root mount is logged and boot goes on (the seed's philosophy: never an
emergency shell for a non-critical failure).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from vigil.kernel import mountinfo, syscalls
from vigil.system.fstab import MS, Entry, resolve
from vigil.kernel.mountinfo import Mount

Log = Callable[[str, str], None]  # (severity, message)


def mounted() -> list[Mount]:
    """The mount table of our namespace, in mount order."""
    return mountinfo.read()


def is_mountpoint(path: str) -> bool:
    path = os.path.normpath(path)
    return any(m.target == path for m in mounted())


# What a system needs before anything else can run: (source, target, type, flags, data).
NOSUID, NODEV, NOEXEC = MS["nosuid"], MS["nodev"], MS["noexec"]
EARLY = [
    ("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, ""),
    ("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", NOSUID, "mode=0755"),
    ("devpts", "/dev/pts", "devpts", NOSUID | NOEXEC, "gid=5,mode=0620,ptmxmode=0666"),
    ("tmpfs", "/dev/shm", "tmpfs", NOSUID | NODEV, "mode=1777"),
    ("tmpfs", "/run", "tmpfs", NOSUID | NODEV, "mode=0755"),
    ("cgroup2", "/sys/fs/cgroup", "cgroup2", NOSUID | NODEV | NOEXEC, ""),
]


def early_mounts(log: Log, table: list[tuple[str, str, str, int, str]] = EARLY) -> None:
    """Mounts what is not mounted yet; /dev falls back to a tmpfs without devtmpfs."""
    for source, target, fstype, flags, data in table:
        if is_mountpoint(target):
            continue
        try:
            os.makedirs(target, exist_ok=True)
            syscalls.mount(source, target, fstype, flags, data)
            log("debug", f"mounted {fstype} on {target}")
        except OSError as err:
            if fstype == "devtmpfs":
                try:
                    syscalls.mount("tmpfs", target, "tmpfs", flags, data)
                    log("warning", f"no devtmpfs ({err.strerror}); a tmpfs on {target}")
                    continue
                except OSError:
                    pass
            log("error", f"mounting {fstype} on {target} failed: {err.strerror}")


def _fsck(entry: Entry, device: str, log: Log, timeout: float) -> None:
    import shutil  # here: PID 1 needs them only at boot
    import subprocess
    fsck = shutil.which("fsck", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if fsck is None or not os.path.exists(device):
        return
    try:
        done = subprocess.run([fsck, "-a", "-T", device], capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        log("error", f"fsck of {device} took more than {timeout:g}s; mounting as it is")
        return
    # 0 clean, 1 errors corrected; 2 reboot needed; 4 and up: left uncorrected
    if done.returncode >= 4:
        log("error", f"fsck of {device} left errors (status {done.returncode}); mounting anyway")
    elif done.returncode:
        log("warning", f"fsck of {device} corrected errors (status {done.returncode})")


def mount_fstab(entries: list[Entry], log: Log, machine: bool, fsck_timeout: float = 300.0,
                read_only_root: bool | None = None) -> list[str]:
    """Mounts every auto entry in file order; returns the swap devices enabled.

    The root entry is only remounted (ro/rw as the command line asks); swap
    and the root's superblock are touched only on a machine (see
    namespaces.py). Failures are logged, and boot goes on."""
    swaps: list[str] = []
    for entry in entries:
        if entry.noauto:
            continue
        device = resolve(entry.spec)
        where = f"fstab line {entry.line} ({entry.file})"
        if entry.swap:
            if not machine:
                log("info", f"{where}: swap skipped: not on a machine (a container)")
                continue
            try:
                syscalls.swapon(device)
                swaps.append(device)
                log("info", f"swap on {device}")
            except OSError as err:
                log("warning" if entry.nofail else "error",
                    f"{where}: swapon {device} failed: {err.strerror}")
            continue
        flags, data = entry.flags_and_data()
        if entry.file == "/":
            if not machine:
                continue
            if read_only_root is not None:
                flags = (flags | MS["ro"]) if read_only_root else flags & ~MS["ro"]
            try:
                syscalls.mount(device, "/", "", flags | MS["remount"], data)
            except OSError as err:
                log("warning", f"{where}: remounting / failed: {err.strerror}")
            continue
        if is_mountpoint(entry.file):
            continue
        if entry.passno > 0 and not entry.bind:
            _fsck(entry, device, log, fsck_timeout)
        try:
            os.makedirs(entry.file, exist_ok=True)
            syscalls.mount(device, entry.file, "" if entry.bind else entry.vfstype, flags, data)
            if entry.bind and flags & MS["ro"]:  # a bind mount takes ro only on a remount
                syscalls.mount("", entry.file, "", flags | MS["remount"], data)
            log("info", f"mounted {device} on {entry.file}")
        except OSError as err:
            log("warning" if entry.nofail else "error",
                f"{where}: mounting {device} on {entry.file} failed: {err.strerror}")
    return swaps


KEEP = {"/", "/proc", "/sys", "/dev", "/run"}  # detached last, with the root


def unmount_all(log: Log, superblocks: bool) -> None:
    """Unmounts in reverse mount order; what is busy is remounted read-only.

    superblocks: remount filesystems read-only for real (a machine). In a
    container or test namespace only this namespace's mounts are touched: a
    remount of a shared superblock would reach the host."""
    for m in reversed(mounted()):
        if m.target in KEEP or m.fstype in ("proc", "sysfs", "devtmpfs", "devpts", "cgroup2",
                                            "securityfs", "debugfs", "tracefs", "bpf",
                                            "configfs", "fusectl", "mqueue", "pstore",
                                            "hugetlbfs", "autofs"):
            continue
        try:
            syscalls.umount(m.target)
            log("debug", f"unmounted {m.target}")
        except OSError as err:
            _read_only(m.target, log, superblocks, f"busy ({err.strerror})")
    _read_only("/", log, superblocks, "the root")


def _read_only(target: str, log: Log, superblocks: bool, why: str) -> None:
    flags = MS["remount"] | MS["ro"] | (0 if superblocks else MS["bind"])
    try:
        syscalls.mount("", target, "", flags)
        log("debug", f"{target}: {why}; remounted read-only")
    except OSError as err:
        log("warning", f"{target}: {why}; read-only remount failed: {err.strerror}")
