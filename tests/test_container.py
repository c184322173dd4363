"""`vigil run -- CMD` as a container's entrypoint: as PID 1 of a fresh PID
namespace and as a subreaper under the test runner."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, can_unshare, wait_for
from vigil.container import FORWARDED

PY = sys.executable


def vigil_run(mode: str, args: list[str], tmp: Path, **kw) -> subprocess.Popen:
    cmd = [PY, "-m", "vigil.cli", "run", "--socket", str(tmp / "run" / "c.sock"), *args]
    if mode == "pid1":
        cmd = ["unshare", "--pid", "--fork", "--mount-proc", *cmd]
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(cmd, cwd=ROOT, text=True, start_new_session=True, **kw)


def vigil_pid(proc: subprocess.Popen, mode: str) -> int:
    """vigil's pid as we see it (under unshare, the child of unshare)."""
    if mode != "pid1":
        return proc.pid
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return int(wait_for(lambda: children.read_text().split())[0])


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_exit_status_is_passed_on(mode, tmp_path):
    for code in (0, 1, 42):
        assert finish(vigil_run(mode, ["--", "sh", "-c", f"exit {code}"], tmp_path))[0] == code
    assert finish(vigil_run(mode, ["--", "sh", "-c", "exit 7"], tmp_path))[0] == 7
    assert finish(vigil_run(mode, ["--", "sh", "-c", "kill -9 $$"], tmp_path))[0] == 137
    assert finish(vigil_run(mode, ["-e", "3", "--", "sh", "-c", "exit 3"], tmp_path))[0] == 0
    assert finish(vigil_run(mode, ["--exit-map", "4:9", "--", "sh", "-c", "exit 4"],
                            tmp_path))[0] == 9
    code, _, err = finish(vigil_run(mode, ["--", "/no/such/program"], tmp_path))
    assert code == 127
    assert "cannot run /no/such/program: executing failed: No such file or directory" in err


TRAP = ("import signal, sys, time\n"
        "for s in signal.valid_signals():\n"
        "    if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD) and s < 32:\n"
        "        signal.signal(s, lambda n, f: sys.exit(100 + n))\n"
        "open(sys.argv[1], 'w').close()\n"
        "time.sleep(60)\n")


@pytest.mark.parametrize("sig", FORWARDED, ids=lambda s: s.name)
def test_each_signal_is_forwarded(mode, tmp_path, sig):
    ready = tmp_path / "ready"
    proc = vigil_run(mode, ["--", PY, "-c", TRAP, str(ready)], tmp_path)
    wait_for(ready.exists, what="the command to set its traps")
    os.kill(vigil_pid(proc, mode), sig)
    assert finish(proc)[0] == 100 + sig


def test_rewrite_maps_one_signal_to_another(mode, tmp_path):
    ready = tmp_path / "ready"
    proc = vigil_run(mode, ["--rewrite", "15:10", "--", PY, "-c", TRAP, str(ready)], tmp_path)
    wait_for(ready.exists)
    os.kill(vigil_pid(proc, mode), signal.SIGTERM)
    assert finish(proc)[0] == 100 + signal.SIGUSR1


def test_orphans_are_reaped_while_the_command_runs(tmp_path):
    if not can_unshare():
        pytest.skip("needs a PID namespace")
    # 200 orphans that exit at once; then the command lists zombies in its namespace
    script = ("for i in $(seq 200); do (true &) ; done; sleep 1; "
              "grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l > " + str(tmp_path / "z"))
    code, _, err = finish(vigil_run("pid1", ["--", "sh", "-c", script], tmp_path))
    assert code == 0, err
    assert (tmp_path / "z").read_text().strip() == "0"


def test_leftovers_get_term_and_are_waited_for(mode, tmp_path):
    """Nothing is cut off: a child finishing a write on SIGTERM gets to finish."""
    done = tmp_path / "done"
    child = (f"import signal, sys, time\n"
             f"def bye(n, f):\n    time.sleep(0.5); open({str(done)!r}, 'w').write('ok')"
             f"; sys.exit(0)\n"
             f"signal.signal(signal.SIGTERM, bye)\ntime.sleep(60)\n")
    cmd = f"setsid {PY} -c \"$0\" & sleep 0.3; exit 5"
    code, _, _ = finish(vigil_run(mode, ["--", "sh", "-c", cmd, child], tmp_path))
    assert code == 5
    assert done.read_text() == "ok", "vigil waited for the leftover to finish its write"


