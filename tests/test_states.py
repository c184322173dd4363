"""The state machine as a table, without a process: every (state, event)
pair, every handler's record changes and actions, and the restart policy
(backoff, stable-seconds, start-retries, retry-after-fatal,
success-exit-codes, a forking unit's start-timeout).

`make mutate` runs these against mutants of vigil/engine/states.py: each assertion
here is there because some change to a handler got past the process tests.
"""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest

from vigil.engine import states
from vigil.engine.states import (IGNORED, TABLE, Act, Action, Event, ExitInfo, Input, Instance,
                          InvalidTransition, State, backoff_delay, step)
from vigil.model.unit import Probe, ProbeKind, Ready, RestartPolicy, Service, ServiceType

A = Act


def svc(**kw: object) -> Service:
    return Service(exec=("prog",), **kw)  # type: ignore[arg-type]


def inst(state: State = State.INACTIVE, **kw: object) -> Instance:
    i = Instance("u", "u", svc(**kw))
    i.state = state
    return i


def kinds(actions: list[Action]) -> list[Act]:
    return [a.kind for a in actions]


def code(n: int, runtime: float = 100.0) -> Input:
    return Input(Event.EXIT, ExitInfo(n, None, False, runtime))


def killed(sig: int, runtime: float = 100.0) -> Input:
    return Input(Event.EXIT, ExitInfo(None, sig, False, runtime))


# -- the table ----------------------------------------------------------------
def test_every_pair_is_handled_or_ignored_exactly_once():
    every = {(s, e) for s in State for e in Event}
    handled, ignored = set(TABLE), set(IGNORED)
    assert not handled & ignored, f"both handled and ignored: {sorted(handled & ignored, key=str)}"
    assert handled | ignored == every, f"neither: {sorted(every - handled - ignored, key=str)}"


@pytest.mark.parametrize("pair", sorted(IGNORED, key=lambda p: (p[0].value, p[1].value)),
                         ids=lambda p: f"{p[0].value}-{p[1].value}")
def test_an_ignored_pair_changes_nothing(pair):
    state, event = pair
    i = inst(state)
    i.pid, i.reason, i.failures, i.restarts = 7, "why", 2, 3
    before = replace(i)
    exit_info = ExitInfo(1, None, False, 5.0) if event is Event.EXIT else None
    assert step(i, Input(event, exit_info, "detail")) == []
    assert i == before


@pytest.mark.parametrize("pair", sorted(TABLE, key=lambda p: (p[0].value, p[1].value)),
                         ids=lambda p: f"{p[0].value}-{p[1].value}")
def test_every_handler_runs_and_returns_actions(pair):
    """Each cell of the table applied to an instance in its state: it returns
    actions and leaves the instance in a state of the table."""
    state, event = pair
    i = inst(state)
    i.pid, i.want_up = 1234, True
    actions = step(i, Input(event, ExitInfo(1, None, False, 0.5), "why"))
    assert isinstance(actions, list) and all(isinstance(a.kind, Act) for a in actions)
    assert i.state in State


def test_a_pair_in_neither_is_an_invalid_transition(monkeypatch):
    monkeypatch.setattr(states, "IGNORED", frozenset())
    i = inst(State.INACTIVE)
    with pytest.raises(InvalidTransition, match=r"^u: event stop in state inactive$"):
        step(i, Input(Event.STOP))
    assert i.state is State.INACTIVE


# -- starting -----------------------------------------------------------------
@pytest.mark.parametrize("state", [State.INACTIVE, State.EXITED, State.FAILED, State.FATAL])
@pytest.mark.parametrize("event", [Event.START, Event.RESTART])
def test_start_from_down_forgets_failures_and_spawns(state, event):
    i = inst(state)
    i.start_failures, i.failures, i.restarts = 4, 5, 6
    i.reason, i.pending_failure = "old", "old too"
    assert step(i, Input(event)) == [Action(A.CANCEL_TIMERS), Action(A.SPAWN)]
    assert (i.state, i.want_up, i.reason, i.pending_failure) == (State.STARTING, True, "", "")
    assert (i.start_failures, i.failures, i.restarts) == (0, 0, 6)


@pytest.mark.parametrize("event", [Event.START, Event.RESTART])
def test_start_during_backoff_spawns_now_and_keeps_the_count(event):
    i = inst(State.BACKOFF)
    i.start_failures, i.failures, i.restarts, i.reason = 2, 2, 2, "exit 1"
    assert kinds(step(i, Input(event))) == [A.CANCEL_TIMERS, A.SPAWN]
    assert (i.state, i.want_up, i.reason) == (State.STARTING, True, "")
    assert (i.start_failures, i.failures, i.restarts) == (2, 2, 2)


