"""Stop reaches processes that left their group (cgroups), and forking
daemons are tracked through their pid-file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.daemon import Daemon, can_unshare, wait_for


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def escaped_pid(d: Daemon, tmp_path: Path) -> int:
    """The pid the unit wrote, once it has really left (setsid: its own session)."""
    pid = d.host_pid(int(wait_for(lambda: (tmp_path / "escaped").read_text().strip())))
    wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3]
             == str(pid), what="the process to be in a session of its own")
    return pid


ESCAPER = """
[service]
exec = ["sh", "-c", "setsid sleep 1000 & echo $! > {tmp}/escaped; exec sleep 1000"]
stop-timeout = 5
"""


@pytest.mark.skipif(not can_unshare(), reason="needs root for a mount namespace")
def test_stop_kills_a_process_that_left_the_group_via_the_cgroup(unit_dir, tmp_path):
    d = Daemon(unit_dir({"esc.toml": ESCAPER.format(tmp=tmp_path)}), tmp_path, cgroup=True)
    try:
        wait_for(lambda: d.status("esc")["state"] == "running")
        escaped = escaped_pid(d, tmp_path)
        assert alive(escaped)
        d.call("stop", units=["esc"])
        wait_for(lambda: not alive(escaped), timeout=10, what="the escaped process to die")
        assert d.zombies() == []
    finally:
        d.stop()
    assert not d.cgroup_exists(), "the daemon removes its cgroups on exit"


def test_without_cgroups_the_escaped_process_outlives_the_stop(daemon, tmp_path, mode):
    """The contrast that shows the cgroup test can fail: a process group is not enough."""
    d = daemon({"esc.toml": ESCAPER.format(tmp=tmp_path)}, ["--cgroup", "off"])
    wait_for(lambda: d.status("esc")["state"] == "running")
    escaped = escaped_pid(d, tmp_path)
    d.call("stop", units=["esc"])
    assert d.status("esc")["state"] == "inactive"
    assert alive(escaped)
    os.kill(escaped, 9)


FORKING = """
[service]
type = "forking"
pid-file = "{tmp}/daemon.pid"
exec = ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {tmp}/daemon.pid"]
restart = "always"
restart-delay = 0
start-seconds = 0
"""


def test_forking_daemon_is_tracked_through_its_pid_file(daemon, tmp_path):
    d = daemon({"fork.toml": FORKING.format(tmp=tmp_path)})
    inst = wait_for(lambda: (i := d.inst("fork"))["state"] == "running" and i)
    assert inst["pid"] == int((tmp_path / "daemon.pid").read_text())
    first = d.host_pid(inst["pid"])
    os.kill(first, 9)
    second = wait_for(lambda: (i := d.inst("fork"))["state"] == "running"
                      and i["pid"] != inst["pid"] and i["pid"])
    assert d.inst("fork")["last_exit"] == "killed by SIGKILL"
    host_second = d.host_pid(second)
    d.call("stop", units=["fork"])
    assert d.status("fork")["state"] == "inactive"
    wait_for(lambda: not alive(host_second), what="the daemon to be stopped")


def test_forking_without_a_pid_file_fails_clearly(daemon, tmp_path):
    d = daemon({"nofile.toml": f"""
[service]
type = "forking"
pid-file = "{tmp_path}/never.pid"
exec = "true"
"""})
    reason = wait_for(lambda: d.inst("nofile")["reason"])
    assert reason == f"pid-file {tmp_path}/never.pid: no live process (No such file or directory)"
    assert d.status("nofile")["state"] == "failed"
