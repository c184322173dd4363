"""The hardware watchdog, for PID 1: `vigil.watchdog=SECONDS` on the kernel
command line opens /dev/watchdog, sets its timeout (WDIOC_SETTIMEOUT) and
pings it from the event loop, so a PID 1 that hangs or is stopped resets
the machine.

At the end of the system: poweroff and halt close it cleanly (the magic
close, "V", which disarms a driver without nowayout); reboot keeps it armed,
with a timeout long enough for the final sequence, through reboot(2), so a
reboot that hangs still resets. A re-exec closes it without "V" (armed), and
the new daemon opens it again within the timeout.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Callable

from vigil.runtime.loop import Loop, Timer

DEVICE = "/dev/watchdog"
WDIOC_KEEPALIVE = 0x80045705   # _IOR('W', 5, int)
WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)
MAX_SECONDS = 3600
Log = Callable[[str, str], None]


def requested(cmdline: str) -> int | None:
    """vigil.watchdog=SECONDS (1 to 3600), else None; a bad value is None too,
    and `from_cmdline` says so."""
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == "vigil.watchdog":
            seconds = int(value) if value.isdigit() else 0
            return seconds if 1 <= seconds <= MAX_SECONDS else -1
    return None


class HardwareWatchdog:
    __slots__ = ("fd", "log", "loop", "seconds", "timer")

    def __init__(self, fd: int, seconds: int, loop: Loop, log: Log) -> None:
        self.fd, self.loop, self.log = fd, loop, log
        self.seconds = self.set_timeout(seconds)
        self.timer: Timer | None = None
        self.ping()

    def set_timeout(self, seconds: int) -> int:
        """The timeout the device took (a driver rounds or caps it); the one
        asked for if the device cannot say (it keeps its own then)."""
        buf = bytearray(struct.pack("i", seconds))
        try:
            fcntl.ioctl(self.fd, WDIOC_SETTIMEOUT, buf, True)
        except OSError as err:
            self.log("warning", f"watchdog: cannot set the timeout to {seconds} s "
                                f"({err.strerror}); the device keeps its own")
            return seconds
        took = int(struct.unpack("i", buf)[0])
        return took if took > 0 else seconds

    def ping(self) -> None:
        """Pings now and again in a third of the timeout, from the loop: a
        loop that stops turning stops the pings."""
        try:
            os.write(self.fd, b"\0")
        except OSError as err:
            self.log("error", f"watchdog: ping failed: {err.strerror}")
        self.timer = self.loop.call_later(max(self.seconds / 3, 0.2), self.ping)

    def _stop_pinging(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def disarm(self) -> None:
        """Poweroff, halt: the magic close; the machine is meant to stop."""
        self._stop_pinging()
        try:
            os.write(self.fd, b"V")
        finally:
            os.close(self.fd)
        self.log("info", "watchdog: disarmed (magic close)")

    def through_reboot(self, seconds: int) -> None:
        """Reboot: armed, with time for the final sequence; no more pings."""
        self._stop_pinging()
        self.seconds = self.set_timeout(min(max(seconds, self.seconds), MAX_SECONDS))
        os.write(self.fd, b"\0")
        self.log("info", f"watchdog: armed through reboot ({self.seconds} s)")

    def at_end(self, kind: str, final_seconds: float) -> None:
        """The units have stopped: what the final sequence ends in decides."""
        try:
            if kind == "reboot":
                self.through_reboot(int(final_seconds) + 30)
            else:
                self.disarm()
        except OSError as err:
            self.log("error", f"watchdog: at {kind}: {err.strerror}")


def from_cmdline(cmdline: str, loop: Loop, log: Log,
                 device: str = DEVICE) -> HardwareWatchdog | None:
    """Opens the device when the command line asks for it; a problem is
    logged and the boot goes on without it."""
    seconds = requested(cmdline)
    if seconds is None:
        return None
    if seconds < 0:
        log("error", "vigil.watchdog= wants whole seconds from 1 to 3600; no watchdog")
        return None
    try:
        fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        log("error", f"watchdog: cannot open {device}: {err.strerror}; no watchdog")
        return None
    dog = HardwareWatchdog(fd, seconds, loop, log)
    log("info", f"watchdog: {device} armed, timeout {dog.seconds} s, pinged every "
                f"{max(dog.seconds / 3, 0.2):g} s")
    return dog