@pytest.mark.parametrize("event", [Event.START, Event.RESTART])
def test_start_while_stopping_waits_for_the_exit(event):
    i = inst(State.STOPPING)
    assert step(i, Input(event)) == []
    assert (i.state, i.want_up) == (State.STOPPING, True)
    assert kinds(step(i, killed(signal.SIGTERM))) == [A.CANCEL_TIMERS, A.SPAWN]
    assert i.state is State.STARTING


def test_exec_ok_of_a_simple_service_is_running():
    i = inst(State.STARTING)
    assert step(i, Input(Event.EXEC_OK)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE),
                                             Action(A.START_HEALTH)]
    assert i.state is State.RUNNING


def test_exec_ok_with_a_readiness_probe_arms_its_timeout():
    ready = Ready(Probe(ProbeKind.TCP, port=1), timeout=7.5, interval=0.1)
    i = inst(State.STARTING, ready=ready, type=ServiceType.FORKING, start_timeout=3.0)
    assert step(i, Input(Event.EXEC_OK)) == [Action(A.ARM_READY, 7.5), Action(A.START_PROBE)]
    assert i.state is State.STARTING


def test_a_forking_unit_waits_for_its_launcher_until_start_timeout():
    i = inst(State.STARTING, type=ServiceType.FORKING, start_timeout=3.0)
    assert step(i, Input(Event.EXEC_OK)) == [Action(A.ARM_READY, 3.0)]
    assert i.state is State.STARTING


def test_a_forking_unit_past_start_timeout_is_stopped_then_retried():
    i = inst(State.STARTING, type=ServiceType.FORKING, start_timeout=3.0, stop_timeout=4.0,
             restart_delay=0.5)
    i.restarts = 1
    actions = step(i, Input(Event.READY_TIMEOUT, detail="not ready within 3s"))
    assert actions == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP), Action(A.ARM_STOP, 4.0)]
    assert (i.state, i.want_up, i.pending_failure) == (State.STOPPING, True,
                                                       "not ready within 3s")
    assert i.restarts == 1
    assert kinds(step(i, killed(signal.SIGTERM, 3.0))) == [A.CANCEL_TIMERS, A.ARM_RETRY]
    assert (i.state, i.reason, i.start_failures, i.failures) == (
        State.BACKOFF, "not ready within 3s", 1, 1)


def test_a_oneshot_is_done_only_when_it_exits():
    i = inst(State.STARTING, type=ServiceType.ONESHOT)
    assert step(i, Input(Event.EXEC_OK)) == []
    assert i.state is State.STARTING
    assert step(i, code(0, 0.1)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.last_exit) == (State.EXITED, ExitInfo(0, None, False, 0.1))


def test_a_forked_daemon_is_running_or_probed():
    i = inst(State.STARTING, type=ServiceType.FORKING)
    assert kinds(step(i, Input(Event.FORKED))) == [A.CANCEL_TIMERS, A.ANNOUNCE, A.START_HEALTH]
    assert i.state is State.RUNNING
    ready = Ready(Probe(ProbeKind.TCP, port=1), timeout=2.5, interval=0.1)
    j = inst(State.STARTING, type=ServiceType.FORKING, ready=ready)
    assert step(j, Input(Event.FORKED)) == [Action(A.CANCEL_TIMERS), Action(A.ARM_READY, 2.5),
                                            Action(A.START_PROBE)]
    assert j.state is State.STARTING
    assert kinds(step(j, Input(Event.READY))) == [A.CANCEL_TIMERS, A.ANNOUNCE, A.START_HEALTH]
    assert j.state is State.RUNNING


def test_exec_failed_is_failed_with_the_reason():
    i = inst(State.STARTING)
    i.want_up = True
    assert step(i, Input(Event.EXEC_FAILED, detail="prog: executing failed: ENOENT")) == [
        Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.want_up, i.reason) == (State.FAILED, False,
                                              "prog: executing failed: ENOENT")


