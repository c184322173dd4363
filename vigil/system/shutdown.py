"""The end of a system's life, after the units have stopped: kill what is
left, swapoff, sync, unmount, reboot(2).

This runs outside the event loop, at the very end, so it waits by polling
with short sleeps; every wait has a deadline, and the whole sequence is
bounded: past `overall` seconds it goes straight to sync and reboot(2).
"""

from __future__ import annotations

import enum
import os
import signal
import time
from collections.abc import Callable

from vigil.kernel import namespaces, syscalls
from vigil.system import mounts

Log = Callable[[str, str], None]


class Kind(enum.Enum):
    REBOOT = "reboot"
    HALT = "halt"
    POWEROFF = "poweroff"


# reboot(2) commands (linux/reboot.h)
COMMANDS = {Kind.REBOOT: 0x01234567, Kind.HALT: 0xCDEF0123, Kind.POWEROFF: 0x4321FEDC}
CAD_OFF = 0


def others() -> list[int]:
    """Every process but us (and kernel threads, which have no cmdline)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read(1):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_all(log: Log, grace: float) -> None:
    """SIGTERM (and SIGCONT) to every remaining process, then SIGKILL after grace.

    Only PID 1 may do this: kill(-1) from anything else reaches the whole
    machine, so a forced non-PID-1 run signals only its own descendants."""
    if os.getpid() != 1:
        log("warning", "not PID 1: leaving other processes alone")
        return
    began = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(-1, sig)
        except ProcessLookupError:
            return
    deadline = began + grace
    while time.monotonic() < deadline:
        reap()
        if not others():
            log("info", f"every process ended on SIGTERM in "
                        f"{(time.monotonic() - began) * 1000:.0f} ms")
            return
        time.sleep(0.02)
    left = others()
    log("warning", f"{len(left)} process(es) still there after {grace:g}s: SIGKILL")
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5.0
    while others() and time.monotonic() < deadline:
        reap()
        time.sleep(0.02)
    reap()


def final(kind: Kind, log: Log, swaps: list[str], grace: float = 5.0,
          overall: float = 30.0) -> None:
    """Everything after the units stopped, ending in reboot(2). Returns only
    when reboot(2) is not ours to call or failed."""
    began = time.monotonic()
    machine = namespaces.on_machine()

    def timed(name: str, action: Callable[[], None]) -> None:
        if time.monotonic() - began > overall:
            log("error", f"shutdown took more than {overall:g}s: skipping {name}")
            return
        t0 = time.monotonic()
        try:
            action()
        except Exception as err:
            log("error", f"{name} failed: {err}")
        log("info", f"{name}: {(time.monotonic() - t0) * 1000:.0f} ms")

    timed("killing remaining processes", lambda: kill_all(log, grace))
    if machine:
        timed("swapoff", lambda: _swapoff(_all_swaps(), log))
    else:
        timed("swapoff", lambda: _swapoff(swaps, log))
    os.sync()
    if namespaces.may("mount"):
        timed("unmounting", lambda: mounts.unmount_all(log, superblocks=machine))
    os.sync()
    if os.getpid() != 1:
        log("warning", f"not PID 1: {kind.value} ends here without reboot(2)")
        return
    log("info", f"{kind.value} now (after {(time.monotonic() - began) * 1000:.0f} ms)")
    try:
        syscalls.reboot(COMMANDS[kind])
    except OSError as err:
        log("error", f"reboot(2) for {kind.value} failed: {err.strerror}")


def _all_swaps() -> list[str]:
    try:
        with open("/proc/swaps") as f:
            return [line.split()[0] for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        return []


def _swapoff(devices: list[str], log: Log) -> None:
    for device in devices:
        try:
            syscalls.swapoff(device)
        except OSError as err:
            log("warning", f"swapoff {device}: {err.strerror}")


def ctrl_alt_del_to_signal(log: Log) -> None:
    """Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once."""
    if namespaces.on_machine():
        try:
            syscalls.reboot(CAD_OFF)
        except OSError as err:
            log("warning", f"reboot(CAD_OFF) failed: {err.strerror}")
