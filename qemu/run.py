"""Boots the vigil image in QEMU.

    python qemu/run.py [--flavour initramfs|disk|debian] [--init PATH]

The debian flavour boots build/debian.ext4 (initramfs/distro.py: a stock
Debian with vigil's .deb installed) through the same initramfs's
switch_root, with vigil as its init (`--init /lib/systemd/systemd` boots the
image's own systemd instead) and its sshd forwarded to 127.0.0.1.

TCG (nested KVM does not work on these machines; see PLATFORM-NOTES), the
uncompressed vmlinux taken out of Debian's bzImage (it boots directly, PVH,
and saves ~3 s of in-guest decompression), a serial console on the terminal
or in a log file, a data disk with an fstab entry, and user networking with
restrict=on whose forwards listen on 127.0.0.1 only: the guest's control
endpoint (TLS and a token) and the demo web server. Every boot runs under
`timeout`. On a terminal, Ctrl-A X quits QEMU.
"""

from __future__ import annotations

import argparse
import lzma
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
GUEST_CONTROL, GUEST_WEB, GUEST_SSH = 7000, 8765, 22
VIGIL_INIT = "/usr/sbin/vigil"
XZ_MAGIC = b"\xfd7zXZ\x00"


def vmlinux(build: Path = BUILD) -> Path:
    """The ELF kernel inside /boot/vmlinuz-V (an xz stream), cached in build/."""
    version = (build / "kernel-version").read_text().strip()
    target = build / f"vmlinux-{version}"
    if target.exists():
        return target
    data = Path(f"/boot/vmlinuz-{version}").read_bytes()
    start = data.find(XZ_MAGIC)
    if start < 0:
        raise SystemExit(f"/boot/vmlinuz-{version}: no xz payload found")
    kernel = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if kernel[:4] != b"\x7fELF":
        raise SystemExit(f"/boot/vmlinuz-{version}: the xz payload is not an ELF kernel")
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(kernel)
    tmp.replace(target)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def data_disk(path: Path) -> Path:
    """A fresh ext4 data disk holding /data/hello, built without loop mounts."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "hello").write_text("hello from the data disk\n")
        path.unlink(missing_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "vigil-data", "-d", tmp, str(path), "32M"],
                       check=True)
    return path


class VM:
    def __init__(self, flavour: str = "initramfs", log: Path | None = None,
                 timeout: float = 600, append: str = "", build: Path = BUILD,
                 interactive: bool = False, image: Path | None = None,
                 init: str = VIGIL_INIT, root: Path | None = None) -> None:
        self.build, self.flavour = build, flavour
        self.log = log or build / f"console-{flavour}.log"
        self.control_port, self.web_port, self.ssh_port = free_port(), free_port(), free_port()
        self.data = data_disk(build / f"data-{flavour}.img")
        drives = ["-drive", f"file={self.data},format=raw,if=virtio"]
        cmdline = "console=ttyS0 panic=1 quiet"
        if flavour == "debian":
            # the image itself is the disk (a test or the demo passes a copy)
            self.root = root or build / "debian.ext4"
            drives = ["-drive", f"file={self.root},format=raw,if=virtio"]
            # eth0 under both inits: udev would rename it (ens3), and the
            # image's network configs (vigil-net, systemd-networkd) name eth0
            cmdline += f" root=/dev/vda rw net.ifnames=0 init={init}"
        elif flavour == "disk":
            root = build / "root-run.ext4"
            shutil.copyfile(build / "root.ext4", root)
            # the root disk first: /dev/vda; the data disk then is /dev/vdb
            drives = ["-drive", f"file={root},format=raw,if=virtio", *drives]
            cmdline += " root=/dev/vda rw"
        else:
            drives = ["-drive", f"file={build / 'empty.img'},format=raw,if=virtio", *drives]
            _empty(build / "empty.img")
        forwards = (f"hostfwd=tcp:127.0.0.1:{self.control_port}-:{GUEST_CONTROL},"
                    f"hostfwd=tcp:127.0.0.1:{self.web_port}-:{GUEST_WEB},"
                    f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:{GUEST_SSH}")
        serial = ["-serial", "mon:stdio"] if interactive else ["-serial", f"file:{self.log}"]
        limit = ["timeout", "--kill-after=5", *(["--foreground"] if interactive else []),
                 str(int(timeout))]
        self.cmd = [*limit, "qemu-system-x86_64", "-accel", "tcg", "-M", "pc",
                    "-m", "512", "-cpu", "max", "-smp", "1", "-nodefaults", "-no-reboot",
                    "-display", "none", *serial, "-kernel", str(vmlinux(build)),
                    "-initrd", str(image or build / "initramfs.cpio.gz"),
                    "-append", f"{cmdline} {append}".strip(), *drives,
                    "-netdev", f"user,id=n0,restrict=on,{forwards}",
                    "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-rng-pci"]
        self.log.unlink(missing_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> VM:
        interactive = "--foreground" in self.cmd
        self.proc = subprocess.Popen(self.cmd, stdin=None if interactive else subprocess.DEVNULL,
                                     start_new_session=not interactive)
        return self

    def console(self) -> str:
        try:
            return self.log.read_text(errors="replace").replace("\r\n", "\n")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.console():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}) before {text!r}:\n"
                                   + self.console()[-3000:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} on the console within {timeout:g}s:\n"
                                   + self.console()[-3000:])
            time.sleep(0.2)

    def vigilctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """vigilctl on the host, through the forwarded TLS control endpoint."""
        secrets = self.build / "secrets"
        return subprocess.run(
            [sys.executable, "-m", "vigilctl", "--remote", f"127.0.0.1:{self.control_port}",
             "--token-file", str(secrets / "token"), "--tls", "--ca", str(secrets / "tls.crt"),
             "--timeout", str(timeout), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=timeout + 30)

    def wait_exit(self, timeout: float = 120) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """QEMU and `timeout` together (they share a session of their own)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)


