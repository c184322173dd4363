"""The hardware watchdog (vigil/system/hwwatchdog.py) with vigil as PID 1 of a real
kernel in QEMU, on the emulated i6300esb: a stopped PID 1 resets the
machine; a poweroff disarms it with the magic close.

PID 1 is stopped the only way the kernel allows from inside: ptrace
attaching sends it a SIGSTOP it cannot refuse (kill(2) of SIGSTOP to init
is dropped). The tracer is an ordinary transient unit (`vigilctl run`): no
hook in vigil for it. One boot, which resets once; run alone (a VM test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import ROOT

sys.path.insert(0, str(ROOT / "qemu"))
from run import BUILD, VM, ensure_built

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not list(Path("/boot").glob("vmlinuz-*")),
    reason="needs qemu-system-x86 and linux-image-amd64 (make setup installs them)")

ARMED = "watchdog: /dev/watchdog armed, timeout 10 s"
STOP_PID1 = ("import ctypes, time\n"
             "time.sleep(2)  # the run request's answer goes out first\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "if libc.ptrace(16, 1, None, None) != 0:  # PTRACE_ATTACH: SIGSTOP to pid 1\n"
             "    raise SystemExit(f'ptrace: errno {ctypes.get_errno()}')\n"
             "print('pid 1 stopped', flush=True)\n"
             "time.sleep(10**6)\n")


def vigilctl(vm: VM, *args: str) -> subprocess.CompletedProcess[str]:
    """As VM.vigilctl, from / (a transient unit takes the client's directory)."""
    secrets = vm.build / "secrets"
    return subprocess.run(
        [sys.executable, "-m", "vigilctl", "--remote", f"127.0.0.1:{vm.control_port}",
         "--token-file", str(secrets / "token"), "--tls", "--ca", str(secrets / "tls.crt"),
         "--timeout", "120", *args], capture_output=True, text=True, cwd="/", timeout=150,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def until(vm: VM, predicate: Callable[[str], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(vm.console()):
        if vm.proc is not None and vm.proc.poll() is not None:
            raise AssertionError(f"QEMU exited before {what}:\n" + vm.console()[-3000:])
        assert time.monotonic() < deadline, f"no {what} in {timeout:g}s:\n" + vm.console()[-3000:]
        time.sleep(0.5)


def test_a_stopped_pid1_resets_the_machine_and_poweroff_disarms():
    ensure_built()
    vm = VM("initramfs", timeout=1500, append="vigil.watchdog=10",
            log=BUILD / "console-watchdog.log")
    vm.cmd.remove("-no-reboot")  # the reset must boot again, for us to see it
    vm.cmd += ["-device", "i6300esb", "-action", "watchdog=reset"]
    vm.start()
    try:
        vm.wait_for("Reached target default", timeout=400)
        assert vm.console().count(ARMED) == 1
        run = vigilctl(vm, "run", "--name", "stop-pid1", "--no-block", "--",
                       "/usr/bin/python3.11", "-c", STOP_PID1)
        assert run.returncode == 0, run.stderr
        # PID 1 stopped: no pings; the i6300esb resets the machine, which boots again
        until(vm, lambda text: text.count(ARMED) == 2, 500, "a reset and a second boot")
        until(vm, lambda text: "Reached target default" in text.rpartition(ARMED)[2], 400,
              "the second boot's default target")
        assert vigilctl(vm, "poweroff").returncode == 0
        assert vm.wait_exit(timeout=120) == 0
        second = vm.console().rpartition(ARMED)[2]
        assert "watchdog: disarmed (magic close)" in second
        assert "did not stop" not in second and "reboot: Power down" in second
    finally:
        vm.kill()
