"""The restart policy at run time, against a real daemon: the pure tests in
test_states.py show the table decides right; these show the daemon acts on
it (timers armed for the right delay, retries after fatal, a forking unit's
start-timeout firing).

Each run of a unit appends the kernel's uptime (a monotonic clock a shell
can read) to a file; the gaps between runs are what the backoff produced.
Only lower bounds are tight (a delay is never shorter); upper bounds leave
room for a loaded machine.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from tests.daemon import wait_for

STAMP = "read up _ < /proc/uptime; echo $up >> {runs}"


def stamps(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.exists() else []


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


def test_backoff_doubles_per_failure_and_stops_at_the_cap(daemon, tmp_path):
    # breaks: vigil/engine/states.py:backoff_delay: `2 ** max(0, inst.failures - 1)` -> `1`
    # (every gap 0.3 s: the second is under 0.54); and `min(..., restart_delay_max)`
    # -> the uncapped value (the fourth gap is 2.4 s, over 2.1).
    runs = tmp_path / "runs"
    d = daemon({"flaky.toml": f'[service]\nexec = ["sh", "-c", "{STAMP.format(runs=runs)}; '
                              'exit 1"]\nrestart-delay = 0.3\nrestart-delay-max = 1.2\n'
                              'start-seconds = 0\nstart-retries = 100\n'})
    times = wait_for(lambda: len(t := stamps(runs)) >= 5 and t, timeout=30,
                     what="five runs")[:5]
    g = gaps(times)
    # 0.3, 0.6, 1.2, 1.2 (capped), each -10% at worst, uptime in 10 ms steps.
    assert g[0] >= 0.26 and g[1] >= 0.53 and g[2] >= 1.07 and g[3] >= 1.07, g
    assert g[3] < 2.1, f"not capped at 1.2 s: {g}"
    assert d.inst("flaky")["state"] in ("backoff", "starting", "running")


def test_a_stable_run_forgets_earlier_failures(daemon, tmp_path):
    # breaks: vigil/engine/states.py:_after_failure: `inst.failures = 0` -> `pass` (the
    # delays double: the fifth run comes 0.6 + 1.6 s after the fourth).
    runs = tmp_path / "runs"
    d = daemon({"steady.toml": f'[service]\nexec = ["sh", "-c", "{STAMP.format(runs=runs)}; '
                               'sleep 0.6; exit 1"]\nrestart-delay = 0.2\n'
                               'stable-seconds = 0.5\nstart-seconds = 0\n'})
    times = wait_for(lambda: len(t := stamps(runs)) >= 5 and t, timeout=30,
                     what="five runs")[:5]
    g = gaps(times)
    # Each gap is the 0.6 s run plus a fresh first delay (0.2 s); without the reset
    # the fourth would be 0.6 + 0.2 * 8 * 0.9 = 2.04 s at least.
    assert all(gap < 1.9 for gap in g), g
    assert d.inst("steady")["restarts"] >= 4


def test_retry_after_fatal_tries_again(daemon, tmp_path):
    # breaks: vigil/engine/states.py:_after_failure: the ARM_RETRY after fatal dropped
    # (one run, then fatal for good).
    runs = tmp_path / "runs"
    d = daemon({"phoenix.toml": f'[service]\nexec = ["sh", "-c", "{STAMP.format(runs=runs)}; '
                                'exit 1"]\nstart-retries = 0\nretry-after-fatal = 0.3\n'})
    times = wait_for(lambda: len(t := stamps(runs)) >= 3 and t, timeout=30,
                     what="three runs, each after a fatal")
    assert all(gap >= 0.26 for gap in gaps(times[:3])), times
    assert "gave up after 0 retries" in d.output()
    wait_for(lambda: d.inst("phoenix")["state"] == "fatal", what="fatal between retries")


def test_success_exit_codes_count_as_success(daemon):
    # breaks: vigil/engine/states.py:ExitInfo.success: `self.code in codes` -> `self.code == 0`
    d = daemon({"three.toml": '[service]\nexec = "sh -c \'exit 3\'"\nsuccess-exit-codes = [0, 3]\n'
                              'restart = "on-failure"\n',
                "zero.toml": '[service]\nexec = "true"\nsuccess-exit-codes = [3]\n'
                             'restart = "never"\n'})
    wait_for(lambda: d.status("three")["state"] == "exited", what="exit 3 a success")
    assert d.inst("three")["restarts"] == 0
    assert d.inst("three")["last_exit"] == "exit 3"
    wait_for(lambda: d.status("zero")["state"] == "failed", what="exit 0 a failure")
    assert d.inst("zero")["reason"] == "exit 0"


def test_a_forking_units_start_timeout_fires(daemon, tmp_path):
    # The launcher never exits: past start-timeout the unit is stopped and, with no
    # retry left, fatal, naming the timeout.
    # breaks: vigil/engine/states.py:_exec_ok: the forking branch returns [] (no deadline:
    # the unit stays starting).
    d = daemon({"stuck.toml": f'[service]\ntype = "forking"\npid-file = "{tmp_path}/stuck.pid"\n'
                              'exec = "sleep 1000"\nstart-timeout = 0.3\nstart-retries = 0\n'})
    reason = wait_for(lambda: d.status("stuck")["state"] == "fatal" and d.inst("stuck")["reason"],
                      what="stuck fatal")
    assert reason == "not ready within 0.3s; gave up after 0 retries"
    assert d.inst("stuck")["last_exit"] == "killed by SIGTERM"
