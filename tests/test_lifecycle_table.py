"""The state table's cells for issue 20 (vigil/engine/lifecycle_states.py, the
TABLE in vigil/engine/states.py), without a process: exec-pre, exec-post,
exec-stop, reload, the watchdog and STOPPING=1. Fast and pure, so that
`make mutate` runs them against its mutants (pyproject.toml); the same
behaviour through a real daemon is in tests/test_lifecycle.py and
tests/test_watchdog.py."""

from __future__ import annotations

from vigil.engine.states import Act, Event, ExitInfo, Input, Instance, State, step
from vigil.model.unit import RestartPolicy, Service, ServiceType


def inst(state: State = State.INACTIVE, phase: str = "", **kw: object) -> Instance:
    i = Instance("u", "u", Service(exec=("prog",), **kw))  # type: ignore[arg-type]
    i.state, i.phase = state, phase
    return i


def kinds(i: Instance, event: Event, detail: str = "", exit: ExitInfo | None = None) -> list:
    return [(a.kind, a.what) for a in step(i, Input(event, exit, detail))]


PRE = (("mkdir", "/x"),)


def test_table_exec_pre_before_spawn_and_its_failure_is_a_failed_start():
    i = inst(exec_pre=PRE)
    assert kinds(i, Event.START) == [(Act.CANCEL_TIMERS, ""), (Act.RUN_COMMANDS, "pre")]
    assert (i.state, i.phase) == (State.STARTING, "pre")
    assert kinds(i, Event.CMDS_DONE) == [(Act.SPAWN, "")] and i.phase == ""
    i = inst(State.STARTING, "pre", exec_pre=PRE, restart=RestartPolicy.NEVER)
    kinds(i, Event.CMDS_FAILED, "exec-pre command 'mkdir /x' failed: exit 1")
    assert (i.state, i.reason, i.phase) == (State.FAILED, "exec-pre command 'mkdir /x' "
                                            "failed: exit 1", "")
    i = inst(State.STARTING, "pre", exec_pre=PRE)
    assert Act.ARM_RETRY in [k for k, _ in kinds(i, Event.CMDS_FAILED, "x")]
    assert i.state is State.BACKOFF and i.start_failures == 1


def test_table_exec_post_after_ready_then_running():
    i = inst(State.STARTING, exec_post=PRE)
    i.pid = 5
    assert kinds(i, Event.READY) == [(Act.CANCEL_TIMERS, ""), (Act.RUN_COMMANDS, "post")]
    assert kinds(i, Event.READY) == [] and i.state is State.STARTING  # a second READY=1
    assert [k for k, _ in kinds(i, Event.CMDS_DONE)] == [Act.CANCEL_TIMERS, Act.ANNOUNCE,
                                                         Act.START_HEALTH]
    assert (i.state, i.phase) == (State.RUNNING, "")
    i = inst(State.STARTING, "post", exec_post=PRE, restart=RestartPolicy.NEVER)
    i.pid = 5
    assert Act.SIGNAL_STOP in [k for k, _ in kinds(i, Event.CMDS_FAILED, "post failed")]
    assert i.state is State.STOPPING and not i.want_up
    kinds(i, Event.EXIT, exit=ExitInfo(None, 15, False, 1.0))
    assert (i.state, i.reason) == (State.FAILED, "post failed")


def test_table_a_oneshot_runs_exec_post_after_it_exits():
    i = inst(State.STARTING, exec_post=PRE, type=ServiceType.ONESHOT)
    i.pid = 5
    assert kinds(i, Event.EXIT, exit=ExitInfo(0, None, False, 1.0))[-1] == (
        Act.RUN_COMMANDS, "post")
    kinds(i, Event.CMDS_DONE)
    assert i.state is State.EXITED


