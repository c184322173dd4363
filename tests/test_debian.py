"""A stock Debian (build/debian.ext4, initramfs/distro.py) with vigil's .deb:
booted with vigil as PID 1 through the initramfs's switch_root, its own
services converted from systemd; and, after `dpkg -i` and `dpkg --purge`
of the .deb, booted with its own systemd.

Two boots in all, each with a fresh copy of the image and generous
timeouts (TCG on a shared 2-core machine; the first boot also makes the ssh
host keys)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for

sys.path.insert(0, str(ROOT / "qemu"))
sys.path.insert(0, str(ROOT / "initramfs"))
from run import BUILD, VM, authorize, copy_sparse, ensure_distro, put_files, ssh, ssh_banner, \
    ssh_key

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None or shutil.which("mmdebstrap") is None
    or not list(Path("/boot").glob("vmlinuz-*")),
    reason="needs qemu-system-x86, mmdebstrap and linux-image-amd64 (make setup installs them)")

LOGIN = "debian-vigil login:"
CRON_LINE = b"* * * * * root echo ran by cron > /root/cron-ran\n"


def clean(image: Path) -> bool:
    """e2fsck -fn finds nothing and the journal needs no recovery (a
    cleanly unmounted ext4; e2fsck -n alone cannot tell)."""
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True,
                          timeout=300)
    out = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True,
                         check=True).stdout
    features = next(line for line in out.splitlines() if line.startswith("Filesystem features"))
    return fsck.returncode == 0 and "needs_recovery" not in features


@pytest.fixture(scope="module")
def vigil_vm() -> Iterator[VM]:
    ensure_distro()
    root = copy_sparse(BUILD / "debian.ext4", BUILD / "debian-test.ext4")
    authorize(root, ssh_key())
    put_files(root, {"/etc/cron.d/vigil-test": (CRON_LINE, 0o644)})
    machine = VM("debian", timeout=1500, root=root).start()
    try:
        yield machine
    finally:
        machine.kill()


def test_login_prompt_on_ttys0(vigil_vm):
    vigil_vm.wait_for(LOGIN, timeout=900)
    assert "switching to /dev/vda (ext4), then /usr/sbin/vigil" in vigil_vm.console()


def test_sshd_banner_and_key_login(vigil_vm):
    banner = ssh_banner(vigil_vm.ssh_port, time.monotonic() + 900)
    assert banner.startswith(b"SSH-2.0-OpenSSH")
    done = ssh(vigil_vm.ssh_port, ssh_key(), "cat /proc/1/cmdline | tr '\\0' ' '; echo; id -u")
    assert done.returncode == 0, done.stderr
    cmdline, uid = done.stdout.splitlines()
    assert "/usr/sbin/vigil" in cmdline and uid == "0"


def test_vigilctl_status_over_ssh(vigil_vm):
    done = ssh(vigil_vm.ssh_port, ssh_key(), "vigilctl status --json")
    assert done.returncode == 0, done.stderr
    states = {unit["unit"]: unit["state"] for unit in json.loads(done.stdout)}
    for unit in ("ssh", "cron", "getty@ttyS0", "udev", "network", "devlog"):  # network: a lease
        assert states[unit] == "running", states
    for unit in ("ssh-keys", "systemd-tmpfiles-setup", "udev-trigger"):
        assert states[unit] == "exited", states
    done = ssh(vigil_vm.ssh_port, ssh_key(), "vigilctl logs network")
    assert "eth0 up 10.0.2.15/24 (DHCP, 86400s)" in done.stdout, done.stdout + done.stderr


def test_syslog_messages_reach_vigils_logs(vigil_vm):
    """/dev/log under vigil: what a program sends to syslog is in `logs devlog`."""
    done = ssh(vigil_vm.ssh_port, ssh_key(), "logger -p auth.warning -t vigiltest hello-devlog")
    assert done.returncode == 0, done.stderr
    def logged() -> str:
        out = ssh(vigil_vm.ssh_port, ssh_key(), "vigilctl logs devlog").stdout
        return out if "vigiltest" in out else ""
    out = wait_for(logged, timeout=60, what="the syslog line in vigilctl logs devlog")
    line = next(x for x in out.splitlines() if "vigiltest" in x)
    assert "auth.warning uid=0 pid=" in line and line.endswith("vigiltest: hello-devlog"), line


def test_converted_units_and_report(vigil_vm):
    done = ssh(vigil_vm.ssh_port, ssh_key(),
               "ls /etc/vigil/units; cat /etc/vigil/conversion.txt")
    assert done.returncode == 0, done.stderr
    for name in ("ssh.toml", "cron.toml", "systemd-tmpfiles-setup.toml"):
        assert name in done.stdout.split()
    assert "systemd-journald.service: not converted: vigil keeps" in done.stdout


def test_cron_job_runs(vigil_vm):
    def ran() -> bool:
        out = ssh(vigil_vm.ssh_port, ssh_key(), "cat /root/cron-ran 2>/dev/null").stdout
        return out.strip() == "ran by cron"
    wait_for(ran, timeout=240, what="the test's cron job to run")


def test_zz_poweroff_leaves_a_clean_root(vigil_vm):
    """Last of the vigil boot (zz): vigilctl poweroff over ssh ends QEMU."""
    ssh(vigil_vm.ssh_port, ssh_key(), "vigilctl poweroff")
    assert vigil_vm.wait_exit(timeout=300) == 0
    console = vigil_vm.console()
    assert "reboot: Power down" in console and "Kernel panic" not in console
    assert clean(vigil_vm.root), "e2fsck -fn and needs_recovery on the root after poweroff"


def test_dpkg_install_and_purge_then_systemd_boots():
    """The .deb installed and purged by dpkg in a fresh root: the purge takes
    what the post-install wrote, leaves systemd as the init, and the root
    then boots its own systemd to ssh and a login prompt."""
    import distro
    ensure_distro()
    version = (BUILD / "kernel-version").read_text().strip()
    staging = distro.stage(BUILD, version, BUILD / "debian-purge-root", modules=False)
    try:
        deb = next(BUILD.glob("vigil_*_amd64.deb"))
        assert "Setting up vigil" in distro.install_deb(staging, deb)
        assert (staging / "usr/sbin/vigil").exists()
        assert (staging / "etc/vigil/units/ssh.toml").exists()
        distro._chroot(staging, "dpkg", "--purge", "vigil")
        for path in ("usr/sbin/vigil", "usr/bin/vigilctl", "etc/vigil/units",
                     "etc/vigil/conversion.txt", "var/lib/vigil", "usr/lib/vigil",
                     "usr/lib/python3/dist-packages/vigil"):
            assert not (staging / path).exists(), path
        assert (staging / "etc/vigil/network.toml").exists(), "the admin's own file stays"
        assert os.readlink(staging / "sbin/init") == "/lib/systemd/systemd"
        image = distro.make_image(staging, BUILD / "debian-purged.ext4")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    authorize(image, ssh_key())
    vm = VM("debian", timeout=1500, root=image, init="/lib/systemd/systemd").start()
    try:
        vm.wait_for(LOGIN, timeout=900)
        assert ssh_banner(vm.ssh_port, time.monotonic() + 600).startswith(b"SSH-2.0-OpenSSH")
        done = ssh(vm.ssh_port, ssh_key(), "cat /proc/1/comm; systemctl is-active ssh cron")
        assert done.stdout.split() == ["systemd", "active", "active"], done
        ssh(vm.ssh_port, ssh_key(), "systemctl poweroff")
        assert vm.wait_exit(timeout=300) == 0
    finally:
        vm.kill()
    assert clean(image)
