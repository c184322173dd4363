"""The log store across a reboot of a real machine (QEMU, the ext4 root):
a unit logs lines and crashes, the machine reboots, and in the new boot
`vigilctl logs -b -1`, run in the guest on its own /var/log/vigil, shows
the previous boot's lines and the crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for

sys.path.insert(0, str(ROOT / "qemu"))
from run import BUILD, VM, ensure_built

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not list(Path("/boot").glob("vmlinuz-*")),
    reason="needs qemu-system-x86 and linux-image-amd64 (make setup installs them)")


def state(vm: VM, name: str) -> str:
    shown = vm.vigilctl("status", "--json", name)
    return str(json.loads(shown.stdout)[0]["state"]) if shown.stdout.startswith("[") else ""


def run_in_guest(vm: VM, name: str, *command: str) -> None:
    """`vigilctl run` from / (a transient unit works in the client's directory,
    and the host's is not in the guest)."""
    secrets = vm.build / "secrets"
    subprocess.run(
        [sys.executable, "-m", "vigilctl", "--remote", f"127.0.0.1:{vm.control_port}",
         "--token-file", str(secrets / "token"), "--tls", "--ca", str(secrets / "tls.crt"),
         "run", "--no-block", "--name", name, "--", *command],
        capture_output=True, text=True, cwd="/", timeout=150, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def guest_output(vm: VM, name: str, *command: str) -> str:
    """Runs a command in the guest as a transient unit; its output, once it ended."""
    run_in_guest(vm, name, *command)
    wait_for(lambda: state(vm, name) in ("exited", "failed", "inactive"), 120, f"{name} to end")
    return vm.vigilctl("logs", "-n", "200", name).stdout


def test_previous_boot_lines_and_crash_after_a_reboot():
    ensure_built()
    saved = BUILD / "root-logs.ext4"
    first = VM("disk", timeout=900).start()
    try:
        first.wait_for("Reached target default", timeout=400)
        run_in_guest(first, "crasher", "/bin/sh", "-c",
                     "echo before-crash-1; echo before-crash-2 >&2; exit 7")
        wait_for(lambda: state(first, "crasher") == "failed", 120, "crasher to fail")
        here = guest_output(first, "reader0", "/usr/bin/vigilctl", "logs", "-b", "-o", "cat",
                            "crasher")
        assert "before-crash-1" in here, here
        assert first.vigilctl("reboot").returncode == 0
        assert first.wait_exit(timeout=180) == 0
    finally:
        first.kill()
    shutil.copyfile(BUILD / "root-run.ext4", saved)
    second = VM("disk", timeout=900)  # copies a fresh root over root-run.ext4 ...
    shutil.copyfile(saved, BUILD / "root-run.ext4")  # ... so the first boot's disk goes back
    second.start()
    try:
        second.wait_for("Reached target default", timeout=400)
        before = guest_output(second, "reader1", "/usr/bin/vigilctl", "logs", "-b", "-1",
                              "--events", "-u", "crasher", "-o", "cat")
        assert "before-crash-1" in before and "before-crash-2" in before, before
        assert "unit.failed error crasher failed: exit 7" in before, before
        now = guest_output(second, "reader2", "/usr/bin/vigilctl", "logs", "-b", "-o", "cat",
                           "crasher")
        assert "before-crash" not in now, "this boot has no such lines"
        boots = guest_output(second, "reader3", "/usr/bin/vigilctl", "logs", "--list-boots")
        assert len([x for x in boots.splitlines() if x.split(": ", 1)[-1].strip()]) >= 2, boots
        assert second.vigilctl("poweroff").returncode == 0
        assert second.wait_exit(timeout=180) == 0
    finally:
        second.kill()
        saved.unlink(missing_ok=True)