def test_table_exec_stop_then_the_signal_at_stop_timeout_or_at_its_failure():
    i = inst(State.RUNNING, exec_stop=PRE, stop_timeout=4.0)
    i.pid = 5
    assert [k for k, _ in kinds(i, Event.STOP)] == [Act.CANCEL_TIMERS, Act.RUN_COMMANDS,
                                                    Act.ARM_STOP]
    assert kinds(i, Event.CMDS_DONE) == [] and i.phase == "stop"
    assert [k for k, _ in kinds(i, Event.STOP_TIMEOUT)] == [Act.CANCEL_TIMERS, Act.SIGNAL_STOP,
                                                            Act.ARM_STOP]
    assert [k for k, _ in kinds(i, Event.STOP_TIMEOUT)] == [Act.KILL, Act.ARM_STOP]
    i = inst(State.RUNNING, exec_stop=PRE)
    i.pid = 5
    kinds(i, Event.STOP)
    assert Act.SIGNAL_STOP in [k for k, _ in kinds(i, Event.CMDS_FAILED, "no")]
    i = inst(State.STARTING, exec_stop=PRE)  # not up yet: no exec-stop, as systemd
    i.pid = 5
    assert Act.SIGNAL_STOP in [k for k, _ in kinds(i, Event.STOP)]


def test_table_reload():
    i = inst(State.RUNNING, exec_reload=PRE)
    assert kinds(i, Event.RELOAD) == [(Act.RUN_COMMANDS, "reload")]
    assert kinds(i, Event.RELOAD) == []  # one at a time
    assert kinds(i, Event.CMDS_FAILED, "bad")[0][0] is Act.RELOAD_FAILED
    assert i.state is State.RUNNING and i.phase == ""
    assert kinds(inst(State.RUNNING, reload_signal=1), Event.RELOAD) == [(Act.SIGNAL_RELOAD, "")]
    i = inst(State.RUNNING)
    assert kinds(i, Event.RELOADING) == [] and i.phase == "reloading"
    assert kinds(i, Event.READY)[0][0] is Act.RELOADED and i.phase == ""


def running(**kw: object) -> Instance:
    i = Instance("u", "u", Service(exec=("prog",), **kw))  # type: ignore[arg-type]
    i.state, i.pid, i.want_up = State.RUNNING, 9, True
    return i


def test_table_watchdog_aborts_and_the_restart_policy_decides():
    i = running(stop_timeout=3.0)
    acts = step(i, Input(Event.WATCHDOG, None, "watchdog: late"))
    assert [a.kind for a in acts] == [Act.CANCEL_TIMERS, Act.ABORT, Act.ARM_STOP]
    assert i.state is State.STOPPING and i.want_up
    step(i, Input(Event.EXIT, ExitInfo(None, 6, True, 9.0)))
    assert i.state is State.BACKOFF and i.reason == "watchdog: late"
    i = running(restart=RestartPolicy.NEVER)
    step(i, Input(Event.WATCHDOG, None, "watchdog: late"))
    step(i, Input(Event.EXIT, ExitInfo(None, 6, True, 9.0)))
    assert (i.state, i.reason) == (State.FAILED, "watchdog: late")


def test_table_stopping_notice_then_the_exit_is_judged_as_its_own():
    i = running()
    assert [a.kind for a in step(i, Input(Event.STOPPING))] == [Act.CANCEL_TIMERS, Act.ARM_STOP]
    assert (i.state, i.phase) == (State.STOPPING, "self-stop")
    step(i, Input(Event.EXIT, ExitInfo(0, None, False, 9.0)))
    assert i.state is State.EXITED and i.restarts == 0
    i = running(restart=RestartPolicy.ALWAYS)
    step(i, Input(Event.STOPPING))
    step(i, Input(Event.STOP))  # asked to stop meanwhile: it stays down
    step(i, Input(Event.EXIT, ExitInfo(0, None, False, 9.0)))
    assert i.state is State.INACTIVE


# -- exact results, cell by cell (what `make mutate` holds them to) -------------
from vigil.engine.states import Action  # noqa: E402

A = Act
PHASES = ("", "pre", "post", "stop", "reload", "reloading", "self-stop")


def do(i: Instance, event: Event, detail: str = "", exit: ExitInfo | None = None) -> list:
    return step(i, Input(event, exit, detail))


def test_commands_done_in_every_state_and_phase():
    for state in (State.STARTING, State.RUNNING, State.STOPPING):
        for phase in PHASES:
            i = inst(state, phase, stop_timeout=4.0)
            i.pid = 5
            got = do(i, Event.CMDS_DONE, "x")
            if (state, phase) == (State.STARTING, "pre"):
                assert got == [Action(A.SPAWN)] and i.phase == ""
            elif (state, phase) == (State.STARTING, "post"):
                assert got == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE),
                               Action(A.START_HEALTH)]
                assert (i.state, i.phase) == (State.RUNNING, "")
            elif (state, phase) == (State.RUNNING, "reload"):
                assert got == [Action(A.RELOADED, what="u reloaded (exec-reload)")]
                assert (i.state, i.phase) == (State.RUNNING, "")
            else:
                assert got == [] and (i.state, i.phase) == (state, phase), (state, phase)


