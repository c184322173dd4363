"""The boot-debian scenario: the same stock Debian image (initramfs/distro.py),
the same kernel and initramfs, booted with vigil and with its own systemd.

Measured from QEMU's start: sshd's banner on the forwarded port, and the
login prompt on ttyS0; then PID 1's resident set (VmRSS, over ssh), and a
clean poweroff. Every boot starts from a fresh copy of the image (made
before QEMU starts, outside the timing) with ssh host keys already in it:
neither boot spends its time on ssh-keygen, nor replays the other's journal.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

LOGIN = "debian-vigil login:"
INITS = {"vigil": "/usr/sbin/vigil", "systemd": "/lib/systemd/systemd"}
POWEROFF = {"vigil": "vigilctl poweroff", "systemd": "systemctl poweroff"}


def bench_image(qemu: Any) -> Path:
    """build/bench-debian.ext4: a copy of the image with host keys and root's key."""
    qemu.ensure_distro()
    image: Path = qemu.copy_sparse(qemu.BUILD / "debian.ext4",
                                   qemu.BUILD / "bench-debian.ext4")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "etc/ssh").mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-A", "-f", tmp], check=True, capture_output=True)
        files = {f"/etc/ssh/{key.name}": (key.read_bytes(),
                                          0o644 if key.suffix == ".pub" else 0o600)
                 for key in sorted((Path(tmp) / "etc/ssh").iterdir())}
    qemu.put_files(image, files)
    qemu.authorize(image, qemu.ssh_key())
    return image


def boot_debian(qemu: Any, name: str) -> dict[str, float]:
    image = bench_image(qemu)
    vm = qemu.VM("debian", timeout=900, root=image, init=INITS[name],
                 log=qemu.BUILD / f"console-bench-debian-{name}.log")
    banner: list[float] = []

    def wait_banner() -> None:
        """In a thread: a banner read must wait seconds under TCG, while
        the console is polled for the login prompt."""
        try:
            qemu.ssh_banner(vm.ssh_port, time.monotonic() + 600)
            banner.append(time.perf_counter() - began)
        except TimeoutError:
            pass
    began = time.perf_counter()
    vm.start()
    waiter = threading.Thread(target=wait_banner, daemon=True)
    waiter.start()
    try:
        login = 0.0
        while not login:
            if (not waiter.is_alive() and not banner) or vm.proc.poll() is not None:
                raise TimeoutError(f"boot-debian {name}: no banner or QEMU ended")
            if LOGIN in vm.console():
                login = time.perf_counter() - began
            time.sleep(0.05)
        waiter.join(timeout=600)
        if not banner:
            raise TimeoutError(f"boot-debian {name}: no ssh banner")
        key = qemu.ssh_key()
        status = qemu.ssh(vm.ssh_port, key, "grep VmRSS /proc/1/status").stdout.split()
        qemu.ssh(vm.ssh_port, key, POWEROFF[name])
        vm.wait_exit(timeout=300)
        return {"ssh_s": banner[0], "login_s": login, "rss_pid1_mb": int(status[1]) / 1024}
    finally:
        vm.kill()
