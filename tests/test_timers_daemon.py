"""Timers against a real daemon (as subreaper and as PID 1 of a PID
namespace): short intervals, a faked last-run file, and a wall clock the
test steps through VIGIL_TEST_WALL_OFFSET_FILE (the host's clock is never
touched)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import ROOT, wait_for


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def codes(d, unit: str) -> list[str]:
    return [e["code"] for e in d.call("events", units=[unit], lines=2000)]


def job(tmp_path: Path, timer: str, script: str = "echo run >> {out}",
        kind: str = "oneshot") -> str:
    out = tmp_path / "out.txt"
    return (f'[service]\ntype = "{kind}"\nexec = ["sh", "-c", {json.dumps(script.format(out=out))}]'
            f'\n[timer]\n{timer}\n')


def test_the_unit_runs_again_and_again(daemon, tmp_path):
    d = daemon({"tick.toml": job(tmp_path, 'every = "0.5s"')})
    out = tmp_path / "out.txt"
    assert lines(out) == []  # a timer unit is not started with the others
    wait_for(lambda: len(lines(out)) >= 3, what="three runs")
    status = d.status("tick")
    assert status["next_run"] is not None
    assert status["instances"][0]["runs"], "each run is recorded as a run of the unit"


def test_overlap_skip_never_runs_two_at_once(daemon, tmp_path):
    """Runs of 1 s every 0.2 s: the elapses in between are skipped, so the
    runs' begin and end lines alternate."""
    script = "echo begin >> {out}; sleep 1; echo end >> {out}"
    d = daemon({"slow.toml": job(tmp_path, 'every = "0.2s"', script)})
    out = tmp_path / "out.txt"
    wait_for(lambda: lines(out).count("end") >= 2, what="two whole runs")
    wait_for(lambda: "timer.skipped" in codes(d, "slow"), what="a skipped elapse")
    seen = lines(out)
    assert seen[:4] == ["begin", "end", "begin", "end"]


