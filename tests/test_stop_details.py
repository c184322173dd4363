"""What a stop does besides the stop signal: SIGCONT after it, so a stopped
process runs its handler; and the leftovers of a unit whose main process
exited are killed."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from tests.daemon import wait_for

HANDLER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
open(sys.argv[1], "w").close()
while True:
    time.sleep(1000)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_stopped_process_gets_sigcont_after_the_stop_signal(daemon, tmp_path):
    # A fatal default action ends even a stopped process; a handler runs only once it
    # is continued. Without SIGCONT the stop waits for stop-timeout and SIGKILL.
    # breaks: vigil/engine/supervisor.py:Supervisor._do: the `self._signal(inst, signal.SIGCONT)`
    # after the stop signal dropped (last_exit is "killed by SIGKILL" after 10 s).
    (tmp_path / "handler.py").write_text(HANDLER)
    armed = tmp_path / "armed"
    d = daemon({"frozen.toml": f'[service]\nexec = ["{sys.executable}", "{tmp_path}/handler.py", '
                               f'"{armed}"]\nstop-timeout = 10\n'})
    wait_for(armed.exists, what="the TERM handler installed")
    pid = d.host_pid(d.inst("frozen")["pid"])
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: _state(pid) == "T", what="the process stopped")
    assert d.call("stop", units=["frozen"]) == {"frozen": "inactive"}
    assert d.inst("frozen")["last_exit"] == "exit 7"
    assert "sending SIGKILL" not in d.output()


def test_leftovers_are_killed_when_the_main_process_exits(daemon, tmp_path):
    # breaks: vigil/engine/supervisor.py:Supervisor._kill_leftovers: body -> `pass` (the
    # background sleep lives on).
    child, go = tmp_path / "child", tmp_path / "go"
    d = daemon({"parent.toml": f'[service]\nexec = ["sh", "-c", "sleep 1000 & echo $! > {child}; '
                               f'while [ ! -e {go} ]; do sleep 0.05; done"]\nrestart = "never"\n'})
    ns_pid = int(wait_for(lambda: child.exists() and child.read_text().strip(),
                          what="the background child"))
    pid = d.host_pid(ns_pid)
    assert _state(pid) in "SR"
    go.touch()
    wait_for(lambda: d.status("parent")["state"] == "exited", what="the main process done")
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z",
             what="the leftover killed")
    wait_for(lambda: not d.zombies(), what="the leftover reaped")