# -- an action that raised (ACTION_FAILED) ------------------------------------------
@pytest.mark.parametrize("state", [State.STARTING, State.RUNNING])
def test_a_failed_action_stops_the_process_as_a_failure(state):
    i = inst(state, stop_timeout=2.5)
    i.restarts = 1
    actions = step(i, Input(Event.ACTION_FAILED, detail="spawn failed: bug"))
    assert actions == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP), Action(A.ARM_STOP, 2.5)]
    assert (i.state, i.want_up, i.pending_failure, i.restarts) == (
        State.STOPPING, True, "spawn failed: bug", 1)
    assert kinds(step(i, killed(signal.SIGTERM, 0.1))) == [A.CANCEL_TIMERS, A.ARM_RETRY]
    assert (i.state, i.reason) == (State.BACKOFF, "spawn failed: bug")


# -- after a re-exec (RESUME) ---------------------------------------------------------
def test_resume_of_a_starting_unit_rearms_what_its_exec_report_would():
    ready = Ready(Probe(ProbeKind.TCP, port=1), timeout=7.5, interval=0.1)
    i = inst(State.STARTING, ready=ready)
    assert step(i, Input(Event.RESUME)) == [Action(A.ARM_READY, 7.5), Action(A.START_PROBE)]
    j = inst(State.STARTING)
    assert kinds(step(j, Input(Event.RESUME))) == [A.CANCEL_TIMERS, A.ANNOUNCE, A.START_HEALTH]
    assert j.state is State.RUNNING


def test_resume_of_a_running_unit_restarts_its_health_check():
    i = inst(State.RUNNING)
    i.failures, i.restarts = 2, 3
    before = replace(i)
    assert step(i, Input(Event.RESUME)) == [Action(A.START_HEALTH)]
    assert i == before


def test_resume_of_a_stopping_unit_signals_again_and_rearms_the_stop():
    i = inst(State.STOPPING, stop_timeout=4.0)
    i.want_up = True
    before = replace(i)
    assert step(i, Input(Event.RESUME)) == [Action(A.SIGNAL_STOP), Action(A.ARM_STOP, 4.0)]
    assert i == before


def test_resume_of_a_backoff_rearms_the_retry_at_its_delay():
    i = inst(State.BACKOFF, restart_delay=1.0, restart_delay_max=10.0)
    i.failures = 3
    before = replace(i)
    assert step(i, Input(Event.RESUME)) == [Action(A.ARM_RETRY, 4.0, jitter=True)]
    assert i == before


@pytest.mark.parametrize("after, actions", [(30.0, [Action(A.ARM_RETRY, 30.0)]),
                                            (0.5, [Action(A.ARM_RETRY, 0.5)]), (0.0, [])])
def test_resume_of_a_fatal_unit_rearms_only_a_slow_retry(after, actions):
    i = inst(State.FATAL, retry_after_fatal=after)
    before = replace(i)
    assert step(i, Input(Event.RESUME)) == actions
    assert i == before


# -- stopping -----------------------------------------------------------------
@pytest.mark.parametrize("state", [State.STARTING, State.RUNNING])
def test_stop_signals_and_arms_the_stop_timeout(state):
    i = inst(state, stop_timeout=2.5)
    i.want_up = True
    assert step(i, Input(Event.STOP)) == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                                          Action(A.ARM_STOP, 2.5)]
    assert (i.state, i.want_up) == (State.STOPPING, False)


def test_stop_timeout_kills_and_rearms():
    i = inst(State.STOPPING, stop_timeout=2.5)
    assert step(i, Input(Event.STOP_TIMEOUT)) == [Action(A.KILL), Action(A.ARM_STOP, 2.5)]
    assert i.state is State.STOPPING


def test_the_exit_of_a_stop_is_inactive():
    i = inst(State.STOPPING)
    i.pid, i.reason = 42, "kept"
    assert step(i, killed(signal.SIGTERM)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.want_up, i.pid) == (State.INACTIVE, False, None)
    assert i.last_exit == ExitInfo(None, signal.SIGTERM, False, 100.0)


@pytest.mark.parametrize("state", [State.BACKOFF, State.EXITED, State.FAILED, State.FATAL])
def test_stop_of_a_unit_with_no_process_settles_at_once(state):
    i = inst(state)
    i.want_up = True
    assert step(i, Input(Event.STOP)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.want_up) == (State.INACTIVE, False)


@pytest.mark.parametrize("state", [State.STARTING, State.RUNNING])
def test_restart_stops_then_starts_and_counts(state):
    i = inst(state, stop_timeout=1.5)
    i.restarts = 2
    assert step(i, Input(Event.RESTART)) == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                                             Action(A.ARM_STOP, 1.5)]
    assert (i.state, i.want_up, i.restarts) == (State.STOPPING, True, 3)
    assert kinds(step(i, killed(signal.SIGTERM))) == [A.CANCEL_TIMERS, A.SPAWN]
    assert i.state is State.STARTING


