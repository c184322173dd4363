"""Faults the daemon must live through: a full log disk, no file
descriptors left, an exception in its own loop, files it cannot execute."""

from __future__ import annotations

import os

import pytest

from tests.daemon import Daemon, can_unshare, wait_for


def test_a_full_log_disk_drops_lines_and_says_so(unit_dir, tmp_path):
    if not can_unshare():
        pytest.skip("needs a mount namespace for the small tmpfs")
    logs = tmp_path / "logs"
    logs.mkdir()
    units = unit_dir({
        "loud.toml": '[service]\nexec = ["sh", "-c", "while :; do echo '
                     'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"]\n'
                     'log-max-size = 10000000\nlog-keep = 0\n',
        "quiet.toml": '[service]\nexec = "sleep 1000"\n'})
    d = Daemon(units, tmp_path, pid1=True, extra=["--log-dir", str(logs)],
               prelude=f"mount -t tmpfs -o size=64k none {logs}")
    try:
        wait_for(lambda: d.inst("loud")["log_dropped"] > 100, what="lines to be dropped")
        assert "WARN ] log of loud: No space left on device" in d.output()
        assert d.output().count("dropping lines") == 1, "said once, not per line"
        assert d.inst("loud")["state"] == "running", "the service runs on"
        assert d.status("quiet")["state"] == "running"
        assert d.call("ping") == "pong"
    finally:
        d.stop()


def test_no_fds_left_fails_units_clearly_and_status_still_answers(unit_dir, tmp_path):
    units = unit_dir({f"s{i:02}.toml": '[service]\nexec = "sleep 1000"\nrestart = "never"\n'
                      for i in range(40)})
    d = Daemon(units, tmp_path, wrap=["prlimit", "--nofile=60:60"])
    try:
        def settled() -> list[dict]:
            units = d.call("status")
            return units if all(u["state"] in ("running", "failed") for u in units) else []
        units = wait_for(settled, what="every unit to run or fail")
        failed = [u for u in units if u["state"] == "failed"]
        assert failed and len(failed) < 40
        assert all("Too many open files" in u["instances"][0]["reason"] for u in failed)
        assert d.call("ping") == "pong"  # a reserved fd lets a client in
    finally:
        d.stop()


INJECT = """
import vigil.engine.supervisor as supervisor
_reap, calls = supervisor.Supervisor.reap, []
def reap(self):
    calls.append(1)
    if len(calls) == 3:
        raise RuntimeError("injected fault")
    return _reap(self)
supervisor.Supervisor.reap = reap
"""


def test_an_exception_in_the_loop_is_logged_and_the_loop_goes_on(unit_dir, tmp_path):
    units = unit_dir({"flaky.toml": '[service]\nexec = ["sh", "-c", "sleep 0.2"]\n'
                                    'restart = "always"\nrestart-delay = 0\nstart-seconds = 0\n'})
    d = Daemon(units, tmp_path, python_code=INJECT)
    try:
        wait_for(lambda: "injected fault" in d.output(), what="the injected fault")
        assert "error in signal 17: RuntimeError: injected fault" in d.output()
        restarts = d.inst("flaky")["restarts"]
        wait_for(lambda: d.inst("flaky")["restarts"] > restarts + 2,
                 what="restarts to go on after the fault")
        assert d.zombies() == [] or wait_for(lambda: d.zombies() == [])
    finally:
        d.stop()


def test_a_file_it_may_not_execute(unit_dir, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    d = Daemon(unit_dir({"perm.toml": f'[service]\nexec = "{script}"\n'}), tmp_path)
    try:
        reason = wait_for(lambda: d.inst("perm")["reason"])
        assert reason == f"{script}: executing failed: Permission denied"
        assert d.status("perm")["state"] == "failed"
    finally:
        d.stop()
