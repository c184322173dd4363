"""The supervision engine against a real daemon, as subreaper and as PID 1."""

from __future__ import annotations

import os
import socket
import signal
import sys
from pathlib import Path

from tests.daemon import wait_for


def test_exit_code_and_signal_are_recorded(daemon, tmp_path):
    d = daemon({
        "three.toml": '[service]\nexec = "sh -c \'exit 3\'"\nrestart = "never"\n',
        "killed.toml": '[service]\nexec = "sh -c \'kill -USR1 $$\'"\nrestart = "never"\n',
        "clean.toml": '[service]\nexec = "true"\nrestart = "on-failure"\n',
    })
    three = wait_for(lambda: (s := d.status("three"))["state"] == "failed" and s)
    assert three["instances"][0]["last_exit"] == "exit 3"
    killed = wait_for(lambda: (s := d.status("killed"))["state"] == "failed" and s)
    assert killed["instances"][0]["last_exit"] == "killed by SIGUSR1"
    wait_for(lambda: d.status("clean")["state"] == "exited")
    assert d.inst("clean")["restarts"] == 0


def test_restart_always_replaces_a_killed_process(daemon):
    d = daemon({"svc.toml": '[service]\nexec = "sleep 1000"\nrestart = "always"\n'
                            'restart-delay = 0\nstart-seconds = 0\n'})
    first = wait_for(lambda: d.inst("svc")["state"] == "running" and d.inst("svc")["pid"])
    os.kill(d.host_pid(first), 9)
    second = wait_for(lambda: (i := d.inst("svc"))["pid"] not in (None, first)
                      and i["state"] == "running" and i["pid"])
    assert second != first
    assert d.inst("svc")["restarts"] == 1
    assert d.inst("svc")["last_exit"] == "killed by SIGKILL"


def test_retries_then_fatal_with_reason(daemon):
    d = daemon({"bad.toml": '[service]\nexec = "sh -c \'exit 1\'"\nstart-seconds = 5\n'
                            'start-retries = 2\nrestart-delay = 0.01\n'})
    status = wait_for(lambda: (s := d.status("bad"))["state"] == "fatal" and s)
    inst = status["instances"][0]
    assert inst["restarts"] == 2
    assert "exit 1; gave up after 2 retries" in inst["reason"]
    assert "bad failed" in d.call("why", units=["bad"])


def test_exec_failures_are_clear_failed_states(daemon):
    d = daemon({
        "missing.toml": '[service]\nexec = "/nonexistent/prog --flag"\n',
        "nocwd.toml": '[service]\nexec = "true"\ncwd = "/nonexistent-dir"\n',
        "nouser.toml": '[service]\nexec = "true"\nuser = "no-such-user-xyz"\n',
    })
    reason = wait_for(lambda: d.inst("missing")["reason"])
    assert reason == "/nonexistent/prog: executing failed: No such file or directory"
    assert d.status("missing")["state"] == "failed"
    assert wait_for(lambda: d.inst("nocwd")["reason"]) == \
        "true: changing directory failed: No such file or directory"
    assert wait_for(lambda: d.inst("nouser")["reason"]) == "user: no such user 'no-such-user-xyz'"


def test_stop_escalates_to_sigkill_of_the_whole_group(daemon, tmp_path):
    pids = tmp_path / "pids"
    script = tmp_path / "stubborn.sh"
    script.write_text(f"trap '' TERM\n(trap '' TERM; echo $(sh -c 'echo $PPID') >> {pids}; "
                      f"while :; do sleep 1; done) &\necho $$ >> {pids}\nwhile :; do sleep 1; done\n")
    d = daemon({"stubborn.toml": f'[service]\nexec = ["sh", "{script}"]\nstop-timeout = 0.5\n'})
    wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, what="two pids")
    client_pids = [int(p) for p in pids.read_text().split()]
    host_pids = [d.host_pid(p) for p in client_pids]
    result = d.call("stop", units=["stubborn"])
    assert result == {"stubborn": "inactive"}
    assert d.inst("stubborn")["last_exit"] == "killed by SIGKILL"
    wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in host_pids),
             what="every process of the group gone")


