"""Unit keys that the schema tests only parse, shown to act on a real
service: where stdout and stderr go, a terminal as the console, rlimits
read back from /proc, an optional env-file, and `scope = "pid:N"`."""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

import pytest

from tests.daemon import wait_for
from vigilctl.client import RequestFailed


def test_stdout_and_stderr_go_where_the_unit_says(daemon, tmp_path):
    # breaks: vigil/engine/streams.py:Streams._output_fd: the FILE branch skipped (the path
    # stays empty); the NULL branch skipped (the line reaches `logs`); the INHERIT
    # branch skipped (the line comes prefixed, through the console).
    out = tmp_path / "out.txt"
    out.write_text("kept\n")
    say = 'echo to-stdout-{0}; echo to-stderr-{0} >&2'
    d = daemon({
        "quiet.toml": f'[service]\ntype = "oneshot"\nexec = ["sh", "-c", "{say.format("quiet")}"]\n'
                      'stdout = "null"\nstderr = "null"\n',
        "file.toml": f'[service]\ntype = "oneshot"\nexec = ["sh", "-c", "{say.format("file")}"]\n'
                     f'stdout = "{out}"\nstderr = "{out}"\n',
        "inherit.toml": f'[service]\ntype = "oneshot"\nexec = ["sh", "-c", "{say.format("inh")}"]\n'
                        'stdout = "inherit"\nstderr = "inherit"\n',
        "shown.toml": f'[service]\ntype = "oneshot"\nexec = ["sh", "-c", "{say.format("con")}"]\n'
                      'stdout = "console"\nstderr = "log"\n',
    })
    for name in ("quiet", "file", "inherit", "shown"):
        wait_for(lambda n=name: d.status(n)["state"] == "exited", what=f"{name} done")
    logs = tmp_path / "run" / "logs"
    assert out.read_text() == "kept\nto-stdout-file\nto-stderr-file\n"  # appended
    assert not (logs / "quiet.log").exists() or (logs / "quiet.log").read_text() == ""
    assert d.call("logs", units=["quiet"], lines=10) == []
    # inherit: the daemon's own stdout and stderr, raw (no time or instance prefix)
    wait_for(lambda: {"to-stdout-inh", "to-stderr-inh"} <= set(d.output().splitlines()),
             what="inherited output on the daemon's stdout")
    # console: a line with the instance's name, not raw; stderr = log stays in the log
    line = wait_for(lambda: next((x for x in d.output().splitlines() if "to-stdout-con" in x),
                                 None), what="the console line")
    assert line != "to-stdout-con" and "shown" in line
    assert "to-stderr-con" not in d.output()
    wait_for(lambda: "to-stderr-con" in (logs / "shown.log").read_text(), what="stderr logged")
    assert "to-stdout-con" not in (logs / "shown.log").read_text()


LIMITS = """
import resource, sys
out = []
for name in ("NOFILE", "CORE", "STACK"):
    soft, hard = resource.getrlimit(getattr(resource, "RLIMIT_" + name))
    out.append(f"{name} {soft} {hard}")
open(sys.argv[1], "w").write("\\n".join(out))
"""


def test_limits_are_applied(daemon, tmp_path):
    # breaks: vigil/engine/launch.py:make_spec: `spec.limits = []` (NOFILE as inherited)
    (tmp_path / "limits.py").write_text(LIMITS)
    out = tmp_path / "limits"
    d = daemon({"limited.toml": f'[service]\ntype = "oneshot"\n'
                                f'exec = ["{sys.executable}", "{tmp_path}/limits.py", "{out}"]\n'
                                '[service.limits]\nnofile = [100, 200]\ncore = 0\n'
                                'stack = "infinity"\n'})
    wait_for(lambda: d.status("limited")["state"] == "exited", what="limited done")
    assert out.read_text().splitlines() == ["NOFILE 100 200", "CORE 0 0", "STACK -1 -1"]


def test_limits_read_back_from_proc_of_a_running_service(daemon):
    d = daemon({"lim.toml": '[service]\nexec = "sleep 1000"\n[service.limits]\nnofile = 64\n'
                            'nproc = [500, 600]\n'})
    pid = d.host_pid(wait_for(lambda: d.inst("lim")["state"] == "running" and d.inst("lim")["pid"]))
    limits = {line[:26].strip(): line[26:].split()[:2]
              for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]}
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max processes"] == ["500", "600"]


