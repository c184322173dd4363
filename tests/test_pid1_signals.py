"""Signals to the daemon, as a supervisor and as PID 1 in system mode:
SIGHUP (and, in system mode, SIGUSR2) reload, SIGUSR1 dumps the units'
states, `--sigterm` chooses what SIGTERM to PID 1 does, `halt`, and
`--shutdown-timeout` ends a shutdown that a unit holds up.

reboot(2) in a PID namespace ends the namespace's init with a signal naming
the command: SIGINT for poweroff and halt, SIGHUP for reboot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemon import Daemon, can_unshare, wait_for

system_only = pytest.mark.skipif(not can_unshare(), reason="needs root for namespaces")
TICK = '[service]\nexec = "sleep 1000"\n'


def _system(tmp: Path, unit_dir, units: dict[str, str], extra: list[str]) -> Daemon:
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    return Daemon(unit_dir(units), tmp, pid1=True, namespaces=("--uts", "--net"),
                  extra=["--system", "--config-root", str(root), "--cgroup", "off",
                         "--kill-grace", "1", *extra])


def test_sighup_reloads_and_sigusr1_dumps(daemon, tmp_path):
    # breaks: vigil/daemon.py:Daemon._signals: the SIGHUP handler dropped (the
    # new unit never loads); the SIGUSR1 one dropped (no dump lines).
    d = daemon({"a.toml": TICK})
    wait_for(lambda: d.status("a")["state"] == "running", what="a running")
    (tmp_path / "units" / "b.toml").write_text(TICK)
    os.kill(d.daemon_pid(), signal.SIGHUP)
    wait_for(lambda: d.status("b")["state"] == "running", what="b loaded by SIGHUP")
    assert "Reloaded: 1 change(s)" in d.output()
    os.kill(d.daemon_pid(), signal.SIGUSR1)
    wait_for(lambda: "a: running" in d.output() and "b: running" in d.output(),
             what="the dump")


@system_only
def test_sigusr2_reloads_pid1(tmp_path, unit_dir):
    # breaks: vigil/daemon.py:Daemon._signals: the SIGUSR2 handler dropped.
    d = _system(tmp_path, unit_dir, {"a.toml": TICK}, [])
    try:
        wait_for(lambda: d.status("a")["state"] == "running", what="a running")
        (tmp_path / "units" / "b.toml").write_text(TICK)
        os.kill(d.daemon_pid(), signal.SIGUSR2)
        wait_for(lambda: d.status("b")["state"] == "running", what="b loaded by SIGUSR2")
    finally:
        d.stop()


@system_only
@pytest.mark.parametrize("how", ["--sigterm", "call"])
def test_halt(tmp_path, unit_dir, how):
    # `--sigterm halt`: SIGTERM to PID 1 halts (default: reboot, test_system.py);
    # `vigilctl halt` does too.
    # breaks: vigil/daemon.py:Daemon._signals: `signal.SIGTERM: self.opts.sigterm` ->
    # `"reboot"` (dies by SIGHUP, says "reboot now").
    d = _system(tmp_path, unit_dir, {"a.toml": TICK},
                ["--sigterm", "halt"] if how == "--sigterm" else [])
    try:
        wait_for(lambda: d.status("a")["state"] == "running", what="a running")
        if how == "--sigterm":
            os.kill(d.daemon_pid(), signal.SIGTERM)
        else:
            assert d.call("halt") == "stopping all units, then halt"
        d.proc.wait(timeout=60)
        assert d.proc.returncode == -signal.SIGINT, d.output()
        assert "halt now" in d.output()
    finally:
        d.stop()


def test_shutdown_timeout_ends_a_shutdown_held_up(daemon, tmp_path):
    # A unit that ignores TERM with a long stop-timeout: the daemon kills it at
    # --shutdown-timeout and exits.
    # breaks: vigil/daemon.py:Daemon.shutdown: the call_later(shutdown_timeout, ...)
    # dropped (the shutdown waits out the 60 s stop-timeout).
    armed = tmp_path / "armed"
    d = daemon({"stubborn.toml": f'[service]\nexec = ["sh", "-c", "trap \'\' TERM; touch {armed}; '
                                 'while :; do sleep 0.05; done"]\nstop-timeout = 60\n'},
               ["--shutdown-timeout", "1"])
    wait_for(armed.exists, what="the TERM trap installed")
    d.call("shutdown")
    d.proc.wait(timeout=20)
    assert "shutdown timeout: killing what is left" in d.output()