def test_commands_failed_in_every_state_and_phase():
    for state in (State.STARTING, State.RUNNING, State.STOPPING):
        for phase in PHASES:
            i = inst(state, phase, stop_timeout=4.0, restart=RestartPolicy.NEVER)
            i.pid, i.want_up = 5, True
            got = do(i, Event.CMDS_FAILED, "why")
            if (state, phase) == (State.STARTING, "pre"):
                assert got == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
                assert (i.state, i.reason, i.phase) == (State.FAILED, "why", "")
            elif (state, phase) == (State.STARTING, "post"):
                assert got == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                               Action(A.ARM_STOP, 4.0)]
                assert (i.state, i.phase, i.want_up, i.pending_failure) == (
                    State.STOPPING, "", False, "why")
            elif (state, phase) == (State.RUNNING, "reload"):
                assert got == [Action(A.RELOAD_FAILED,
                                      what="u: reload failed: why; it keeps running")]
                assert (i.state, i.phase) == (State.RUNNING, "")
            elif (state, phase) == (State.STOPPING, "stop"):
                assert got == [Action(A.REPORT, what="u: why; sending the stop signal"),
                               Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                               Action(A.ARM_STOP, 4.0)]
                assert (i.state, i.phase) == (State.STOPPING, "")
            else:
                assert got == [] and (i.state, i.phase) == (state, phase), (state, phase)


def test_a_failed_post_restarts_by_the_policy_and_a_oneshots_fails_its_start():
    i = inst(State.STARTING, "post")
    i.pid = 5
    do(i, Event.CMDS_FAILED, "why")
    assert i.want_up and i.pending_failure == "why"
    for policy, state in ((RestartPolicy.NEVER, State.FAILED),
                          (RestartPolicy.ON_FAILURE, State.BACKOFF)):
        i = inst(State.STARTING, "post", type=ServiceType.ONESHOT, restart=policy,
                 restart_delay=0.0)
        got = do(i, Event.CMDS_FAILED, "post why")
        assert (i.state, i.reason, i.phase) == (state, "post why", "")
        assert got[0] == Action(A.CANCEL_TIMERS)
    i = inst(State.STARTING, "pre", restart_delay=2.0)
    assert do(i, Event.CMDS_FAILED, "pre why") == [Action(A.CANCEL_TIMERS),
                                                   Action(A.ARM_RETRY, 2.0, jitter=True)]
    assert (i.reason, i.failures, i.start_failures) == ("pre why", 1, 1)
    i = inst(State.STARTING, "pre", stable_seconds=0.5)
    i.failures = 3
    do(i, Event.CMDS_FAILED, "x")
    assert i.failures == 4  # a failed exec-pre ran for no time: earlier trouble counts


def test_ready_and_up_exactly():
    i = inst(State.STARTING, exec_post=PRE)
    assert do(i, Event.READY) == [Action(A.CANCEL_TIMERS), Action(A.RUN_COMMANDS, what="post")]
    assert i.phase == "post"
    for phase in ("pre", "post"):
        i = inst(State.STARTING, phase)
        assert do(i, Event.READY) == [] and (i.state, i.phase) == (State.STARTING, phase)
    i = inst(State.STARTING, "post", type=ServiceType.ONESHOT)
    assert do(i, Event.CMDS_DONE) == [Action(A.CANCEL_TIMERS), Action(A.ANNOUNCE)]
    assert (i.state, i.phase) == (State.EXITED, "")


def test_reload_exactly():
    i = inst(State.RUNNING)
    assert do(i, Event.RELOAD) == [Action(A.RELOAD_FAILED,
                                          what="u has no exec-reload or reload-signal")]
    i = inst(State.RUNNING, "reloading")
    assert do(i, Event.READY) == [Action(A.RELOADED, what="u reloaded (READY=1)")]
    for phase in ("reload", "self-stop", "post"):
        i = inst(State.RUNNING, phase)
        assert do(i, Event.READY) == [] and i.phase == phase
        assert do(i, Event.RELOADING) == [] and i.phase == phase