def test_an_optional_env_file_may_be_missing(daemon, tmp_path):
    # breaks: vigil/engine/launch.py:read_env_file: `if optional:` -> `if False:` (optional
    # then fails the start like a required one).
    out = tmp_path / "env"
    present = tmp_path / "present.env"
    present.write_text("FROM_FILE=yes\n")
    d = daemon({
        "opt.toml": f'[service]\ntype = "oneshot"\nexec = "sh -c \'echo $FROM_FILE > {out}\'"\n'
                    f'env-file = ["-{tmp_path}/missing.env", "-{present}"]\n',
        "req.toml": f'[service]\ntype = "oneshot"\nexec = "true"\n'
                    f'env-file = "{tmp_path}/missing.env"\nrestart = "never"\n',
    })
    wait_for(lambda: d.status("opt")["state"] == "exited", what="opt ran")
    assert out.read_text() == "yes\n"  # the optional file that exists is read
    reason = wait_for(lambda: d.status("req")["state"] == "failed" and d.inst("req")["reason"],
                      what="req failed")
    assert f"{tmp_path}/missing.env" in reason


def test_a_scoped_unit_stops_when_its_process_exits(daemon, tmp_path):
    # The scope is a process of the daemon's own namespace (a unit's), so the test
    # runs as PID 1 too: the unit file naming it is written once it runs.
    # breaks: vigil/engine/scopes.py:Scopes.check: `return None` at its top (the unit is
    # not bound, and runs on after its scope exits).
    holder_pid = tmp_path / "holder.pid"
    units = tmp_path / "units"
    # keeper: a daemon with no scope left and nothing running exits (docs/projects.md)
    d = daemon({"holder.toml": f'[service]\nexec = "sh -c \'echo $$ > {holder_pid}; '
                               f'exec sleep 1000\'"\nrestart = "never"\n',
                "keeper.toml": '[service]\nexec = "sleep 1000"\n'})
    pid = int(wait_for(lambda: holder_pid.exists() and holder_pid.read_text().strip(),
                       what="the holder's pid"))
    (units / "scoped.toml").write_text(f'[unit]\nenabled = false\nscope = "pid:{pid}"\n'
                                       '[service]\nexec = "sleep 1000"\n')
    (units / "orphaned.toml").write_text('[unit]\nenabled = false\nscope = "pid:2147483000"\n'
                                         '[service]\nexec = "sleep 1000"\n')
    d.call("reload")
    assert d.call("start", units=["scoped"]) == {"scoped": "running"}
    assert d.status("scoped")["scope"] == pid
    d.call("stop", units=["holder"])
    wait_for(lambda: d.status("scoped")["state"] == "inactive", what="scoped stopped")
    assert f"scope pid {pid} exited: stopping scoped" in d.output()
    with pytest.raises(RequestFailed, match="orphaned: not started: scope pid 2147483000: "
                                            "no such process"):
        d.call("start", units=["orphaned"])
    assert d.status("orphaned")["state"] == "failed"


TTY_PROBE = """
import os, sys
fd0 = os.ttyname(0)
same = os.ttyname(1) == fd0 == os.ttyname(2)
controlling = os.tcgetpgrp(0) == os.getpgrp()
print(f"tty={fd0} same={same} controlling={controlling}", flush=True)
"""


def test_a_terminal_as_the_console(daemon, tmp_path):
    # console = "tty" is /dev/console (the schema maps it; see test_schema); a device
    # path takes the same road: stdin, stdout, stderr and the controlling terminal.
    # breaks: vigil/engine/streams.py:Streams.stdio: `spec.controlling_tty = False` for a tty
    # (controlling=False).
    (tmp_path / "probe.py").write_text(TTY_PROBE)
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        d = daemon({"term.toml": f'[service]\ntype = "oneshot"\nconsole = "{path}"\n'
                                 f'exec = ["{sys.executable}", "{tmp_path}/probe.py"]\n'})
        wait_for(lambda: d.status("term")["state"] == "exited", what="the probe ran")
        seen = b""
        while select.select([master], [], [], 5)[0]:
            chunk = os.read(master, 4096)
            seen += chunk
            if b"\n" in chunk or not chunk:
                break
        assert seen.decode().strip() == f"tty={path} same=True controlling=True"
    finally:
        os.close(master)
        os.close(slave)


def test_a_skipped_unit_started_again_is_looked_at_again(daemon, tmp_path):
    # Bug before this test: the second start dropped the skip and started nothing, so
    # the unit stayed "inactive" and `start` never settled.
    # breaks: vigil/engine/manager.py:Manager.start: `was_skipped or` dropped.
    flag = tmp_path / "flag"
    d = daemon({"cond.toml": f'[unit]\nif-exists = ["{flag}"]\n[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("cond")["state"] == "skipped", what="cond skipped")
    flag.touch()
    assert d.call("start", units=["cond"]) == {"cond": "running"}
