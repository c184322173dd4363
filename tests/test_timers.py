"""The timer scheduler (vigil/engine/timers.py) on fake clocks: a loop whose
monotonic clock and a wall clock the test moves, and a stand-in manager
that records what it was asked to start. No sleeps, no processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vigil.runtime.events import Events
from vigil.runtime.loop import Loop
from vigil.model.schema import build_unit
from vigil.engine.timers import Timers
from vigil.model.unit import Unit

# 2026-12-02 17:00:00 UTC, a Wednesday
WALL0 = datetime(2026, 12, 2, 17, 0, tzinfo=UTC).timestamp()


class Clocks:
    def __init__(self) -> None:
        self.mono, self.wall, self.boot = 1000.0, WALL0, 5000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds
        self.boot += seconds


class FakeManager:
    """What Timers uses of the manager: units, active, waiting, restart, state."""

    def __init__(self, units: dict[str, Unit]) -> None:
        self.units = units
        self.watchers: list[Any] = []
        self.waiting: set[str] = set()
        self.running: set[str] = set()
        self.started: list[tuple[str, float]] = []
        self.started_wall: list[float] = []
        self.clocks: Clocks | None = None

    def active(self, name: str) -> bool:
        return name in self.running

    def restart(self, names: list[str]) -> None:
        for name in names:
            assert self.clocks is not None
            self.started.append((name, self.clocks.mono))
            self.started_wall.append(self.clocks.wall)

    def state(self, name: str) -> str:
        return "running" if name in self.running else "inactive"

    def finish(self, name: str) -> None:
        self.running.discard(name)
        for watcher in list(self.watchers):
            watcher()


def timer_unit(name: str = "job", **timer: Any) -> Unit:
    return build_unit(name, {"service": {"exec": "true", "type": "oneshot"}, "timer": timer},
                      f"{name}.toml", {})


class Rig:
    def __init__(self, tmp: Path, units: list[Unit], state: dict[str, float] | None = None,
                 rng: float = 0.0) -> None:
        self.clocks = Clocks()
        self.loop = Loop(lambda what, err: (_ for _ in ()).throw(err),
                         clock=lambda: self.clocks.mono)
        self.manager = FakeManager({u.name: u for u in units})
        self.manager.clocks = self.clocks
        self.state_path = tmp / "timers.json"
        if state is not None:
            self.state_path.write_text(json.dumps({"format": 1, "last": state}))
        self.events = Events(None, None)
        self.timers = Timers(self.loop, self.manager, self.events,  # type: ignore[arg-type]
                             str(self.state_path), wall=lambda: self.clocks.wall,
                             boot=lambda: self.clocks.boot, rng=lambda: rng)
        self.timers.sync()

    def run_for(self, seconds: float, step: float = 0.5) -> None:
        """Moves both clocks forward, running the loop at each step."""
        end = self.clocks.mono + seconds
        self.loop.run_once(max_wait=0)
        while self.clocks.mono < end:
            self.clocks.advance(min(step, end - self.clocks.mono))
            self.loop.run_once(max_wait=0)

    def starts(self) -> list[float]:
        return [t - 1000.0 for _, t in self.manager.started]

    def codes(self) -> list[str]:
        return [e["code"] for e in self.events.recent]


def test_an_interval_runs_exactly_on_its_grid(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s")])
    rig.run_for(35, step=0.25)
    assert rig.starts() == [10.0, 20.0, 30.0]


def test_a_late_wake_does_not_shift_the_interval(tmp_path: Path) -> None:
    """Woken at 25 s for the elapse due at 10 (20 missed too): one run, and
    the next at 30, on the grid, not at 35."""
    rig = Rig(tmp_path, [timer_unit(every="10s")])
    rig.run_for(0)
    rig.clocks.advance(25)
    rig.loop.run_once(max_wait=0)
    rig.run_for(6, step=0.25)
    assert rig.starts() == [25.0, 30.0]


def test_a_wall_clock_step_does_not_move_an_interval(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s")])
    rig.run_for(5)
    rig.clocks.wall -= 86400  # the date is set back a day
    rig.run_for(6)
    assert rig.starts() == [10.0]


def test_a_calendar_runs_at_its_wall_time(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(calendar="*:0/15 UTC")])
    rig.run_for(31 * 60, step=1)
    assert rig.starts() == [15 * 60.0, 30 * 60.0]


def test_a_calendar_follows_a_step_forward_of_the_wall_clock(tmp_path: Path) -> None:
    """The clock jumps past tomorrow's 00:00: the unit runs once, at once,
    and next at the midnight after the new time."""
    rig = Rig(tmp_path, [timer_unit(calendar="daily UTC")])
    rig.run_for(1)
    rig.clocks.wall += 2 * 86400 + 3600  # to 2026-12-04 18:00
    rig.run_for(61, step=1)  # at most one re-check period
    assert len(rig.starts()) == 1
    next_run = rig.timers.next_run("job")
    assert next_run == datetime(2026, 12, 5, tzinfo=UTC).timestamp()


def test_a_calendar_follows_a_step_back_of_the_wall_clock(tmp_path: Path) -> None:
    """Due at 18:00 on the 2nd; the clock is set back to 15:00 on the 1st:
    the next elapse is re-computed from the new time (18:00 on the 1st, 3 h
    later), not left a day and more away."""
    rig = Rig(tmp_path, [timer_unit(calendar="18:00 UTC")])
    rig.run_for(1)
    rig.clocks.wall -= 86400 + 2 * 3600
    rig.run_for(3 * 3600 - 120, step=30)
    assert rig.starts() == []
    rig.run_for(240, step=30)
    assert len(rig.starts()) == 1
    late = rig.manager.started_wall[0] - datetime(2026, 12, 1, 18, tzinfo=UTC).timestamp()
    assert 0 <= late <= 30  # the loop's step
    assert "timer.clock" in rig.codes()


def test_an_idle_daemon_with_a_far_timer_sleeps(tmp_path: Path) -> None:
    """A yearly calendar: the loop's next wake is the re-check, a minute off,
    not a second; an interval a day off: a day."""
    rig = Rig(tmp_path, [timer_unit(calendar="yearly"), timer_unit("b", every="1d")])
    assert rig.loop._next_timeout() == pytest.approx(60.0)
    rig.timers.recheck = 3600.0
    rig.timers.sync()
    rig.timers._arm_wall()
    assert rig.loop._next_timeout() == pytest.approx(3600.0)


@pytest.mark.parametrize("policy,expected", [("skip", 1), ("queue", 2), ("restart", 2)])
def test_overlap_policy(tmp_path: Path, policy: str, expected: int) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s", overlap=policy)])
    rig.run_for(10.5)
    rig.manager.running.add("job")  # the first run is still going at the second elapse
    rig.run_for(10)
    queued_now = len(rig.starts())
    rig.manager.finish("job")
    starts = len(rig.starts())
    assert starts == expected
    if policy == "queue":
        assert queued_now == 1  # the queued run waited for the first to end
    if policy == "skip":
        assert "timer.skipped" in rig.codes()


def test_randomize_delays_each_elapse(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s", randomize="4s")], rng=0.5)
    rig.run_for(25, step=0.25)
    assert rig.starts() == [12.0, 22.0]


def test_a_missed_persistent_run_runs_once_at_start(tmp_path: Path) -> None:
    two_days_ago = WALL0 - 2 * 86400
    rig = Rig(tmp_path, [timer_unit(calendar="daily UTC", persistent=True)],
              state={"job": two_days_ago})
    rig.run_for(1)
    assert rig.starts() == [0.0]
    assert "timer.missed" in rig.codes()
    saved = json.loads(rig.state_path.read_text())["last"]["job"]
    assert saved == pytest.approx(WALL0)


def test_a_missed_run_is_not_caught_up_without_persistent(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(calendar="daily UTC")], state={"job": WALL0 - 2 * 86400})
    rig.run_for(1)
    assert rig.starts() == []


def test_a_persistent_run_not_missed_is_not_repeated(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(calendar="daily UTC", persistent=True)],
              state={"job": datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC).timestamp()})
    rig.run_for(1)
    assert rig.starts() == []


def test_a_persistent_interval_counts_from_the_last_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="1h", persistent=True)], state={"job": WALL0 - 3000})
    rig.run_for(700, step=5)
    assert rig.starts() == [600.0]


def test_after_boot_runs_once_per_boot(tmp_path: Path) -> None:
    """Booted 5000 s ago: after-boot = 6000 s runs 1000 s from now; once."""
    rig = Rig(tmp_path, [timer_unit(**{"after-boot": "6000s"})])
    rig.run_for(3000, step=10)
    assert rig.starts() == [1000.0]
    # a new daemon in the same boot (last run recorded) does not run it again
    again = Rig(tmp_path, [timer_unit(**{"after-boot": "6000s"})])
    again.clocks.advance(2000)
    again.timers.schedules.clear()
    again.timers.last = again.timers._read_state()
    again.timers.sync()
    again.run_for(100)
    assert again.starts() == []


def test_after_boot_already_past_runs_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(**{"after-boot": "5m"})])
    rig.run_for(1)
    assert rig.starts() == [0.0]


def test_snapshot_and_restore_keep_the_interval_grid(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s")])
    rig.run_for(13)
    saved = json.loads(json.dumps(rig.timers.snapshot()))
    fresh = Timers(rig.loop, rig.manager, rig.events,  # type: ignore[arg-type]
                   str(rig.state_path), wall=lambda: rig.clocks.wall,
                   boot=lambda: rig.clocks.boot, rng=lambda: 0.0)
    for sched in rig.timers.schedules.values():  # the old daemon is gone
        if sched.handle:
            sched.handle.cancel()
    rig.timers = fresh
    fresh.sync()
    fresh.restore(saved)
    rig.run_for(10, step=0.25)
    assert rig.starts() == [10.0, 20.0]


def test_reload_keeps_an_unchanged_timer_and_drops_a_removed_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="10s"), timer_unit("b", every="10s")])
    rig.run_for(5)
    rig.manager.units = {"job": timer_unit(every="10s")}
    rig.timers.sync()
    rig.run_for(6)
    assert [n for n, _ in rig.manager.started] == ["job"]


def test_an_unreadable_state_file_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    (tmp_path / "timers.json").write_text("{not json")
    rig = Rig(tmp_path, [timer_unit(every="10s")])
    assert "timer.state" in rig.codes()
    rig.run_for(11)
    assert rig.starts() == [10.0]
    assert json.loads(rig.state_path.read_text())["format"] == 1


def test_pid1_imports_the_calendar_only_for_a_unit_with_a_timer(tmp_path: Path) -> None:
    """Loading units without a [timer] leaves zoneinfo and the
    calendar out of the daemon; a unit with one brings the calendar in."""
    import subprocess
    import sys
    (tmp_path / "plain.toml").write_text('[service]\nexec = "true"\n')
    code = ("import sys\nfrom vigil.model.loader import Loader\nimport vigil.daemon\n"
            "r = Loader([sys.argv[1]]).load_all()\nassert r.units and not r.problems, r\n"
            "print(sorted(m for m in ('zoneinfo', 'vigil.model.calendar', "
            "'vigil.engine.timers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
    (tmp_path / "job.toml").write_text('[service]\nexec = "true"\n[timer]\ncalendar = "daily"\n')
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "vigil.model.calendar" in out


def test_with_a_timerfd_an_idle_daemon_arms_no_timer_at_all(tmp_path: Path) -> None:
    """On the real wall clock, calendars wake through a CLOCK_REALTIME
    timerfd (which a step of the clock also wakes): the loop keeps no
    periodic re-check, and a calendar a second away still runs."""
    import time
    loop = Loop(lambda what, err: (_ for _ in ()).throw(err))
    clocks = Clocks()
    clocks.mono = time.monotonic()
    manager = FakeManager({"y": timer_unit("y", calendar="yearly")})
    manager.clocks = clocks
    timers = Timers(loop, manager, Events(None, None),  # type: ignore[arg-type]
                    str(tmp_path / "timers.json"), use_timerfd=True)
    timers.sync()
    assert timers._timerfd >= 0
    assert loop._next_timeout() is None
    manager.units["s"] = timer_unit("s", calendar="*:*:*")  # every second
    timers.sync()
    deadline = time.monotonic() + 5
    while not manager.started and time.monotonic() < deadline:
        loop.run_once(max_wait=1.0)
    assert [name for name, _ in manager.started] == ["s"]
    assert loop._next_timeout() is None
    loop.close()


@pytest.mark.parametrize("text,seconds", [
    ("15m", 900.0), ("0.5s", 0.5), ("1h 30m", 5400.0), ("55s500ms", 55.5), ("2 h", 7200.0),
    ("300ms20s 5day", 432020.3), ("1y 12month", 2 * 31557600.0), (90, 90.0), ("2w", 1209600.0),
])
def test_time_spans_as_systemd_writes_them(text: Any, seconds: float) -> None:
    assert timer_unit(every=text).timer.every == pytest.approx(seconds)  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["5 parsecs", "", "1..2s", "m", "-5s", 0, "0s", True])
def test_a_bad_time_span_is_refused(bad: Any) -> None:
    from vigil.base.errors import UnitError
    with pytest.raises(UnitError, match=r"timer\.every"):
        timer_unit(every=bad)


def test_once_closed_for_shutdown_no_timer_starts_anything(tmp_path: Path) -> None:
    rig = Rig(tmp_path, [timer_unit(every="1s"), timer_unit("c", calendar="*:*:*")])
    rig.run_for(1.5)
    started = len(rig.starts())
    assert started >= 2
    rig.timers.close()
    rig.run_for(5)
    assert len(rig.starts()) == started
    assert rig.loop._next_timeout() is None
