"""vigil as PID 1 of a real kernel in QEMU: the bootable image, both
flavours (the whole system in the initramfs; an ext4 root via switch_root).

One boot per flavour, shared by the tests of that flavour; each boot ends
with a clean poweroff or reboot, checked on the console and on the disks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import ROOT, wait_for

sys.path.insert(0, str(ROOT / "qemu"))
from run import BUILD, VM, ensure_built

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or not list(Path("/boot").glob("vmlinuz-*")),
    reason="needs qemu-system-x86 and linux-image-amd64 (make setup installs them)")


def clean(image: Path) -> bool:
    """A cleanly unmounted ext4 has no needs_recovery (e2fsck -n alone cannot tell)."""
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True,
                         check=True).stdout
    features = next(line for line in out.splitlines() if line.startswith("Filesystem features"))
    return "needs_recovery" not in features


@pytest.fixture(scope="module")
def vm() -> Iterator[VM]:
    ensure_built()
    machine = VM("initramfs", timeout=600).start()
    try:
        machine.wait_for("Reached target default", timeout=400)
        yield machine
    finally:
        machine.kill()


def inspect(vm: VM) -> dict[str, str]:
    assert vm.vigilctl("restart", "inspect").returncode == 0
    lines = vm.vigilctl("logs", "-n", "7", "inspect").stdout.splitlines()
    report = {}
    for line in lines:
        key, _, value = line.split("inspect: ", 1)[1].partition(": ")
        report[key] = value
    return report


def test_boots_to_all_units_ready(vm):
    status = vm.vigilctl("status")
    states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[1:]
              if line and not line.startswith(" ")}
    for unit in ("web", "worker:0", "worker:1", "syslog", "getty@ttyS0"):
        assert states[unit] == "running", status.stdout
    for unit in ("network", "mdev", "setup"):
        assert states[unit] == "exited", status.stdout
    assert states["default"] == states["app"] == "active"
    assert states["udev"] == "skipped"


def test_modules_fstab_zombies_and_pid1_memory(vm):
    report = inspect(vm)
    for module in ("virtio_net", "virtio_blk", "ext4", "jbd2"):
        assert module in report["modules"].split()
    assert "/data=ext4" in report["mounts"].split()
    assert report["data"] == "hello from the data disk"
    assert report["zombies"] == "0"
    assert report["hostname"] == "vigil-demo"
    assert report["vigilctl"] == "pong", "vigilctl in the guest finds the system socket"
    label, rss_kb, unit = report["pid1"].split()
    print(f"\nPID 1 resident set in the VM: {int(rss_kb) / 1024:.1f} MB")
    # A budget, not the benchmark's target: it catches PID 1 importing
    # something heavy (asyncio, ssl, pyroute2 each add 10 MB or more).
    assert (label, unit) == ("VmRSS:", "kB") and 4096 < int(rss_kb) < 28 * 1024


def test_web_answers_through_the_forward(vm):
    with urllib.request.urlopen(f"http://127.0.0.1:{vm.web_port}/", timeout=30) as reply:
        assert reply.status == 200


def test_stop_start_restart(vm):
    assert vm.vigilctl("stop", "worker").stdout.strip() == "worker: inactive"
    assert vm.vigilctl("start", "worker").stdout.strip() == "worker: running"
    before = web_instance(vm)
    assert vm.vigilctl("restart", "web").returncode == 0
    after = web_instance(vm)
    assert after["state"] == "running" and after["pid"] != before["pid"], (before, after)


def web_instance(vm: VM) -> dict[str, Any]:
    instance: dict[str, Any] = json.loads(vm.vigilctl("status", "--json", "web").stdout)[0][
        "instances"][0]
    return instance


def test_sigkill_is_followed_by_a_restart(vm):
    first = web_instance(vm)["pid"]
    assert vm.vigilctl("kill", "-s", "KILL", "web").returncode == 0

    def replaced() -> bool:
        inst = web_instance(vm)
        return inst["state"] == "running" and inst["pid"] != first and \
            inst["last_exit"] == "killed by SIGKILL"
    wait_for(replaced, timeout=120, what="web to be restarted")


def test_zz_poweroff_is_clean(vm):
    """Last of this module (zz): ends the shared boot."""
    assert vm.vigilctl("poweroff").stdout.strip() == "stopping all units, then poweroff"
    assert vm.wait_exit(timeout=120) == 0
    console = vm.console()
    assert "reboot: Power down" in console
    assert "poweroff now" in console and "Kernel panic" not in console
    assert clean(vm.data), "the data disk was unmounted cleanly"


def test_disk_root_via_switch_root_and_reboot():
    ensure_built()
    vm = VM("disk", timeout=600).start()
    try:
        vm.wait_for("Reached target default", timeout=400)
        assert "switching to /dev/vda (ext4), then /sbin/init" in vm.console()
        assert "/=ext4" in inspect(vm)["mounts"].split()
        assert vm.vigilctl("reboot").returncode == 0
        assert vm.wait_exit(timeout=120) == 0
        assert "reboot: Restarting system" in vm.console()
    finally:
        vm.kill()
    assert clean(BUILD / "root-run.ext4") and clean(vm.data)