def copy_sparse(src: Path, dest: Path) -> Path:
    """A copy of a sparse disk image that stays sparse (1.5 GB, mostly holes)."""
    dest.unlink(missing_ok=True)
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    return dest


def put_files(image: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Writes files (path -> data, mode; owned by root) into an ext4 image
    that is not mounted, with debugfs: no loop mount, nothing on the host."""
    with tempfile.TemporaryDirectory() as tmp:
        script = []
        for n, (path, (data, mode)) in enumerate(sorted(files.items())):
            local = Path(tmp, str(n))
            local.write_bytes(data)
            script += [f"mkdir {os.path.dirname(path)}", f"rm {path}", f"write {local} {path}",
                       f"sif {path} mode 0{0o100000 | mode:o}", f"sif {path} uid 0",
                       f"sif {path} gid 0"]
        Path(tmp, "cmds").write_text("\n".join(script) + "\n")
        # debugfs reports "already exists" and the like on stderr and goes on
        subprocess.run(["debugfs", "-w", "-f", str(Path(tmp, "cmds")), str(image)],
                       check=True, capture_output=True, timeout=120)


def ssh_key(build: Path = BUILD) -> Path:
    """A key pair for root's authorized_keys in a test or demo boot."""
    key = build / "secrets" / "debian_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vigil-test",
                        "-f", str(key)], check=True)
    return key


def authorize(image: Path, key: Path) -> None:
    put_files(image, {"/root/.ssh/authorized_keys": (Path(f"{key}.pub").read_bytes(), 0o600)})