def test_health_failure_restarts_with_the_reason():
    i = inst(State.RUNNING, stop_timeout=1.5)
    i.restarts = 2
    actions = step(i, Input(Event.HEALTH_FAILED, detail="health check failed 2 times"))
    assert actions == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP), Action(A.ARM_STOP, 1.5)]
    assert (i.state, i.want_up, i.restarts) == (State.STOPPING, True, 3)
    assert (i.reason, i.pending_failure) == ("health check failed 2 times", "")
    assert kinds(step(i, killed(signal.SIGTERM))) == [A.CANCEL_TIMERS, A.SPAWN]


# -- exits and the restart policy ----------------------------------------------
def test_exit_records_the_exit_and_drops_the_pid():
    i = inst(State.RUNNING, restart=RestartPolicy.NEVER)
    i.pid, i.want_up = 42, True
    assert step(i, code(3)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.pid, i.want_up, i.reason) == (State.FAILED, None, False, "exit 3")
    assert i.last_exit == ExitInfo(3, None, False, 100.0)


@pytest.mark.parametrize("policy, exit_input, settles", [
    (RestartPolicy.NEVER, code(0), State.EXITED),
    (RestartPolicy.NEVER, code(1), State.FAILED),
    (RestartPolicy.ON_FAILURE, code(0), State.EXITED),
    (RestartPolicy.ON_FAILURE, code(1), State.BACKOFF),
    (RestartPolicy.ON_FAILURE, killed(signal.SIGKILL), State.BACKOFF),
    (RestartPolicy.ALWAYS, code(0), State.BACKOFF),
    (RestartPolicy.ALWAYS, code(1), State.BACKOFF),
])
def test_restart_policy(policy, exit_input, settles):
    i = inst(State.RUNNING, restart=policy)
    i.want_up = True
    step(i, exit_input)
    assert i.state is settles
    assert i.want_up is (settles is State.BACKOFF)
    assert i.reason == ("" if settles is State.EXITED else str(exit_input.exit))


@pytest.mark.parametrize("policy", list(RestartPolicy))
def test_success_exit_codes_count_as_success(policy):
    i = inst(State.RUNNING, restart=policy, success_exit_codes=frozenset({0, 3}))
    step(i, code(3))
    assert i.state is (State.BACKOFF if policy is RestartPolicy.ALWAYS else State.EXITED)
    j = inst(State.RUNNING, restart=policy, success_exit_codes=frozenset({3}))
    step(j, code(0))
    assert j.state is (State.FAILED if policy is RestartPolicy.NEVER else State.BACKOFF)
    assert j.reason == "exit 0"


def test_a_signal_is_never_a_success_exit_code():
    i = inst(State.RUNNING, restart=RestartPolicy.NEVER,
             success_exit_codes=frozenset({0, signal.SIGTERM, 128 + signal.SIGTERM}))
    step(i, killed(signal.SIGTERM))
    assert i.state is State.FAILED


def test_a_oneshot_that_fails_follows_its_restart_policy():
    i = inst(State.STARTING, type=ServiceType.ONESHOT, restart=RestartPolicy.ON_FAILURE,
             restart_delay=0)
    assert step(i, code(1, 0.1)) == [Action(A.CANCEL_TIMERS), Action(A.ARM_RETRY, 0.0, jitter=True)]
    assert i.state is State.BACKOFF
    j = inst(State.STARTING, type=ServiceType.ONESHOT, restart=RestartPolicy.ALWAYS)
    step(j, code(0, 0.1))
    assert j.state is State.EXITED  # a oneshot's success is final, even with always


def test_backoff_retries_and_counts():
    i = inst(State.RUNNING, restart_delay=1.0, start_seconds=1.0)
    i.restarts = 4
    assert step(i, code(1, 50.0)) == [Action(A.CANCEL_TIMERS),
                                      Action(A.ARM_RETRY, 1.0, jitter=True)]
    assert (i.state, i.reason, i.start_failures, i.failures) == (State.BACKOFF, "exit 1", 0, 1)
    assert step(i, Input(Event.RETRY)) == [Action(A.CANCEL_TIMERS), Action(A.SPAWN)]
    assert (i.state, i.restarts, i.failures) == (State.STARTING, 5, 1)


