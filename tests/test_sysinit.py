"""The parsers of early boot: command line, fstab, modules.dep, sysctl.d."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.fstab import MS, parse, resolve
from vigil.sysinit import module_order, parse_cmdline, sysctl_settings, wanted_modules


def test_cmdline():
    opts = parse_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda ro quiet vigil.unit=rescue "
                         "vigil.debug console=ttyS0")
    assert (opts.unit, opts.debug, opts.read_only_root) == ("rescue", True, True)
    assert parse_cmdline("rw").read_only_root is False
    assert parse_cmdline("").unit is None and parse_cmdline("vigil.unit=").unit is None


def test_fstab_entries_options_and_problems():
    text = ("UUID=abcd / ext4 errors=remount-ro,noatime 0 1\n"
            "/dev/vdb /data ext4 nofail,nodev,nosuid,ro,x-systemd.foo 0 2  # data\n"
            "/srv/a\\040b /mnt/b none bind 0 0\n"
            "/swapfile none swap sw 0 0\n"
            "tmpfs /tmp tmpfs noauto,size=10m,mode=1777\n"
            "only-one\n"
            "/dev/x /y ext4 defaults 0 z\n")
    entries, problems = parse(text, "fstab")
    assert problems == ["fstab:6: expected at least 3 fields: 'only-one'",
                        "fstab:7: pass number 'z' is not a number"]
    root, data, bind, swap, tmp = entries
    assert resolve(root.spec) == "/dev/disk/by-uuid/abcd"
    assert root.flags_and_data() == (MS["noatime"], "errors=remount-ro")
    assert data.nofail and data.passno == 2
    assert data.flags_and_data() == (MS["nodev"] | MS["nosuid"] | MS["ro"], "")
    assert bind.spec == "/srv/a b" and bind.bind
    assert swap.swap and tmp.noauto
    assert tmp.flags_and_data() == (0, "size=10m,mode=1777")
    assert entries[0].line == 1 and tmp.line == 5


def test_module_order_puts_dependencies_first(tmp_path: Path):
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n"
        "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n")
    assert module_order("ext4", str(tmp_path)) == [
        f"{tmp_path}/kernel/lib/crc16.ko", f"{tmp_path}/kernel/fs/mbcache.ko",
        f"{tmp_path}/kernel/fs/jbd2/jbd2.ko", f"{tmp_path}/kernel/fs/ext4/ext4.ko"]
    assert module_order("virtio-pci", str(tmp_path))[-1].endswith("virtio_pci.ko")
    with pytest.raises(LookupError, match="module nope not found"):
        module_order("nope", str(tmp_path))


def test_modules_and_sysctl_files(tmp_path: Path):
    etc = tmp_path / "etc"
    (etc / "modules-load.d").mkdir(parents=True)
    (etc / "modules-load.d" / "b.conf").write_text("virtio_net\n# comment\n")
    (etc / "modules-load.d" / "a.conf").write_text("virtio_blk\n; also a comment\nvirtio_net\n")
    (etc / "modules").write_text("loop max_loop=8\n")
    assert wanted_modules(str(tmp_path)) == ["virtio_blk", "virtio_net", "loop"]
    (etc / "sysctl.d").mkdir()
    (etc / "sysctl.d" / "10-a.conf").write_text("net.ipv4.ip_forward = 1\nvm/swappiness=10\n")
    (etc / "sysctl.d" / "20-b.conf").write_text("# later wins\nnet.ipv4.ip_forward = 0\n")
    got = {k: (v, w.rsplit("/", 1)[1]) for k, v, w in sysctl_settings(str(tmp_path))}
    assert got == {"net.ipv4.ip_forward": ("0", "20-b.conf:2"),
                   "vm.swappiness": ("10", "10-a.conf:2")}