def test_instances_each_tracked(daemon):
    d = daemon({"w.toml": '[service]\nexec = "sleep 1000"\ninstances = 3\n'})
    insts = wait_for(lambda: (s := d.status("w"))["state"] == "running" and s["instances"])
    assert [i["name"] for i in insts] == ["w:0", "w:1", "w:2"]
    assert len({i["pid"] for i in insts}) == 3


def test_oneshot_finishes_before_dependents_start(daemon, tmp_path):
    marker = tmp_path / "prepared"
    d = daemon({
        "prep.toml": f'[service]\ntype = "oneshot"\nexec = "sh -c \'sleep 0.3; touch {marker}\'"\n',
        "app.toml": f'[unit]\nrequires = ["prep"]\n[service]\ntype = "oneshot"\n'
                    f'exec = "test -e {marker}"\n',
    })
    wait_for(lambda: d.status("app")["state"] == "exited", what="app to see the marker")
    assert d.status("prep")["state"] == "exited"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dependent_waits_for_tcp_readiness(daemon, tmp_path):
    port = free_port()  # the kernel's choice: a fixed port may be taken
    order = tmp_path / "order"
    server = f"import socket,time; time.sleep(0.5); s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1',{port})); s.listen(); open('{order}','a').write('listening '); time.sleep(1000)"
    d = daemon({
        "srv.toml": f'[service]\nexec = ["python3", "-c", "{server}"]\n[service.ready]\ntcp = {port}\n',
        "client.toml": f'[unit]\nrequires = ["srv"]\n[service]\ntype = "oneshot"\n'
                       f'exec = "sh -c \'echo client >> {order}\'"\n',
    })
    wait_for(lambda: d.status("client")["state"] == "exited")
    assert order.read_text().split() == ["listening", "client"]


def test_notify_and_fd_readiness(daemon, tmp_path):
    notify = ("import os,socket,time; time.sleep(0.3); s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
              " s.sendto(b'STATUS=warming up\\\\nREADY=1', os.environ['NOTIFY_SOCKET']); time.sleep(1000)")
    d = daemon({
        "n.toml": f'[service]\ntype = "notify"\nexec = ["python3", "-c", "{notify}"]\n',
        "f.toml": '[service]\nexec = ["sh", "-c", "sleep 0.3; echo >&3; exec sleep 1000"]\n'
                  '[service.ready]\nfd = 3\n',
        "never.toml": '[service]\nexec = "sleep 1000"\n[service.ready]\nnotify = true\ntimeout = 0.5\n',
    })
    wait_for(lambda: d.status("n")["state"] == "running")
    assert d.inst("n")["status"] == "warming up"
    wait_for(lambda: d.status("f")["state"] == "running")
    reason = wait_for(lambda: d.inst("never")["reason"])
    assert "not ready within 0.5s" in reason


def test_health_failure_restarts(daemon, tmp_path):
    d = daemon({"sick.toml": '[service]\nexec = "sleep 1000"\nrestart-delay = 0\n'
                             '[service.health]\nexec = "false"\ninterval = 0.1\nretries = 2\n'})
    first = wait_for(lambda: d.inst("sick")["pid"])
    wait_for(lambda: d.inst("sick")["restarts"] >= 1 and d.inst("sick")["pid"] not in (None, first),
             what="a health restart")
    assert "health check failed 2 times in a row" in d.output()