@pytest.mark.parametrize("failures, base", [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)])
def test_backoff_doubles_per_failure_up_to_the_cap(failures, base):
    """The base delay; the supervisor spreads it by +-10% (test_engine_pure.py
    test_the_jitter_source_spreads_the_backoff, test_jitter_is_two_random_bytes)."""
    i = inst(restart_delay=1.0, restart_delay_max=5.0)
    i.failures = failures
    assert backoff_delay(i) == base
    assert type(backoff_delay(i)) is float


def test_backoff_with_no_failure_yet_is_the_delay():
    i = inst(restart_delay=2.0)
    assert backoff_delay(i) == 2.0


@pytest.mark.parametrize("delay", [0.0, -1.0])
def test_no_restart_delay_is_no_wait(delay):
    i = inst(restart_delay=delay)
    i.failures = 3
    assert backoff_delay(i) == 0.0


def test_only_a_backoff_is_spread_by_the_jitter():
    """The backoff's ARM_RETRY asks for jitter; a slow retry after fatal, a stop
    or a ready timeout is armed at its exact delay."""
    i = inst(State.RUNNING, restart_delay=1.0)
    assert step(i, code(1))[-1] == Action(A.ARM_RETRY, 1.0, jitter=True)
    j = inst(State.STARTING, start_retries=0, retry_after_fatal=30.0)
    assert step(j, code(1))[-1] == Action(A.ARM_RETRY, 30.0, jitter=False)
    k = inst(State.RUNNING, stop_timeout=2.0)
    assert step(k, Input(Event.STOP))[-1] == Action(A.ARM_STOP, 2.0, jitter=False)
    assert Action(A.ARM_RETRY, 1.0).jitter is False


def test_the_backoff_of_successive_failures_doubles():
    """Driven through the table: each quick failure waits twice as long, capped."""
    i = inst(State.RUNNING, restart_delay=1.0, restart_delay_max=3.0, start_seconds=0.0,
             start_retries=100)
    delays = []
    for _ in range(4):
        action = step(i, code(1, 5.0))[-1]
        assert (action.kind, action.jitter) == (A.ARM_RETRY, True)
        delays.append(action.delay)
        step(i, Input(Event.RETRY))
        step(i, Input(Event.EXEC_OK))
    assert delays == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("runtime, failures_after", [(59.9, 3), (60.0, 1), (61.0, 1)])
def test_stable_seconds_forgets_earlier_failures(runtime, failures_after):
    i = inst(State.RUNNING, restart_delay=1.0, stable_seconds=60.0, start_seconds=1.0)
    i.failures = 2
    step(i, code(1, runtime))
    assert i.failures == failures_after
    assert i.state is State.BACKOFF


@pytest.mark.parametrize("state, runtime, early", [
    (State.STARTING, 50.0, True),    # not up yet: an early failure whatever its runtime
    (State.RUNNING, 0.5, True),      # up, but for less than start-seconds
    (State.RUNNING, 1.0, False),     # start-seconds reached
    (State.RUNNING, 2.0, False),
])
def test_early_failures_count_towards_start_retries(state, runtime, early):
    i = inst(state, start_seconds=1.0, restart_delay=0)
    i.start_failures = 2
    step(i, code(1, runtime))
    assert i.start_failures == (3 if early else 0)


def test_start_retries_then_fatal():
    i = inst(State.STARTING, start_retries=2, restart_delay=0)
    i.start_failures = 1
    assert kinds(step(i, code(1, 0.1))) == [A.CANCEL_TIMERS, A.ARM_RETRY]
    assert (i.state, i.start_failures) == (State.BACKOFF, 2)
    step(i, Input(Event.RETRY))
    assert step(i, code(1, 0.1)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.start_failures) == (State.FATAL, 3)
    assert i.reason == "exit 1; gave up after 2 retries"


@pytest.mark.parametrize("after", [30.0, 0.5])
def test_fatal_with_retry_after_fatal_arms_a_slow_retry(after):
    i = inst(State.STARTING, start_retries=0, restart_delay=0, retry_after_fatal=after)
    i.restarts = 3
    assert step(i, code(1, 0.1)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE),
                                     Action(A.ARM_RETRY, after)]
    assert i.state is State.FATAL
    assert step(i, Input(Event.RETRY)) == [Action(A.CANCEL_TIMERS), Action(A.SPAWN)]
    assert (i.state, i.start_failures, i.restarts, i.want_up) == (State.STARTING, 0, 4, True)
    assert kinds(step(i, code(1, 0.1))) == [A.CANCEL_TIMERS, A.ANNOUNCE, A.ARM_RETRY]
    assert i.state is State.FATAL  # start-retries = 0: one try per slow retry


