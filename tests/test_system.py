"""System mode as PID 1 of fresh PID, mount, UTS and network namespaces:
early mounts, hostname, fstab, sysctl, the shutdown order, kill-all and
reboot(2) (which, in a PID namespace, ends the namespace's init with a
signal naming the command: SIGINT for poweroff and halt, SIGHUP for reboot)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemon import Daemon, can_unshare, wait_for

pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root for namespaces")
NS = ("--uts", "--net")


def system_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "etc" / "sysctl.d").mkdir(parents=True)
    (tmp / "src").mkdir()
    (tmp / "src" / "marker").write_text("bound")
    (root / "etc" / "hostname").write_text("vigil-test-host\n")
    (root / "etc" / "timezone").write_text("Europe/Paris\n")
    (root / "etc" / "locale.conf").write_text('LANG="C.UTF-8"\nNOT_A_LOCALE=x\n')
    (root / "etc" / "fstab").write_text(
        f"# test fstab\n"
        f"tmpfs {tmp}/mnt/t tmpfs size=1m,mode=0750 0 0\n"
        f"{tmp}/src {tmp}/mnt/b none bind,ro 0 0\n"
        f"/dev/no-such-disk {tmp}/mnt/broken ext4 defaults 0 2\n"
        f"/dev/no-such-disk2 {tmp}/mnt/quiet ext4 nofail 0 0\n"
        f"garbage-line\n")
    (root / "etc" / "sysctl.d" / "10-test.conf").write_text(
        "net.ipv4.ip_forward = 1\nkernel.sysrq = 0\n")
    return root


PROBE = """
[unit]
description = "what the system looks like to a unit"
[service]
type = "oneshot"
exec = ["sh", "-c", "uname -n > {tmp}/hostname; echo $TZ $LANG $NOT_A_LOCALE > {tmp}/env; cat /proc/sys/net/ipv4/ip_forward > {tmp}/fwd; cat /sys/class/net/lo/operstate > {tmp}/lo; \
cat /proc/self/mountinfo > {tmp}/mounts; cat {tmp}/mnt/b/marker > {tmp}/bound; \
touch {tmp}/mnt/b/x 2> {tmp}/bind-ro || true"]
"""
# a, b, c: c requires b requires a; each records its stop, and says when
# its trap is set (a stop before that would kill it without a record)
CHAIN = """
[unit]
{deps}
[service]
exec = ["sh", "-c", "trap 'echo {name} >> {tmp}/stops; exit 0' TERM; touch {tmp}/{name}.armed; while :; do sleep 0.05; done"]
"""


def armed(d: Daemon, tmp: Path) -> None:
    """Waits until a, b and c run with their TERM traps set."""
    wait_for(lambda: d.status("c")["state"] == "running")
    wait_for(lambda: all((tmp / f"{name}.armed").exists() for name in "abc"),
             what="the chain's traps")


def start(tmp: Path, unit_dir, extra: list[str] | None = None) -> Daemon:
    units = {"probe.toml": PROBE.format(tmp=tmp)}
    for name, deps in (("a", ""), ("b", 'requires = ["a"]\nafter = ["a"]'),
                       ("c", 'requires = ["b"]\nafter = ["b"]')):
        units[f"{name}.toml"] = CHAIN.format(name=name, deps=deps, tmp=tmp)
    # leaves a process in its own session that ignores SIGTERM, once it is there
    units["stubborn.toml"] = (
        '[service]\ntype = "oneshot"\nexec = ["sh", "-c", "setsid sh -c \'trap \\"\\" TERM; '
        f'echo $$ > {tmp}/stubborn; while :; do sleep 0.05; done\' >/dev/null 2>&1 & '
        f'while [ ! -s {tmp}/stubborn ]; do sleep 0.01; done"]\n')
    return Daemon(unit_dir(units), tmp, pid1=True, namespaces=NS,
                  extra=["--system", "--config-root", str(system_root(tmp)), "--cgroup", "off",
                         "--kill-grace", "1", *(extra or [])])


def test_early_boot_in_namespaces(tmp_path, unit_dir):
    d = start(tmp_path, unit_dir)
    try:
        wait_for(lambda: d.status("probe")["state"] == "exited")
        assert (tmp_path / "hostname").read_text().strip() == "vigil-test-host"
        assert (tmp_path / "env").read_text().split() == [":Europe/Paris", "C.UTF-8"]
        assert (tmp_path / "fwd").read_text().strip() == "1", "net.* sysctl in our netns"
        assert (tmp_path / "lo").read_text().strip() in ("unknown", "up"), "lo is up"
        mounts = (tmp_path / "mounts").read_text()
        assert f" {tmp_path}/mnt/t rw" in mounts and " - tmpfs tmpfs " in mounts
        assert (tmp_path / "bound").read_text() == "bound"
        assert "Read-only file system" in (tmp_path / "bind-ro").read_text()
        for target in ("/run", "/dev/shm", "/sys/fs/cgroup"):
            assert any(line.split()[4] == target for line in mounts.splitlines()), target
        out = d.output()
        assert f"fstab line 4 ({tmp_path}/mnt/broken): mounting /dev/no-such-disk" in out
        assert "ERROR ] " + f"fstab line 4 ({tmp_path}/mnt/broken)" in out
        assert " WARN ] " + f"fstab line 5 ({tmp_path}/mnt/quiet)" in out  # nofail
        assert "fstab:6: expected at least 3 fields: 'garbage-line'" in out
        assert "kernel.sysrq skipped" not in out  # debug lines stay off the console
        wait_for(lambda: d.status("c")["state"] == "running",
                 what="boot to go on after the broken entries")
    finally:
        d.stop()
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "vigil-test-host"


@pytest.mark.parametrize("how, dies_by", [("poweroff", signal.SIGINT), ("reboot", signal.SIGHUP),
                                          ("SIGTERM", signal.SIGHUP),
                                          ("SIGPWR", signal.SIGINT)])
def test_shutdown_order_kill_all_and_reboot(tmp_path, unit_dir, how, dies_by):
    d = start(tmp_path, unit_dir)
    try:
        armed(d, tmp_path)
        wait_for(lambda: d.status("stubborn")["state"] == "exited")
        if how.startswith("SIG"):
            import os
            os.kill(d.daemon_pid(), getattr(signal, how))
        else:
            assert d.call(how) == f"stopping all units, then {how}"
        d.proc.wait(timeout=60)
        assert d.proc.returncode == -dies_by, d.output()
    finally:
        d.stop()
    assert (tmp_path / "stops").read_text().split() == ["c", "b", "a"]
    out = d.output()
    import re
    assert re.search(r"WARN \] \d process\(es\) still there after 1s: SIGKILL", out)
    assert "/: the root; read-only remount failed" not in out
    assert "killing remaining processes:" in out and "unmounting:" in out
    kind = {"SIGTERM": "reboot", "SIGPWR": "poweroff"}.get(how, how)
    assert f"{kind} now" in out


def test_reboot_is_refused_outside_system_mode(tmp_path, unit_dir):
    d = Daemon(unit_dir({"a.toml": '[service]\nexec = "sleep 1000"\n'}), tmp_path)
    try:
        from vigilctl.client import Client, RequestFailed
        client = Client(d.socket)
        with pytest.raises(RequestFailed, match="reboot is for system mode"):
            client.call("reboot")
        client.close()
        wait_for(lambda: d.inst("a")["state"] == "running", what="a to run on")
    finally:
        d.stop()


def test_poweroff_by_its_own_name(tmp_path, unit_dir):
    """`poweroff` linked to vigilctl talks to the system socket (VIGIL_SOCKET here)."""
    import os
    import sys
    link = tmp_path / "poweroff"
    link.symlink_to(Path(sys.executable).parent / "vigilctl")
    d = start(tmp_path, unit_dir)
    try:
        wait_for(lambda: d.status("c")["state"] == "running")
        out = subprocess.run([str(link)], env={**os.environ, "VIGIL_SOCKET": d.socket},
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "stopping all units, then poweroff", out.stderr
        d.proc.wait(timeout=60)
        assert d.proc.returncode == -signal.SIGINT
    finally:
        d.stop()


def test_a_critical_failure_sends_the_system_to_rescue(tmp_path, unit_dir):
    units = unit_dir({
        "db.toml": '[unit]\ncritical = true\n[service]\nexec = ["sh", "-c", "exit 3"]\n'
                   'restart = "never"\n',
        "minor.toml": '[service]\nexec = ["sh", "-c", "exit 4"]\nrestart = "never"\n',
        "rescue.toml": '[unit]\nenabled = false\nrequires = ["rescue-shell"]\n',
        "rescue-shell.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1000"\n',
    })
    d = Daemon(units, tmp_path, pid1=True, namespaces=NS,
               extra=["--system", "--config-root", str(system_root(tmp_path)), "--cgroup", "off"])
    try:
        wait_for(lambda: d.status("rescue")["state"] == "active", what="the rescue target")
        wait_for(lambda: d.status("rescue-shell")["state"] == "running", what="the rescue shell")
        assert "critical unit db failed: starting rescue" in d.output()
        wait_for(lambda: d.status("minor")["state"] == "failed", what="minor to fail")
        assert "critical unit minor" not in d.output(), "a non-critical failure is only logged"
    finally:
        d.stop()