def ssh(port: int, key: Path, command: str, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    """One command as root in the guest, over the forwarded sshd."""
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o",
         "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
         "LogLevel=ERROR", "-o", "ConnectTimeout=30", "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def ssh_banner(port: int, deadline: float) -> bytes:
    """sshd's banner on the forward: slirp accepts a connection before the
    guest listens, then closes it, so connect again until the banner comes."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                # the guest may take seconds to answer under TCG
                conn.settimeout(max(2.0, min(5.0, deadline - time.monotonic())))
                data = conn.recv(256)
                if data.startswith(b"SSH-"):
                    return data
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"no ssh banner on 127.0.0.1:{port}")


def _empty(path: Path) -> None:
    """A placeholder first disk, so the data disk is /dev/vdb in both flavours."""
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(1 << 20)


def ensure_built(build: Path = BUILD) -> None:
    """(Re)builds the image unless it was built from exactly this tree: a boot
    of an image older than the code would test stale code."""
    subprocess.run([sys.executable, str(ROOT / "initramfs" / "build.py"), "--out",
                    str(build), "--if-stale"], check=True)


def ensure_distro(build: Path = BUILD) -> None:
    """The Debian image, rebuilt when the .deb or the builder changed."""
    ensure_built(build)
    subprocess.run([sys.executable, str(ROOT / "initramfs" / "distro.py"), "--out",
                    str(build), "--if-stale"], check=True)


def demo_debian(interactive: bool, init: str) -> int:
    """`make run-distro`: a copy of build/debian.ext4 booted with INIT."""
    ensure_distro()
    root = copy_sparse(BUILD / "debian.ext4", BUILD / "debian-run.ext4")
    key = ssh_key()
    authorize(root, key)
    vm = VM("debian", timeout=24 * 3600 if interactive else 900, interactive=interactive,
            init=init, root=root)
    if interactive:
        print(f"Booting Debian with {init}; ssh -p {vm.ssh_port} -i {key} root@127.0.0.1.\n"
              "Log in as root (no password); Ctrl-A X to leave.")
        return vm.start().wait_exit(timeout=24 * 3600)
    vm.start()
    try:
        began = time.monotonic()
        banner = ssh_banner(vm.ssh_port, began + 600).decode(errors="replace").strip()
        print(f"{banner} after {time.monotonic() - began:.1f}s (TCG, no KVM)\n")
        command = "vigilctl status" if init == VIGIL_INIT else "systemctl --no-pager status"
        print(f"$ ssh root@guest {command}")
        print(ssh(vm.ssh_port, key, command).stdout)
        off = "vigilctl poweroff" if init == VIGIL_INIT else "systemctl poweroff"
        print(f"$ ssh root@guest {off}")
        ssh(vm.ssh_port, key, off)
        code = vm.wait_exit(timeout=180)
        tail = [line for line in vm.console().splitlines() if line.strip()][-6:]
        print("\n".join(tail))
        return code
    finally:
        vm.kill()


def demo(flavour: str, interactive: bool) -> int:
    """`make run`: on a terminal, the console; otherwise boot, status, poweroff."""
    ensure_built()
    if interactive:
        vm = VM(flavour, interactive=True, timeout=24 * 3600)
        print(f"Booting vigil ({flavour}); the control endpoint is on 127.0.0.1:"
              f"{vm.control_port}, the demo web server on 127.0.0.1:{vm.web_port}.\n"
              "Log in as root (no password); `poweroff` or Ctrl-A X to leave.")
        return vm.start().wait_exit(timeout=24 * 3600)
    vm = VM(flavour, timeout=600).start()
    try:
        began = time.monotonic()
        vm.wait_for("Reached target default", timeout=400)
        print(f"booted to the default target in {time.monotonic() - began:.1f}s "
              "(TCG, no KVM)\n")
        print("$ vigilctl --remote ... status")
        print(vm.vigilctl("status").stdout)
        print("$ vigilctl --remote ... poweroff")
        print(vm.vigilctl("poweroff").stdout)
        code = vm.wait_exit(timeout=120)
        tail = [line for line in vm.console().splitlines() if line.strip()][-6:]
        print("\n".join(tail))
        return code
    finally:
        vm.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Boot the vigil image in QEMU.")
    p.add_argument("--flavour", choices=["initramfs", "disk", "debian"], default="initramfs")
    p.add_argument("--init", default=VIGIL_INIT,
                   help="debian: the root's init (/lib/systemd/systemd for its own systemd)")
    p.add_argument("--interactive", action="store_true", default=None,
                   help="serial console on this terminal (default when there is one)")
    opts = p.parse_args(argv)
    interactive = sys.stdin.isatty() and sys.stdout.isatty() if opts.interactive is None \
        else opts.interactive
    if opts.flavour == "debian":
        return demo_debian(interactive, opts.init)
    return demo(opts.flavour, interactive)


if __name__ == "__main__":
    sys.exit(main())