def test_fatal_without_retry_after_fatal_stays_down():
    i = inst(State.STARTING, start_retries=0, restart_delay=0)
    assert step(i, code(1, 0.1)) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]  # no timer
    assert i.state is State.FATAL


# -- exit records ----------------------------------------------------------------
def test_exit_info_from_a_wait_status():
    assert ExitInfo.from_status(3 << 8, 1.5) == ExitInfo(3, None, False, 1.5)
    assert ExitInfo.from_status(signal.SIGKILL, 0.5) == ExitInfo(None, 9, False, 0.5)
    assert ExitInfo.from_status(signal.SIGSEGV | 0x80, 0.5) == ExitInfo(None, 11, True, 0.5)


def test_exit_info_reads_as_a_shell_would():
    assert ExitInfo(3, None, False, 0).shell_status() == 3
    assert ExitInfo(0, None, False, 0).shell_status() == 0
    assert ExitInfo(None, 15, False, 0).shell_status() == 143
    assert str(ExitInfo(3, None, False, 0)) == "exit 3"
    assert str(ExitInfo(None, 9, False, 0)) == "killed by SIGKILL"
    assert str(ExitInfo(None, 11, True, 0)) == "killed by SIGSEGV (core dumped)"
    assert str(ExitInfo(None, 99, False, 0)) == "killed by signal 99"


def test_exit_info_success():
    assert ExitInfo(0, None, False, 0).success(frozenset({0}))
    assert not ExitInfo(1, None, False, 0).success(frozenset({0}))
    assert ExitInfo(1, None, False, 0).success(frozenset({0, 1}))
    assert not ExitInfo(None, 15, False, 0).success(frozenset({0}))



# -- what a re-exec keeps ----------------------------------------------------------
def test_an_instance_record_round_trips_with_every_kept_field():
    i = inst(State.BACKOFF, restart_delay=2.0)
    i.want_up, i.pid, i.started_at = True, 42, 12.5
    i.start_failures, i.failures, i.restarts = 1, 2, 3
    i.reason, i.pending_failure = "exit 1", "not ready within 3s"
    i.last_exit, i.port = ExitInfo(None, signal.SIGSEGV, True, 1.5), 8080
    i.phase = "pre"
    record = i.record()
    assert record == {
        "name": "u", "unit": "u", "state": "backoff", "want_up": True, "pid": 42,
        "started_at": 12.5, "start_failures": 1, "failures": 2, "restarts": 3,
        "reason": "exit 1", "pending_failure": "not ready within 3s", "phase": "pre",
        "last_exit": {"code": None, "signal": signal.SIGSEGV, "core": True, "runtime": 1.5}}
    back = Instance.from_record(record, i.service)
    assert back == replace(i, port=None)  # the port is the run's: a resumed one finds its own
    assert back.state is State.BACKOFF and back.last_exit == i.last_exit
    fresh = inst(State.INACTIVE)
    assert fresh.record()["last_exit"] is None
    assert Instance.from_record(fresh.record(), fresh.service).last_exit is None


def test_exit_info_says_how_a_process_ended():
    assert str(ExitInfo(3, None, False, 1.0)) == "exit 3"
    assert str(ExitInfo(None, 9, False, 1.0)) == "killed by SIGKILL"
    assert str(ExitInfo(None, 11, True, 1.0)) == "killed by SIGSEGV (core dumped)"
    assert str(ExitInfo(None, 99, False, 1.0)) == "killed by signal 99"
    assert str(ExitInfo(None, None, False, 1.0)) == "exit status unknown"  # adopted, not ours


@pytest.mark.parametrize("why", [Event.RESTART, Event.HEALTH_FAILED, Event.ACTION_FAILED])
def test_a_stop_while_it_stops_to_come_back_keeps_it_down(why):
    """A restart, a failed health check or a failed action stops the process
    to start it again; a stop asked meanwhile (vigilctl stop, the daemon's
    own shutdown) wins: when the process ends, nothing is spawned. Without
    this, a shutdown during a health restart left a new process behind."""
    i = inst(State.RUNNING, restart=RestartPolicy.ALWAYS)
    i.pid = 42
    states.step(i, Input(why, detail="unhealthy"))
    assert i.state is State.STOPPING and i.want_up
    states.step(i, Input(Event.STOP))
    actions = states.step(i, code(0))
    assert Act.SPAWN not in kinds(actions) and Act.ARM_RETRY not in kinds(actions), actions
    assert i.state is State.INACTIVE and not i.want_up
