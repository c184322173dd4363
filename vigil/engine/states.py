"""The state machine of one service instance, as one table.

`TABLE[(state, event)]` names the handler for every pair that means
something; `IGNORED` lists the pairs that are harmless no-ops. Any other pair
is a bug: `step` logs it and changes nothing. Handlers only change the
instance record and return actions; the supervisor carries the actions out,
so this module can be tested without a single process.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from vigil.base.records import dataclass

from vigil.base.exitstatus import ExitInfo as ExitInfo  # where the engine has always found it
from vigil.model.unit import RestartPolicy, Service, ServiceType

TYPE_CHECKING = False  # typing is not imported at run time: annotations are strings
if TYPE_CHECKING:
    from typing import Any


class State(enum.Enum):
    INACTIVE = "inactive"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"      # a oneshot that finished, or a clean exit with no restart
    FAILED = "failed"
    BACKOFF = "backoff"    # waiting to restart
    FATAL = "fatal"        # gave up after start-retries


DOWN_STATES = frozenset({State.INACTIVE, State.EXITED, State.FAILED, State.FATAL})


class Event(enum.Enum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    EXEC_OK = "exec-ok"
    EXEC_FAILED = "exec-failed"
    READY = "ready"
    READY_TIMEOUT = "ready-timeout"
    EXIT = "exit"
    STOP_TIMEOUT = "stop-timeout"
    RETRY = "retry"
    HEALTH_FAILED = "health-failed"
    FORKED = "forked"             # a forking launcher exited 0; the pid-file names the daemon
    ACTION_FAILED = "action-failed"  # carrying out an action raised (detail says which)
    RESUME = "resume"             # after a re-exec: re-arm what the state needs
    CMDS_DONE = "commands-done"   # the phase's lifecycle commands all succeeded
    CMDS_FAILED = "commands-failed"  # one failed (detail says which and how)
    RELOAD = "reload"             # vigilctl reload-unit
    RELOADING = "reloading"       # sd_notify RELOADING=1 (READY=1 ends it)
    STOPPING = "stopping"         # sd_notify STOPPING=1: it is stopping on its own
    WATCHDOG = "watchdog"         # no WATCHDOG=1 within `watchdog` (or WATCHDOG=trigger)


class Act(enum.Enum):
    SPAWN = "spawn"
    SIGNAL_STOP = "signal-stop"   # send the unit's stop-signal
    KILL = "kill"                 # SIGKILL to everything of the unit
    ARM_READY = "arm-ready"       # readiness deadline
    ARM_STOP = "arm-stop"         # stop-timeout deadline
    ARM_RETRY = "arm-retry"       # backoff, or the slow retry after fatal
    CANCEL_TIMERS = "cancel-timers"
    START_PROBE = "start-probe"
    START_HEALTH = "start-health"
    ANNOUNCE = "announce"         # the instance settled: tell dependents and the event log
    RUN_COMMANDS = "run-commands"  # phase `what`'s lifecycle commands (engine/lifecycle.py)
    SIGNAL_RELOAD = "signal-reload"  # reload-signal to the main process
    ABORT = "abort"               # SIGABRT to the unit's processes (the watchdog)
    REPORT = "report"             # `what` to the event log (exec-stop failed)
    RELOADED = "reloaded"         # a reload ended well (`what` says how)
    RELOAD_FAILED = "reload-failed"  # ... or not, and the service keeps running


@dataclass(frozen=True)
class Action:
    kind: Act
    delay: float = 0.0
    jitter: bool = False  # ARM_RETRY of a backoff: the supervisor spreads it by +-10%
    what: str = ""  # RUN_COMMANDS: the phase; REPORT: the text


@dataclass
class Instance:
    """One process slot of a unit: `web`, or `web:0` .. `web:N-1`."""

    name: str
    unit: str
    service: Service
    state: State = State.INACTIVE
    want_up: bool = False
    pid: int | None = None
    started_at: float | None = None
    start_failures: int = 0
    failures: int = 0
    restarts: int = 0
    last_exit: ExitInfo | None = None
    reason: str = ""
    pending_failure: str = ""  # set when we kill it for a failure (ready timeout)
    port: int | None = None  # the $PORT of the current run
    # within a state: "pre", "post", "stop" or "reload" (their commands run),
    # "reloading" (RELOADING=1 until READY=1), "self-stop" (STOPPING=1)
    phase: str = ""

    def record(self) -> dict[str, Any]:
        """What a re-exec keeps of it (JSON)."""
        record = {key: getattr(self, key) for key in KEPT}
        record.update(name=self.name, unit=self.unit, state=self.state.value,
                      last_exit=None if self.last_exit is None else self.last_exit.__dict__)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], service: Service) -> Instance:
        inst = cls(record["name"], record["unit"], service)
        for key in KEPT:
            setattr(inst, key, record.get(key, ""))  # phase: absent in older records
        inst.state = State(record["state"])
        if record["last_exit"]:
            inst.last_exit = ExitInfo(**record["last_exit"])
        return inst


KEPT = ("state", "want_up", "pid", "started_at", "start_failures", "failures", "restarts",
        "reason", "pending_failure", "phase")


@dataclass(frozen=True)
class Input:
    event: Event
    exit: ExitInfo | None = None
    detail: str = ""


Handler = Callable[[Instance, Input], list[Action]]


def _spawn(inst: Instance, _: Input) -> list[Action]:
    inst.state = State.STARTING
    inst.want_up = True
    inst.reason = ""
    inst.pending_failure = ""
    if inst.service.exec_pre:  # as systemd's ExecStartPre: each must succeed first
        inst.phase = "pre"
        return [Action(Act.CANCEL_TIMERS), Action(Act.RUN_COMMANDS, what="pre")]
    return [Action(Act.CANCEL_TIMERS), Action(Act.SPAWN)]


def _start_fresh(inst: Instance, ev: Input) -> list[Action]:
    inst.start_failures = inst.failures = 0
    return _spawn(inst, ev)


def _retry(inst: Instance, ev: Input) -> list[Action]:
    inst.restarts += 1
    return _spawn(inst, ev)


def _retry_after_fatal(inst: Instance, ev: Input) -> list[Action]:
    inst.start_failures = 0
    return _retry(inst, ev)


def _want_up_later(inst: Instance, _: Input) -> list[Action]:
    inst.want_up = True  # the exit handler restarts it once the stop completes
    return []


def _stop(inst: Instance, _: Input, graceful: bool = False) -> list[Action]:
    """The stop signal; or, asked of a running service with exec-stop, its
    commands first (the signal follows at stop-timeout, or at once if they
    fail). As systemd, a failing or unready one gets no exec-stop."""
    inst.want_up = False
    arm = Action(Act.ARM_STOP, inst.service.stop_timeout)
    if graceful and inst.state is State.RUNNING and inst.service.exec_stop:
        inst.state, inst.phase = State.STOPPING, "stop"
        return [Action(Act.CANCEL_TIMERS), Action(Act.RUN_COMMANDS, what="stop"), arm]
    inst.state, inst.phase = State.STOPPING, ""
    return [Action(Act.CANCEL_TIMERS), Action(Act.SIGNAL_STOP), arm]


def _restart(inst: Instance, ev: Input) -> list[Action]:
    actions = _stop(inst, ev, graceful=True)
    inst.want_up = True
    inst.restarts += 1
    return actions


def _settle_stopped(inst: Instance, _: Input) -> list[Action]:
    inst.want_up = False  # (its phase is "" in every state that settles here)
    inst.state = State.INACTIVE
    return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]


def _exec_ok(inst: Instance, _: Input) -> list[Action]:
    ready = inst.service.ready
    if ready is not None:
        return [Action(Act.ARM_READY, ready.timeout), Action(Act.START_PROBE)]
    if inst.service.type is ServiceType.FORKING:
        return [Action(Act.ARM_READY, inst.service.start_timeout)]  # until FORKED
    if inst.service.type is ServiceType.ONESHOT:
        return []  # done when it exits
    return _ready(inst, _)


def _forked(inst: Instance, ev: Input) -> list[Action]:
    """The supervisor has adopted the daemon named by the pid-file as inst.pid."""
    ready = inst.service.ready
    if ready is not None:
        return [Action(Act.CANCEL_TIMERS), Action(Act.ARM_READY, ready.timeout),
                Action(Act.START_PROBE)]
    return _ready(inst, ev)


def _fail(inst: Instance, ev: Input) -> list[Action]:
    inst.state, inst.phase = State.FAILED, ""
    inst.want_up = False
    inst.reason = ev.detail
    return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]


def backoff_delay(inst: Instance) -> float:
    """restart-delay doubled per failure in a row, capped (the supervisor
    adds the jitter, from a source tests can fix)."""
    svc = inst.service
    if svc.restart_delay <= 0:
        return 0.0
    return float(min(svc.restart_delay * 2 ** max(0, inst.failures - 1), svc.restart_delay_max))


def _arm_backoff(inst: Instance) -> Action:
    return Action(Act.ARM_RETRY, backoff_delay(inst), jitter=True)


def _after_failure(inst: Instance, runtime: float, early: bool, why: str) -> list[Action]:
    svc = inst.service
    inst.start_failures = inst.start_failures + 1 if early else 0
    if runtime >= svc.stable_seconds:
        inst.failures = 0  # it ran long enough: forget earlier trouble
    inst.failures += 1
    inst.phase = ""
    if inst.start_failures > svc.start_retries:
        inst.state = State.FATAL
        inst.reason = f"{why}; gave up after {svc.start_retries} retries"
        actions = [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]
        if svc.retry_after_fatal > 0:
            actions.append(Action(Act.ARM_RETRY, svc.retry_after_fatal))
        return actions
    inst.state = State.BACKOFF
    inst.reason = why
    return [Action(Act.CANCEL_TIMERS), _arm_backoff(inst)]


def _exited(inst: Instance, ev: Input) -> list[Action]:
    assert ev.exit is not None
    exit_info = ev.exit
    svc = inst.service
    inst.last_exit = exit_info
    inst.pid, inst.phase = None, ""
    success = exit_info.success(svc.success_exit_codes)
    if svc.type is ServiceType.ONESHOT and success:
        if svc.exec_post:  # it has exited: still STARTING, exec-post, then EXITED
            return _ready(inst, ev)
        inst.state = State.EXITED
        return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]
    wants_restart = svc.restart is RestartPolicy.ALWAYS or (
        svc.restart is RestartPolicy.ON_FAILURE and not success)
    if not wants_restart:
        inst.state = State.EXITED if success else State.FAILED
        inst.want_up = False
        inst.reason = "" if success else str(exit_info)
        return [Action(Act.CANCEL_TIMERS), Action(Act.ANNOUNCE)]
    early = inst.state is State.STARTING or exit_info.runtime < svc.start_seconds
    return _after_failure(inst, exit_info.runtime, early, str(exit_info))


def _stopped(inst: Instance, ev: Input) -> list[Action]:
    assert ev.exit is not None
    if inst.phase == "self-stop":  # it said STOPPING=1: its exit is judged as any exit
        return _exited(inst, ev)
    inst.last_exit = ev.exit
    inst.pid, inst.phase = None, ""
    if inst.pending_failure:
        if not inst.want_up:  # a watchdog kill, and the restart policy says never
            return _fail(inst, Input(ev.event, ev.exit, inst.pending_failure))
        return _after_failure(inst, ev.exit.runtime, True, inst.pending_failure)
    if inst.want_up:
        return _spawn(inst, ev)
    return _settle_stopped(inst, ev)


# the cells of phases, escalation and resumption (they use the helpers above, hence here)
from vigil.engine.lifecycle_states import (_commands_done, _commands_failed,  # noqa: E402
                                    _graceful_stop, _health_failed, _kill, _kill_for, _ready,
                                    _ready_again, _reload, _reloading, _resume_backoff,
                                    _resume_fatal, _resume_health, _resume_starting,
                                    _resume_stopping, _self_stop, _stop_while_stopping,
                                    _watchdog)


S, E = State, Event
TABLE: dict[tuple[State, Event], Handler] = {
    **{(s, E.START): _start_fresh for s in (S.INACTIVE, S.EXITED, S.FAILED, S.FATAL)},
    (S.BACKOFF, E.START): _spawn,
    (S.STOPPING, E.START): _want_up_later,
    **{(s, E.RESTART): _start_fresh for s in (S.INACTIVE, S.EXITED, S.FAILED, S.FATAL)},
    (S.BACKOFF, E.RESTART): _spawn,
    (S.STARTING, E.RESTART): _restart,
    (S.RUNNING, E.RESTART): _restart,
    (S.STOPPING, E.RESTART): _want_up_later,
    (S.STARTING, E.STOP): _stop,
    (S.RUNNING, E.STOP): _graceful_stop,
    (S.STOPPING, E.STOP): _stop_while_stopping,
    **{(s, E.STOP): _settle_stopped for s in (S.BACKOFF, S.EXITED, S.FAILED, S.FATAL)},
    (S.STARTING, E.EXEC_OK): _exec_ok,
    (S.STARTING, E.EXEC_FAILED): _fail,
    (S.STARTING, E.READY): _ready,
    (S.STARTING, E.READY_TIMEOUT): _kill_for,
    (S.STARTING, E.EXIT): _exited,
    (S.RUNNING, E.EXIT): _exited,
    (S.STOPPING, E.EXIT): _stopped,
    (S.STOPPING, E.STOP_TIMEOUT): _kill,
    (S.BACKOFF, E.RETRY): _retry,
    (S.FATAL, E.RETRY): _retry_after_fatal,
    (S.RUNNING, E.HEALTH_FAILED): _health_failed,
    (S.STARTING, E.FORKED): _forked,
    # an action that raised: a process we cannot supervise as configured has failed
    (S.STARTING, E.ACTION_FAILED): _kill_for,
    (S.RUNNING, E.ACTION_FAILED): _kill_for,
    # after a re-exec (the exec report of a STARTING one was lost with the old daemon)
    (S.STARTING, E.RESUME): _resume_starting,
    (S.RUNNING, E.RESUME): _resume_health,
    (S.STOPPING, E.RESUME): _resume_stopping,
    (S.BACKOFF, E.RESUME): _resume_backoff,
    (S.FATAL, E.RESUME): _resume_fatal,
    # lifecycle commands, reload, and what sd_notify says (vigil/engine/lifecycle_states.py)
    **{(s, e): h for s in (S.STARTING, S.RUNNING, S.STOPPING)
       for e, h in ((E.CMDS_DONE, _commands_done), (E.CMDS_FAILED, _commands_failed))},
    (S.RUNNING, E.READY): _ready_again,
    (S.RUNNING, E.RELOAD): _reload,
    (S.RUNNING, E.RELOADING): _reloading,
    (S.RUNNING, E.STOPPING): _self_stop,
    (S.RUNNING, E.WATCHDOG): _watchdog,
}

# Pairs that are legitimately nothing to do (a late timer, a repeated request).
IGNORED: frozenset[tuple[State, Event]] = frozenset({
    (S.STARTING, E.START), (S.RUNNING, E.START),
    (S.INACTIVE, E.STOP),
    (S.STOPPING, E.EXEC_OK), (S.STOPPING, E.EXEC_FAILED), (S.STOPPING, E.READY),
    (S.STOPPING, E.READY_TIMEOUT), (S.STOPPING, E.HEALTH_FAILED),
    (S.STARTING, E.HEALTH_FAILED),
    # a process of a failed exec exits after we recorded the failure
    (S.FAILED, E.EXIT),
    # timers and probes that lost a race with a state change
    *((s, e) for s in (S.INACTIVE, S.EXITED, S.FAILED, S.FATAL, S.BACKOFF, S.RUNNING)
      for e in (E.READY_TIMEOUT, E.STOP_TIMEOUT, E.READY, E.HEALTH_FAILED)
      if (s, e) not in {(S.RUNNING, E.HEALTH_FAILED), (S.RUNNING, E.READY)}),
    (S.STARTING, E.STOP_TIMEOUT), (S.STARTING, E.RETRY), (S.RUNNING, E.RETRY),
    (S.STOPPING, E.RETRY), (S.INACTIVE, E.RETRY), (S.EXITED, E.RETRY), (S.FAILED, E.RETRY),
    *((s, E.EXEC_OK) for s in (S.INACTIVE, S.RUNNING, S.EXITED, S.FAILED, S.BACKOFF, S.FATAL)),
    *((s, E.EXEC_FAILED) for s in (S.INACTIVE, S.RUNNING, S.EXITED, S.BACKOFF, S.FATAL,
                                   S.FAILED)),
    *((s, E.EXIT) for s in (S.INACTIVE, S.EXITED, S.BACKOFF, S.FATAL)),
    # the supervisor adopts a forked daemon only while starting; else it kills it
    *((s, E.FORKED) for s in State if s is not S.STARTING),
    # stopping: the stop timer escalates to SIGKILL; down: nothing runs to fail
    *((s, E.ACTION_FAILED) for s in State if s not in (S.STARTING, S.RUNNING)),
    *((s, E.RESUME) for s in (S.INACTIVE, S.EXITED, S.FAILED)),
    # commands of a phase the instance has left; a reload or notice of a down one
    *((s, e) for s in DOWN_STATES | {S.BACKOFF} for e in (E.CMDS_DONE, E.CMDS_FAILED)),
    *((s, e) for s in State if s is not S.RUNNING
      for e in (E.RELOAD, E.RELOADING, E.STOPPING, E.WATCHDOG)),
})


class InvalidTransition(Exception):
    pass


def step(inst: Instance, ev: Input) -> list[Action]:
    """Applies one event; raises InvalidTransition for a pair not in the table."""
    handler = TABLE.get((inst.state, ev.event))
    if handler is not None:
        return handler(inst, ev)
    if (inst.state, ev.event) in IGNORED:
        return []
    raise InvalidTransition(f"{inst.name}: event {ev.event.value} in state {inst.state.value}")
