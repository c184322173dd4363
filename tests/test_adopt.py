"""A daemon that comes back without its state (killed, or PID 1's last resort
unable to save) takes back what still runs, or kills it, before it starts
anything: no unit ever runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemon import Daemon, can_unshare, wait_for

pytestmark = pytest.mark.skipif(not can_unshare(), reason="needs root for namespaces")

UNITS = {
    "a.toml": '[service]\nexec = ["sleep", "1001"]\nrestart = "always"\nrestart-delay = 0\n'
              'start-seconds = 0\n',
    "b.toml": '[service]\nexec = ["sh", "-c", "echo b says hello; exec sleep 1002"]\n',
    "multi.toml": '[service]\nexec = ["sleep", "1003"]\ninstances = 2\n',
    "gone.toml": '[service]\nexec = ["sleep", "1004"]\n',
}
MARKERS = {"a": "1001", "b": "1002", "multi": "1003", "gone": "1004"}

# The namespace's PID 1 is this shell: vigil is an ordinary subreaper under it,
# and the shell starts it again when it is killed (as a supervisor would).
AGAIN = ["sh", "-c", 'while :; do "$@" && break; echo "vigil ended: $?"; done', "again"]


def in_namespace(d: Daemon) -> list[int]:
    """Host pids of every process in the daemon's PID namespace."""
    ns = os.readlink(f"/proc/{d.daemon_pid()}/ns/pid")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def count(d: Daemon, marker: str) -> int:
    """How many `sleep MARKER` run in the namespace (zombies do not count)."""
    n = 0
    for pid in in_namespace(d):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            running = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            continue
        if argv[:2] == [b"sleep", marker.encode()] and running:
            n += 1
    return n


def vigil_pid(d: Daemon) -> int:
    """The host pid of vigil, the child of the namespace's PID-1 shell."""
    init = d.daemon_pid()
    for child in Path(f"/proc/{init}/task/{init}/children").read_text().split():
        if b"vigil.cli" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise KeyError("vigil")


def pids(d: Daemon) -> dict[str, int]:
    return {i["name"]: i["pid"] for u in d.call("status") for i in u["instances"]}


def all_running(d: Daemon) -> bool:
    return all(u["state"] == "running" for u in d.call("status"))


def test_a_killed_daemon_adopts_its_units_cgroups_and_kills_the_removed_ones(unit_dir,
                                                                             tmp_path):
    units = unit_dir(UNITS)
    d = Daemon(units, tmp_path, cgroup=True, wrap=AGAIN)
    try:
        wait_for(lambda: all_running(d), what="every unit to run")
        before = pids(d)
        (units / "gone.toml").unlink()
        del before["gone"]
        old = vigil_pid(d)
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: vigil_pid(d) != old and d.call("ping") == "pong", 60,
                 "vigil to be started again")
        wait_for(lambda: all_running(d), what="the units to run again")
        assert pids(d) == before, "the same processes, taken back"
        for unit in ("a", "b", "multi"):
            assert count(d, MARKERS[unit]) == (2 if unit == "multi" else 1), unit
        wait_for(lambda: count(d, MARKERS["gone"]) == 0, what="the removed unit's process "
                 "to be killed")
        out = d.output()
        for name in before:
            assert f"adopted {name} ({before[name]}), left running by an earlier daemon" in out
        assert "cgroup gone: its unit no longer exists; killed 1 process(es)" in out
        d.call("kill", units=["b"], signal="KILL")  # not our child: its status is lost
        wait_for(lambda: d.inst("b")["last_exit"] == "exit status unknown",
                 what="b to be seen ending")
        # and it is still supervised: a kill is followed by a restart
        os.kill(d.host_pid(before["a"]), signal.SIGKILL)
        wait_for(lambda: d.inst("a")["pid"] not in (None, before["a"])
                 and d.inst("a")["restarts"] == 1, what="a to be restarted")
        wait_for(lambda: count(d, MARKERS["a"]) == 1, what="one a, the new one")
    finally:
        d.stop()


FATAL = """
from vigil import daemon, reexec
class Fatal(BaseException):
    pass
def dump(self, _signum):
    raise Fatal("injected: the main loop dies")
def save(_daemon):
    raise OSError(24, "injected: Too many open files")
daemon.Daemon.dump = dump
reexec.save = save
"""