def test_stop_escalation_and_self_stop_exactly():
    i = inst(State.STOPPING, "stop", stop_timeout=4.0)
    assert do(i, Event.STOP_TIMEOUT) == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                                         Action(A.ARM_STOP, 4.0)]
    assert i.phase == ""
    i = inst(State.RUNNING, stop_timeout=4.0)
    assert do(i, Event.STOPPING) == [Action(A.CANCEL_TIMERS), Action(A.ARM_STOP, 4.0)]
    i = inst(State.STOPPING, "self-stop")
    i.want_up = True
    assert do(i, Event.STOP) == [] and (i.phase, i.want_up) == ("", False)
    i = inst(State.STOPPING, "stop")  # a restart running exec-stop: a stop now wins
    i.want_up, i.pending_failure = True, "unhealthy"
    assert do(i, Event.STOP) == [] and (i.phase, i.want_up, i.pending_failure) == (
        "stop", False, "")


def test_watchdog_exactly():
    i = inst(State.RUNNING, "reload", stop_timeout=4.0)
    i.pid = 5
    assert do(i, Event.WATCHDOG) == [Action(A.CANCEL_TIMERS), Action(A.ABORT),
                                     Action(A.ARM_STOP, 4.0)]
    assert (i.state, i.phase, i.reason, i.pending_failure) == (
        State.STOPPING, "", "watchdog timeout", "watchdog timeout")


def test_resume_exactly():
    for phase in ("pre", "post"):
        i = inst(State.STARTING, phase)
        assert do(i, Event.RESUME) == [Action(A.RUN_COMMANDS, what=phase)]
    i = inst(State.STOPPING, "self-stop", stop_timeout=4.0)
    assert do(i, Event.RESUME) == [Action(A.ARM_STOP, 4.0)] and i.phase == "self-stop"
    i = inst(State.STOPPING, "stop", stop_timeout=4.0)
    assert do(i, Event.RESUME) == [Action(A.SIGNAL_STOP), Action(A.ARM_STOP, 4.0)]
    assert i.phase == ""
    i = inst(State.RUNNING, "reload")
    assert do(i, Event.RESUME) == [Action(A.START_HEALTH)] and i.phase == ""


def test_only_a_asked_stop_of_a_running_service_runs_exec_stop():
    i = inst(State.RUNNING, exec_stop=PRE, stop_timeout=4.0)
    i.pid = 5
    assert do(i, Event.STOP) == [Action(A.CANCEL_TIMERS), Action(A.RUN_COMMANDS, what="stop"),
                                 Action(A.ARM_STOP, 4.0)]
    i = inst(State.RUNNING, exec_stop=PRE, stop_timeout=4.0)
    i.pid = 5
    assert do(i, Event.RESTART) == [Action(A.CANCEL_TIMERS),
                                    Action(A.RUN_COMMANDS, what="stop"), Action(A.ARM_STOP, 4.0)]
    assert i.want_up and i.phase == "stop"
    for state, event in ((State.RUNNING, Event.HEALTH_FAILED), (State.RUNNING, Event.ACTION_FAILED),
                         (State.STARTING, Event.READY_TIMEOUT), (State.STARTING, Event.STOP)):
        i = inst(state, exec_stop=PRE, stop_timeout=4.0)
        i.pid = 5
        assert do(i, event, "x") == [Action(A.CANCEL_TIMERS), Action(A.SIGNAL_STOP),
                                     Action(A.ARM_STOP, 4.0)], (state, event)
        assert i.phase == ""


def test_a_record_from_before_issue_20_has_no_phase():
    i = inst(State.RUNNING)
    record = i.record()
    del record["phase"]
    assert Instance.from_record(record, i.service).phase == ""


def test_a_restart_through_exec_stop_starts_afresh_with_no_phase():
    i = inst(State.RUNNING, exec_stop=PRE)
    i.pid = 5
    do(i, Event.RESTART)
    assert i.phase == "stop"
    assert do(i, Event.EXIT, exit=ExitInfo(0, None, False, 9.0)) == [Action(A.CANCEL_TIMERS),
                                                                      Action(A.SPAWN)]
    assert (i.state, i.phase) == (State.STARTING, "")
    assert [a.kind for a in do(i, Event.EXEC_OK)] == [A.CANCEL_TIMERS, A.ANNOUNCE,
                                                      A.START_HEALTH]
