"""Builds build/debian.ext4: a stock Debian bookworm root with vigil's .deb
installed by dpkg, bootable both ways (init=/usr/sbin/vigil, or its own
systemd with init=/lib/systemd/systemd).

    python initramfs/distro.py [--out build] [--if-stale]

The base is `mmdebstrap --variant=minbase` with systemd-sysv, udev,
openssh-server, cron and vigil's dependencies, from the machine's own apt
sources (no mirror is named here); it is cached in build/ under a digest of
the package list and the sources, so only a change to those downloads again.
Then, in a staging directory: the running kernel's modules (without the
desktop and wireless drivers no VM has), hostname, fstab, an empty root
password for the serial console (keys only over ssh, as sshd's default
says), no ssh host keys (each image makes its own on first boot, under
either init), DHCP on QEMU's user network under both inits (vigil-net and
systemd-networkd), and `dpkg -i` of the .deb, whose
post-install converts the services. `mkfs.ext4 -d` makes the image without
loop mounts. A digest of every input decides whether to rebuild.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
sys.path.insert(0, str(ROOT / "initramfs"))
import build as initramfs  # noqa: E402
import build_deb  # type: ignore[import-not-found]  # noqa: E402

SUITE = "bookworm"
# udev: systemd's getty on ttyS0 waits for the device unit udev announces,
# and a real Debian box has it; kmod: modprobe, which systemd's
# kmod-static-nodes and binfmt_misc automount need. The python3-* packages are the .deb's
# dependencies, taken from the base so that dpkg -i needs no network.
PACKAGES = ["systemd-sysv", "udev", "kmod", "openssh-server", "cron",
            "python3-cffi-backend", "python3-prctl", "python3-pyroute2", "python3-tomli-w"]
MODULE_SKIP = ("kernel/drivers/gpu", "kernel/drivers/net/wireless", "kernel/drivers/media",
               "kernel/drivers/infiniband", "kernel/sound", "kernel/drivers/staging",
               "kernel/drivers/bluetooth", "kernel/net/bluetooth", "kernel/drivers/iio",
               "kernel/drivers/comedi", "kernel/drivers/isdn")
HOSTNAME = "debian-vigil"
IMAGE_SIZE = "1536M"
NETWORKD = """[Match]
Name=eth0

[Network]
DHCP=ipv4
"""
# QEMU's user network has a DHCP server (10.0.2.15 for the guest); both inits ask it.
VIGIL_NETWORK = """# eth0 from QEMU's DHCP server, as systemd-networkd's DHCP=ipv4 under systemd.
[interfaces.eth0]
dhcp = true
wait = 10
"""
SSH_KEYS_DROPIN = """# Host keys made on the first boot (the image ships none), before the
# unit's own configuration test, which fails without them.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""


def sources() -> Path:
    """The machine's apt sources for Debian, as mmdebstrap's mirror list."""
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.exists():
            return path
    raise SystemExit("no /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")


def base_tarball(out: Path) -> Path:
    """The mmdebstrap root as a tarball, cached by package list and sources."""
    src = sources()
    key = hashlib.sha256("\n".join([SUITE, *PACKAGES, src.read_text()]).encode()).hexdigest()
    tarball = out / f"debian-base-{key[:16]}.tar"
    if tarball.exists():
        return tarball
    for old in out.glob("debian-base-*.tar"):
        old.unlink()
    tmp = tarball.with_suffix(".tmp.tar")
    subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--format=tar",
                    f"--include={','.join(PACKAGES)}", SUITE, str(tmp), str(src)],
                   check=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(build_deb.EPOCH)})
    tmp.replace(tarball)
    return tarball


def add_modules(root: Path, version: str) -> None:
    src = Path(f"/lib/modules/{version}")
    dest = root / "lib" / "modules" / version  # /lib is /usr/lib (merged /usr)

    def ignore(directory: str, names: list[str]) -> list[str]:
        rel = os.path.relpath(directory, src)
        return [n for n in names if os.path.normpath(os.path.join(rel, n)) in MODULE_SKIP]
    shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    for link in ("build", "source"):
        (dest / link).unlink(missing_ok=True)
    subprocess.run(["depmod", "-b", str(root), version], check=True)


