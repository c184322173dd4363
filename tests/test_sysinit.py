"""The parsers of early boot: command line, fstab, modules.dep, sysctl.d;
and early boot as PID 1 of fresh namespaces going on past broken files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemon import Daemon, can_unshare, wait_for
from vigil.system.fstab import MS, parse, resolve, unescape
from vigil.system.sysinit import (
    cmdline_args,
    module_order,
    parse_cmdline,
    sysctl_settings,
    wanted_modules,
)


def no_log(severity: str, message: str) -> None:
    raise AssertionError(f"unexpected {severity}: {message}")


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
    assert wanted_modules(str(tmp_path), no_log) == ["virtio_blk", "virtio_net", "loop"]
    (etc / "sysctl.d").mkdir()
    (etc / "sysctl.d" / "10-a.conf").write_text("net.ipv4.ip_forward = 1\nvm/swappiness=10\n")
    (etc / "sysctl.d" / "20-b.conf").write_text("# later wins\nnet.ipv4.ip_forward = 0\n")
    got = {k: (v, w.rsplit("/", 1)[1]) for k, v, w in sysctl_settings(str(tmp_path), no_log)}
    assert got == {"net.ipv4.ip_forward": ("0", "20-b.conf:2"),
                   "vm.swappiness": ("10", "10-a.conf:2")}


def test_fstab_escapes_are_three_octal_digits_and_nothing_else():
    """`\\089` is no escape (8 and 9 are not octal): mount(8) reads it as
    written. It used to raise ValueError, which sent PID 1 to its last resort."""
    assert unescape(r"/mnt/a\040b\011c\134d") == "/mnt/a b\tc\\d"
    for literal in (r"/mnt/a\089", r"/mnt/\08", "/mnt/x\\", r"/mnt/\400", r"/\x41"):
        assert unescape(literal) == literal
    entries, problems = parse("tmpfs /mnt/a\\089 tmpfs defaults 0 0\n"
                              "tmpfs /mnt/b tmpfs defaults 0 0\n", "fstab")
    assert problems == []
    assert [e.file for e in entries] == ["/mnt/a\\089", "/mnt/b"]


LINES = st.lists(st.text(alphabet=st.sampled_from(" \t\\#;=:,/.-_0189aZ\u00e9\x00"), max_size=40),
                 max_size=6).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(LINES)
def test_early_boot_parsers_never_raise(text):
    """Whatever the text, the parsers return (fstab: problems as data)."""
    entries, problems = parse(text, "fstab")
    assert len(entries) + len(problems) <= len(text.splitlines())
    parse_cmdline(text)
    cmdline_args(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_bytes_that_are_not_utf8_spoil_one_line_only(data):
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(f"{root}/etc/sysctl.d")
        Path(f"{root}/etc/sysctl.d/10-a.conf").write_bytes(data + b"\nkernel.x = 1\n")
        Path(f"{root}/etc/modules").write_bytes(data + b"\nloop\n")
        logged: list[str] = []
        settings_ = sysctl_settings(root, lambda _sev, msg: logged.append(msg))
        assert settings_[-1][:2] == ("kernel.x", "1")
        assert wanted_modules(root, lambda _sev, msg: logged.append(msg))[-1] == "loop"


PROBE = """
[service]
type = "oneshot"
exec = ["sh", "-c", "cat /proc/self/mountinfo > {tmp}/mounts; \
cat /proc/sys/net/ipv4/ip_forward > {tmp}/fwd"]
"""


@pytest.mark.skipif(not can_unshare(), reason="needs root for namespaces")
def test_broken_early_boot_files_are_logged_and_boot_goes_on(tmp_path, unit_dir):
    """PID 1 of fresh PID, mount, UTS and network namespaces, with an fstab
    whose first line has a bad octal escape and a sysctl.d file and a hostname
    with bytes that are not UTF-8: each line is read or logged and skipped,
    and the lines after it still count."""
    root = tmp_path / "root"
    (root / "etc" / "sysctl.d").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(b"\xff\xfe\n")
    (root / "etc" / "fstab").write_text(
        f"tmpfs {tmp_path}/mnt/a\\089 tmpfs size=1m 0 0\n"
        f"only-one\n"
        f"tmpfs {tmp_path}/mnt/t tmpfs size=1m 0 0\n")
    (root / "etc" / "sysctl.d" / "10-test.conf").write_bytes(
        b"kernel.bogus\xff = \xfe\nnet.ipv4.ip_forward = 1\n")
    d = Daemon(unit_dir({"probe.toml": PROBE.format(tmp=tmp_path)}), tmp_path, pid1=True,
               namespaces=("--uts", "--net"),
               extra=["--system", "--config-root", str(root), "--cgroup", "off"])
    try:
        wait_for(lambda: d.status("probe")["state"] == "exited")
        mounts = (tmp_path / "mounts").read_text()
        assert f" {tmp_path}/mnt/t rw" in mounts, "the line after the broken ones"
        assert f" {tmp_path}/mnt/a\\134089 rw" in mounts, "\\089 is read as written"
        assert (tmp_path / "fwd").read_text().strip() == "1", "the sysctl line after bad bytes"
        assert f"{root}/etc/fstab:2: expected at least 3 fields: 'only-one'" in d.output()
        assert f"{root}/etc/hostname:1: '\ufffd\ufffd' is not a host name" in d.output()
    finally:
        d.stop()
