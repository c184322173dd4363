"""daemon-reexec: the daemon executes itself afresh and takes its services
back: the same pids, restart counters, output pipes and logs."""

from __future__ import annotations

import os
import subprocess

from tests.daemon import Daemon, wait_for

SLEEPER = '[service]\nexec = "sleep 1000"\nrestart = "always"\nrestart-delay = 0\n' \
          'start-seconds = 0\n'


def test_reexec_keeps_fifty_services(daemon):
    units = {f"s{i:02}.toml": SLEEPER for i in range(50)}
    units["talker.toml"] = ('[service]\nexec = ["sh", "-c", "i=0; while :; do echo line $i; '
                            'i=$((i+1)); sleep 0.1; done"]\n')
    d = daemon(units)
    wait_for(lambda: all(u["state"] == "running" for u in d.call("status")), timeout=60)
    victim = d.inst("s00")["pid"]
    os.kill(d.host_pid(victim), 9)
    wait_for(lambda: d.inst("s00")["pid"] not in (None, victim) and d.inst("s00")["restarts"])
    before = {u["unit"]: (u["instances"][0]["pid"], u["instances"][0]["restarts"])
              for u in d.call("status")}
    daemon_pid = d.daemon_pid()
    seen = len(d.call("logs", units=["talker"], lines=1000))
    assert d.call("daemon-reexec") == "re-executing; the services keep running"
    wait_for(lambda: d.call("ping") == "pong", what="the new daemon to answer")
    assert d.daemon_pid() == daemon_pid, "the same process, executed afresh"
    after = {u["unit"]: (u["instances"][0]["pid"], u["instances"][0]["restarts"])
             for u in d.call("status")}
    assert after == before
    assert after["s00"][1] == 1
    wait_for(lambda: len(d.call("logs", units=["talker"], lines=1000)) > seen + 5,
             what="the talker's output to flow through the kept pipe")
    assert "took back 51 process(es)" in d.output()
    # and the new daemon still supervises: a kill is followed by a restart
    pid = d.inst("s01")["pid"]
    os.kill(d.host_pid(pid), 9)
    wait_for(lambda: d.inst("s01")["pid"] not in (None, pid) and d.inst("s01")["restarts"] == 1)
    assert d.zombies() == [] or wait_for(lambda: d.zombies() == [])


def test_reexec_keeps_scopes(unit_dir, tmp_path):
    d = Daemon(unit_dir({"idle.toml": '[unit]\nenabled = false\n[service]\nexec = "sleep 1"\n'}),
               tmp_path)
    shell = subprocess.Popen(["sleep", "1000"])
    try:
        d.call("run", exec=["sleep", "1000"], name="bound", scope=shell.pid)
        assert d.call("status", units=["bound"])[0]["scope"] == shell.pid
        d.call("daemon-reexec")
        wait_for(lambda: "re-executed: took back" in d.output(), what="the new daemon")
        assert d.call("status", units=["bound"])[0]["scope"] == shell.pid
        shell.kill()
        shell.wait(timeout=30)
        wait_for(lambda: d.proc.poll() is not None, 60, "the daemon to exit with the scope")
        assert "scope pid" in d.output() and "Stopped bound" in d.output()
    finally:
        shell.kill()
        d.stop()


NO_SPACE = """
import os
real_fsync = os.fsync
def fsync(fd):  # the state is written, not yet renamed into place: the disk is full
    if os.readlink(f"/proc/self/fd/{fd}").endswith("reexec.json.new"):
        raise OSError(28, "injected: No space left on device")
    return real_fsync(fd)
os.fsync = fsync
"""


def test_reexec_whose_state_cannot_be_saved_goes_on_as_it_was(unit_dir, tmp_path):
    d = Daemon(unit_dir({"s.toml": SLEEPER}), tmp_path, python_code=NO_SPACE)
    try:
        pid = wait_for(lambda: d.inst("s")["state"] == "running" and d.inst("s")["pid"])
        assert d.call("daemon-reexec") == "re-executing; the services keep running"
        wait_for(lambda: "state not saved" in d.output(), what="the failure to be logged")
        assert "injected: No space left on device" in d.output()
        assert d.call("ping") == "pong" and d.proc.poll() is None
        assert d.inst("s")["pid"] == pid
        assert not list((tmp_path / "run").glob("reexec.json*")), "no partial state is left"
        os.kill(pid, 9)  # and it still supervises
        wait_for(lambda: d.inst("s")["pid"] not in (None, pid) and d.inst("s")["restarts"] == 1)
    finally:
        d.stop()


SLOW = """
[service]
exec = ["sh", "-c", "n=$(cat {tmp}/n 2>/dev/null || echo 0); echo $((n+1)) > {tmp}/n; \
exec sleep 1000"]
[service.ready]
exec = ["sh", "-c", "test -e {tmp}/ready-$(cat {tmp}/n)"]
interval = 0.05
"""


def test_reexec_keeps_the_socket_and_answers_a_waiting_restart(daemon, tmp_path):
    """A client waiting on `restart` of a slow unit gets its answer from the
    new daemon, and a connect during the exec is never refused."""
    import threading

    from vigilctl.client import Client
    (tmp_path / "ready-1").touch()
    d = daemon({"slow.toml": SLOW.format(tmp=tmp_path)})
    wait_for(lambda: d.status("slow")["state"] == "running")
    (tmp_path / "ready-1").unlink()  # the restart's check may still read n = 1
    waiter = Client(d.socket, timeout=60)
    rid = waiter.send("restart", units=["slow"])
    wait_for(lambda: d.status("slow")["state"] == "starting", what="the restart to begin")
    failures: list[str] = []
    answered = []
    done = threading.Event()

    def hammer() -> None:  # connects and pings all through the exec
        while not done.is_set():
            try:
                answered.append(d.call("ping"))
            except Exception as err:
                failures.append(repr(err))
    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        wait_for(lambda: len(answered) > 5, what="pings before the exec")
        assert d.call("daemon-reexec") == "re-executing; the services keep running"
        wait_for(lambda: "re-executed: took back" in d.output(), what="the new daemon")
        seen = len(answered)
        wait_for(lambda: len(answered) > seen + 5, what="pings after the exec")
    finally:
        done.set()
        thread.join(timeout=60)
    assert failures == []
    (tmp_path / "ready-2").touch()
    reply = waiter.reply()
    waiter.close()
    assert reply == {"id": rid, "ok": True, "result": {"slow": "running"}}
    assert (tmp_path / "n").read_text().strip() == "2", "restarted once, not again"