def test_a_missed_persistent_run_runs_at_start(daemon, tmp_path):
    """The last run (faked) was two days ago: the daily job runs once at
    start, and the file then holds the new last run."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    state = run / "timers.json"
    two_days_ago = time.time() - 2 * 86400
    state.write_text(json.dumps({"format": 1, "last": {"daily-job": two_days_ago}}))
    d = daemon({"daily-job.toml": job(tmp_path, 'calendar = "daily"\npersistent = true')})
    out = tmp_path / "out.txt"
    wait_for(lambda: lines(out) == ["run"], what="the missed run")
    wait_for(lambda: json.loads(state.read_text())["last"]["daily-job"] > two_days_ago + 86400,
             what="the new last run saved")
    assert "timer.missed" in codes(d, "daily-job")


def test_a_first_start_runs_no_persistent_catch_up(daemon, tmp_path):
    d = daemon({"daily-job.toml": job(tmp_path, 'calendar = "daily"\npersistent = true'),
                "other.toml": '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("other")["state"] == "running")
    assert d.status("daily-job")["state"] == "inactive"
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_vigilctl_timers_lists_next_and_last(daemon, tmp_path):
    d = daemon({"tick.toml": job(tmp_path, 'every = "0.5s"'),
                "nightly.toml": job(tmp_path, 'calendar = "Mon..Fri 03:00 UTC"')})
    wait_for(lambda: lines(tmp_path / "out.txt"), what="a run of tick")
    out = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, "timers"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    rows = out.splitlines()
    assert rows[0].split() == ["NEXT", "LEFT", "LAST", "PASSED", "UNIT", "SCHEDULE"]
    tick = next(r for r in rows if " tick " in r)
    nightly = next(r for r in rows if " nightly " in r)
    assert "every 0.5s" in tick and " ago " in tick
    assert nightly.endswith("Mon..Fri 03:00 UTC") and " 03:00:00 " in nightly
    assert rows.index(tick) < rows.index(nightly), "soonest first"
    assert "2 timer(s)" in out
    status = subprocess.run([sys.executable, "-m", "vigilctl", "--socket", d.socket, "status",
                             "nightly"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60).stdout
    assert "nightly: next run " in status and "03:00:00" in status


def test_a_calendar_follows_a_step_of_the_wall_clock(daemon, tmp_path, monkeypatch):
    """The daemon's wall clock (test-only offset file) is stepped to a
    second before midnight: the daily unit runs then, not hours later."""
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    monkeypatch.setenv("VIGIL_TEST_WALL_OFFSET_FILE", str(offset))
    d = daemon({"daily-job.toml": job(tmp_path, 'calendar = "daily UTC"'),
                "other.toml": '[service]\nexec = "sleep 1000"\n'})
    wait_for(lambda: d.status("other")["state"] == "running")
    now = time.time()
    midnight = (now // 86400 + 1) * 86400
    assert not (tmp_path / "out.txt").exists()
    offset.write_text(str(midnight - now - 1.0))
    wait_for(lambda: lines(tmp_path / "out.txt") == ["run"], timeout=10,
             what="the run at the stepped midnight")
    rows = d.call("timers")
    assert rows[0]["next"] == pytest.approx(midnight + 86400, abs=1)


def test_daemon_reexec_keeps_the_schedule(daemon, tmp_path):
    d = daemon({"tick.toml": job(tmp_path, 'every = "0.5s"')})
    out = tmp_path / "out.txt"
    wait_for(lambda: len(lines(out)) >= 1, what="a first run")
    before = d.call("timers")[0]["next"]
    d.call("daemon-reexec")
    wait_for(lambda: d.call("ping") == "pong", what="the new daemon")
    after = d.call("timers")[0]["next"]
    periods = (after - before) / 0.5
    assert abs(periods - round(periods)) < 0.1  # on the same grid
    count = len(lines(out))
    wait_for(lambda: len(lines(out)) >= count + 2, what="runs after the re-exec")


def test_a_calendar_on_the_real_clock_runs_at_its_seconds(daemon, tmp_path):
    """`*:*:0/2`: every even second of the wall clock, woken by the timerfd."""
    d = daemon({"even.toml": job(tmp_path, 'calendar = "*:*:0/2"')})
    runs = wait_for(lambda: len(r := d.inst("even")["runs"]) >= 3 and r, what="three runs")
    started = [r["started"] for r in runs]  # the wall time of each spawn
    assert all(int(s) % 2 == 0 for s in started), started
    assert d.status("even")["next_run"] % 2 == 0


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_reload_of_a_changed_timer_unit_does_not_run_it(daemon, tmp_path):
    """A finished run of a timer unit is not run again because its file
    changed: its timer decides when it runs."""
    d = daemon({"nightly.toml": job(tmp_path, 'calendar = "03:00"')})
    out = tmp_path / "out.txt"
    d.call("start", units=["nightly"])
    wait_for(lambda: lines(out) == ["run"] and d.status("nightly")["state"] == "exited")
    (d.units / "nightly.toml").write_text('[unit]\ndescription = "changed"\n'
                                          + job(tmp_path, 'calendar = "04:00"'))
    (d.units / "marker.toml").write_text('[service]\nexec = "sleep 1000"\n')
    changes = {c["unit"]: c["action"] for c in d.call("reload")["changes"]}
    assert changes == {"nightly": "restart", "marker": "add"}
    wait_for(lambda: d.status("marker")["state"] == "running", what="the added unit")
    assert d.status("nightly")["state"] == "exited"
    assert lines(out) == ["run"]
    assert d.call("timers")[0]["schedule"] == "04:00"  # the new schedule


@pytest.mark.parametrize("mode", ["subreaper"], indirect=True)
def test_no_timer_starts_a_unit_while_the_daemon_shuts_down(daemon, tmp_path):
    """A unit takes 2 s to stop; a 0.2 s timer must not run its job in the
    meantime (it would be started into a daemon that is going away)."""
    slow = "trap 'sleep 2; exit 0' TERM; while :; do sleep 0.05; done"
    d = daemon({"tick.toml": job(tmp_path, 'every = "0.2s"'),
                "slow.toml": f'[service]\nexec = {json.dumps(["sh", "-c", slow])}\n'
                             'stop-timeout = 10\n'})
    out = tmp_path / "out.txt"
    wait_for(lambda: len(lines(out)) >= 2 and d.status("slow")["state"] == "running")
    d.call("shutdown")
    at_shutdown = len(lines(out))
    d.proc.wait(timeout=30)
    assert len(lines(out)) <= at_shutdown + 1  # at most the run already under way