def test_environment_is_cleared_except_what_the_unit_allows(daemon, tmp_path):
    out = tmp_path / "env"
    envfile = tmp_path / "extra.env"
    envfile.write_text("# comment\nFROM_FILE='yes'\n")
    os.environ["VIGIL_TEST_SECRET"] = "leak"
    os.environ["VIGIL_TEST_PASSED"] = "kept"
    try:
        d = daemon({"e.toml": f'[service]\ntype = "oneshot"\nexec = "sh -c \'env > {out}\'"\n'
                              f'env = {{ MINE = "1" }}\nenv-file = "{envfile}"\n'
                              f'pass-env = ["VIGIL_TEST_PASSED"]\n'})
    finally:
        del os.environ["VIGIL_TEST_SECRET"], os.environ["VIGIL_TEST_PASSED"]
    wait_for(lambda: d.status("e")["state"] == "exited")
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    env.pop("PWD", None), env.pop("SHLVL", None), env.pop("_", None)  # set by sh itself
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "MINE": "1", "FROM_FILE": "yes", "VIGIL_TEST_PASSED": "kept",
                   "VIGIL_UNIT": "e", "VIGIL_INSTANCE": "0"}


def test_only_fds_0_to_2_reach_the_service(daemon):
    d = daemon({"fds.toml": '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("fds")["state"] == "running")  # exec'd: the fork's own fds are gone
    pid = d.host_pid(d.inst("fds")["pid"])
    assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]


def test_output_is_logged_and_rotated(daemon, tmp_path):
    d = daemon({"chatty.toml": '[service]\ntype = "oneshot"\nlog-max-size = 4096\nlog-keep = 2\n'
                               'exec = ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i-padding-padding; i=$((i+1)); done"]\n'})
    wait_for(lambda: d.status("chatty")["state"] == "exited")
    logs = tmp_path / "run" / "logs"
    wait_for(lambda: "line-399-" in (logs / "chatty.log").read_text(), what="the last line logged")
    files = sorted(p.name for p in logs.glob("chatty.log*"))
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2"]
    assert all(p.stat().st_size <= 4096 for p in logs.glob("chatty.log*"))
    tail = d.call("logs", units=["chatty"], lines=2)
    assert [x["text"] for x in tail] == ["line-398-padding-padding", "line-399-padding-padding"]


def test_orphans_are_reaped(daemon):
    # Each round leaves a grandchild that outlives its parent: an orphan for us.
    d = daemon({"orphans.toml": '[service]\ntype = "oneshot"\n'
                                'exec = ["sh", "-c", "for i in $(seq 50); do (sleep 0.05 &) ; done; sleep 0.3"]\n'})
    wait_for(lambda: d.status("orphans")["state"] == "exited")
    wait_for(lambda: not d.zombies(), what="no zombie left")


def test_starting_a_unit_stops_what_conflicts_with_it(daemon):
    d = daemon({"a.toml": '[service]\nexec = "sleep 1000"\n',
                "b.toml": '[unit]\nenabled = false\nconflicts = ["a"]\n[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("a")["state"] == "running")
    assert d.call("start", units=["b"]) == {"b": "running"}
    wait_for(lambda: d.status("a")["state"] == "inactive")


def test_a_slow_start_is_reported_while_it_lasts(daemon):
    d = daemon({"slow.toml": '[service]\nexec = "sleep 1000"\n'
                             '[service.ready]\nexec = "false"\ntimeout = 60\ninterval = 0.2\n',
                "dep.toml": '[unit]\nrequires = ["slow"]\nafter = ["slow"]\n'
                            '[service]\nexec = "sleep 1000"\n'},
               ["--slow-report", "0.3"])
    wait_for(lambda: "still waiting for slow (1 s)" in d.output(), what="a slow-start report")
    assert "waiting for slow to be ready" in d.call("why", units=["dep"])


def test_a_slow_stop_is_reported_while_it_lasts(daemon, tmp_path):
    armed = tmp_path / "armed"  # the stop must come after the trap is set
    d = daemon({"stubborn.toml": f'[service]\nexec = ["sh", "-c", "trap \'\' TERM; touch {armed}; '
                                 'sleep 1000"]\nstop-timeout = 2\n'}, ["--slow-report", "0.3"])
    wait_for(lambda: d.status("stubborn")["state"] == "running" and armed.exists())
    d.call("stop", units=["stubborn"], no_block=True)
    wait_for(lambda: "still waiting for stubborn to stop (1 s)" in d.output(),
             what="a slow-stop report")
    wait_for(lambda: d.status("stubborn")["state"] == "inactive", what="SIGKILL at 2 s")
    assert "did not stop within 2s; sending SIGKILL" in d.output()


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_identity_umask_and_privileges_as_configured(daemon):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("changing user needs root")
    d = daemon({"jail.toml": '[service]\nexec = "sleep 1000"\nuser = "nobody"\n'
                             'group = "nogroup"\nsupplementary-groups = ["daemon"]\n'
                             'umask = "027"\nno-new-privileges = true\n'
                             'capability-bounding-set = ["CAP_NET_BIND_SERVICE"]\n',
                "free.toml": '[service]\nexec = "sleep 1000"\n'})
    pid = d.host_pid(wait_for(lambda: d.inst("jail")["state"] == "running" and
                              d.inst("jail")["pid"]))
    st = _proc_status(pid)
    assert st["Uid"].split() == ["65534"] * 4
    assert st["Gid"].split() == ["65534"] * 4
    assert st["Groups"].split() == ["1"]  # daemon
    assert st["Umask"] == "0027"
    assert st["NoNewPrivs"] == "1"
    assert int(st["CapBnd"], 16) == 1 << 10  # CAP_NET_BIND_SERVICE alone
    free = _proc_status(d.host_pid(wait_for(lambda: d.inst("free")["pid"])))
    assert free["NoNewPrivs"] == "0" and int(free["CapBnd"], 16) != 1 << 10


def test_if_exists_and_unless_exists_skip_a_unit(daemon, tmp_path):
    d = daemon({
        "needs.toml": f'[unit]\nif-exists = ["{tmp_path}/nothing-here"]\n'
                      '[service]\nexec = "sleep 1000"\n',
        "avoids.toml": f'[unit]\nunless-exists = ["{tmp_path}"]\n[service]\nexec = "sleep 1000"\n',
        "runs.toml": f'[unit]\nif-exists = ["{tmp_path}"]\nunless-exists = ["{tmp_path}/x"]\n'
                     '[service]\nexec = "sleep 1000"\n',
    })
    wait_for(lambda: d.status("runs")["state"] == "running")
    assert d.status("needs")["state"] == "skipped"
    assert d.call("why", units=["needs"]) == f"skipped: {tmp_path}/nothing-here does not exist"
    assert d.call("why", units=["avoids"]) == f"skipped: {tmp_path} exists"


COUNTER = """
import signal, sys
sig = signal.SIGRTMIN  # real-time: every sending is queued, none merges with another
signal.pthread_sigmask(signal.SIG_BLOCK, [sig])
open(sys.argv[1] + "/armed", "w").close()
signal.sigwaitinfo([sig])
got = 1
while signal.sigtimedwait([sig], 0.5):
    got += 1
open(sys.argv[1] + "/got", "w").write(str(got))
"""


def test_the_stop_signal_arrives_once(daemon, tmp_path):
    """The main process leads its group: the group's signal reaches it, and
    it must not get a second one by its pidfd (a shell's TERM trap ran twice)."""
    (tmp_path / "counter.py").write_text(COUNTER)
    d = daemon({"once.toml": f'[service]\nexec = ["{sys.executable}", "{tmp_path}/counter.py", '
                             f'"{tmp_path}"]\nstop-signal = {int(signal.SIGRTMIN)}\n'})
    wait_for(lambda: (tmp_path / "armed").exists(), what="the counter to block the signal")
    assert d.call("stop", units=["once"]) == {"once": "inactive"}
    assert (tmp_path / "got").read_text() == "1"