@pytest.mark.parametrize("cgroup", [False, True], ids=["children", "cgroups"])
def test_pid1_last_resort_without_state_runs_no_unit_twice(unit_dir, tmp_path, cgroup):
    units = {**UNITS, "b.toml": '[service]\nexec = ["sh", "-c", "while :; do echo tick; '
                                'sleep 0.2; done & exec sleep 1002"]\n',
             # started as root, it changes its uid itself: PID 1 still knows its pid
             "drops.toml": '[service]\nexec = ["setpriv", "--reuid", "65534", "--regid", '
                           '"65534", "--clear-groups", "sleep", "1007"]\n'}
    d = Daemon(unit_dir(units), tmp_path, pid1=True, cgroup=cgroup, python_code=FATAL)
    try:
        wait_for(lambda: all_running(d), what="every unit to run")
        before = pids(d)
        os.kill(d.daemon_pid(), signal.SIGUSR1)
        wait_for(lambda: d.output().count(" ready on ") == 2, 60, "PID 1 to execute afresh")
        assert "state not saved" in d.output()
        wait_for(lambda: all_running(d), what="the units to run again")
        assert pids(d) == before, "the same processes, taken back"
        for unit, marker in {**MARKERS, "drops": "1007"}.items():
            assert count(d, marker) == (2 if unit == "multi" else 1), unit
        assert "adopted a (" in d.output()
        # b's output is read again through the pipe its processes still hold
        wait_for(lambda: len(d.call("logs", units=["b"], lines=100)) >= 3,
                 what="b's output to flow after the exec")
        # the adopted processes are still PID 1's children: their exits are reaped
        os.kill(d.host_pid(before["a"]), signal.SIGKILL)
        wait_for(lambda: d.inst("a")["last_exit"] == "killed by SIGKILL", what="a's exit")
        d.call("stop", units=["gone", "multi"])
        assert count(d, MARKERS["gone"]) == count(d, MARKERS["multi"]) == 0
    finally:
        d.stop()


def test_pid1_last_resort_does_not_take_another_users_process_for_a_unit(unit_dir, tmp_path):
    """As PID 1 every orphan is our child: one of uid 65534 whose environment
    names a root unit must not be taken for it (the unit would never start)."""
    units = {"a.toml": UNITS["a.toml"],
             "off.toml": '[unit]\nenabled = false\n[service]\nexec = ["sleep", "1005"]\n'}
    d = Daemon(unit_dir(units), tmp_path, pid1=True, python_code=FATAL)
    try:
        wait_for(lambda: d.status("a")["state"] == "running")
        # an orphan of uid 65534 that names `off`, reparented to PID 1 when its shell exits
        subprocess.run(["nsenter", "-t", str(d.daemon_pid()), "-p", "--", "setpriv",
                        "--reuid", "65534", "--regid", "65534", "--clear-groups", "env",
                        "VIGIL_UNIT=off", "VIGIL_INSTANCE=0", "sh", "-c",
                        "sleep 1006 </dev/null >/dev/null 2>&1 &"], check=True, timeout=30)
        wait_for(lambda: count(d, "1006") == 1, what="the impostor")
        os.kill(d.daemon_pid(), signal.SIGUSR1)
        wait_for(lambda: d.output().count(" ready on ") == 2, 60, "PID 1 to execute afresh")
        wait_for(lambda: "adopted a (" in d.output(), what="a to be taken back")
        assert "names off:0 but it runs as uid 65534; not adopted, left alone" in d.output()
        assert d.status("off")["state"] == "inactive" and count(d, "1006") == 1
        d.call("start", units=["off"])
        assert count(d, "1005") == 1
    finally:
        d.stop()


NOT_SUBREAPER = """
from vigil import serve
serve.become_subreaper = lambda: True  # as where prctl is missing: orphans go elsewhere
"""


def test_a_forking_daemon_that_is_not_our_child_is_seen_ending(unit_dir, tmp_path):
    """Without a subreaper the daemon of a forking unit is not our child:
    wait4 never reports it, its pidfd does."""
    d = Daemon(unit_dir({"fork.toml": f"""
[service]
type = "forking"
pid-file = "{tmp_path}/d.pid"
exec = ["sh", "-c", "setsid sleep 1008 </dev/null >/dev/null 2>&1 & echo $! > {tmp_path}/d.pid"]
"""}), tmp_path, python_code=NOT_SUBREAPER)
    try:
        pid = wait_for(lambda: (i := d.inst("fork"))["state"] == "running" and i["pid"])
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert parent != d.proc.pid, "not our child"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: d.inst("fork")["last_exit"] == "exit status unknown",
                 what="the daemon's end to be seen")
    finally:
        d.stop()


BAD_STATE = """
from vigil import reexec
_save = reexec.save
def save(daemon):
    path = _save(daemon)
    with open(path, "w") as f:
        f.write('{"format": 99}')
    return path
reexec.save = save
"""


@pytest.mark.parametrize("pid1", [False, True], ids=["subreaper", "pid1"])
def test_reexec_with_an_unusable_state_takes_back_what_runs(unit_dir, tmp_path, pid1):
    units = {"x.toml": '[service]\nexec = ["sleep", "7711.25"]\n',
             "y.toml": '[service]\nexec = ["sh", "-c", "while :; do echo tick; sleep 0.2; '
                       'done & exec sleep 7712.25"]\n'}
    d = Daemon(unit_dir(units), tmp_path, pid1=pid1, python_code=BAD_STATE)
    try:
        wait_for(lambda: all_running(d), what="every unit to run")
        before = pids(d)
        d.call("daemon-reexec")
        wait_for(lambda: d.output().count(" ready on ") == 2, 60, "the new daemon")
        wait_for(lambda: all_running(d), what="the units to run again")
        assert pids(d) == before, "the same processes, taken back"
        assert count(d, "7711.25") == count(d, "7712.25") == 1
        assert "taking back what runs instead" in d.output()
        wait_for(lambda: len(d.call("logs", units=["y"], lines=100)) >= 3,
                 what="y's output to flow through the kept pipe")
    finally:
        d.stop()