def test_a_leftover_that_ignores_term_is_killed_after_the_grace(mode, tmp_path):
    pidfile = tmp_path / "pid"
    cmd = f"setsid sh -c 'trap \"\" TERM; echo $$ > {pidfile}; sleep 60' & sleep 0.3"
    began = time.monotonic()
    code, _, _ = finish(vigil_run(mode, ["--kill-timeout", "1", "--", "sh", "-c", cmd],
                                  tmp_path))
    assert code == 0
    assert time.monotonic() - began >= 1.0
    if mode == "subreaper":
        assert not Path(f"/proc/{pidfile.read_text().strip()}").exists()


SIDE = {
    "side.toml": '[service]\nexec = ["sh", "-c", "sleep 0.3; echo $$ > {tmp}/side-ready; '
                 'exec sleep 1000"]\n[service.ready]\nexec = ["test", "-s", "{tmp}/side-ready"]\n',
}


def test_side_services_start_first_and_stop_after(mode, tmp_path, unit_dir):
    units = unit_dir({k: v.format(tmp=tmp_path) for k, v in SIDE.items()})
    check = f"test -s {tmp_path}/side-ready"
    proc = vigil_run(mode, ["--units", str(units), "--", "sh", "-c", check], tmp_path)
    code, _, err = finish(proc)
    assert code == 0, f"the side service was ready before the command ran: {err}"
    if mode == "subreaper":
        side = int((tmp_path / "side-ready").read_text())
        assert not Path(f"/proc/{side}").exists(), "the side service was stopped after"


def test_vigilctl_works_inside_the_container(tmp_path, unit_dir):
    units = unit_dir({k: v.format(tmp=tmp_path) for k, v in SIDE.items()})
    out = tmp_path / "status"
    script = f"{PY} -m vigilctl status --json > {out}"
    code, _, err = finish(vigil_run("subreaper", ["--units", str(units), "--", "sh", "-c",
                                                  script], tmp_path))
    assert code == 0, err
    assert '"state": "running"' in out.read_text()


def test_a_critical_side_service_that_dies_ends_the_container(mode, tmp_path, unit_dir):
    units = unit_dir({"db.toml": '[unit]\ncritical = true\n[service]\n'
                                 'exec = ["sh", "-c", "sleep 0.5; exit 3"]\nrestart = "never"\n'})
    code, _, err = finish(vigil_run(mode, ["--units", str(units), "--", "sleep", "60"],
                                    tmp_path))
    assert code == 1
    assert "critical side service db failed (exit 3); ending the container" in err


def test_interactive_command_owns_the_terminal(tmp_path):
    master, slave = pty.openpty()
    probe = "import os; print('foreground' if os.tcgetpgrp(0) == os.getpgrp() else 'background')"
    def take_terminal() -> None:  # as a login shell or `docker run -t` would
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    proc = vigil_run("subreaper", ["-s", "--", PY, "-c", probe], tmp_path, stdin=slave,
                     stdout=slave, stderr=slave, preexec_fn=take_terminal)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"ground" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                seen += os.read(master, 1024)
            except OSError:
                break
    proc.wait(timeout=30)
    os.close(master)
    assert b"foreground" in seen, seen


def test_tini_and_dumb_init_names(tmp_path):
    link = tmp_path / "dumb-init"
    ready = tmp_path / "ready"
    # dumb-init's default: signals go to the process group, so the grandchild gets it too
    code = (f"import signal, sys, subprocess\n"
            f"child = subprocess.Popen([{PY!r}, '-c', {TRAP!r}, {str(ready)!r}])\n"
            f"signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
            f"sys.exit(child.wait())\n")
    wrapper = tmp_path / "entry.py"
    wrapper.write_text("import sys\nfrom vigil.cli import main\n"
                       f"sys.exit(main(sys.argv[1:], prog={str(link)!r}))\n")
    proc = subprocess.Popen([PY, str(wrapper), PY, "-c", code], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                            stderr=subprocess.PIPE)
    wait_for(ready.exists)
    os.kill(proc.pid, signal.SIGUSR1)
    proc.wait(timeout=30)
    assert proc.returncode == 100 + signal.SIGUSR1


def test_read_only_tmp_puts_the_socket_on_dev_shm(unit_dir):
    """As on a read-only root: /tmp not writable, no XDG_RUNTIME_DIR, no --socket.
    (Only side services need a socket: one of its own, in a directory of its own.)"""
    if not can_unshare():
        pytest.skip("needs a mount namespace")
    units = unit_dir({"idle.toml": '[service]\nexec = ["sleep", "1000"]\n'})
    script = (f"mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && "
              f"exec {PY} -m vigil.cli run -s --units {units} -- sh -c "
              f"'echo SOCKET=$VIGIL_SOCKET; {PY} -m vigilctl ping'")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "VIGIL_SOCKET")}
    done = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc",
                           "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SOCKET=/dev/shm/vigil-0/run-" in done.stdout
    assert done.stdout.split("SOCKET=")[1].split()[0].endswith("/control.sock")
    assert "pong" in done.stdout
