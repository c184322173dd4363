"""From an initramfs to the real root: with `root=` on the kernel command
line, vigil as the initramfs's /init loads the modules it was given, waits
for the root device, mounts it, moves /dev /proc /sys /run onto it, frees
the initramfs, switches to the new root and executes its init (vigil
again, by default). Without `root=` the initramfs is the whole system.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

from vigil.kernel import syscalls
from vigil.system import mounts, sysinit
from vigil.system.fstab import MS, resolve
from vigil.base.numbers import parse_seconds

Log = Callable[[str, str], None]
NEW_ROOT = "/newroot"
MAX_ROOT_TIMEOUT = 3600.0  # a root device later than an hour is not coming


def wanted() -> bool:
    """In an initramfs (a ramfs or tmpfs root) with root= to go to."""
    if "root" not in sysinit.cmdline_args(sysinit.read_cmdline()):
        return False
    root = next((m for m in mounts.mounted() if m.target == "/"), None)
    return root is not None and root.fstype in ("rootfs", "ramfs", "tmpfs")


def _wait_for(device: str, timeout: float, log: Log) -> bool:
    deadline = time.monotonic() + timeout
    announced = False
    while not os.path.exists(device):
        if time.monotonic() >= deadline:
            return False
        if not announced and time.monotonic() > deadline - timeout + 1:
            log("info", f"waiting up to {timeout:g}s for the root device {device}")
            announced = True
        time.sleep(0.05)
    return True


def _free_initramfs(top: str = "/") -> None:
    """Deletes the initramfs's files (its memory), staying on its device."""
    dev = os.lstat(top).st_dev
    for entry in os.scandir(top):
        path = entry.path
        if path == NEW_ROOT:
            continue
        info = os.lstat(path)
        if info.st_dev != dev:
            continue  # a mount point: not ours to empty
        if stat.S_ISDIR(info.st_mode):
            _free_initramfs(path)
            try:
                os.rmdir(path)
            except OSError:
                pass
        else:
            os.unlink(path)


def switch(log: Log) -> str:
    """Does the switch and executes the new init; returns why it could not."""
    args = sysinit.cmdline_args(sysinit.read_cmdline())
    device = resolve(args["root"])
    given = args.get("vigil.root-timeout") or "30"
    timeout = parse_seconds(given, MAX_ROOT_TIMEOUT)
    if timeout is None:
        log("warning", f"vigil.root-timeout={given!r} is not a number of seconds up to "
                       f"{MAX_ROOT_TIMEOUT:g}: 30s")
        timeout = 30.0
    sysinit.load_modules(sysinit.wanted_modules("/", log), log)
    if not _wait_for(device, timeout, log):
        return f"root device {device} did not appear within {timeout:g}s"
    fstypes = [args["rootfstype"]] if args.get("rootfstype") else ["ext4", "ext2", "xfs", "btrfs"]
    flags = MS["ro"] if "ro" in args else 0
    os.makedirs(NEW_ROOT, exist_ok=True)
    errors = []
    for fstype in fstypes:
        try:
            syscalls.mount(device, NEW_ROOT, fstype, flags, "")
            break
        except OSError as err:
            errors.append(f"{fstype}: {err.strerror}")
    else:
        return f"cannot mount {device} ({'; '.join(errors)})"
    init = args.get("init", "/sbin/init")
    if not os.access(NEW_ROOT + init, os.X_OK, follow_symlinks=False) and not os.path.exists(
            NEW_ROOT + init):
        syscalls.umount(NEW_ROOT)
        return f"{device} has no {init}"
    for path in ("/dev", "/proc", "/sys", "/run"):
        if mounts.is_mountpoint(path):
            os.makedirs(NEW_ROOT + path, exist_ok=True)
            syscalls.mount(path, NEW_ROOT + path, "", MS["move"])
    log("info", f"switching to {device} ({fstype}), then {init}")
    _free_initramfs()
    os.chdir(NEW_ROOT)
    syscalls.mount(".", "/", "", MS["move"])
    os.chroot(".")
    os.chdir("/")
    os.execv(init, [init])
    return "exec failed"  # not reached: execv raises on failure
