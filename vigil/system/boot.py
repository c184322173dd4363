"""Early boot, as a step of its own on PID 1's path (and `--system`'s):
called before the daemon is built and once it can log, never from its
constructor, so building a daemon has no side effects on the machine.

1. `mount_and_switch`, before anything is open: /proc, /sys, /dev, /run,
   and the switch from an initramfs to the real root (which execs vigil
   afresh on success). Its log lines wait until the event log exists.
2. `configure`, once the event log exists: command line, hostname, modules,
   fstab, sysctl, and what every unit's environment gets from /etc.
"""

from __future__ import annotations

from collections.abc import Callable
from vigil.base.records import dataclass, field

from vigil.kernel import namespaces
from vigil.system import shutdown, switchroot, sysinit

Log = Callable[[str, str], None]


@dataclass
class Booted:
    """What early boot found out, for the daemon."""

    options: sysinit.BootOptions = field(default_factory=sysinit.BootOptions)
    swaps: list[str] = field(default_factory=list)
    hostname: str | None = None
    unit_env: dict[str, str] = field(default_factory=dict)


def mount_and_switch() -> list[tuple[str, str]]:
    """The basic mounts, and the switch out of an initramfs; the log lines
    as (severity, message) for the event log once it exists."""
    lines: list[tuple[str, str]] = []
    sysinit.mount_basics(lambda severity, message: lines.append((severity, message)))
    if namespaces.on_machine() and switchroot.wanted():
        lines.append(("error", f"staying in the initramfs: {_switch_root()}"))
    return lines


def configure(root: str, log: Log) -> Booted:
    """The rest of early boot, logged as it goes; each step's failure is logged
    and the next one runs (vigil/system/sysinit.py)."""
    options, swaps, hostname = sysinit.configure(log, root)
    shutdown.ctrl_alt_del_to_signal(log)
    return Booted(options, swaps, hostname, sysinit.unit_environment(root))


def _switch_root() -> str:
    """Before anything else is open: log straight to the console."""
    def log(severity: str, message: str) -> None:
        tag = {"error": "ERROR ", "warning": " WARN "}.get(severity, " INFO ")
        if severity != "debug":
            print(f"[{tag}] {message}", flush=True)
    try:
        return switchroot.switch(log)
    except OSError as err:
        return f"switching root failed: {err}"
