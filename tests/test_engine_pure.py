"""The engine with no process: the supervisor and manager driven by a fake
clock and a fake spawner through start, crash, backoff, fatal, stop timeout,
retry after fatal and reload. (The state table itself, pair by pair, is
walked in tests/test_states.py.)

The fake (tests/fakes.py) stands in for vigil/kernel/proc.py, the seam every process call of the
engine goes through; the clock is the loop's; the backoff's jitter is the
supervisor's `jitter` source. These are the fast layer; tests/test_engine.py
and tests/test_policy.py run the same behaviour with real processes.
"""

from __future__ import annotations

import errno
import inspect
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeCalls
from vigil.kernel import proc
from vigil.runtime.events import Events
from vigil.model.loader import Loader
from vigil.runtime.loop import Loop
from vigil.engine.manager import Manager
from vigil.runtime.output import Console, Tail
from vigil.engine.spawner import Settings
from vigil.engine.states import Event, Instance, State, backoff_delay
from vigil.engine.supervisor import Supervisor
from vigil.kernel.syscalls import ExecFailure
from vigil.model.unit import Unit

UNIT = """{unit}[service]
stdout = "null"
stderr = "null"
{extra}
"""


class Engine:
    """A supervisor and a manager on a loop whose clock the test moves."""

    def __init__(self, tmp: Path, units: dict[str, str], jitter: float = 0.5) -> None:
        self.tmp, self.now, self.errors = tmp, 0.0, []
        self.calls = FakeCalls()
        self.loop = Loop(lambda what, err: self.errors.append(f"{what}: {err!r}"),
                         clock=lambda: self.now)
        self.events = Events(None)
        settings = Settings(log_dir=str(tmp / "logs"), daemon_env={"PATH": "/bin"},
                            slow_report=0)
        self.sup = Supervisor(self.loop, self.events, settings, Console(1, color=False), Tail(),
                              calls=self.calls, jitter=lambda: jitter)
        self.manager = Manager(self.sup, self.events, "host")
        self.manager.set_units(self.load(units))

    def load(self, units: dict[str, str]) -> dict[str, Unit]:
        directory = self.tmp / "units"
        directory.mkdir(exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for name, extra in units.items():
            unit, _, extra = extra.rpartition("[service]\n")  # "[unit]...[service]\n..."
            if "exec =" not in extra:
                extra += '\nexec = ["server"]\n'
            (directory / f"{name}.toml").write_text(UNIT.format(unit=unit, extra=extra))
        result = Loader([directory]).load_all()
        assert not result.problems, result.problems
        return result.units

    def turn(self) -> None:
        """Runs what is due now (exec reports, timers) without waiting."""
        for _ in range(5):
            self.loop.run_once(max_wait=0)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.turn()

    def exit(self, pid: int, code: int = 0, after: float = 0.0) -> None:
        """The process exits `after` seconds from now; SIGCHLD reaps it."""
        self.now += after
        self.calls.die(pid, code << 8)
        self.sigchld()

    def sigchld(self) -> None:
        """The reaper runs as a loop callback, and the loop then drives the engine."""
        self.loop.call_later(0, self.sup.reap)
        self.turn()

    def inst(self, name: str) -> Instance:
        return self.sup.instances[name]

    def pid(self, name: str) -> int:
        pid = self.inst(name).pid
        assert pid is not None
        return pid

    def codes(self) -> list[str]:
        return [e["code"] for e in self.events.recent]


@pytest.fixture
def make(tmp_path: Path) -> Any:
    engines: list[Engine] = []

    def make(units: dict[str, str], jitter: float = 0.5) -> Engine:
        engines.append(Engine(tmp_path, units, jitter))
        return engines[-1]
    yield make
    for engine in engines:
        assert not engine.errors, engine.errors
        engine.loop.close()


# -- the supervisor and manager, no process ----------------------------------------
def test_start_runs_the_process_once_and_it_is_up(make: Any) -> None:
    e = make({"web": ""})
    e.manager.start(["web"])
    e.turn()
    assert e.inst("web").state is State.RUNNING
    assert [argv for _, argv in e.calls.spawned] == [["server"]]
    assert e.manager.state("web") == "running"


def test_a_crash_backs_off_doubling_and_restarts(make: Any) -> None:
    e = make({"web": "restart = \"always\"\nrestart-delay = 2\nstart-seconds = 1\n"
                     "stable-seconds = 100\n"})
    e.manager.start(["web"])
    e.turn()
    e.exit(e.pid("web"), 3, after=5)  # ran 5 s: not an early failure
    assert e.inst("web").state is State.BACKOFF
    e.advance(1.9)
    assert len(e.calls.spawned) == 1
    e.advance(0.2)  # 2 s (jitter 0.5: no spread)
    assert e.inst("web").state is State.RUNNING and len(e.calls.spawned) == 2
    e.exit(e.pid("web"), 3, after=5)
    e.advance(3.9)
    assert len(e.calls.spawned) == 2  # the second failure in a row waits 4 s
    e.advance(0.2)
    assert len(e.calls.spawned) == 3 and e.inst("web").restarts == 2


@pytest.mark.parametrize("jitter,low,high", [(0.0, 1.79, 1.81), (1.0, 2.19, 2.21)])
def test_the_jitter_source_spreads_the_backoff(make: Any, jitter: float, low: float,
                                               high: float) -> None:
    e = make({"web": "restart = \"always\"\nrestart-delay = 2\n"}, jitter=jitter)
    e.manager.start(["web"])
    e.turn()
    e.exit(e.pid("web"), 1, after=5)
    e.advance(low)
    assert len(e.calls.spawned) == 1
    e.advance(high - low)
    assert len(e.calls.spawned) == 2


@pytest.mark.parametrize("rand, jitter", [(b"\x00\x00", 0.0), (b"\xff\xff", 1.0),
                                          (b"\x00\x80", 0x8000 / 0xFFFF)])
def test_jitter_is_two_random_bytes(monkeypatch: pytest.MonkeyPatch, rand: bytes,
                                    jitter: float) -> None:
    """The daemon's jitter: 0..1 from two bytes of the kernel (no Random in PID 1)."""
    asked: list[int] = []
    monkeypatch.setattr(proc.os, "urandom", lambda n: asked.append(n) or rand)
    assert proc.random_jitter() == pytest.approx(jitter)
    assert asked == [2]
    assert inspect.signature(Supervisor).parameters["jitter"].default is proc.random_jitter


def test_early_failures_give_up_fatal_then_retry_after_fatal(make: Any) -> None:
    e = make({"web": "restart = \"on-failure\"\nrestart-delay = 1\nstart-retries = 2\n"
                     "start-seconds = 10\nretry-after-fatal = 60\n"})
    e.manager.start(["web"])
    e.turn()
    for attempt in range(3):
        e.exit(e.pid("web"), 1, after=0.1)
        if attempt < 2:
            assert e.inst("web").state is State.BACKOFF
            e.advance(10)
    inst = e.inst("web")
    assert inst.state is State.FATAL and "gave up after 2 retries" in inst.reason
    assert e.manager.settled("web") == "failed" and "unit.fatal" in e.codes()
    e.advance(59)
    assert len(e.calls.spawned) == 3
    e.advance(1)
    assert inst.state is State.RUNNING and len(e.calls.spawned) == 4
    assert inst.start_failures == 0


def test_a_process_that_ignores_the_stop_is_killed_at_the_timeout(make: Any) -> None:
    e = make({"web": "stop-timeout = 7\n"})
    e.manager.start(["web"])
    e.turn()
    pid = e.pid("web")
    e.calls.dies_on = {signal.SIGKILL}
    e.manager.stop(["web"])
    e.turn()
    assert e.inst("web").state is State.STOPPING
    assert (pid, signal.SIGTERM) in e.calls.signals
    e.advance(6.9)
    assert (pid, signal.SIGKILL) not in e.calls.signals
    e.advance(0.2)
    assert (pid, signal.SIGKILL) in e.calls.signals
    e.sigchld()
    assert e.inst("web").state is State.INACTIVE and e.manager.state("web") == "inactive"


def test_reload_restarts_a_changed_unit_with_its_new_command(make: Any) -> None:
    e = make({"web": "", "db": ""})
    e.manager.start(["web", "db"])
    e.turn()
    db = e.pid("db")
    changes = e.manager.apply_reload(e.load({"web": 'exec = ["server", "-v"]', "db": ""}), set())
    e.sigchld()
    assert [(c.unit, c.action) for c in changes] == [("web", "restart")]
    assert e.inst("web").state is State.RUNNING and e.inst("db").pid == db
    assert [argv for _, argv in e.calls.spawned][2:] == [["server", "-v"]]


def test_a_unit_starts_once_what_it_requires_is_up(make: Any) -> None:
    e = make({"db": "type = \"notify\"\nready = { notify = true, timeout = 30 }\n",
              "web": '[unit]\nrequires = ["db"]\n[service]\n'})
    e.manager.start(["web"])
    e.turn()
    assert [argv for _, argv in e.calls.spawned] == [["server"]]  # db only
    assert e.manager.state("web") == "waiting" and e.inst("db").state is State.STARTING
    e.sup.send(e.inst("db"), Event.READY)  # as its sd_notify READY=1 would
    e.manager.drain()
    e.turn()
    assert e.inst("db").state is State.RUNNING and e.inst("web").state is State.RUNNING


def test_a_required_unit_that_fails_stops_its_dependents(make: Any) -> None:
    e = make({"db": "restart = \"never\"\n", "web": '[unit]\nrequires = ["db"]\n[service]\n'})
    e.manager.start(["web"])
    e.turn()
    assert e.inst("web").state is State.RUNNING
    e.exit(e.pid("db"), 1, after=5)
    assert e.inst("db").state is State.FAILED
    assert e.inst("web").state is State.STOPPING and "unit.stopping" in e.codes()
    e.sigchld()  # web exits on its SIGTERM
    assert e.inst("web").state is State.INACTIVE and e.manager.state("web") == "inactive"


# -- a failed action is an event ---------------------------------------------------------
def test_a_pidfd_that_cannot_be_opened_fails_the_start_and_kills_the_child(make: Any) -> None:
    """EMFILE in pidfd_open used to leave the instance starting with no pid,
    and a later stop cycled stop-timeout -> kill -> re-arm forever."""
    e = make({"web": ""})
    e.calls.pidfd_error = OSError(errno.EMFILE, "Too many open files")
    e.manager.start(["web"])
    e.turn()
    inst = e.inst("web")
    child = e.calls.spawned[0][0]
    assert inst.state is State.FAILED and "Too many open files" in inst.reason
    assert (child, signal.SIGKILL) in e.calls.signals and inst.pid is None
    e.sigchld()  # the killed child is collected, as no instance's
    e.manager.stop(["web"])
    e.advance(1000)
    assert inst.state is State.INACTIVE and not e.calls.live and not e.loop._timers


def test_an_action_that_raises_is_an_event_the_table_decides(make: Any) -> None:
    """A spawn that raises something unforeseen: the instance goes through
    its restart policy instead of staying 'starting' with no process."""
    e = make({"web": "restart = \"always\"\nrestart-delay = 1\nstop-timeout = 5\n"})
    real = e.sup.spawner.spawn
    e.sup.spawner.spawn = lambda inst, env: (_ for _ in ()).throw(RuntimeError("bug"))
    e.manager.start(["web"])
    e.turn()
    e.errors.clear()  # the raise is logged too
    inst = e.inst("web")
    assert inst.state is State.BACKOFF and "spawn failed: bug" in inst.reason
    e.sup.spawner.spawn = real
    e.advance(1.1)
    assert inst.state is State.RUNNING and len(e.calls.spawned) == 1


def test_resume_after_reexec_goes_through_the_table(make: Any) -> None:
    e = make({"web": "restart = \"always\"\nrestart-delay = 3\n"})
    e.manager.set_units(e.manager.units)
    inst = e.sup.ensure_instances(e.manager.units["web"])[0]
    inst.state, inst.want_up, inst.failures = State.BACKOFF, True, 1
    e.sup.resume(inst)
    e.manager.drain()  # as the daemon does once it has restored every instance
    e.advance(2.9)
    assert inst.state is State.BACKOFF
    e.advance(0.2)
    assert inst.state is State.RUNNING and backoff_delay(inst) == 3


def test_starting_again_after_a_failed_requirement_waits_for_it(make: Any) -> None:
    """The dependency's START is only queued when the dependent is looked at:
    its old 'failed' must not fail the dependent a second time."""
    e = make({"db": "restart = \"never\"\n", "web": '[unit]\nrequires = ["db"]\n[service]\n'})
    e.calls.exec_failure = ExecFailure("execve", errno.ENOENT)
    e.manager.start(["web"])
    e.turn()
    assert e.inst("db").state is State.FAILED
    assert e.manager.failed_why["web"] == "its requirement 'db' failed"
    e.calls.exec_failure = None
    e.manager.start(["web"])
    assert "web" not in e.manager.failed_why and e.manager.state("web") == "waiting"
    e.turn()
    assert e.inst("db").state is State.RUNNING and e.inst("web").state is State.RUNNING