def configure(root: Path) -> None:
    """What an installer would ask about, answered for a VM on QEMU's user network."""
    (root / "etc/hostname").write_text(HOSTNAME + "\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    (root / "etc/fstab").write_text("# <file system> <mount point> <type> <options> <dump> <pass>\n"
                                    "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    dropin = root / "etc/systemd/system/ssh.service.d/host-keys.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(SSH_KEYS_DROPIN)
    (root / "etc/systemd/network/20-eth0.network").write_text(NETWORKD)
    for target, unit in (("multi-user", "systemd-networkd.service"),
                         ("sockets", "systemd-networkd.socket")):
        link = root / f"etc/systemd/system/{target}.target.wants/{unit}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(f"/lib/systemd/system/{unit}")
    (root / "etc/vigil").mkdir(parents=True, exist_ok=True)
    (root / "etc/vigil/network.toml").write_text(VIGIL_NETWORK)
    _chroot(root, "passwd", "-d", "root")


def install_deb(root: Path, deb: Path) -> str:
    """dpkg -i in the root (its post-install converts the units); its output."""
    shutil.copyfile(deb, root / "tmp" / deb.name)
    try:
        return _chroot(root, "dpkg", "-i", f"/tmp/{deb.name}")
    finally:
        (root / "tmp" / deb.name).unlink()


def _chroot(root: Path, *cmd: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["chroot", str(root), *cmd], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"chroot {' '.join(cmd)}: status {done.returncode}\n"
                         f"{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def digest(deb: Path, version: str) -> str:
    h = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), deb.read_bytes(), sources().read_bytes(),
                 version.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def stage(out: Path, version: str, staging: Path, modules: bool = True) -> Path:
    """The configured root in a directory, without vigil (the base extracted,
    the modules, the answers an installer would ask for)."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    subprocess.run(["tar", "-xpf", str(base_tarball(out)), "--numeric-owner", "-C",
                    str(staging)], check=True)
    if modules:
        add_modules(staging, version)
    configure(staging)
    return staging


def make_image(staging: Path, image: Path) -> Path:
    """mkfs.ext4 -d: the tree becomes a filesystem image, no loop mount."""
    tmp = image.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(build_deb.EPOCH)}
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "debian-root", "-U",
                    "d6e1a1b0-5f0e-4c55-9a49-000000000002", "-E",
                    "hash_seed=d6e1a1b0-5f0e-4c55-9a49-000000000003",
                    "-d", str(staging), str(tmp), IMAGE_SIZE], check=True, env=env)
    tmp.replace(image)
    return image


def build(out: Path, version: str, deb: Path) -> Path:
    staging = stage(out, version, out / "debian-root")
    report = install_deb(staging, deb)
    (out / "debian-dpkg.log").write_text(report)
    shutil.copyfile(staging / "etc/vigil/conversion.txt", out / "debian-conversion.txt")
    image = make_image(staging, out / "debian.ext4")
    shutil.rmtree(staging)
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the Debian root image with vigil installed.")
    p.add_argument("--out", default=str(ROOT / "build"))
    p.add_argument("--if-stale", action="store_true",
                   help="build only when an input changed since the last build in --out")
    opts = p.parse_args(argv)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    deb = build_deb.build(out)
    version = initramfs.kernel_version()
    stamp, want = out / "debian.inputs.sha256", digest(deb, version)
    if opts.if_stale and (out / "debian.ext4").exists() and stamp.exists() and \
            stamp.read_text().strip() == want:
        return 0
    stamp.unlink(missing_ok=True)
    image = build(out, version, deb)
    stamp.write_text(want + "\n")
    print(f"{image}: Debian {SUITE} with {deb.name} ({IMAGE_SIZE} sparse); "
          f"conversion report: {out / 'debian-conversion.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
